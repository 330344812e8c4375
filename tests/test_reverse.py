"""Property tests of the derived processes in :mod:`sdekit.reverse`.

The drifts are checked against their formulas with an arbitrary smooth score, the
divergence term of a state-dependent diffusion against finite differences, and the
torchsde / torchdiffeq contracts by running those integrators on Gaussian data,
whose exact score, marginals and probability-flow map are known in closed form.
"""

from __future__ import annotations

import math

import pytest
import torch
import torchdiffeq
import torchsde
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from sdekit.reverse import ProbabilityFlow, ReverseSDE, diffusion_divergence, probability_flow, reverse
from sdekit.sde import SDE, VESDE, VPSDE, DiscreteVPSDE, LinearSDE, SubVPSDE, cosine_alphas_cumprod, linear_betas

from conftest import EVENT_SHAPES, dtypes, linear_sdes, states, subvp_sdes, times_like, ve_sdes, vp_sdes

F64 = torch.float64


def _bview(c: Tensor, like: Tensor) -> Tensor:
    return c.to(like.dtype).reshape(-1, *[1] * (like.ndim - 1))


def smooth_score(x: Tensor, t: Tensor) -> Tensor:
    """An arbitrary smooth 'score' s(x, t) = −x·t + sin(x): the formulas must hold for any score."""
    return -x * _bview(t, x) + torch.sin(x)


def _tol(dtype: torch.dtype) -> dict[str, float]:
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}


# --- the drifts are the formulas -------------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(sde=linear_sdes(), x=states(), data=st.data())
def test_reverse_and_flow_drifts(sde: LinearSDE, x: Tensor, data: st.DataObject) -> None:
    t = data.draw(times_like(x.shape[0], dtype=x.dtype))
    t64, x64 = t.double(), x.double()
    f = _bview(sde.drift_coeff(t64), x64) * x64
    g2 = _bview(sde.diffusion_squared(t64), x64)
    s = smooth_score(x64, t64)

    rev, flow = reverse(sde, smooth_score), probability_flow(sde, smooth_score)
    assert isinstance(rev, ReverseSDE) and isinstance(flow, ProbabilityFlow)
    rev_drift, flow_drift = rev.drift(x, t), flow.drift(x, t)
    for drift in (rev_drift, flow_drift):
        assert drift.shape == x.shape and drift.dtype == x.dtype
    scale = 1 + g2.abs()  # VE's g² reaches ~1e10: compare relative to it
    torch.testing.assert_close(rev_drift.double() / scale, (f - g2 * s) / scale, **_tol(x.dtype))
    torch.testing.assert_close(flow_drift.double() / scale, (f - 0.5 * g2 * s) / scale, **_tol(x.dtype))
    torch.testing.assert_close(rev.diffusion(x, t), sde.diffusion(x, t))


@settings(max_examples=25, deadline=None)
@given(sde=linear_sdes(), x=states(dtype=F64), data=st.data())
def test_flow_is_callable_with_scalar_time(sde: LinearSDE, x: Tensor, data: st.DataObject) -> None:
    t = data.draw(st.floats(0.0, 1.0))
    flow = probability_flow(sde, smooth_score)
    per_sample = flow.drift(x, torch.full((x.shape[0],), t, dtype=F64))
    torch.testing.assert_close(flow(torch.tensor(t, dtype=F64), x), per_sample)
    torch.testing.assert_close(flow(torch.full((x.shape[0],), t, dtype=F64), x), per_sample)


def test_derived_processes_reject_bad_arguments() -> None:
    for make in (reverse, probability_flow):
        with pytest.raises(TypeError, match="sde"):
            make(object(), smooth_score)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="score"):
            make(VPSDE(), "not a function")  # type: ignore[arg-type]


def test_derived_drift_checks_time() -> None:
    x = torch.zeros(2, 3)
    for process in (reverse(VPSDE(), smooth_score), probability_flow(VPSDE(), smooth_score)):
        with pytest.raises(ValueError, match=r"\bt\b"):
            process.drift(x, torch.tensor([0.5, 1.5]))


# --- state-dependent diffusion -------------------------------------------------------------------------------------


