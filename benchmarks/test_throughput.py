"""Throughput, NFE, overhead over bare model calls, and peak memory of every sampler.

    pytest benchmarks/test_throughput.py --benchmark-only                               # default set
    pytest benchmarks/test_throughput.py --benchmark-only --runslow                     # every sampler, every model
    SDEKIT_ASSERT_OVERHEAD=1 pytest benchmarks/test_throughput.py --benchmark-only      # also assert the targets

Three workloads, each on every benchmark device (``cpu``, and ``cuda`` when available):

* small — the oracle's exact score (16-D, 8-mode mixture, VP) at batch 16 384 × 16: cheap per
  element, so the solver's own cost is visible. Every sampler by default.
* medium — the embedded digits ε-UNet (352k parameters, via ``adapters.ddpm``) at batch 256 on
  CPU, 4096 on CUDA. A representative subset by default; every sampler with ``--runslow``.
* large — a CIFAR-10-sized ``diffusers.UNet2DModel`` (the DDPM CIFAR-10 configuration, 35.7M
  parameters, random weights) at batch 128 through ``adapters.diffusers``: on CUDA, or on CPU
  with ``--runslow``; skipped without diffusers.

For each sampler: samples per second, NFE per sample, the overhead ratio — wall(sampler) over
wall(the same score calls, replayed bare; see ``_overhead.py``) in the same run — and peak memory
of one run above what was in use before it (CUDA: max allocated; CPU: resident set, polled).
Targets: ≤ 1.15 for fixed-step samplers on the oracle (solvers issue), ≤ 1.10 fixed-step and
≤ 1.25 adaptive on the digits UNet (throughput issue); asserted only with
SDEKIT_ASSERT_OVERHEAD=1, since on a shared machine the ratio also measures the other load.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import Tensor

from sdekit import SDE, VPSDE, ode_sample, pc_sample, sample
from sdekit.testing import GaussianMixture

from _overhead import ScoreFn, asserting, measure, timed

TITLE = "Throughput and overhead over bare score calls ({workload})"
HEADER = (
    "| sampler | device | batch | NFE | samples/s | sampler s (min) | bare calls s (min) "
    "| overhead (min/min) | overhead (median) | peak memory MiB |"
)


@dataclass(frozen=True)
class Sampler:
    name: str
    adaptive: bool
    call: Callable[..., tuple[Tensor, Any]]


def _fixed(function: Callable[..., Any], **fixed: Any) -> Callable[..., tuple[Tensor, Any]]:
    return functools.partial(function, **fixed)


SAMPLERS = [
    Sampler("sample euler_maruyama", False, _fixed(sample, method="euler_maruyama")),
    Sampler("sample reverse_diffusion", False, _fixed(sample, method="reverse_diffusion")),
    Sampler("sample ancestral", False, _fixed(sample, method="ancestral")),
    Sampler("sample dpmpp_2m_sde", False, _fixed(sample, method="dpmpp_2m_sde")),
    Sampler("pc_sample reverse_diffusion+langevin", False, _fixed(pc_sample)),
    Sampler("ode euler", False, _fixed(ode_sample, method="euler")),
    Sampler("ode heun", False, _fixed(ode_sample, method="heun")),
    Sampler("ode rk4", False, _fixed(ode_sample, method="rk4")),
    Sampler("ode dpmpp_2m", False, _fixed(ode_sample, method="dpmpp_2m")),
    Sampler("ode dpmpp_3m", False, _fixed(ode_sample, method="dpmpp_3m")),
    Sampler("sample adaptive", True, _fixed(sample, method="adaptive")),
    Sampler("ode dopri5", True, _fixed(ode_sample, method="dopri5")),
]


@dataclass(frozen=True)
class Workload:
    name: str
    steps: int  # fixed-grid steps
    rounds: int  # timed rounds (each: one bare replay, one sampler run)
    fixed_target: float
    adaptive_target: float | None
    default_samplers: tuple[str, ...] | None  # None: all by default
    large: bool = False  # run on CPU only with --runslow
    #: Per-sampler options. A learned network is not smooth at the scale of dopri5's default 1e-5
    #: tolerances (2235 NFE on the digits UNet, 99 at 1e-3); image samplers use 1e-3.
    options: dict[str, dict[str, float]] = field(default_factory=dict)


UNET_OPTIONS = {"ode dopri5": {"rtol": 1e-3, "atol": 1e-3}}


WORKLOADS = {
    "oracle": Workload("oracle", steps=20, rounds=3, fixed_target=1.15, adaptive_target=None, default_samplers=None),
    "digits": Workload(
        "digits",
        steps=10,
        rounds=3,
        fixed_target=1.10,
        adaptive_target=1.25,
        default_samplers=("sample ancestral", "ode euler", "ode dpmpp_2m"),
        options=UNET_OPTIONS,
    ),
    "cifar10-unet": Workload(
        "cifar10-unet",
        steps=10,
        rounds=2,
        fixed_target=1.10,
        adaptive_target=1.25,
        default_samplers=(),
        large=True,
        options=UNET_OPTIONS,
    ),
}


def _oracle(device: torch.device) -> tuple[SDE, ScoreFn, tuple[int, ...], int]:
    mixture = _mixture()
    sde = VPSDE()
    return sde, mixture.score(sde), (mixture.dim,), 16384


@functools.cache
def _mixture() -> GaussianMixture:
    return GaussianMixture.random(dim=16, modes=8, generator=torch.Generator().manual_seed(0))


def _digits(device: torch.device) -> tuple[SDE, ScoreFn, tuple[int, ...], int]:
    from sdekit.app.models import digits

    sde, score = digits.load(device)
    return sde, score, (1, 8, 8), 4096 if device.type == "cuda" else 256


def _cifar_unet(device: torch.device) -> tuple[SDE, ScoreFn, tuple[int, ...], int]:
    if importlib.util.find_spec("diffusers") is None:
        pytest.skip("diffusers is not installed (pip install 'sdekit[diffusers]')")
    from diffusers import DDPMScheduler, UNet2DModel

    from adapters.diffusers import from_unet

    torch.manual_seed(0)
    unet = UNet2DModel(  # google/ddpm-cifar10-32's configuration
        sample_size=32,
        in_channels=3,
        out_channels=3,
        layers_per_block=2,
        block_out_channels=(128, 256, 256, 256),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        dropout=0.1,
    ).to(device)
    unet.eval()
    sde, score = from_unet(unet, DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear"))
    return sde, score, (3, 32, 32), 128


BUILDERS = {"oracle": _oracle, "digits": _digits, "cifar10-unet": _cifar_unet}


def _params() -> list[Any]:
    params = []
    for workload in WORKLOADS.values():
        for sampler in SAMPLERS:
            default = workload.default_samplers is None or sampler.name in workload.default_samplers
            marks = [] if default else [pytest.mark.slow]
            params.append(pytest.param(workload, sampler, id=f"{workload.name}-{sampler.name}", marks=marks))
    return params


@pytest.mark.parametrize(("workload", "sampler"), _params())
def test_throughput(benchmark, bench_table, request, device, workload: Workload, sampler: Sampler):
    if workload.large and device.type == "cpu" and not request.config.getoption("--runslow"):
        pytest.skip("the CIFAR-10-sized UNet runs on CPU only with --runslow")
    sde, score, event_shape, batch = BUILDERS[workload.name](device)
    x_T = sde.prior_sample(
        (batch, *event_shape), generator=torch.Generator(device=device).manual_seed(1), device=device
    )
    options = workload.options.get(sampler.name, {}) if sampler.adaptive else {"steps": workload.steps}

    def run(score_fn: ScoreFn) -> tuple[Tensor, Any]:
        return sampler.call(
            sde,
            score_fn,
            x_T=x_T,
            generator=torch.Generator(device=device).manual_seed(2),
            return_info=True,
            **options,
        )

    result = benchmark.pedantic(lambda: measure(run, score, device, batch, workload.rounds), rounds=1, iterations=1)
    benchmark.extra_info.update({"workload": workload.name, "sampler": sampler.name, "device": str(device), **options})
    benchmark.extra_info.update(result.as_dict())
    label = sampler.name + "".join(f", {key}={value:g}" for key, value in options.items() if key != "steps")
    bench_table(
        TITLE.format(workload=workload.name),
        HEADER,
        f"| {label} | {device} | {batch} | {result.nfe} | {result.samples_per_s:.1f} "
        f"| {min(result.sampler_s):.3f} | {min(result.replay_s):.3f} | {result.ratio:.3f} "
        f"| {result.ratio_median:.3f} | {result.peak_memory_mib:.1f} |",
    )
    target = workload.adaptive_target if sampler.adaptive else workload.fixed_target
    if target is not None and asserting():
        assert result.ratio <= target, f"{sampler.name}: {result.ratio:.3f}× the bare score calls (target ≤ {target})"


STEP_TITLE = "Solver cost per step with a free score (state 16 384 × 16, 200 steps)"
STEP_HEADER = "| sampler | device | ms per step | of which noise draws (torch.randn, ms) |"


@pytest.mark.parametrize("sampler", [s for s in SAMPLERS if not s.adaptive], ids=lambda s: s.name)
def test_step_cost(benchmark, bench_table, device, sampler: Sampler):
    """What a step costs besides the score: the score returns a fixed tensor, so only the solver's
    arithmetic, its noise draws and its bookkeeping are timed (minimum of 3 runs)."""
    x_T = torch.randn(16384, 16, generator=torch.Generator().manual_seed(1)).to(device)
    fixed = torch.randn_like(x_T) * 0.1
    steps = 200

    def run() -> None:
        sampler.call(VPSDE(), lambda x, t: fixed, x_T=x_T, steps=steps, denoise=False)

    def draws() -> None:
        for _ in range(steps * _draws_per_step(sampler.name)):
            torch.randn(x_T.shape, device=device)

    seconds = [timed(run, device) for _ in range(4)][1:]
    noise = min(timed(draws, device) for _ in range(3)) if _draws_per_step(sampler.name) else 0.0
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    per_step = 1e3 * min(seconds) / steps
    benchmark.extra_info.update({"sampler": sampler.name, "ms_per_step": per_step, "noise_ms_per_step": noise})
    bench_table(STEP_TITLE, STEP_HEADER, f"| {sampler.name} | {device} | {per_step:.3f} | {1e3 * noise / steps:.3f} |")


def _draws_per_step(name: str) -> int:
    """Gaussian draws of the state's size per step: one per stochastic predictor, one per Langevin move."""
    return 2 if name.startswith("pc_sample") else 1 if name.startswith("sample") else 0
