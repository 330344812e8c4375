"""Adaptive embedded Runge–Kutta solver (sdekit.solvers.adaptive_ode): accuracy, per-sample control, backends."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from sdekit import VPSDE, probability_flow
from sdekit.solvers.adaptive_ode import BOSH3, DOPRI5, PIController, solve_ivp_batched
from sdekit.testing import Gaussian

TOL = 1e-5
EPS = 1e-3
SDE = VPSDE()


def _gaussian(dim: int = 4, seed: int = 0) -> Gaussian:
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    # Eigenvalues ≥ ~0.07. With eigenvalues near 0.02, dopri5's error estimate occasionally misses a step across
    # the t ≈ 0.01–0.1 transition (1 in ~250 samples ends 15 tol off; bosh3 and smaller tolerances do not).
    covariance = a @ a.T / dim + 0.05 * torch.eye(dim, dtype=torch.float64)
    return Gaussian(torch.randn(dim, generator=generator, dtype=torch.float64), covariance)


GAUSSIAN = _gaussian()
FLOW = probability_flow(SDE, GAUSSIAN.score(SDE))


def flow_func(t: Tensor, y: Tensor) -> Tensor:
    return FLOW.drift(y, t)


def error_norm(y: Tensor, reference: Tensor, tol: float = TOL) -> Tensor:
    """Per-sample RMS of (y − ref) / (tol + tol·|ref|): the solver's own yardstick, shape (B,)."""
    return ((y - reference) / (tol + tol * reference.abs())).flatten(1).square().mean(1).sqrt()


