"""Convergence orders on the Gaussian oracle, and agreement with torchsde / torchdiffeq.

For Gaussian data N(μ, diag(c)) every linear SDE has closed-form marginals and an exact
probability-flow map: (x_t − α_t μ)/√(α_t² c + σ_t²) is constant along the flow. The two
coordinates are chosen so that Monte-Carlo noise stays small beside the weak error: the
first (μ = 2, c = 0.04) shows the mean's error, the second (μ = 1, c = 1.5) the variance's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchdiffeq
import torchsde

from sdekit import VESDE, VPSDE, ode_sample, probability_flow, reverse, sample
from sdekit.sde import LinearSDE

MEAN = torch.tensor([2.0, 1.0], dtype=torch.float64)
VAR = torch.tensor([0.04, 1.5], dtype=torch.float64)


def exact_score(sde: LinearSDE):
    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, std = sde.mean_coeff(t.double())[:, None], sde.std(t.double())[:, None]
        return (-(x.double() - alpha * MEAN) / (alpha**2 * VAR + std**2)).to(x.dtype)

    return score


def moments(sde: LinearSDE, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-coordinate mean and variance of p_t for N(MEAN, diag(VAR)) data."""
    t64 = torch.tensor([t], dtype=torch.float64)
    alpha, std = sde.mean_coeff(t64), sde.std(t64)
    return alpha * MEAN, alpha**2 * VAR + std**2


def exact_flow(sde: LinearSDE, x: torch.Tensor, t_from: float, t_to: float) -> torch.Tensor:
    (m0, v0), (m1, v1) = moments(sde, t_from), moments(sde, t_to)
    return m1 + (v1 / v0) ** 0.5 * (x - m0)


def prior_draw(sde: LinearSDE, n: int, seed: int = 0) -> torch.Tensor:
    """Exact samples of p_T, so that step-count-independent prior mismatch does not bias the order."""
    mean, var = moments(sde, sde.T)
    return mean + var**0.5 * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def slope(steps: list[int], errors: list[float]) -> float:
    return -float(np.polyfit(np.log(steps), np.log(errors), 1)[0])


@pytest.mark.parametrize(
    ("method", "order", "steps"),
    [("euler", 1, [20, 40, 80, 160]), ("heun", 2, [20, 40, 80, 160]), ("rk4", 4, [10, 20, 40, 80])],
)
@pytest.mark.parametrize("sde", [VPSDE(), VESDE(0.01, 5.0)], ids=["vp", "ve"])
def test_ode_convergence_order(method, order, steps, sde):
    eps = 1e-3
    x_T = prior_draw(sde, 256)
    truth = exact_flow(sde, x_T, sde.T, eps)
    errors = []
    for n in steps:
        x = ode_sample(
            sde, exact_score(sde), x_T=x_T, method=method, steps=n, eps=eps, dtype=torch.float64, denoise=False
        )
        errors.append(float((x - truth).abs().max()))
    assert abs(slope(steps, errors) - order) <= 0.3, errors


@pytest.mark.slow
def test_euler_maruyama_weak_order_one():
    """Mean and variance errors of the EM iterate at eps halve when the step count doubles."""
    sde, eps, steps = VPSDE(), 1e-3, [10, 20, 40, 80]
    mean_eps, var_eps = moments(sde, eps)
    x_T = prior_draw(sde, 2**20, seed=1).float()
    mean_errors, var_errors = [], []
    for i, n in enumerate(steps):
        x = sample(
            sde,
            exact_score(sde),
            x_T=x_T,
            method="euler_maruyama",
            steps=n,
            eps=eps,
            denoise=False,
            generator=torch.Generator().manual_seed(10 + i),
        ).double()
        mean_errors.append(abs(float(x[:, 0].mean() - mean_eps[0])))
        var_errors.append(abs(float(x[:, 1].var() - var_eps[1])))
    assert abs(slope(steps, mean_errors) - 1) <= 0.3, mean_errors
    assert abs(slope(steps, var_errors) - 1) <= 0.3, var_errors


def test_torchdiffeq_odeint_on_the_flow_matches_sdekit_and_the_exact_map():
    sde, eps = VPSDE(), 1e-3
    flow = probability_flow(sde, exact_score(sde))
    x_T = prior_draw(sde, 128)
    truth = exact_flow(sde, x_T, sde.T, eps)
    times = torch.tensor([sde.T, eps], dtype=torch.float64)
    # step_t makes torchdiffeq land on eps instead of stepping past it (below 0 the VP schedule is NaN).
    adaptive = torchdiffeq.odeint(flow, x_T, times, method="dopri5", rtol=1e-9, atol=1e-9, options={"step_t": times})[
        -1
    ]
    assert torch.allclose(adaptive, truth, atol=1e-6)
    ours = ode_sample(sde, exact_score(sde), x_T=x_T, method="rk4", steps=200, dtype=torch.float64, denoise=False)
    assert torch.allclose(ours, adaptive, atol=1e-6)
    # Same fixed grid, same method: the two integrators agree to rounding.
    grid = torch.linspace(sde.T, eps, 41, dtype=torch.float64)
    theirs = torchdiffeq.odeint(flow, x_T, grid, method="euler")[-1]
    ours = ode_sample(sde, exact_score(sde), x_T=x_T, method="euler", grid=grid, dtype=torch.float64, denoise=False)
    assert torch.allclose(ours, theirs, atol=1e-12)


