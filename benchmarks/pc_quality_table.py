"""Quality of every predictor/corrector pair against NFE on the exact 16-D, 8-mode mixture oracle.

    python benchmarks/pc_quality_table.py [--num 16384] [--steps 10 20 100 1000]

Prints a Markdown table (committed in docs/benchmarks.md): VP SDE (β 0.1..20), exact
score, uniform grid, snr 0.16, one corrector step, final denoising on; each metric
beside its finite-sample floor. "at floor" is ``QualityReport.at_floor()``: indistinguishable
from exact samples at false-alarm rate 0.1 % (docs/testing.md). The committed table predates
that rule (it used SW1 ≤ 1.3× floor, TV ≤ 1.5× floor, |NLL − entropy| ≤ 0.5 nats).
"""

from __future__ import annotations

import argparse
import time

import torch

from sdekit import VPSDE, pc_sample
from sdekit.solvers import CORRECTORS, PREDICTORS
from sdekit.testing import GaussianMixture, evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=16384)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 100, 1000])
    args = parser.parse_args()
    mixture = GaussianMixture.random(dim=16, modes=8, generator=torch.Generator().manual_seed(0))
    sde = VPSDE()
    score = mixture.score(sde)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, n = {args.num}\n")
    print("| predictor | corrector | steps | NFE | SW1 / floor | mode TV / floor | NLL − H (nats) | at floor | s |")
    print("|---|---|---:|---:|---:|---:|---:|:-:|---:|")
    for predictor in PREDICTORS.names():
        for corrector in CORRECTORS.names():
            for steps in args.steps:
                start = time.perf_counter()
                x, info = pc_sample(
                    sde,
                    score,
                    (args.num, 16),
                    steps=steps,
                    predictor=predictor,
                    corrector=corrector,
                    generator=torch.Generator().manual_seed(1),
                    return_info=True,
                )
                seconds = time.perf_counter() - start
                if not torch.isfinite(x).all():
                    print(f"| {predictor} | {corrector} | {steps} | {info.nfe} | non-finite | | | no | {seconds:.1f} |")
                    continue
                r = evaluate(x, mixture)
                verdict = "yes" if r.at_floor() else "no"
                print(
                    f"| {predictor} | {corrector} | {steps} | {info.nfe} | {r.sw1 / r.sw1_floor:.2f} "
                    f"| {r.tv / r.tv_floor:.2f} | {r.nll_gap:+.3f} | {verdict} | {seconds:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