def _start(t0: float, batch: int = 64, dtype: torch.dtype = torch.float64) -> Tensor:
    """States at t0 on the flow: prior draws at T, or their exact images at eps."""
    x_T = torch.randn(batch, GAUSSIAN.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return (x_T if t0 == 1.0 else GAUSSIAN.flow_map(x_T, SDE, 1.0, EPS)).to(dtype)


DIRECTIONS = [pytest.param(1.0, EPS, id="sample"), pytest.param(EPS, 1.0, id="encode")]


# --- tableaus -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tableau", [DOPRI5, BOSH3], ids=lambda t: t.name)
def test_tableau_is_consistent(tableau):
    assert math.isclose(sum(tableau.b), 1.0, abs_tol=1e-14)
    assert math.isclose(sum(tableau.b_err), 0.0, abs_tol=1e-14)
    assert tableau.a[-1] == tableau.b[:-1]  # first same as last
    for row, c in zip(tableau.a, tableau.c, strict=True):
        assert math.isclose(sum(row), c, abs_tol=1e-14)
    # Dense weights: b_i(0) = 0 and b_i(1) = b_i; order conditions Σ b_i(θ) = θ, Σ b_i(θ) c_i = θ²/2.
    for theta in (0.3, 1.0):
        weights = [sum(p * theta ** (j + 1) for j, p in enumerate(row)) for row in tableau.dense]
        assert math.isclose(sum(weights), theta, abs_tol=1e-13)
        assert math.isclose(sum(w * c for w, c in zip(weights, tableau.c, strict=True)), theta**2 / 2, abs_tol=1e-13)
    for row, b in zip(tableau.dense, tableau.b, strict=True):
        assert math.isclose(sum(row), b, abs_tol=1e-13)


# --- accuracy on the exact Gaussian flow map -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
@pytest.mark.parametrize(("t0", "t1"), DIRECTIONS)
def test_matches_exact_flow_map_and_tight_reference(method, t0, t1):
    y0 = _start(t0)
    y, stats = solve_ivp_batched(flow_func, y0, t0, t1, method=method, rtol=TOL, atol=TOL)
    reference, _ = solve_ivp_batched(flow_func, y0, t0, t1, rtol=1e-9, atol=1e-9)
    exact = GAUSSIAN.flow_map(y0, SDE, t0, t1)
    assert error_norm(reference, exact).max() < 0.01  # the reference is ~1e-4 tol from the truth
    assert error_norm(y, reference).max() <= 10
    assert error_norm(y, exact).max() <= 10
    assert y.shape == y0.shape and y.dtype == y0.dtype
    assert stats.steps == int(stats.sample_steps.sum()) and stats.sample_steps.shape == (64,)


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_error_shrinks_with_tolerance(method):
    y0 = _start(1.0, batch=16)
    exact = GAUSSIAN.flow_map(y0, SDE, 1.0, EPS)
    errors, nfes = [], []
    for tol in (1e-3, 1e-5, 1e-7):
        y, stats = solve_ivp_batched(flow_func, y0, 1.0, EPS, method=method, rtol=tol, atol=tol)
        errors.append(float((y - exact).abs().max()))
        nfes.append(stats.nfe)
    assert errors[0] > errors[1] > errors[2]
    assert nfes[0] < nfes[1] < nfes[2]


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
@pytest.mark.parametrize(("t0", "t1"), DIRECTIONS)
def test_dense_output_at_t_eval(method, t0, t1):
    y0 = _start(t0, batch=32)
    inner = torch.tensor([0.9, 0.5, 0.2, 0.05, 0.01], dtype=torch.float64)
    ends = torch.tensor([t0, t1], dtype=torch.float64)
    t_eval = torch.cat([ends[:1], inner if t1 < t0 else inner.flip(0), ends[1:]])
    path, stats = solve_ivp_batched(flow_func, y0, t0, t1, method=method, t_eval=t_eval)
    assert path.shape == (7, *y0.shape)
    for i, t in enumerate(t_eval.tolist()):
        assert error_norm(path[i], GAUSSIAN.flow_map(y0, SDE, t0, t)).max() <= 10, f"t = {t}"
    # The step sequence does not depend on t_eval: the last output is the plain solve's result, bit for bit.
    y, plain = solve_ivp_batched(flow_func, y0, t0, t1, method=method)
    assert torch.equal(path[-1], y) and plain.nfe == stats.nfe
    assert torch.equal(path[0], y0)


def test_dense_output_with_many_points_per_step():
    y0 = _start(1.0, batch=8)
    t_eval = torch.linspace(1.0, EPS, 201, dtype=torch.float64)
    path, stats = solve_ivp_batched(flow_func, y0, 1.0, EPS, t_eval=t_eval)
    assert stats.steps / 8 < 100  # several outputs per step
    exact = torch.stack([GAUSSIAN.flow_map(y0, SDE, 1.0, t) for t in t_eval.tolist()])
    assert error_norm(path, exact).max() <= 10


@pytest.mark.parametrize("backend", ["torchdiffeq", "scipy"])
@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_reference_backends_agree_with_native(backend, method):
    y0 = _start(1.0, batch=16)
    t_eval = torch.tensor([1.0, 0.5, 0.1, EPS], dtype=torch.float64)
    native, native_stats = solve_ivp_batched(flow_func, y0, 1.0, EPS, method=method, t_eval=t_eval)
    other, other_stats = solve_ivp_batched(flow_func, y0, 1.0, EPS, method=method, backend=backend, t_eval=t_eval)
    exact = torch.stack([GAUSSIAN.flow_map(y0, SDE, 1.0, t) for t in t_eval.tolist()])
    assert other.shape == native.shape
    assert error_norm(other, native).max() <= 20
    assert error_norm(other, exact).max() <= 10
    assert other_stats.nfe > 0 and native_stats.nfe > 0


def test_torchdiffeq_fixed_grid_method_needs_a_step_size():
    y0 = _start(1.0, batch=4)
    with pytest.raises(ValueError, match="h_init"):
        solve_ivp_batched(flow_func, y0, 1.0, EPS, backend="torchdiffeq", method="rk4")
    y, stats = solve_ivp_batched(flow_func, y0, 1.0, EPS, backend="torchdiffeq", method="rk4", h_init=0.01)
    assert error_norm(y, GAUSSIAN.flow_map(y0, SDE, 1.0, EPS), tol=1e-3).max() <= 1
    assert stats.nfe >= 4 * 99


def test_float32_and_image_shaped_states():
    gaussian = Gaussian(torch.zeros(12, dtype=torch.float64), event_shape=(3, 2, 2))
    flow = probability_flow(SDE, gaussian.score(SDE))
    y0 = torch.randn(8, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    y, _ = solve_ivp_batched(lambda t, y: flow.drift(y, t), y0, 1.0, EPS, rtol=1e-4, atol=1e-4)
    assert y.shape == y0.shape and y.dtype == torch.float32
    assert error_norm(y, gaussian.flow_map(y0, SDE, 1.0, EPS), tol=1e-4).max() <= 10


# --- per-sample control --------------------------------------------------------------------------------------------


def _oscillators(t: Tensor, y: Tensor) -> Tensor:
    """Augmented state (x, v, ω): x' = ω v, v' = −ω x, ω' = 0 — each sample carries its own frequency."""
    x, v, omega = y[:, 0], y[:, 1], y[:, 2]
    return torch.stack([omega * v, -omega * x, torch.zeros_like(omega)], dim=1)


def _oscillator_batch(easy: int, hard: int) -> Tensor:
    omega = torch.cat([torch.full((easy,), 1.0), torch.full((hard,), 40.0)]).double()
    return torch.stack([torch.ones_like(omega), torch.zeros_like(omega), omega], dim=1)


def _oscillator_exact(y0: Tensor, t: float) -> Tensor:
    angle = y0[:, 2] * t
    x, v = y0[:, 0], y0[:, 1]
    return torch.stack([x * angle.cos() + v * angle.sin(), v * angle.cos() - x * angle.sin(), y0[:, 2]], dim=1)


def test_per_sample_control_meets_every_samples_tolerance():
    y0 = _oscillator_batch(easy=60, hard=4)
    exact = _oscillator_exact(y0, 1.0)
    y, stats = solve_ivp_batched(_oscillators, y0, 0.0, 1.0)
    y_batch, batch_stats = solve_ivp_batched(_oscillators, y0, 0.0, 1.0, error_norm="batch")
    per_sample = error_norm(y, exact)
    per_sample_batch_rms = error_norm(y_batch, exact)
    # Stiff samples take more steps, easy ones stop early; every sample meets its tolerance.
    assert stats.sample_steps[-4:].min() > 2 * stats.sample_steps[:60].max()
    assert per_sample.max() <= 10
    # One RMS over the batch lets the few stiff samples miss it (steps shared by everyone).
    assert per_sample_batch_rms[-4:].min() > 3 * per_sample[-4:].max()
    assert (batch_stats.sample_steps == batch_stats.sample_steps[0]).all()
    # Compaction: finished samples cost nothing.
    assert stats.evaluations < 0.5 * stats.nfe * 64
    print(
        f"\nper-sample control: nfe {stats.nfe}, rows evaluated {stats.evaluations}, max error {per_sample.max():.2f}; "
        f"batch RMS: nfe {batch_stats.nfe}, rows {batch_stats.evaluations}, max error {per_sample_batch_rms.max():.2f}"
    )


def test_direction_and_stats_are_consistent():
    y0 = _oscillator_batch(easy=5, hard=3)
    calls = []

    def counted(t: Tensor, y: Tensor) -> Tensor:
        calls.append(y.shape[0])
        assert t.dtype == torch.float64 and t.shape == (y.shape[0],)
        assert bool(((t >= 0) & (t <= 1)).all())  # never outside [t0, t1]
        return _oscillators(t, y)

    y_forward, stats = solve_ivp_batched(counted, y0, 0.0, 1.0)
    assert stats.nfe == len(calls) and stats.evaluations == sum(calls)
    assert stats.iterations >= int((stats.sample_steps + stats.sample_rejected).max())
    assert error_norm(y_forward, _oscillator_exact(y0, 1.0)).max() <= 10
    back, _ = solve_ivp_batched(_oscillators, _oscillator_exact(y0, 1.0), 1.0, 0.0)
    assert error_norm(back, y0).max() <= 10


def test_pi_controller_defaults_and_i_controller():
    y0 = _start(1.0, batch=8)
    exact = GAUSSIAN.flow_map(y0, SDE, 1.0, EPS)
    y, _ = solve_ivp_batched(flow_func, y0, 1.0, EPS, controller=PIController(beta1=1.0, beta2=0.0))
    assert error_norm(y, exact).max() <= 10
    y, _ = solve_ivp_batched(flow_func, y0, 1.0, EPS, h_init=1e-4, sync_every=3)
    assert error_norm(y, exact).max() <= 10


# --- errors ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rtol": 0.0}, "rtol"),
        ({"atol": -1e-5}, "atol"),
        ({"method": "rk45"}, "method.*bosh3, dopri5"),
        ({"backend": "jax"}, "backend.*native, scipy, torchdiffeq"),
        ({"error_norm": "max"}, "error_norm"),
        ({"t_eval": torch.tensor([0.5, 2.0])}, "t_eval.*within"),
        ({"t_eval": torch.tensor([0.5, 0.7])}, "t_eval.*decreasing"),
        ({"t_eval": torch.tensor([[0.5]])}, "t_eval"),
        ({"backend": "scipy", "error_norm": "batch"}, "error_norm"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        solve_ivp_batched(flow_func, _start(1.0, batch=2), 1.0, EPS, **kwargs)


def test_non_finite_values_raise_naming_the_time():
    def blows_up(t: Tensor, y: Tensor) -> Tensor:
        return torch.where((t < 0.5)[:, None], torch.nan, -y)

    with pytest.raises(FloatingPointError, match=r"non-finite value in a step from t = 0\.75 to 0\.42"):
        solve_ivp_batched(blows_up, torch.ones(4, 2), 1.0, 0.0, h_init=0.25)


def test_max_steps_raises():
    with pytest.raises(RuntimeError, match="max_steps"):
        solve_ivp_batched(flow_func, _start(1.0, batch=2), 1.0, EPS, max_steps=3)


def test_the_backend_method_tables_are_torchdiffeqs_own() -> None:
    """ode_backends lists torchdiffeq's methods without importing its private modules; this test may."""
    from torchdiffeq._impl.odeint import SOLVERS
    from torchdiffeq._impl.solvers import AdaptiveStepsizeODESolver

    from sdekit.solvers.ode_backends import TORCHDIFFEQ_ADAPTIVE, TORCHDIFFEQ_FIXED

    adaptive = {name for name, cls in SOLVERS.items() if issubclass(cls, AdaptiveStepsizeODESolver)}
    assert set(TORCHDIFFEQ_ADAPTIVE) == adaptive
    assert set(TORCHDIFFEQ_FIXED) == set(SOLVERS) - adaptive - {"scipy_solver"}