@pytest.mark.parametrize("sde", [VPSDE(), VESDE(0.01, 5.0)], ids=["vp", "ve"])
def test_torchsde_sdeint_on_the_reverse_sde_matches_sdekit_in_distribution(sde):
    eps, n, steps = 1e-3, 2**14, 100
    x_T = prior_draw(sde, n, seed=2)
    rsde = reverse(sde, exact_score(sde))
    ts = torch.tensor([0.0, sde.T - eps], dtype=torch.float64)
    bm = torchsde.BrownianInterval(t0=0.0, t1=sde.T - eps, size=x_T.shape, dtype=torch.float64, entropy=3)
    theirs = torchsde.sdeint(rsde, x_T, ts, method="euler", dt=(sde.T - eps) / steps, bm=bm)[-1]
    ours = sample(
        sde,
        exact_score(sde),
        x_T=x_T,
        method="euler_maruyama",
        steps=steps,
        grid="uniform",  # torchsde's fixed dt
        eps=eps,
        dtype=torch.float64,
        denoise=False,
        generator=torch.Generator().manual_seed(4),
    )
    mean_eps, var_eps = moments(sde, eps)
    for x in (theirs, ours):
        assert torch.allclose(x.mean(0), mean_eps, atol=0.03)
        assert torch.allclose(x.var(0) / var_eps, torch.ones(2, dtype=torch.float64), atol=0.05)
    assert torch.allclose(theirs.mean(0), ours.mean(0), atol=0.03)
    assert torch.allclose(theirs.var(0) / ours.var(0), torch.ones(2, dtype=torch.float64), atol=0.05)


@pytest.mark.parametrize("backend", ["native", "torchdiffeq", "scipy"])
@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_adaptive_ode_sample_lands_on_the_exact_flow_map(method, backend):
    sde, eps, tol = VPSDE(), 1e-3, 1e-6
    x_T = prior_draw(sde, 64)
    truth = exact_flow(sde, x_T, sde.T, eps)
    x, info = ode_sample(
        sde,
        exact_score(sde),
        x_T=x_T,
        method=method,
        backend=backend,
        rtol=tol,
        atol=tol,
        dtype=torch.float64,
        denoise=False,
        return_info=True,
    )
    assert float((x - truth).abs().max()) < 50 * tol
    assert info.nfe > 10


def test_adaptive_ode_sample_t_eval_returns_the_trajectory():
    sde = VPSDE()
    x_T = prior_draw(sde, 16)
    t_eval = torch.tensor([1.0, 0.5, 0.1, 1e-3], dtype=torch.float64)
    path = ode_sample(sde, exact_score(sde), x_T=x_T, method="dopri5", t_eval=t_eval, dtype=torch.float64)
    assert path.shape == (4, 16, 2)
    for k, t in enumerate(t_eval.tolist()):
        assert torch.allclose(path[k], exact_flow(sde, x_T, sde.T, t), atol=1e-3)


def test_adaptive_ode_sample_rejects_fixed_grid_arguments_and_bad_options():
    sde = VPSDE()
    with pytest.raises(TypeError, match="grid is not an option of method 'dopri5'"):
        ode_sample(sde, exact_score(sde), (4, 2), method="dopri5", grid="uniform")
    with pytest.raises(TypeError, match="callback is not an option of method 'dopri5'"):
        ode_sample(sde, exact_score(sde), (4, 2), method="dopri5", backend="torchdiffeq", callback=print)
    with pytest.raises(ValueError, match="rtol"):
        ode_sample(sde, exact_score(sde), (4, 2), method="dopri5", rtol=-1.0)
    with pytest.raises(TypeError, match="method 'heun' takes no option"):
        ode_sample(sde, exact_score(sde), (4, 2), method="heun", rtol=1e-3)


@pytest.mark.parametrize(
    ("options", "order"), [({"order": 1}, 2), ({"order": 2}, 3), ({"order": 2, "corrector": False}, 2)]
)
@pytest.mark.parametrize("sde", [VPSDE(), VESDE(0.01, 5.0)], ids=["vp", "ve"])
def test_unipc_corrector_raises_the_order_by_one(options, order, sde):
    """UniPC-p with its corrector is of order p + 1 (Zhao et al. 2023), the predictor alone of order p; measured
    1.90/1.95, 2.75/2.86 and 1.79/1.85 (VP/VE). With order=3 the warm-up caps it at 3 (3.06–3.6 measured), as for
    dpmpp_3m: the first corrected step is second order."""
    eps = 1e-3
    x_T = prior_draw(sde, 256)
    truth = exact_flow(sde, x_T, sde.T, eps)
    steps = [10, 20, 40, 80]
    errors = []
    for n in steps:
        x = ode_sample(sde, exact_score(sde), x_T=x_T, method="unipc", steps=n, eps=eps, dtype=torch.float64,
                       denoise=False, **options)  # fmt: skip
        errors.append(float((x - truth).abs().max()))
    assert abs(slope(steps, errors) - order) <= 0.3, errors
