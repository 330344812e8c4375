"""Quality against NFE on every problem of the oracle suite, sdekit's defaults beside k-diffusion's samplers.

    pytest benchmarks/test_suite_quality.py --benchmark-only             # 8 problems, 12 / 50 NFE, ~1 min
    pytest benchmarks/test_suite_quality.py --benchmark-only --runslow   # 24 problems × every budget
    python benchmarks/suite_quality_table.py                             # the same sweep → docs/suite.md

The cases and the judgement are :mod:`_suite`'s. By default the narrow, anisotropic, imbalanced
and ring mixtures under VP and VE, each sampler once: deterministic ones at 12 NFE, stochastic
ones at 50 (the issue's budget goals); ``--runslow`` adds every problem of the suite (the 256-D
mixture and the 1×16×16 Gaussian too, and sub-VP and DDPM's discrete schedule) at every budget of
``_suite.NFES``. Each row: NFE spent, NLL − H with its limit, SW1 and mode TV over their limits
(≤ 1 passes), "floor" = indistinguishable from exact samples at false-alarm rate 0.1 %, and for
deterministic samplers the path error: the RMS per coordinate of the distance to a tight float64
solve of the flow from the same x_T (the first 256 samples; seed-free).
``SDEKIT_SUITE_SAMPLES`` sets n (default 4096).
"""

from __future__ import annotations

import math
import os

import pytest

from sdekit.testing.suite import problems

from _suite import NFES, CaseUnavailableError, Sampler, run_case, samplers

TITLE = "Quality against NFE on the oracle suite"
HEADER = "| problem | sampler | budget | NFE | NLL − H (nats) | limit | SW1 / limit | TV / limit | floor | path error |"
DEFAULT_DISTRIBUTIONS = ("narrow", "anisotropic", "imbalanced", "ring")
DEFAULT_SDES = ("vp", "ve")
DEFAULT_BUDGET = {"deterministic": 12, "stochastic": 50}


def _params() -> list[object]:
    params = []
    for problem in problems():
        default = problem.distribution in DEFAULT_DISTRIBUTIONS and problem.sde_name in DEFAULT_SDES
        for sampler in samplers():
            marks = [] if default else [pytest.mark.slow]
            params.append(pytest.param(problem, sampler, id=f"{problem.name}-{sampler.label}", marks=marks))
    return params


@pytest.fixture(scope="session")
def suite_samples() -> int:
    return int(os.environ.get("SDEKIT_SUITE_SAMPLES", "4096"))


@pytest.mark.parametrize(("problem", "sampler"), _params())
def test_suite_quality(benchmark, bench_table, request, suite_samples, problem, sampler: Sampler):
    full = bool(request.config.getoption("--runslow")) or os.environ.get("SDEKIT_BENCH_FULL", "") not in ("", "0")
    budgets = NFES if full else (DEFAULT_BUDGET[sampler.kind],)
    results, skipped = [], []

    def sweep() -> None:
        for budget in budgets:
            try:
                results.append(run_case(problem, sampler, budget, suite_samples, paths=True))
            except CaseUnavailableError as why:
                skipped.append(f"{budget}: {why}")

    benchmark.pedantic(sweep, rounds=1, iterations=1)
    if not results:
        pytest.skip("; ".join(skipped))
    for r in results:
        assert r.nfe <= r.budget, f"{sampler.label} overspent its budget"
        bench_table(
            TITLE,
            HEADER,
            f"| {r.problem} | {r.sampler} | {r.budget} | {r.nfe} | {r.nll_gap:+.3f} | ±{r.nll_limit:.3f} | "
            f"{_fmt(r.sw1_ratio)} | {_fmt(r.tv_ratio)} | {'yes' if r.at_floor else 'no'} | "
            f"{'' if r.path_error is None else f'{r.path_error:.2e}'} |",
        )
    benchmark.extra_info["results"] = [r.as_dict() for r in results]


def _fmt(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "inf"
