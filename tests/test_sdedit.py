"""SDEdit / image-to-image: every sampler started from a given state at t_start < T (``t_start=``).

Gaussian data make it exact: the probability-flow ODE from x at t_start lands on the oracle's
closed-form flow map, and a state drawn from p_{t_start} (data noised by the forward kernel)
comes back as a sample of p_0. Before ``t_start`` existed, a named grid or an adaptive method
silently treated the noised image as a state at T.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import sdekit
from sdekit import VESDE, VPSDE
from sdekit.testing import Gaussian

F64 = torch.float64
T0 = 0.4


def gaussian() -> Gaussian:
    return Gaussian([1.0, -2.0], [[0.5, 0.2], [0.2, 0.3]])


def noised(data: Gaussian, sde: sdekit.LinearSDE, n: int, seed: int) -> Tensor:
    x0 = data.sample(n, generator=torch.Generator().manual_seed(seed), dtype=F64)
    alpha, sigma = sde.kernel(torch.tensor([T0], dtype=F64))
    z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=F64)
    return alpha * x0 + sigma * z


@pytest.mark.parametrize("sde", [VPSDE(), VESDE(sigma_min=0.01, sigma_max=10.0)], ids=["vp", "ve"])
@pytest.mark.parametrize(
    ("method", "options"),
    [("dopri5", {"rtol": 1e-8, "atol": 1e-8}), ("dpmpp_3m", {"steps": 500}), ("rk4", {"steps": 100})],
)
def test_the_flow_from_t_start_is_the_exact_flow_map(sde, method, options):
    data = gaussian()
    x = noised(data, sde, 8, seed=0)
    eps = sdekit.sampling.default_eps(sde)
    got, info = sdekit.ode_sample(
        sde, data.score(sde), x_T=x, t_start=T0, method=method, denoise=False, return_info=True, dtype=F64, **options
    )
    assert float(info.grid[0]) == T0 and float(info.grid[-1]) == eps
    expected = data.flow_map(x, sde, T0, eps)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # the old behaviour (x taken as a state at T) is far from it
    wrong = sdekit.ode_sample(sde, data.score(sde), x_T=x, method=method, denoise=False, dtype=F64, **options)
    assert (wrong - expected).abs().max() > 0.05


class FirstTime:
    """Records the time of every score call."""

    def __init__(self, score):
        self.score, self.times = score, []

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        self.times.append(float(t.max()))
        return self.score(x, t)


@pytest.mark.parametrize(
    ("sampler", "method", "options"),
    [
        (sdekit.sample, "adaptive", {}),
        (sdekit.sample, "euler_maruyama", {"steps": 20, "grid": "quadratic"}),
        (sdekit.sample, "torchsde:euler", {"steps": 20}),
        (sdekit.sample, "dpmpp_2m_sde", {"steps": 20}),
        (sdekit.pc_sample, "reverse_diffusion", {"steps": 20}),
        (sdekit.ode_sample, "dopri5", {"backend": "torchdiffeq"}),
        (sdekit.ode_sample, "dopri5", {"backend": "scipy"}),
    ],
)
def test_every_sampler_starts_at_t_start(sampler, method, options):
    data, sde = gaussian(), VPSDE()
    score = FirstTime(data.score(sde))
    x = noised(data, sde, 4, seed=1)
    key = "predictor" if sampler is sdekit.pc_sample else "method"
    out = sampler(sde, score, x_T=x, t_start=T0, generator=torch.Generator().manual_seed(0), dtype=F64,
                  **{key: method}, **options)  # fmt: skip
    assert torch.isfinite(out).all()
    assert max(score.times) == pytest.approx(T0, abs=1e-12)  # no call above t_start, the first at it
    assert score.times[0] == pytest.approx(T0, abs=1e-12)


@pytest.mark.parametrize(("method", "options"), [("adaptive", {}), ("ancestral", {"steps": 100})])
def test_sdedit_of_exact_noised_data_returns_the_data_distribution(method, options):
    """x ~ p_{t_start} exactly, so the reverse SDE from t_start samples p_0: mean and covariance within 5 s.e."""
    data, sde, n = gaussian(), VPSDE(), 8192
    x = noised(data, sde, n, seed=2)
    out = sdekit.sample(sde, data.score(sde), x_T=x, t_start=T0, method=method, dtype=F64,
                        generator=torch.Generator().manual_seed(3), **options)  # fmt: skip
    mean, cov = data.means[0], data.covariances[0]
    se_mean = (cov.diagonal() / n).sqrt()
    assert bool(((out.mean(0) - mean).abs() < 5 * se_mean).all()), (out.mean(0), mean)
    var = out.var(0)
    se_var = cov.diagonal() * (2 / (n - 1)) ** 0.5
    assert bool(((var - cov.diagonal()).abs() < 5 * se_var).all()), (var, cov.diagonal())


def test_t_start_equal_to_T_is_the_ordinary_sampler():
    data, sde = gaussian(), VPSDE()
    x = sde.prior_sample((4, 2), generator=torch.Generator().manual_seed(4), dtype=F64)
    a = sdekit.ode_sample(sde, data.score(sde), x_T=x, t_start=1.0, steps=10, method="heun", dtype=F64)
    b = sdekit.ode_sample(sde, data.score(sde), x_T=x, steps=10, method="heun", dtype=F64)
    assert torch.equal(a, b)


def test_an_explicit_grid_must_start_at_t_start():
    data, sde = gaussian(), VPSDE()
    x = noised(data, sde, 2, seed=5)
    grid = torch.linspace(T0, 1e-3, 11, dtype=F64)
    a = sdekit.ode_sample(sde, data.score(sde), x_T=x, t_start=T0, grid=grid, method="heun", dtype=F64)
    b = sdekit.ode_sample(sde, data.score(sde), x_T=x, grid=grid, method="heun", dtype=F64)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"t_start=0.5 disagrees with the explicit grid, which starts at 0.4"):
        sdekit.ode_sample(sde, data.score(sde), x_T=x, t_start=0.5, grid=grid, method="heun")


def test_bad_t_start_is_refused_at_the_call():
    data, sde = gaussian(), VPSDE()
    score, x = data.score(sde), noised(data, sde, 2, seed=6)
    with pytest.raises(TypeError, match="t_start needs x_T"):
        sdekit.sample(sde, score, shape=(2, 2), t_start=0.5, method="adaptive")
    for bad in (0.0, 1e-4, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"t_start must lie in \(eps, T\] = \(0.001, 1\]"):
            sdekit.ode_sample(sde, score, x_T=x, t_start=bad, method="dopri5")
    with pytest.raises(ValueError, match=r"t_start must lie in \(eps, T\] = \(0.3, 1\]"):
        sdekit.pc_sample(sde, score, x_T=x, t_start=0.2, eps=0.3, steps=5)
    with pytest.raises(TypeError, match="t_start must be a time"):
        sdekit.sample(sde, score, x_T=x, t_start="0.5", method="adaptive")  # type: ignore[arg-type]


def test_t_start_takes_a_float32_grid_and_a_0d_tensor():
    data, sde = gaussian(), VPSDE()
    x = noised(data, sde, 2, seed=7)
    grid32 = torch.linspace(T0, 1e-3, 11)  # holds 0.4 as 0.4000000059604645
    a = sdekit.ode_sample(sde, data.score(sde), x_T=x, t_start=T0, grid=grid32, method="heun", dtype=F64)
    b = sdekit.ode_sample(sde, data.score(sde), x_T=x, grid=grid32, method="heun", dtype=F64)
    assert torch.equal(a, b)
    c = sdekit.ode_sample(
        sde, data.score(sde), x_T=x, t_start=torch.tensor(T0, dtype=F64), steps=5, method="heun", dtype=F64
    )
    d = sdekit.ode_sample(sde, data.score(sde), x_T=x, t_start=T0, steps=5, method="heun", dtype=F64)
    assert torch.equal(c, d)


def test_t_start_refuses_an_sde_whose_schedule_reads_its_horizon():
    """A cosine schedule in t/T changes when T does: running it on the shorter horizon would be another process."""
    import math

    class HorizonScaled(sdekit.SDE):
        T = 2.0

        def drift(self, x, t):
            return -x * (t / self.T)[:, None]

        def diffusion(self, x, t):
            return torch.ones_like(x) * math.sqrt(2.0)

        def marginal(self, x0, t):
            raise NotImplementedError

        def prior_sample(self, shape, *, generator=None, device=None, dtype=torch.float32):
            return torch.randn(shape, generator=generator, device=device, dtype=dtype)

        def prior_logp(self, z):
            raise NotImplementedError

    x = torch.zeros(2, 2)
    with pytest.raises(TypeError, match="drift and diffusion do not depend on its horizon T"):
        sdekit.sample(HorizonScaled(), lambda x, t: -x, x_T=x, t_start=1.0, steps=4, denoise=False)
