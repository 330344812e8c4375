"""Command line: ``sdekit demo`` (also ``python -m sdekit``).

The demo samples the analytic 2-D, 8-mode Gaussian mixture of :mod:`sdekit.testing`
under a VP SDE with its exact score, through several samplers, and prints each
one's NFE, wall time and quality beside the finite-sample floor.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import cast

import torch
from torch import Tensor

from sdekit import __version__
from sdekit.sampling import SampleInfo, ode_sample, pc_sample, sample
from sdekit.sde import VPSDE
from sdekit.testing import GaussianMixture, evaluate

Sampler = Callable[..., object]


def _samplers(steps: int) -> dict[str, tuple[Sampler, dict[str, object]]]:
    return {
        f"ancestral, {steps} steps": (sample, {"method": "ancestral", "steps": steps}),
        f"euler_maruyama, {steps} steps": (sample, {"method": "euler_maruyama", "steps": steps}),
        f"reverse_diffusion + langevin, {steps // 2} steps": (pc_sample, {"steps": steps // 2}),
        f"heun ODE, {max(steps // 10, 1)} steps": (ode_sample, {"method": "heun", "steps": max(steps // 10, 1)}),
    }


def demo(num: int, steps: int, seed: int) -> None:
    """Sample the 2-D mixture with each sampler and print quality beside the floor."""
    mixture = GaussianMixture.random(dim=2, modes=8, generator=torch.Generator().manual_seed(0))
    sde = VPSDE()
    score = mixture.score(sde)
    print(f"sdekit {__version__}: 2-D, 8-mode Gaussian mixture, VP SDE (beta 0.1..20), exact score, {num} samples")
    for name, (sampler, options) in _samplers(steps).items():
        start = time.perf_counter()
        result = sampler(
            sde, score, (num, 2), generator=torch.Generator().manual_seed(seed), return_info=True, **options
        )
        x, info = cast(tuple[Tensor, SampleInfo], result)
        seconds = time.perf_counter() - start
        print(f"{name:<40} NFE {info.nfe:>5}  {seconds:6.2f} s  {evaluate(x, mixture).row()}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sdekit", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    demo_parser = commands.add_parser("demo", help="sample the analytic 2-D mixture and print quality figures")
    for p in (parser, demo_parser):
        p.add_argument("--num", type=int, default=8192, help="number of samples (default 8192)")
        p.add_argument("--steps", type=int, default=1000, help="steps of the SDE samplers (default 1000)")
        p.add_argument("--seed", type=int, default=0, help="seed of the sampling noise (default 0)")
    args = parser.parse_args(argv)
    if args.num < 1 or args.steps < 2:
        parser.error("--num must be >= 1 and --steps >= 2")
    demo(args.num, args.steps, args.seed)
    return 0
