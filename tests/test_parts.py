"""Exact tests of the solver parts the redesign added: tableaus, coefficients, the fused sum, scheduling."""

from __future__ import annotations

import itertools

import pytest
import torch

from sdekit import VESDE, VPSDE, SubVPSDE
from sdekit.solvers.active_set import next_check
from sdekit.solvers.coefficients import GeneralCoefficients, LinearCoefficients, mean_ratio_squared
from sdekit.solvers.grid_stepper import weighted_sum
from sdekit.solvers.ode import BUILT_IN
from sdekit.solvers.tableaus import HEUN_EULER, ButcherTableau

F64 = torch.float64


def _order_conditions(t: ButcherTableau, b: tuple[float, ...]) -> dict[int, list[float]]:
    """Residuals of the Runge–Kutta order conditions up to order 4 for weights ``b``."""
    s = t.stages
    a = [[*row, *([0.0] * (s - len(row)))] for row in t.a]
    c = t.c
    ac = [sum(a[i][j] * c[j] for j in range(s)) for i in range(s)]
    return {
        1: [sum(b) - 1],
        2: [sum(b[i] * c[i] for i in range(s)) - 1 / 2],
        3: [sum(b[i] * c[i] ** 2 for i in range(s)) - 1 / 3, sum(b[i] * ac[i] for i in range(s)) - 1 / 6],
        4: [
            sum(b[i] * c[i] ** 3 for i in range(s)) - 1 / 4,
            sum(b[i] * c[i] * ac[i] for i in range(s)) - 1 / 8,
            sum(b[i] * a[i][j] * c[j] ** 2 for i in range(s) for j in range(s)) - 1 / 12,
            sum(b[i] * a[i][j] * ac[j] for i in range(s) for j in range(s)) - 1 / 24,
        ],
    }


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_every_built_in_tableau_meets_its_order_conditions(name: str) -> None:
    """Kills any wrong coefficient: a, b, c consistent (row sums = c) and the order conditions up to min(order, 4)."""
    t = BUILT_IN[name]
    for row, c_i in zip(t.a, t.c, strict=True):
        assert sum(row) == pytest.approx(c_i, abs=1e-15)
    conditions = _order_conditions(t, t.b)
    for order in range(1, min(t.order, 4) + 1):
        assert max(abs(r) for r in conditions[order]) < 1e-14, (name, order)
    if t.order < 4:  # and not of a higher order than it says
        assert max(abs(r) for r in conditions[t.order + 1]) > 1e-6


@pytest.mark.parametrize("name", [n for n in sorted(BUILT_IN) if BUILT_IN[n].embedded])
def test_every_embedded_pair_is_fsal_with_a_consistent_error_estimate_and_dense_output(name: str) -> None:
    t = BUILT_IN[name]
    assert t.fsal and t.solution_stages == t.stages - 1
    assert t.b_err is not None and t.dense is not None and t.error_order is not None
    b_hat = tuple(bi - ei for bi, ei in zip(t.b, t.b_err, strict=True))
    conditions = _order_conditions(t, b_hat)  # the embedded solution has exactly its error order
    assert max(abs(r) for r in conditions[t.error_order]) < 1e-14
    if t.error_order < 4:
        assert max(abs(r) for r in conditions[t.error_order + 1]) > 1e-6
    for theta in (0.0, 0.3, 1.0):  # b_i(θ) = Σ_p dense[i][p] θ^(p+1): 0 at θ = 0, b at θ = 1, Σ b_i(θ) = θ
        weights = [sum(d * theta ** (p + 1) for p, d in enumerate(row)) for row in t.dense]
        assert sum(weights) == pytest.approx(theta, abs=1e-14)
        if theta == 1.0:
            assert weights == pytest.approx(list(t.b), abs=1e-14)


def test_heun_euler_is_heun_with_euler_embedded() -> None:
    assert HEUN_EULER.b[:2] == BUILT_IN["heun"].b and HEUN_EULER.b_err == (-0.5, 0.5, 0.0)
    assert (HEUN_EULER.order, HEUN_EULER.error_order) == (2, 1)


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE(sigma_max=5.0)], ids=type)
def test_linear_and_general_coefficients_agree_at_every_stage_time(sde) -> None:  # type: ignore[no-untyped-def]
    """The precomputed floats and the per-step evaluation are the same f and g² at the same (step, stage)."""
    times = torch.tensor([[0.9, 0.7, 0.8], [0.5, 0.3, 0.4]], dtype=F64)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    linear, general = LinearCoefficients(sde, times, "cpu"), GeneralCoefficients(sde, times, "cpu")
    for i, s in itertools.product(range(2), range(3)):
        t = times[i, s]
        assert float(linear.time((i, s))) == float(general.time((i, s))) == float(t)
        (f, on), (one, drift) = linear.drift(x, (i, s))[0], general.drift(x, (i, s))[0]
        assert on is x and one == 1.0
        torch.testing.assert_close(f * x, drift, rtol=1e-15, atol=0)
        assert linear.g2(x, (i, s)) == float(sde.diffusion_squared(t.reshape(1)))
        torch.testing.assert_close(general.g2(x, (i, s)).squeeze(), torch.tensor(linear.g2(x, (i, s)), dtype=F64))


def test_the_correctors_step_factor_is_the_ddpm_alpha_of_the_step() -> None:
    sde, t, t_next = VPSDE(), torch.tensor([0.9, 0.5], dtype=F64), torch.tensor([0.5, 0.1], dtype=F64)
    abar = lambda u: sde.mean_coeff(u) ** 2  # noqa: E731
    assert mean_ratio_squared(sde, t, t_next) == pytest.approx((abar(t) / abar(t_next)).tolist(), rel=1e-14)
    assert mean_ratio_squared(VESDE(), t, t_next) == [1.0, 1.0]


def test_weighted_sum_folds_float_terms_and_takes_tensor_coefficients() -> None:
    x, s = torch.tensor([[1.0, 2.0]], dtype=F64), torch.tensor([[4.0, -8.0]], dtype=F64)
    assert torch.equal(weighted_sum([(1.0, x), (-0.25, x), (0.5, s)]), 0.75 * x + 0.5 * s)
    c = torch.tensor([[-0.5]], dtype=F64)
    assert torch.equal(weighted_sum([(1.0, x), (c, s)]), x - 0.5 * s)
    noise = torch.tensor([[1.0, 1.0]], dtype=F64)
    assert torch.equal(weighted_sum([(2.0, x)], into=(torch.tensor([[3.0]], dtype=F64), noise)), 3 + 2 * x)
    assert torch.equal(x, torch.tensor([[1.0, 2.0]], dtype=F64))  # inputs untouched


@pytest.mark.parametrize(
    ("to_go", "sync_every", "expected"),
    [(100.0, 4, 4), (5.0, 4, 2), (1.0, 4, 1), (0.2, 4, 1), (float("inf"), 4, 1), (7.0, 1, 1)],
)
def test_check_points_come_halfway_to_the_slowest_sample(to_go: float, sync_every: int, expected: int) -> None:
    assert next_check(to_go, sync_every) == expected