class CoupledDiffusionSDE(SDE):
    """dx = −½x dt + G(x, t) dw with diagonal G_i = 1 + 0.3 tanh(x_i + 0.5 x_{i+1 mod D}) t.

    Each G_i depends on two coordinates, so ∇·(GGᵀ) (= ∂G_i²/∂x_i) differs from the
    full gradient of ΣG_j² — an implementation summing the wrong derivatives fails.
    """

    state_dependent_diffusion = True

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        self.check_time(t)
        return -0.5 * x

    def diffusion(self, x: Tensor, t: Tensor) -> Tensor:
        self.check_time(t)
        if x is None:
            raise ValueError("x is required: the diffusion depends on the state")
        flat = x.flatten(1)
        coupled = flat + 0.5 * torch.roll(flat, shifts=-1, dims=1)
        return (1 + 0.3 * torch.tanh(coupled) * _bview(t, flat)).reshape(x.shape)

    def marginal(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError("no closed-form kernel")

    def prior_sample(self, shape, *, generator=None, device=None, dtype=torch.float32) -> Tensor:
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)

    def prior_logp(self, z: Tensor) -> Tensor:
        return -0.5 * z.flatten(1).pow(2).sum(1) - 0.5 * z[0].numel() * math.log(2 * math.pi)


def _fd_divergence(sde: SDE, x: Tensor, t: Tensor, h: float = 1e-5) -> Tensor:
    """Central finite differences of G_i² with respect to x_i, one coordinate at a time."""
    flat = x.double().flatten(1)
    out = torch.empty_like(flat)
    for i in range(flat.shape[1]):
        step = torch.zeros_like(flat)
        step[:, i] = h
        plus = sde.diffusion((flat + step).reshape(x.shape), t).flatten(1)[:, i] ** 2
        minus = sde.diffusion((flat - step).reshape(x.shape), t).flatten(1)[:, i] ** 2
        out[:, i] = (plus - minus) / (2 * h)
    return out.reshape(x.shape)


@st.composite
def coupled_states(draw: st.DrawFn) -> Tensor:
    batch = draw(st.integers(1, 4))
    event = draw(st.sampled_from([(2,), (3,), (5,), (2, 3), (1, 2, 2)]))
    seed = draw(st.integers(0, 2**31 - 1))
    return 1.5 * torch.randn((batch, *event), generator=torch.Generator().manual_seed(seed), dtype=F64)


@settings(max_examples=30, deadline=None)
@given(x=coupled_states(), data=st.data())
def test_diffusion_divergence_matches_finite_differences(x: Tensor, data: st.DataObject) -> None:
    sde = CoupledDiffusionSDE()
    t = data.draw(times_like(x.shape[0]))
    div = diffusion_divergence(sde, x, t)
    assert div.shape == x.shape and div.dtype == x.dtype
    torch.testing.assert_close(div, _fd_divergence(sde, x, t), rtol=1e-7, atol=1e-8)
    # it is the diagonal derivative, not the gradient of Σ_j G_j² (which would pick up the coupling)
    xg = x.clone().requires_grad_(True)
    (full,) = torch.autograd.grad(sde.diffusion(xg, t).pow(2).sum(), xg)
    if bool((t > 0.1).any()):
        assert not torch.allclose(full, div)


