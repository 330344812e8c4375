"""sdekit against k-diffusion's and diffusers' sampling loops: the same network, batch and NFE.

    pytest benchmarks/test_peer_speed.py --benchmark-only

The network is the embedded digits ε-UNet (batch 256 on CPU, 4096 on CUDA), each library
driving it the way its documentation says:

* sdekit: ``adapters.ddpm.from_betas`` and ``ode_sample(method="ddim" | "dpmpp_2m")`` or
  ``sample(method="ancestral")`` with ``steps = NFE − 1`` plus the final denoising call;
* k-diffusion: ``k_diffusion.external.DiscreteEpsDDPMDenoiser`` (continuous timesteps) and
  ``sample_euler`` / ``sample_dpmpp_2m`` on ``get_sigmas_karras(NFE)`` (the last step, to σ = 0,
  is its denoising call); ``sample_dpm_adaptive`` at its defaults is listed with its own NFE;
* diffusers: the loop of its documentation — ``scheduler.set_timesteps(NFE)``, then
  ``scheduler.step(unet(x, t), t, x)`` — with ``DDPMScheduler`` (ancestral) and
  ``DPMSolverMultistepScheduler`` (DPM-Solver++(2M)).

Each pair runs alternately ``ROUNDS`` times (sdekit, peer, sdekit, peer, …) and the ratio is
min(sdekit) / min(peer): ≤ 1.0 means sdekit is at least as fast. The network's own time varies
by ±10 % between identical runs on a shared CPU, more than the libraries differ, so the time
spent *outside* the network (wall time minus the time inside the network's calls, measured by a
wrapper around it) is reported beside it: that is what each library adds. Peers are skipped when not
installed (``pip install --no-deps k-diffusion``, ``pip install diffusers``).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

from adapters import ddpm
from sdekit import linear_betas, ode_sample, sample
from sdekit.app.models import digits

from _overhead import sync
from _peers import k_diffusion_external, k_diffusion_sampling

NFE = 10
ROUNDS = 5
TITLE = f"sdekit against peers at equal NFE (digits ε-UNet, NFE = {NFE})"
HEADER = (
    "| sdekit sampler | peer | device | batch | NFE (sdekit / peer) | sdekit s (min) | peer s (min) | ratio "
    "| sdekit ms outside the network (min) | peer ms outside the network (min) |"
)


def _minima(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """Minimum wall time and minimum time outside the network over the rounds."""
    return min(wall for wall, _ in runs), min(outside for _, outside in runs)


class Counted:
    """Counts calls of a network (or denoiser) for the NFE column."""

    def __init__(self, module: Callable[..., Tensor]) -> None:
        self.module, self.calls = module, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        self.calls += 1
        return self.module(*args, **kwargs)


class NetworkClock(torch.nn.Module):
    """Wraps the network and adds up the wall time spent inside it (synchronising CUDA around each call)."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network, self.seconds = network, 0.0

    def forward(self, x: Tensor, timestep: Tensor) -> Tensor:
        sync(x.device)
        start = time.perf_counter()
        out = self.network(x, timestep)
        sync(x.device)
        self.seconds += time.perf_counter() - start
        return out


def _setup(device: torch.device) -> dict[str, Any]:
    unet = NetworkClock(digits.load_unet(None, device))
    betas = linear_betas(digits.NUM_TIMESTEPS, digits.BETA_START, digits.BETA_END)
    sde, score = ddpm.from_betas(unet, betas)
    batch = 4096 if device.type == "cuda" else 256
    prior = torch.Generator(device=device).manual_seed(1)
    return {
        "sde": sde,
        "score": score,
        "unet": unet,
        "x_T": sde.prior_sample((batch, 1, 8, 8), generator=prior, device=device),
        "batch": batch,
        "device": device,
    }


def _sdekit(method: str) -> Callable[[dict[str, Any]], int]:
    def run(s: dict[str, Any]) -> int:
        counted = Counted(s["score"])
        if method == "ancestral":
            generator = torch.Generator(device=s["device"]).manual_seed(2)
            sample(s["sde"], counted, x_T=s["x_T"], method="ancestral", steps=NFE - 1, generator=generator)
        else:
            ode_sample(s["sde"], counted, x_T=s["x_T"], method=method, steps=NFE - 1)
        return counted.calls

    return run


