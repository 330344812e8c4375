"""FD-digits against NFE for every sampler on the embedded digits ε-UNet.

    python benchmarks/fd_digits_table.py [NUM=1000] [THREADS=1] [sampler names ...]

Prints a Markdown table (committed in docs/benchmarks.md): each sampler's samples (seed 0),
quantised to uint8 as ``sdekit sample`` writes them, against all 1 797 real digits in the
feature space of the shipped classifier; the reference figure is the FD between two
random halves of the real data.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from sdekit.app.models import digits, fd
from sdekit.sampling import ode_sample, pc_sample, sample

CONFIGS: list[tuple[str, Callable[..., Any], dict[str, Any]]] = [
    ("adaptive", sample, {"method": "adaptive"}),
    ("adaptive", sample, {"method": "adaptive", "rtol": 0.1, "atol": 0.02}),
    *[("ancestral", sample, {"method": "ancestral", "steps": n}) for n in (20, 100, 500)],
    *[("euler_maruyama", sample, {"method": "euler_maruyama", "steps": n}) for n in (100, 500)],
    ("reverse_diffusion", sample, {"method": "reverse_diffusion", "steps": 100}),
    *[("dpmpp_2m_sde", sample, {"method": "dpmpp_2m_sde", "steps": n}) for n in (20, 100)],
    ("pc", pc_sample, {"steps": 100}),
    ("torchsde:euler", sample, {"method": "torchsde:euler", "steps": 100}),
    ("torchsde:milstein", sample, {"method": "torchsde:milstein", "steps": 100}),
    ("torchsde:srk", sample, {"method": "torchsde:srk", "steps": 50}),
    ("euler", ode_sample, {"method": "euler", "steps": 100}),
    *[("heun", ode_sample, {"method": "heun", "steps": n}) for n in (10, 50)],
    ("rk4", ode_sample, {"method": "rk4", "steps": 10}),
    *[("dpmpp_2m", ode_sample, {"method": "dpmpp_2m", "steps": n}) for n in (10, 20)],
    *[("dpmpp_3m", ode_sample, {"method": "dpmpp_3m", "steps": n}) for n in (10, 20)],
    ("dopri5", ode_sample, {"method": "dopri5", "rtol": 1e-3, "atol": 1e-3}),
    ("bosh3", ode_sample, {"method": "bosh3", "rtol": 1e-3, "atol": 1e-3}),
]


def main() -> None:
    num = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    only = set(sys.argv[3:])
    sde, score = digits.load()
    halves = fd.real_halves_fd()
    real = len(fd.real_features())
    print(f"FD between two halves of the real data (n = {real // 2} / {real - real // 2}): {halves:.3f}\n")
    print("| sampler | options | NFE | FD-digits | ÷ halves FD | s |\n|---|---|---:|---:|---:|---:|")
    for name, sampler, options in CONFIGS:
        if only and name not in only:
            continue
        start = time.perf_counter()
        generator = torch.Generator().manual_seed(0)
        x, info = sampler(sde, score, (num, 1, 8, 8), generator=generator, return_info=True, **options)
        seconds = time.perf_counter() - start
        distance = fd.fd_digits(digits.from_uint8(digits.to_uint8(x)))
        shown = {k: v for k, v in options.items() if k != "method"}
        ratio = distance / halves
        print(f"| {name} | {shown} | {info.nfe} | {distance:.3f} | {ratio:.2f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