@settings(max_examples=25, deadline=None)
@given(x=coupled_states(), data=st.data())
def test_state_dependent_drifts_include_divergence(x: Tensor, data: st.DataObject) -> None:
    sde = CoupledDiffusionSDE()
    t = data.draw(times_like(x.shape[0]))
    G2 = sde.diffusion(x, t) ** 2
    div = _fd_divergence(sde, x, t)
    s = smooth_score(x, t)
    f = -0.5 * x
    torch.testing.assert_close(reverse(sde, smooth_score).drift(x, t), f - G2 * s - div, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(
        probability_flow(sde, smooth_score).drift(x, t), f - 0.5 * G2 * s - 0.5 * div, rtol=1e-7, atol=1e-8
    )


def test_state_dependent_torchsde_g_is_the_diagonal() -> None:
    sde = CoupledDiffusionSDE()
    x = torch.randn(3, 2, 2, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    rev = reverse(sde, smooth_score, event_shape=(2, 2, 2))
    y, s = x.flatten(1), torch.tensor(0.25, dtype=F64)
    t = torch.full((3,), 0.75, dtype=F64)
    torch.testing.assert_close(rev.g(s, y), sde.diffusion(x, t).flatten(1))
    torch.testing.assert_close(rev.f(s, y), -rev.drift(x, t).flatten(1))


# --- torchsde / torchdiffeq contracts -------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(sde=linear_sdes(), dtype=dtypes(), event=st.sampled_from(EVENT_SHAPES), data=st.data())
def test_torchsde_f_and_g_on_flattened_states(
    sde: LinearSDE, dtype: torch.dtype, event: tuple[int, ...], data: st.DataObject
) -> None:
    batch = data.draw(st.integers(1, 4))
    s_value = data.draw(st.floats(0.0, 1.0))
    seen: list[tuple[int, ...]] = []

    def score(x: Tensor, t: Tensor) -> Tensor:
        seen.append(tuple(x.shape))
        assert t.shape == (x.shape[0],)
        return smooth_score(x, t)

    rev = reverse(sde, score, event_shape=event)
    assert rev.noise_type == "diagonal" and rev.sde_type == "ito"
    x = torch.randn((batch, *event), generator=torch.Generator().manual_seed(0), dtype=F64).to(dtype)
    y = x.flatten(1)
    s = torch.tensor(s_value, dtype=dtype)
    f, g = rev.f(s, y), rev.g(s, y)
    assert f.shape == y.shape and g.shape == y.shape
    assert f.dtype == dtype and g.dtype == dtype
    assert seen and all(shape == (batch, *event) for shape in seen)

    t = (sde.T - s).expand(batch)
    torch.testing.assert_close(f, -rev.drift(x, t).flatten(1))  # reversed time s = T − t
    expected_g = _bview(sde.diffusion(x, t), x).expand_as(x).flatten(1)
    torch.testing.assert_close(g, expected_g.to(dtype))


def _gaussian_score(sde: LinearSDE, mu: Tensor, c: float):
    """Exact score of the marginal p_t when the data are N(μ, c I): −(x − αμ)/(α²c + σ²)."""

    def score(x: Tensor, t: Tensor) -> Tensor:
        t64 = t.double()
        alpha, sigma = sde.mean_coeff(t64), sde.std(t64)
        var = _bview(alpha**2 * c + sigma**2, x)
        return (-(x.double() - _bview(alpha, x) * mu) / var).to(x.dtype)

    return score


def _exact_flow_map(sde: LinearSDE, x: Tensor, t_from: float, t_to: float, mu: Tensor, c: float) -> Tensor:
    """For Gaussian data, (x_t − α_t μ)/√(α_t² c + σ_t²) is constant along the probability flow."""

    def coeffs(t: float) -> tuple[float, float]:
        tt = torch.tensor([t], dtype=F64)
        alpha, sigma = sde.mean_coeff(tt).item(), sde.std(tt).item()
        return alpha, math.sqrt(alpha**2 * c + sigma**2)

    a0, s0 = coeffs(t_from)
    a1, s1 = coeffs(t_to)
    return a1 * mu + s1 * (x - a0 * mu) / s0


@settings(max_examples=12, deadline=None)
@given(
    sde=st.one_of(vp_sdes(), subvp_sdes(), ve_sdes()),
    event=st.sampled_from([(2,), (1, 2, 2)]),
    c=st.floats(0.05, 2.0),
    t_to=st.sampled_from([1e-5, 1e-3, 0.3, 0.7]),
    seed=st.integers(0, 2**31 - 1),
)
def test_torchdiffeq_flow_lands_on_exact_flow_map(
    sde: LinearSDE, event: tuple[int, ...], c: float, t_to: float, seed: int
) -> None:
    """The documented call ``odeint(flow, x_T, [T, eps])``, plain adaptive dopri5 (which steps past eps)."""
    generator = torch.Generator().manual_seed(seed)
    mu = torch.randn(event, generator=generator, dtype=F64)
    x_T = sde.prior_sample((8, *event), generator=generator, dtype=F64)
    flow = probability_flow(sde, _gaussian_score(sde, mu, c))
    ts = torch.tensor([sde.T, t_to], dtype=F64)
    path = torchdiffeq.odeint(flow, x_T, ts, method="dopri5", rtol=1e-9, atol=1e-9)
    assert path.shape == (2, *x_T.shape)
    expected = _exact_flow_map(sde, x_T, sde.T, t_to, mu, c)
    torch.testing.assert_close(path[-1], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "sde",
    [VPSDE.from_betas(linear_betas(50, 2e-3, 0.35)), VPSDE.from_alphas_cumprod(cosine_alphas_cumprod(50))],
    ids=["linear-50", "cosine-50"],
)
def test_torchdiffeq_flow_of_discrete_schedule_with_jumps(sde: DiscreteVPSDE) -> None:
    """Discrete VP: β jumps at the knots i/N, which torchdiffeq is told through ``jump_t``.

    (N is kept at 50: at N = 1000 dopri5's evaluations exactly on/one ulp off the knots
    land on either side of the jump, which costs accuracy (~1e-4) and many rejected steps.)
    """
    mu, c = torch.tensor([0.5, -1.0], dtype=F64), 0.3
    x_T = sde.prior_sample((8, 2), generator=torch.Generator().manual_seed(3), dtype=F64)
    flow = probability_flow(sde, _gaussian_score(sde, mu, c))
    ts = torch.tensor([sde.T, 1e-3], dtype=F64)
    knots = torch.arange(1, sde.num_timesteps, dtype=F64) / sde.num_timesteps
    path = torchdiffeq.odeint(flow, x_T, ts, method="dopri5", rtol=1e-9, atol=1e-9, options={"jump_t": knots})
    torch.testing.assert_close(path[-1], _exact_flow_map(sde, x_T, sde.T, 1e-3, mu, c), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE()], ids=["vp", "subvp", "ve"])
def test_flow_tolerates_integrator_overshoot(sde: LinearSDE) -> None:
    """Adaptive integrators probe just past [0, T]; the scalar-time call must stay finite there."""
    flow = probability_flow(sde, _gaussian_score(sde, torch.zeros(2, dtype=F64), 0.5))
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    for t in (-1e-4, -0.05, sde.T + 1e-4):
        assert bool(torch.isfinite(flow(torch.tensor(t, dtype=F64), x)).all()), t


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE()], ids=["vp", "subvp", "ve"])
def test_torchsde_reverse_sde_reaches_exact_marginal(sde: LinearSDE) -> None:
    """Reverse SDE from exact p_T samples to eps: moments match the exact marginal at eps."""
    eps, n = 1e-3, 4096
    mu, c = torch.tensor([1.0, -2.0], dtype=F64), 0.25
    generator = torch.Generator().manual_seed(0)

    def marginal_moments(t: float) -> tuple[Tensor, float]:
        tt = torch.tensor([t], dtype=F64)
        alpha, sigma = sde.mean_coeff(tt).item(), sde.std(tt).item()
        return alpha * mu, alpha**2 * c + sigma**2

    mean_T, var_T = marginal_moments(sde.T)
    y0 = mean_T + math.sqrt(var_T) * torch.randn(n, 2, generator=generator, dtype=F64)
    rev = reverse(sde, _gaussian_score(sde, mu, c))
    ts = torch.tensor([0.0, sde.T - eps], dtype=F64)
    bm = torchsde.BrownianInterval(t0=0.0, t1=sde.T - eps, size=(n, 2), dtype=F64, entropy=1234)
    ys = torchsde.sdeint(rev, y0, ts, method="euler", dt=2e-3, bm=bm)
    assert ys.shape == (2, n, 2) and bool(torch.isfinite(ys).all())

    mean_eps, var_eps = marginal_moments(eps)
    x = ys[-1]
    # tolerances ≈ 5 standard errors of the 4096-sample estimates (Euler bias at dt = 2e-3 is below that)
    torch.testing.assert_close(x.mean(0), mean_eps, rtol=0, atol=0.04)
    torch.testing.assert_close(x.var(0), torch.full((2,), var_eps, dtype=F64), rtol=0.1, atol=0)


def test_torchsde_runs_image_shaped_events() -> None:
    """A short torchsde run through event_shape reshaping: the score sees (B, C, H, W) states."""
    sde, event, n = VPSDE(), (2, 3, 3), 16
    mu, c = torch.zeros(event, dtype=F64), 1.0
    shapes: set[tuple[int, ...]] = set()
    score = _gaussian_score(sde, mu, c)

    def recording_score(x: Tensor, t: Tensor) -> Tensor:
        shapes.add(tuple(x.shape))
        return score(x, t)

    rev = reverse(sde, recording_score, event_shape=event)
    y0 = torch.randn(n, math.prod(event), generator=torch.Generator().manual_seed(0), dtype=F64)
    bm = torchsde.BrownianInterval(t0=0.0, t1=0.1, size=y0.shape, dtype=F64, entropy=0)
    ys = torchsde.sdeint(rev, y0, torch.tensor([0.0, 0.1], dtype=F64), method="euler", dt=0.01, bm=bm)
    assert ys.shape == (2, *y0.shape) and bool(torch.isfinite(ys).all())
    assert shapes == {(n, *event)}