def _k_diffusion(sampler: str) -> Callable[[dict[str, Any]], int]:
    def run(s: dict[str, Any]) -> int:
        k, why = k_diffusion_sampling()
        external, why_external = k_diffusion_external()
        if k is None or external is None:
            pytest.skip(why if k is None else why_external)
        abar = s["sde"].alphas_cumprod.to(s["device"], torch.float32)
        model = Counted(external.DiscreteEpsDDPMDenoiser(s["unet"], abar, quantize=False))
        sigma_min, sigma_max = float(model.module.sigma_min), float(model.module.sigma_max)
        x = s["x_T"] * sigma_max  # k-diffusion's frame: x_ve = x_vp / α, so the prior has std σ_max
        with torch.inference_mode():
            if sampler == "dpm_adaptive":
                x = k.sample_dpm_adaptive(model, x, sigma_min, sigma_max, disable=True)
                model(x, torch.full((x.shape[0],), sigma_min, device=x.device))  # final denoising, as sdekit's
            else:
                sigmas = k.get_sigmas_karras(NFE, sigma_min, sigma_max, device=s["device"])
                getattr(k, f"sample_{sampler}")(model, x, sigmas, disable=True)
        return model.calls

    return run


def _diffusers(scheduler_name: str) -> Callable[[dict[str, Any]], int]:
    def run(s: dict[str, Any]) -> int:
        if importlib.util.find_spec("diffusers") is None:
            pytest.skip("diffusers is not installed")
        import diffusers

        scheduler = getattr(diffusers, scheduler_name)(
            num_train_timesteps=digits.NUM_TIMESTEPS,
            beta_start=digits.BETA_START,
            beta_end=digits.BETA_END,
            beta_schedule="linear",
        )
        scheduler.set_timesteps(NFE, device=s["device"])
        unet, x = Counted(s["unet"]), s["x_T"]
        generator = torch.Generator(device=s["device"]).manual_seed(2)
        with torch.inference_mode():
            for t in scheduler.timesteps:
                eps = unet(x, t.expand(x.shape[0]))
                x = scheduler.step(eps, t, x, generator=generator).prev_sample
        return unet.calls

    return run


PAIRS = [
    ("ode ddim", _sdekit("ddim"), "k-diffusion sample_euler", _k_diffusion("euler")),  # one algorithm: Euler in σ
    ("ode dpmpp_2m", _sdekit("dpmpp_2m"), "k-diffusion sample_dpmpp_2m", _k_diffusion("dpmpp_2m")),
    (
        "ode dpmpp_2m",
        _sdekit("dpmpp_2m"),
        "diffusers DPMSolverMultistepScheduler",
        _diffusers("DPMSolverMultistepScheduler"),
    ),
    ("sample ancestral", _sdekit("ancestral"), "diffusers DDPMScheduler", _diffusers("DDPMScheduler")),
    ("ode dpmpp_2m", _sdekit("dpmpp_2m"), "k-diffusion sample_dpm_adaptive (own NFE)", _k_diffusion("dpm_adaptive")),
]


def _timed(run: Callable[[dict[str, Any]], int], s: dict[str, Any]) -> tuple[float, float, int]:
    """(wall seconds, seconds outside the network, network calls) of one run."""
    s["unet"].seconds = 0.0
    sync(s["device"])
    start = time.perf_counter()
    with torch.inference_mode():
        calls = run(s)
    sync(s["device"])
    wall = time.perf_counter() - start
    return wall, wall - s["unet"].seconds, calls


@pytest.mark.parametrize(("ours", "run_ours", "peer", "run_peer"), PAIRS, ids=[f"{p[0]}-vs-{p[2]}" for p in PAIRS])
def test_peer_speed(benchmark, bench_table, device, ours, run_ours, peer, run_peer):
    s = _setup(device)
    _timed(run_peer, s)  # warm-up (and skip early if the peer is missing)
    _timed(run_ours, s)
    ours_runs: list[tuple[float, float]] = []
    peer_runs: list[tuple[float, float]] = []

    def rounds() -> tuple[int, int]:
        for _ in range(ROUNDS):
            wall, outside, ours_nfe = _timed(run_ours, s)
            ours_runs.append((wall, outside))
            wall, outside, peer_nfe = _timed(run_peer, s)
            peer_runs.append((wall, outside))
        return ours_nfe, peer_nfe

    ours_nfe, peer_nfe = benchmark.pedantic(rounds, rounds=1, iterations=1)
    (ours_wall, ours_outside), (peer_wall, peer_outside) = _minima(ours_runs), _minima(peer_runs)
    ratio = ours_wall / peer_wall
    benchmark.extra_info.update(
        {"sdekit": ours, "peer": peer, "nfe": [ours_nfe, peer_nfe], "sdekit_runs": ours_runs, "peer_runs": peer_runs}
    )
    benchmark.extra_info["ratio"] = ratio
    bench_table(
        TITLE,
        HEADER,
        f"| {ours} | {peer} | {device} | {s['batch']} | {ours_nfe} / {peer_nfe} | {ours_wall:.3f} | {peer_wall:.3f} "
        f"| {ratio:.3f} | {1e3 * ours_outside:.1f} | {1e3 * peer_outside:.1f} |",
    )
    if "own NFE" not in peer:
        assert ours_nfe == peer_nfe, f"{ours} made {ours_nfe} calls, {peer} {peer_nfe}: not an equal-NFE comparison"
