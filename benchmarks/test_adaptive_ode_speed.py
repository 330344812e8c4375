"""Adaptive probability-flow ODE: native batched dopri5 (per-sample control) against scipy's solve_ivp.

    pytest benchmarks/test_adaptive_ode_speed.py --benchmark-only -s

16-D, 8-mode mixture oracle, VP SDE, exact score, rtol = atol = 1e-5, T → eps = 1e-3.
The native solver runs in float32 on the state's device; the scipy backend flattens the
batch to one float64 vector in host memory (the SDE paper's reference path) and
controls one RMS error over the whole batch. Prints and stores (extra_info) the
wall-time ratio native/scipy measured in this run, both NFE counts and the worst
per-sample error against a tight float64 reference.
"""

from __future__ import annotations

import pytest
import torch

from sdekit import VPSDE, probability_flow
from sdekit.solvers.adaptive_ode import solve_ivp_batched
from sdekit.testing import GaussianMixture

from _overhead import best_of, report

BATCH = 4096
TOL = 1e-5
EPS = 1e-3


@pytest.fixture(scope="module")
def problem():
    mixture = GaussianMixture.random(dim=16, modes=8, generator=torch.Generator().manual_seed(0))
    sde = VPSDE()
    flow = probability_flow(sde, mixture.score(sde))

    def func(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return flow.drift(y, t)

    x_T = torch.randn(BATCH, 16, generator=torch.Generator().manual_seed(1))
    return func, x_T


def _worst_error(y: torch.Tensor, reference: torch.Tensor) -> float:
    ratio = (y.double() - reference) / (TOL + TOL * reference.abs())
    return float(ratio.square().mean(1).sqrt().max())


def test_native_vs_scipy(benchmark, problem):
    func, x_T = problem

    def native():
        return solve_ivp_batched(func, x_T, 1.0, EPS, rtol=TOL, atol=TOL)

    def scipy():
        return solve_ivp_batched(func, x_T, 1.0, EPS, rtol=TOL, atol=TOL, backend="scipy")

    native()  # warm-up (allocator, score scratch buffers)
    scipy_seconds, (y_scipy, scipy_stats) = best_of(scipy, rounds=2)
    y_native, native_stats = benchmark.pedantic(native, rounds=3, iterations=1)
    native_seconds = benchmark.stats.stats.min
    reference, _ = solve_ivp_batched(func, x_T.double(), 1.0, EPS, rtol=1e-10, atol=1e-10)
    info = {
        "threads": torch.get_num_threads(),
        "batch": BATCH,
        "native_s": native_seconds,
        "scipy_s": scipy_seconds,
        "ratio_native_over_scipy": native_seconds / scipy_seconds,
        "native_nfe": native_stats.nfe,
        "native_rows_evaluated": native_stats.evaluations,
        "native_rejected": native_stats.rejected,
        "scipy_nfe": scipy_stats.nfe,
        "scipy_rows_evaluated": scipy_stats.evaluations,
        "native_worst_sample_error_over_tol": _worst_error(y_native, reference),
        "scipy_worst_sample_error_over_tol": _worst_error(y_scipy, reference),
    }
    report(benchmark, info)
    assert torch.isfinite(y_native).all()
