"""Property tests of the forward SDEs in :mod:`sdekit.sde`.

The central check is independent of the closed forms: the Gaussian kernel's moments
of a linear SDE dx = f(t) x dt + g(t) dw solve dm/dt = f m and dv/dt = 2 f v + g², so
integrating those ODEs with scipy from the marginal at t0 must land on the marginal at
t1. The closed forms are then pinned to the table of docs/design.md, the discrete VP to its DDPM
levels, and every bad argument to a ValueError naming it.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import integrate

from sdekit.sde import (
    SDE,
    VESDE,
    VPSDE,
    DiscreteVPSDE,
    LinearSDE,
    SubVPSDE,
    cosine_alphas_cumprod,
    linear_betas,
    time_checks,
)

from conftest import (
    DTYPES,
    EVENT_SHAPES,
    beta_ranges,
    discrete_vp_sdes,
    dtypes,
    linear_sdes,
    sigma_ranges,
    states,
    subvp_sdes,
    times_like,
    ve_sdes,
    vp_sdes,
)

F64 = torch.float64


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def _marginal_moments(sde: LinearSDE, t: float) -> tuple[float, float]:
    """(mean coefficient α(t), variance σ(t)²) read through the public ``marginal``."""
    mean, std = sde.marginal(torch.ones(1, 1, dtype=F64), _t(t))
    return mean.item(), std.item() ** 2


def _integrate_moments(sde: LinearSDE, t0: float, t1: float, m0: float, v0: float) -> tuple[float, float]:
    """Integrate dm/dt = f m, dv/dt = 2 f v + g² from t0 to t1 with scipy (DOP853, tight tolerances).

    A :class:`DiscreteVPSDE` has a piecewise-constant β with jumps at the knots i/N, so it is
    integrated one piece at a time, each piece's coefficients read strictly inside that piece.
    """
    if isinstance(sde, DiscreteVPSDE):
        n = sde.num_timesteps
        knots = [k / n for k in range(math.floor(t0 * n) + 1, math.ceil(t1 * n)) if t0 < k / n < t1]
        edges = [t0, *knots, t1]
    else:
        edges = [t0, t1]
    y = np.array([m0, v0])
    for lo, hi in itertools.pairwise(edges):
        inset = (hi - lo) * 1e-6

        def rhs(t: float, state: np.ndarray, lo: float = lo, hi: float = hi, inset: float = inset) -> np.ndarray:
            tt = _t(min(max(t, lo + inset), hi - inset))
            f = sde.drift_coeff(tt).item()
            g2 = sde.diffusion_squared(tt).item()
            return np.array([f * state[0], 2 * f * state[1] + g2])

        sol = integrate.solve_ivp(rhs, (lo, hi), y, method="DOP853", rtol=1e-12, atol=1e-14)
        assert sol.success, sol.message
        y = sol.y[:, -1]
    return float(y[0]), float(y[1])


@st.composite
def time_pairs(draw: st.DrawFn, max_span: float = 1.0) -> tuple[float, float]:
    t0 = draw(st.floats(0.0, 0.999))
    span = draw(st.floats(1e-3, max_span))
    return t0, min(1.0, t0 + span)


# --- marginal against the moment ODEs ----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(sde=st.one_of(vp_sdes(), subvp_sdes(), ve_sdes()), times=time_pairs())
def test_marginal_solves_moment_odes(sde: LinearSDE, times: tuple[float, float]) -> None:
    t0, t1 = times
    m0, v0 = _marginal_moments(sde, t0)
    m1, v1 = _integrate_moments(sde, t0, t1, m0, v0)
    alpha1, var1 = _marginal_moments(sde, t1)
    assert m1 == pytest.approx(alpha1, rel=1e-8, abs=1e-12)
    assert v1 == pytest.approx(var1, rel=1e-7, abs=1e-11)


@settings(max_examples=40, deadline=None)
@given(sde=discrete_vp_sdes(), data=st.data())
def test_discrete_marginal_solves_moment_odes(sde: DiscreteVPSDE, data: st.DataObject) -> None:
    # Keep each example to at most ~60 pieces of constant β so the suite stays fast.
    t0, t1 = data.draw(time_pairs(max_span=min(1.0, 60 / sde.num_timesteps)))
    m0, v0 = _marginal_moments(sde, t0)
    m1, v1 = _integrate_moments(sde, t0, t1, m0, v0)
    alpha1, var1 = _marginal_moments(sde, t1)
    assert m1 == pytest.approx(alpha1, rel=1e-8, abs=1e-12)
    assert v1 == pytest.approx(var1, rel=1e-7, abs=1e-11)


def test_discrete_marginal_over_whole_ddpm_schedule() -> None:
    """The full linear DDPM (N = 1000) from t = 0 to T, integrated over every piece."""
    sde = VPSDE.from_betas(linear_betas(1000))
    m1, v1 = _integrate_moments(sde, 0.0, 1.0, 1.0, 0.0)
    alpha1, var1 = _marginal_moments(sde, 1.0)
    assert m1 == pytest.approx(alpha1, rel=1e-8)
    assert v1 == pytest.approx(var1, rel=1e-8)


@settings(max_examples=30, deadline=None)
@given(sde=discrete_vp_sdes(), data=st.data())
def test_discrete_beta_is_constant_on_each_piece(sde: DiscreteVPSDE, data: st.DataObject) -> None:
    n = sde.num_timesteps
    i = data.draw(st.integers(0, n - 1))
    fractions = torch.tensor(data.draw(st.lists(st.floats(1e-6, 1 - 1e-6), min_size=2, max_size=6)), dtype=F64)
    beta = sde.beta((i + fractions) / n)
    expected = -n * math.log(sde.alphas_cumprod[i].item() / (sde.alphas_cumprod[i - 1].item() if i else 1.0))
    torch.testing.assert_close(beta, torch.full_like(beta, expected), rtol=1e-9, atol=0)


# --- closed forms (docs/design.md) ----------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(r=beta_ranges(), t=times_like(6))
def test_vp_and_subvp_closed_forms(r: tuple[float, float], t: torch.Tensor) -> None:
    beta_min, beta_max = r
    beta = beta_min + t * (beta_max - beta_min)
    log_alpha = -0.25 * t**2 * (beta_max - beta_min) - 0.5 * t * beta_min
    alpha = log_alpha.exp()
    one_minus_alpha2 = -torch.expm1(2 * log_alpha)  # 1 − α², without cancellation at small t
    vp, subvp = VPSDE(beta_min, beta_max), SubVPSDE(beta_min, beta_max)
    for sde in (vp, subvp):
        torch.testing.assert_close(sde.mean_coeff(t), alpha, rtol=1e-12, atol=0)
        torch.testing.assert_close(sde.drift_coeff(t), -0.5 * beta, rtol=1e-12, atol=0)
    torch.testing.assert_close(vp.diffusion(t[:, None], t), beta.sqrt(), rtol=1e-12, atol=0)
    torch.testing.assert_close(vp.std(t), one_minus_alpha2.sqrt(), rtol=1e-10, atol=0)
    one_minus_alpha4 = one_minus_alpha2 * (1 + alpha**2)
    torch.testing.assert_close(subvp.diffusion(t[:, None], t), (beta * one_minus_alpha4).sqrt(), rtol=1e-10, atol=0)
    torch.testing.assert_close(subvp.std(t), one_minus_alpha2, rtol=1e-10, atol=0)


@settings(max_examples=30, deadline=None)
@given(r=sigma_ranges(), t=times_like(6))
def test_ve_closed_forms(r: tuple[float, float], t: torch.Tensor) -> None:
    sigma_min, sigma_max = r
    sde = VESDE(sigma_min, sigma_max)
    sigma = sigma_min * (sigma_max / sigma_min) ** t
    torch.testing.assert_close(sde.std(t), sigma, rtol=1e-10, atol=0)
    torch.testing.assert_close(sde.mean_coeff(t), torch.ones_like(t))
    g = sigma * math.sqrt(2 * math.log(sigma_max / sigma_min))
    torch.testing.assert_close(sde.diffusion(t[:, None], t), g, rtol=1e-10, atol=0)
    assert sde.prior_std == sigma_max


def test_linear_ddpm_is_the_discretisation_of_default_vp() -> None:
    discrete, continuous = VPSDE.from_betas(linear_betas(1000)), VPSDE(0.1, 20.0)
    t = torch.linspace(0, 1, 1001, dtype=F64)
    # β_i of step i sits at the start of its piece, so the two differ by O(1/N): ~1e-3 in σ.
    torch.testing.assert_close(discrete.std(t), continuous.std(t), rtol=0, atol=2e-3)
    torch.testing.assert_close(discrete.mean_coeff(t), continuous.mean_coeff(t), rtol=0, atol=2e-3)


# --- discrete VP: exact at the trained levels -----------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(sde=discrete_vp_sdes(max_steps=200))
def test_discrete_vp_exact_at_grid_points(sde: DiscreteVPSDE) -> None:
    n = sde.num_timesteps
    t = torch.arange(n + 1, dtype=F64) / n
    abar = torch.cat([torch.ones(1, dtype=F64), sde.alphas_cumprod])
    mean, std = sde.marginal(torch.ones(n + 1, 1, dtype=F64), t)
    torch.testing.assert_close(mean[:, 0] ** 2, abar, rtol=1e-12, atol=0)
    torch.testing.assert_close(std, (1 - abar).sqrt(), rtol=1e-7, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(betas=st.lists(st.floats(1e-5, 0.9), min_size=1, max_size=60))
def test_discrete_vp_reproduces_its_input(betas: list[float]) -> None:
    b = torch.tensor(betas, dtype=F64)
    abar = torch.cumprod(1 - b, 0)
    for sde in (VPSDE.from_betas(b), VPSDE.from_alphas_cumprod(abar), DiscreteVPSDE(abar)):
        n = sde.num_timesteps
        assert n == len(betas)
        torch.testing.assert_close(sde.alphas_cumprod, abar, rtol=1e-12, atol=0)
        t = torch.arange(n + 1, dtype=F64) / n
        torch.testing.assert_close(sde.mean_coeff(t[1:]) ** 2, abar, rtol=1e-12, atol=0)
        # the VP step's own β between consecutive levels is the DDPM β_i
        _, step_beta = sde.transition(t[1:], t[:-1])
        torch.testing.assert_close(step_beta, b, rtol=1e-9, atol=1e-15)


def test_cosine_schedule_matches_iddpm_formula() -> None:
    n, s = 1000, 0.008
    abar = cosine_alphas_cumprod(n, s)
    steps = torch.arange(n + 1, dtype=F64) / n
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    expected = f[1:] / f[0]
    torch.testing.assert_close(abar[:-5], expected[:-5], rtol=1e-10, atol=0)  # the clip acts only at the very end
    assert bool((abar > 0).all()) and bool((torch.diff(abar) < 0).all())
    betas = 1 - abar / torch.cat([torch.ones(1, dtype=F64), abar[:-1]])
    assert float(betas.max()) <= 0.999 + 1e-12


# --- prior ---------------------------------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(sde=st.one_of(vp_sdes(), ve_sdes(), subvp_sdes(), discrete_vp_sdes()), dtype=dtypes())
def test_prior_logp_integrates_to_one_in_1d(sde: LinearSDE, dtype: torch.dtype) -> None:
    scale = sde.prior_std

    def density(z: float) -> float:
        return math.exp(sde.prior_logp(torch.tensor([[z]], dtype=dtype)).item())

    tol = 1e-6 if dtype == torch.float32 else 1e-10  # float32 log-densities carry ~1e-7 round-off
    mass, _ = integrate.quad(density, -12 * scale, 12 * scale, points=[0.0], epsabs=tol / 10, epsrel=0, limit=200)
    assert mass == pytest.approx(1.0, abs=tol)


@settings(max_examples=15, deadline=None)
@given(sde=st.one_of(vp_sdes(), ve_sdes()), dtype=dtypes())
def test_prior_logp_integrates_to_one_in_2d(sde: LinearSDE, dtype: torch.dtype) -> None:
    scale = sde.prior_std
    grid = torch.linspace(-10 * scale, 10 * scale, 401, dtype=F64)
    zx, zy = torch.meshgrid(grid, grid, indexing="ij")
    z = torch.stack([zx.flatten(), zy.flatten()], dim=1).to(dtype)
    logp = sde.prior_logp(z)
    assert logp.shape == (z.shape[0],) and logp.dtype == dtype
    density = logp.double().exp().reshape(zx.shape).numpy()
    step = float(grid[1] - grid[0])
    mass = integrate.trapezoid(integrate.trapezoid(density, dx=step, axis=1), dx=step)
    assert mass == pytest.approx(1.0, abs=1e-5 if dtype == torch.float32 else 1e-9)


@settings(max_examples=25, deadline=None)
@given(sde=linear_sdes(), x=states())
def test_prior_logp_is_the_gaussian_log_density(sde: LinearSDE, x: torch.Tensor) -> None:
    from scipy import stats

    z = x * sde.prior_std
    logp = sde.prior_logp(z)
    assert logp.shape == (x.shape[0],) and logp.dtype == x.dtype
    dim = x[0].numel()
    expected = stats.multivariate_normal(np.zeros(dim), sde.prior_std**2 * np.eye(dim)).logpdf(
        z.double().flatten(1).numpy()
    )
    rtol = 1e-5 if x.dtype == torch.float32 else 1e-10
    np.testing.assert_allclose(logp.double().numpy(), np.atleast_1d(expected), rtol=rtol, atol=rtol)


@settings(max_examples=10, deadline=None)
@given(sde=linear_sdes(), dtype=dtypes(), event=st.sampled_from(EVENT_SHAPES), seed=st.integers(0, 2**31 - 1))
def test_prior_sample_shape_dtype_scale_and_reproducibility(
    sde: LinearSDE, dtype: torch.dtype, event: tuple[int, ...], seed: int
) -> None:
    shape = (2048, *event)
    x = sde.prior_sample(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    y = sde.prior_sample(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    assert x.shape == shape and x.dtype == dtype
    assert torch.equal(x, y)
    assert x.double().std().item() == pytest.approx(sde.prior_std, rel=0.1)


# --- shapes and dtypes -----------------------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(sde=linear_sdes(), x=states(), t_dtype=dtypes(), data=st.data())
def test_drift_diffusion_marginal_shapes_and_dtypes(
    sde: LinearSDE, x: torch.Tensor, t_dtype: torch.dtype, data: st.DataObject
) -> None:
    batch = x.shape[0]
    t = data.draw(times_like(batch, dtype=t_dtype))
    t64 = t.double()

    drift = sde.drift(x, t)
    assert drift.shape == x.shape and drift.dtype == x.dtype
    expected = sde.drift_coeff(t64).reshape(batch, *[1] * (x.ndim - 1)) * x.double()
    torch.testing.assert_close(drift.double(), expected, **_tol(x.dtype))

    for g in (sde.diffusion(x, t), sde.diffusion(x.double(), t).to(x.dtype)):
        assert g.shape == (batch,) and g.is_floating_point()
        torch.testing.assert_close(g.double() ** 2, sde.diffusion_squared(t64), **_tol(g.dtype))
    assert sde.diffusion(x, t).dtype == x.dtype

    mean, std = sde.marginal(x, t)
    assert mean.shape == x.shape and mean.dtype == x.dtype
    assert std.shape == (batch,) and std.dtype == x.dtype
    expected_mean = sde.mean_coeff(t64).reshape(batch, *[1] * (x.ndim - 1)) * x.double()
    torch.testing.assert_close(mean.double(), expected_mean, **_tol(x.dtype))
    torch.testing.assert_close(std.double(), sde.std(t64), **_tol(x.dtype))


def _tol(dtype: torch.dtype) -> dict[str, float]:
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-14}


@pytest.mark.parametrize("dtype", DTYPES)
def test_single_time_broadcasts_over_batch(dtype: torch.dtype) -> None:
    sde = VPSDE()
    x = torch.randn(4, 3, 2, 2, dtype=dtype, generator=torch.Generator().manual_seed(0))
    t = torch.full((4,), 0.3, dtype=dtype)
    torch.testing.assert_close(sde.drift(x, t[:1]), sde.drift(x, t))
    torch.testing.assert_close(sde.marginal(x, t[:1])[0], sde.marginal(x, t)[0])


# --- log-SNR -------------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(sde=linear_sdes(), data=st.data())
def test_t_from_log_snr_inverts_log_snr(sde: LinearSDE, data: st.DataObject) -> None:
    t = data.draw(times_like(8, low=1e-3, high=1.0))
    lam = sde.log_snr(t)
    assert lam.dtype == F64 and bool(torch.isfinite(lam).all())
    back = sde.t_from_log_snr(lam)
    torch.testing.assert_close(back, t, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(sde.log_snr(back), lam, rtol=1e-10, atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(sde=linear_sdes(), data=st.data())
def test_closed_form_inverse_matches_bisection_and_kernel_matches_its_parts(sde: LinearSDE, data: st.DataObject):
    """VP, sub-VP and discrete VP invert λ in closed form; the generic bisection is the reference."""
    t = data.draw(times_like(8, low=1e-9, high=1.0))
    lam = sde.log_snr(t)
    torch.testing.assert_close(sde.t_from_log_snr(lam), LinearSDE.t_from_log_snr(sde, lam), rtol=1e-9, atol=1e-15)
    alpha, sigma = sde.kernel(t)
    torch.testing.assert_close(alpha, sde.mean_coeff(t), rtol=1e-14, atol=0)
    torch.testing.assert_close(sigma, sde.std(t), rtol=1e-14, atol=0)


def test_inverse_of_a_subclass_schedule_falls_back_to_bisection_and_infinite_log_snr_maps_to_the_ends():
    class CosineVP(VPSDE):  # a schedule of its own: the closed form of VP's linear β does not apply
        def log_mean_coeff(self, t):
            return torch.log(torch.cos(1.5 * t))

    sde, t = CosineVP(), torch.tensor([0.01, 0.3, 0.7, 0.95], dtype=F64)
    torch.testing.assert_close(sde.t_from_log_snr(sde.log_snr(t)), t, rtol=1e-10, atol=0)
    for closed in (VPSDE(), SubVPSDE(), VPSDE.from_betas(linear_betas(50))):
        ends = closed.t_from_log_snr(torch.tensor([math.inf, -math.inf], dtype=F64))
        assert ends.tolist() == [0.0, closed.T]


@settings(max_examples=30, deadline=None)
@given(sde=linear_sdes())
def test_log_snr_strictly_decreasing(sde: LinearSDE) -> None:
    t = torch.linspace(1e-4, 1, 2001, dtype=F64)
    assert bool((torch.diff(sde.log_snr(t)) < 0).all())


# --- one-step transition -------------------------------------------------------------------------------------------

_GRID_SDES = {
    "vp-default": VPSDE(),
    "ddpm-linear-1000": VPSDE.from_betas(linear_betas(1000)),
    "ddpm-cosine-1000": VPSDE.from_alphas_cumprod(cosine_alphas_cumprod(1000)),
}


@pytest.mark.parametrize("eps", [0.0, 1e-3])
@pytest.mark.parametrize("name", sorted(_GRID_SDES))
def test_vp_step_beta_in_open_unit_interval_for_every_step_count(name: str, eps: float) -> None:
    sde = _GRID_SDES[name]
    for steps in range(1, 2001):
        grid = torch.linspace(sde.T, eps, steps + 1, dtype=F64)
        a, beta = sde.transition(grid[:-1], grid[1:])
        assert bool(((beta > 0) & (beta < 1)).all()), (steps, beta.min().item(), beta.max().item())
        assert bool(((a > 0) & (a < 1)).all()), steps
        if steps in (1, 20):
            torch.testing.assert_close(a**2, 1 - beta, rtol=1e-12, atol=1e-15)
            a_generic, v_generic = LinearSDE.transition(sde, grid[:-1], grid[1:])
            torch.testing.assert_close(a, a_generic, rtol=1e-12, atol=0)
            torch.testing.assert_close(beta, v_generic, rtol=1e-9, atol=1e-15)


@settings(max_examples=40, deadline=None)
@given(sde=st.one_of(vp_sdes(), discrete_vp_sdes()), steps=st.integers(1, 2000), eps=st.sampled_from([0.0, 1e-5, 1e-3]))
def test_vp_step_beta_random_schedules(sde: VPSDE, steps: int, eps: float) -> None:
    grid = torch.linspace(sde.T, eps, steps + 1, dtype=F64)
    a, beta = sde.transition(grid[:-1], grid[1:])
    assert bool(((beta > 0) & (beta < 1)).all())
    # the VP form agrees with the generic linear-SDE formula v = σ_t² − a² σ_t'²
    a_generic, v_generic = LinearSDE.transition(sde, grid[:-1], grid[1:])
    torch.testing.assert_close(a, a_generic, rtol=1e-12, atol=0)
    torch.testing.assert_close(beta, v_generic, rtol=1e-6, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(sde=linear_sdes(), data=st.data())
def test_transition_composes_and_matches_marginals(sde: LinearSDE, data: st.DataObject) -> None:
    r, s, t = sorted(data.draw(st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3)))
    tr, ts_, tt = _t(r), _t(s), _t(t)
    a_ts, v_ts = sde.transition(tt, ts_)
    a_sr, v_sr = sde.transition(ts_, tr)
    a_tr, v_tr = sde.transition(tt, tr)
    torch.testing.assert_close(a_tr, a_ts * a_sr, rtol=1e-10, atol=0)
    scale = sde.std(tt) ** 2 + 1e-300
    torch.testing.assert_close(v_tr / scale, (v_ts + a_ts**2 * v_sr) / scale, rtol=1e-8, atol=1e-10)
    assert bool((v_tr >= 0).all())
    # from t' = 0 the transition is the kernel itself (up to the VE's σ_min at t = 0)
    a_t0, v_t0 = sde.transition(tt, _t(0.0))
    torch.testing.assert_close(a_t0, sde.mean_coeff(tt), rtol=1e-12, atol=0)
    expected_v = sde.std(tt) ** 2 - sde.mean_coeff(tt) ** 2 * sde.std(_t(0.0)) ** 2
    torch.testing.assert_close(v_t0, expected_v, rtol=1e-8, atol=1e-12)


# --- bad input -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [VPSDE, SubVPSDE])
@pytest.mark.parametrize(
    ("beta_min", "beta_max", "name"),
    [(1.0, 1.0, "beta_min"), (2.0, 1.0, "beta_min"), (0.0, 1.0, "beta_min"), (-0.1, 1.0, "beta_min"),
     (0.1, -1.0, "beta_max"), (0.1, math.inf, "beta_max"), (math.nan, 1.0, "beta_min")],
)  # fmt: skip
def test_bad_beta_range(cls: type[VPSDE], beta_min: float, beta_max: float, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        cls(beta_min, beta_max)


@pytest.mark.parametrize(
    ("sigma_min", "sigma_max", "name"),
    [(1.0, 1.0, "sigma_min"), (50.0, 0.01, "sigma_min"), (0.0, 50.0, "sigma_min"), (-0.01, 50.0, "sigma_min"),
     (0.01, 0.0, "sigma_max"), (0.01, -5.0, "sigma_max"), (0.01, math.inf, "sigma_max")],
)  # fmt: skip
def test_bad_sigma_range(sigma_min: float, sigma_max: float, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        VESDE(sigma_min, sigma_max)


@pytest.mark.parametrize("bad", [[0.1, 0.0], [0.1, 1.0], [0.1, -0.2], [1.5], [0.1, math.nan]])
def test_bad_betas(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="betas"):
        VPSDE.from_betas(torch.tensor(bad, dtype=F64))
    with pytest.raises(ValueError, match="betas"):
        DiscreteVPSDE.from_betas(bad)


def test_betas_must_be_1d() -> None:
    with pytest.raises(ValueError, match="betas"):
        VPSDE.from_betas(torch.full((2, 3), 0.1))


@pytest.mark.parametrize(
    "bad",
    [[0.9, 0.95], [0.9, 0.9], [0.9, 0.5, 0.6], [1.0, 0.5], [0.9, 0.0], [0.9, -0.1], [1.2, 0.5], [0.9, math.nan], []],
)
def test_bad_alphas_cumprod(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="alphas_cumprod"):
        VPSDE.from_alphas_cumprod(torch.tensor(bad, dtype=F64))


def test_alphas_cumprod_must_be_1d() -> None:
    with pytest.raises(ValueError, match="alphas_cumprod"):
        DiscreteVPSDE(torch.full((2, 2), 0.5))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"beta_start": 0.0}, "beta_start"), ({"beta_start": 0.02, "beta_end": 0.01}, "beta_start"),
     ({"beta_end": 1.0}, "beta_end"), ({"beta_end": -1.0}, "beta_end")],
)  # fmt: skip
def test_bad_linear_betas(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        linear_betas(**kwargs)


_ALL_SDES = {
    "vp": VPSDE(),
    "subvp": SubVPSDE(),
    "ve": VESDE(),
    "discrete": VPSDE.from_betas(linear_betas(10)),
}
_METHODS = {
    "drift": lambda sde, x, t: sde.drift(x, t),
    "diffusion": lambda sde, x, t: sde.diffusion(x, t),
    "marginal": lambda sde, x, t: sde.marginal(x, t),
}


@pytest.mark.parametrize("method", sorted(_METHODS))
@pytest.mark.parametrize("name", sorted(_ALL_SDES))
@pytest.mark.parametrize("bad_t", [-1e-6, -1.0, 1.0 + 1e-6, 2.0, math.nan, math.inf])
def test_time_out_of_range(name: str, method: str, bad_t: float) -> None:
    sde, call = _ALL_SDES[name], _METHODS[method]
    x = torch.zeros(3, 2)
    t = torch.tensor([0.5, bad_t, 0.1], dtype=F64)
    with pytest.raises(ValueError, match=r"\bt\b.*\[0, T\]"):
        call(sde, x, t)
    if not math.isnan(bad_t):
        with time_checks(False):
            call(sde, x, t)  # no check inside the block (values at bad times are not specified)
    with pytest.raises(ValueError, match=r"\bt\b"):
        call(sde, x, t)  # restored on exit


@pytest.mark.parametrize("method", sorted(_METHODS))
@pytest.mark.parametrize("name", sorted(_ALL_SDES))
def test_time_endpoints_accepted(name: str, method: str) -> None:
    sde, call = _ALL_SDES[name], _METHODS[method]
    for dtype in DTYPES:
        out = call(sde, torch.ones(2, 2, dtype=dtype), torch.tensor([0.0, 1.0], dtype=dtype))
        for tensor in out if isinstance(out, tuple) else (out,):
            assert not bool(tensor.isnan().any())


@pytest.mark.parametrize("method", sorted(_METHODS))
@pytest.mark.parametrize("bad_shape", [(), (3, 1), (1, 3)])
def test_time_must_be_1d(method: str, bad_shape: tuple[int, ...]) -> None:
    sde, call = VPSDE(), _METHODS[method]
    t = torch.full(bad_shape, 0.5)
    with pytest.raises(ValueError, match=r"\bt\b.*1-D"):
        call(sde, torch.zeros(3, 2), t)
    with time_checks(False), pytest.raises(ValueError, match=r"\bt\b.*1-D"):
        call(sde, torch.zeros(3, 2), t)  # the shape check stays on


@pytest.mark.parametrize("method", sorted(_METHODS))
def test_time_must_be_a_tensor(method: str) -> None:
    with pytest.raises(TypeError, match=r"\bt\b"):
        _METHODS[method](VPSDE(), torch.zeros(3, 2), 0.5)


def test_time_checks_nest_and_restore() -> None:
    sde, x, bad = VPSDE(), torch.zeros(1, 2), _t(1.5)
    with time_checks(False):
        with time_checks(True), pytest.raises(ValueError, match=r"\bt\b"):
            sde.drift(x, bad)
        sde.drift(x, bad)
    with pytest.raises(ValueError, match=r"\bt\b"):
        sde.drift(x, bad)


def test_builtins_are_sdes() -> None:
    for sde in _ALL_SDES.values():
        assert isinstance(sde, SDE) and isinstance(sde, LinearSDE)
        assert sde.T == 1.0 and not sde.state_dependent_diffusion
        assert type(sde).__name__ in repr(sde)


@settings(max_examples=25, deadline=None)
@given(sde=linear_sdes(), x=states())
def test_methods_leave_inputs_untouched(sde: LinearSDE, x: torch.Tensor) -> None:
    assume(x.numel() > 0)
    t = torch.full((x.shape[0],), 0.5)
    before, t_before = x.clone(), t.clone()
    sde.drift(x, t), sde.diffusion(x, t), sde.marginal(x, t), sde.prior_logp(x)
    assert torch.equal(x, before) and torch.equal(t, t_before)


def test_an_sde_with_the_old_diffusion_signature_is_refused_where_it_is_defined() -> None:
    with pytest.raises(TypeError, match=r"diffusion\(x, t\)"):

        class Old(SDE):
            def diffusion(self, t, x=None):  # type: ignore[override]
                return t


def test_the_old_signature_guard_sees_through_renames_and_wrappers() -> None:
    import functools

    def wrap(f):  # type: ignore[no-untyped-def]
        @functools.wraps(f)
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            return f(*args, **kwargs)

        return wrapper

    for body in (
        "def diffusion(self, time, x=None): return time",
        "@wrap\ndef diffusion(self, t, x=None): return t",
        "@staticmethod\ndef diffusion(t, x): return t",
    ):
        namespace: dict[str, object] = {"SDE": SDE, "wrap": wrap}
        source = "class Old(SDE):\n" + "".join(f"    {line}\n" for line in body.splitlines())
        with pytest.raises(TypeError, match=r"diffusion\(x, t\)"):
            exec(source, namespace)

    class Fine(SDE):
        def diffusion(self, x, t):  # type: ignore[override]
            return t
