"""Likelihood of 256 points through the probability-flow ODE: native batched dopri5 against scipy's solve_ivp.

    pytest benchmarks/test_likelihood_speed.py --benchmark-only -s

16-D, 8-mode mixture oracle, VP SDE, exact score, Rademacher Hutchinson divergence, eps = 1e-5,
rtol = atol = 1e-5. Both backends run the same augmented field (score + one vector-Jacobian
product per call) in float32; scipy integrates the flattened batch in float64 on the host with one
error norm for the whole batch (the SDE paper's reference path). Prints and stores (extra_info)
the wall-time ratio native/scipy measured in this run, NFE, and each backend's error in bits/dim
against the exact log-density.
"""

from __future__ import annotations

import math

import pytest
import torch

from sdekit import VPSDE
from sdekit.likelihood import log_likelihood
from sdekit.testing import GaussianMixture

from _overhead import best_of

BATCH = 256
TOL = 1e-5


@pytest.fixture(scope="module")
def problem():
    mixture = GaussianMixture.random(dim=16, modes=8, generator=torch.Generator().manual_seed(0))
    sde = VPSDE()
    x = mixture.sample(BATCH, generator=torch.Generator().manual_seed(1))
    return sde, mixture.score(sde), x, mixture.log_prob(x).double()


def test_native_vs_scipy(benchmark, problem):
    sde, score, x, exact = problem

    def run(backend: str):
        generator = torch.Generator().manual_seed(2)
        return log_likelihood(sde, score, x, rtol=TOL, atol=TOL, backend=backend, generator=generator, return_info=True)

    run("native")  # warm-up
    scipy_seconds, (logp_scipy, info_scipy) = best_of(lambda: run("scipy"), rounds=3)
    logp_native, info_native = benchmark.pedantic(run, args=("native",), rounds=3, iterations=1)
    native_seconds = benchmark.stats.stats.min

    def bpd_error(logp: torch.Tensor) -> float:
        return float(((exact - logp.double()) / (16 * math.log(2))).abs().mean())

    info = {
        "threads": torch.get_num_threads(),
        "batch": BATCH,
        "native_s": native_seconds,
        "scipy_s": scipy_seconds,
        "ratio_native_over_scipy": native_seconds / scipy_seconds,
        "native_nfe": info_native.nfe,
        "scipy_nfe": info_scipy.nfe,
        "native_mean_abs_error_bpd": bpd_error(logp_native),
        "scipy_mean_abs_error_bpd": bpd_error(logp_scipy),
        "max_native_scipy_difference_bpd": float((logp_native - logp_scipy).abs().max()) / (16 * math.log(2)),
    }
    benchmark.extra_info.update(info)
    print("\n" + "\n".join(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}" for k, v in info.items()))
    assert torch.isfinite(logp_native).all()
