"""Measure the false-alarm rate and the power of the oracle's statistical check (QualityReport.at_floor).

For each test problem of the suite, draws ``--seeds`` independent sets of *exact* samples, judges
each with :func:`sdekit.testing.evaluate` exactly as the tests do (``generator=None``: the fixed
reference set and projection directions of that mixture and n), and counts
how often each metric leaves its limit; then does the same for exact samples with a planted
variance bias (every sample moved away from its component mean by a factor s chosen so that the
NLL gap grows by ``--bias`` nats: ½·D·(s² − 1) = bias) and for a planted shift. Prints a Markdown
table: the false-alarm column should sit near ``FALSE_ALARM`` (0.1 %; with 200 seeds, 0 or 1
failures), the bias columns near 100 %.

    python scripts/calibrate_checks.py --seeds 200        # ≈ 30–60 min on 2 CPU cores

The figures of the latest run are in docs/testing.md.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from sdekit.testing import FALSE_ALARM, Gaussian, GaussianMixture, evaluate


def problems() -> dict[str, tuple[GaussianMixture, int, int]]:
    """The mixtures the test-suite judges samplers on: (mixture, sample size, seeds as a fraction 1/k)."""
    g = torch.Generator
    oracle = GaussianMixture.random(16, 8, generator=g().manual_seed(0))
    return {
        "16-D, 8 modes (the oracle), n = 16384": (oracle, 16384, 1),
        "16-D, 8 modes, n = 65536": (oracle, 65536, 8),  # 4× the cost per seed: an eighth of the seeds
        "2-D, 8 modes, n = 4096": (GaussianMixture.random(2, 8, generator=g().manual_seed(0)), 4096, 1),
        "6-D, 3 overlapping modes, n = 8192": (
            GaussianMixture.random(6, 3, generator=g().manual_seed(1), separation=2.0, event_shape=(2, 3)),
            8192,
            1,
        ),
        "16-D Gaussian, n = 4096": (
            Gaussian(torch.linspace(-1, 1, 16), torch.diag(torch.linspace(0.1, 1, 16))),
            4096,
            1,
        ),
    }


def widened(mixture: GaussianMixture, x: torch.Tensor, labels: torch.Tensor, bias: float) -> torch.Tensor:
    """Exact samples moved away from their component means so that E[NLL gap] grows by ``bias`` nats."""
    scale = math.sqrt(1 + 2 * bias / mixture.dim)
    centre = mixture.means.to(x.dtype)[labels].reshape(x.shape)
    return centre + scale * (x - centre)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds",
        type=int,
        default=200,
        help="exact sample sets per problem (default 200; an eighth of them at n = 65536)",
    )
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from 10000 + this (default 0)")
    parser.add_argument("--bias", type=float, default=0.1, help="planted variance bias in nats (default 0.1)")
    parser.add_argument("--shift", type=float, default=0.02, help="planted shift of every coordinate (default 0.02)")
    args = parser.parse_args()
    print(f"false-alarm rate of the rule: {FALSE_ALARM:g}\n")
    print(
        "| problem | seeds | exact: fail rate (sw1 / tv / nll) | NLL limit | "
        f"+{args.bias:g} nat variance: fail rate | shift {args.shift:g}: fail rate | seconds |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    for name, (mixture, n, fraction) in problems().items():
        seeds = max(1, args.seeds // fraction)
        start = time.perf_counter()
        exact = {"sw1": 0, "tv": 0, "nll": 0, "any": 0}
        biased = shifted = 0
        limit = math.nan
        for seed in range(seeds):
            gen = torch.Generator().manual_seed(10_000 + args.first_seed + seed)
            x, labels = mixture.sample_with_labels(n, generator=gen)
            report = evaluate(x, mixture)  # as the tests call it: the fixed reference set and directions
            limit = report.nll_limit
            for metric in report.failures():
                exact[metric] += 1
            exact["any"] += not report.at_floor()
            biased += not evaluate(widened(mixture, x, labels, args.bias), mixture).at_floor()
            shifted += not evaluate(x + args.shift, mixture).at_floor()
        rate = {key: value / seeds for key, value in exact.items()}
        print(
            f"| {name} | {seeds} | {rate['any']:.1%} ({rate['sw1']:.1%} / {rate['tv']:.1%} / {rate['nll']:.1%}) "
            f"| ±{limit:.3f} | {biased / seeds:.1%} | {shifted / seeds:.1%} "
            f"| {time.perf_counter() - start:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
