"""Quality against NFE for every sampler in sdekit (and peers) on the exact Gaussian-mixture oracle.

    pytest benchmarks/test_quality.py --benchmark-only             # default set, ~2 min on 2 idle cores
    pytest benchmarks/test_quality.py --benchmark-only --runslow   # full table (or SDEKIT_BENCH_FULL=1)

Oracle: the 16-D, 8-mode mixture ``GaussianMixture.random(dim=16, modes=8,
generator=torch.Generator().manual_seed(0))`` under VP (β 0.1..20, eps 1e-3) and VE
(σ 0.01..50, eps 1e-5), exact score, 16 384 samples (``SDEKIT_BENCH_SAMPLES``). Every case
starts from the *same* prior draw x_prior (seed 1; stochastic samplers draw their noise from a
generator seeded 2), so ODE solvers differ only by their discretisation. Reported: NFE,
sliced W1, mode-weight TV and |NLL − H| beside their finite-sample floors, and "floor level"
= ``QualityReport.at_floor()``: every metric inside the limit that exact sets of the same size
exceed with probability 0.1 %/3 (at n = 16384 on this mixture SW1 ≤ 1.26× floor, TV ≤ 2.15×
floor, |NLL − H| ≤ 0.090 nats; docs/testing.md). Each case runs once
(``benchmark.pedantic(rounds=1)``); its figures go to ``benchmark.extra_info`` and one table
row is printed (all rows again as Markdown tables at the end of the session).

Peers, skipped when not importable, on the same oracle, x_prior and NFE:

* diffusers ``DPMSolverMultistepScheduler`` (VP only; its defaults: DPM-Solver++ order 2,
  lower-order final step, final σ = 0). It is built with ``trained_betas`` equal to
  sdekit's VP discretised at t_i = i/N, N = 1000: β_i = 1 − α(t_i)²/α(t_{i−1})², so its
  ``alphas_cumprod[i]`` is α((i+1)/N)² exactly and its integer timestep i *is* sdekit time
  t = (i + 1)/N (the convention of :class:`sdekit.DiscreteVPSDE`). The ε-model given to
  ``step()`` is the exact one: ε(x, i) = −σ(t)·s(x, t) at t = (i + 1)/N. Two timestep
  choices: diffusers' default ``linspace`` spacing (999 … ≈ 999/n, then a jump to σ = 0)
  and sdekit's log-SNR grid rounded to integer timesteps (999 … 0, then σ = 0).
* k-diffusion ``sample_euler``, ``sample_dpmpp_2m`` and ``sample_dpm_adaptive`` with the
  denoiser contract D(x, σ) in the VE (EDM) frame built from the exact score: for VP,
  x_ve = x_vp/α, σ_ve = σ/α (so −log σ_ve is sdekit's λ), t = ``sde.t_from_log_snr(−log σ_ve)``
  and D(x, σ) = x + σ²·α·s(αx, t); for VE, D(x, σ) = x + σ² s(x, t). ``sample_euler`` and
  ``sample_dpmpp_2m`` end with a step to σ = 0 (a denoising step, counted);
  ``sample_dpm_adaptive`` stops at σ_min, so one denoising call is added (counted), as
  sdekit's samplers do. ``pip install k-diffusion`` pulls torchvision (which would replace
  torch), so install it with ``pip install --no-deps k-diffusion``; its package
  ``__init__`` then fails to import (skimage, torchvision, …) and ``k_diffusion/sampling.py``
  is loaded by file path with a one-function stand-in for ``k_diffusion.utils``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
from torch import Tensor

from sdekit import VESDE, VPSDE, LinearSDE, make_grid, ode_sample, pc_sample, sample
from sdekit.sampling import default_eps, sde_methods
from sdekit.testing import GaussianMixture, evaluate

from _peers import KDenoiser, k_diffusion_sampling

TITLE = "Quality against NFE ({sde})"
HEADER = "| SDE | sampler | setting | NFE | SW1 / floor | TV / floor | NLL − H (nats) | floor level | s (wall) |"


@dataclass
class Problem:
    kind: str  # "VP" or "VE"
    sde: LinearSDE
    score: Callable[[Tensor, Tensor], Tensor]
    mixture: GaussianMixture
    x_prior: Tensor
    eps: float
    device: torch.device

    def generator(self) -> torch.Generator:
        """Noise for stochastic samplers: a fresh generator seeded 2 (x_prior used seed 1)."""
        return torch.Generator(device=self.device).manual_seed(2)


Runner = Callable[[Problem], tuple[Tensor, int]]


@dataclass(frozen=True)
class Case:
    sampler: str
    setting: str
    run: Runner = field(compare=False)
    slow: bool = False
    sdes: tuple[str, ...] = ("VP", "VE")
    requires: str | None = None  # "diffusers" or "k-diffusion"

    @property
    def id(self) -> str:
        text = f"{self.sampler} {self.setting}".replace("σ", "sigma").replace("(default)", "")
        return re.sub(r"[^A-Za-z0-9_.+]+", "-", text).strip("-")


# --- sdekit samplers ---------------------------------------------------------------------------------------------


def _sdekit(function: Callable[..., tuple[Tensor, object]], **kwargs: object) -> Runner:
    def run(p: Problem) -> tuple[Tensor, int]:
        x, info = function(p.sde, p.score, x_T=p.x_prior.clone(), generator=p.generator(), return_info=True, **kwargs)
        return x, int(info.nfe)

    return run


def _sdekit_cases() -> list[Case]:
    cases: list[Case] = []
    for method in ("ancestral", "euler_maruyama", "reverse_diffusion"):
        for steps, slow in ((20, False), (100, False), (1000, True)):
            cases.append(Case(f"sample {method}", f"steps={steps}", _sdekit(sample, method=method, steps=steps), slow))
    for steps, slow in ((20, True), (100, False), (1000, True)):
        run = _sdekit(pc_sample, predictor="reverse_diffusion", corrector="langevin", steps=steps)
        cases.append(Case("pc_sample reverse_diffusion+langevin", f"steps={steps}", run, slow))
    for rtol, slow in ((0.05, False), (0.1, True), (0.02, True)):
        label = f"rtol={rtol}" + (" (default)" if rtol == 0.05 else "")
        cases.append(Case("sample adaptive", label, _sdekit(sample, method="adaptive", rtol=rtol), slow))
    for steps, slow in ((20, True), (50, False), (100, True)):
        cases.append(
            Case("sample dpmpp_2m_sde", f"steps={steps}", _sdekit(sample, method="dpmpp_2m_sde", steps=steps), slow)
        )
    for name, steps, slow in (("euler", 100, True), ("srk", 10, False), ("srk", 50, True)):
        method = f"torchsde:{name}"
        cases.append(Case(f"sample {method}", f"steps={steps}", _torchsde(method, steps), slow))
    for method, settings in (("euler", (20, 100, 500)), ("heun", (10, 50, 250)), ("rk4", (5, 25, 125))):
        for steps in settings:
            cases.append(
                Case(
                    f"ode {method}",
                    f"steps={steps}",
                    _sdekit(ode_sample, method=method, steps=steps),
                    steps == settings[-1],
                )
            )
    for method in ("dpmpp_2m", "dpmpp_3m"):
        for steps, slow in ((10, False), (15, True), (20, False), (50, True)):
            cases.append(Case(f"ode {method}", f"steps={steps}", _sdekit(ode_sample, method=method, steps=steps), slow))
    for method, tol, slow in (("dopri5", 1e-5, False), ("dopri5", 1e-3, False), ("bosh3", 1e-3, True)):
        label = f"rtol=atol={tol:g}" + (" (default)" if tol == 1e-5 else "")
        cases.append(Case(f"ode {method}", label, _sdekit(ode_sample, method=method, rtol=tol, atol=tol), slow))
    return cases


def _torchsde(method: str, steps: int) -> Runner:
    """``sample(method="torchsde:…")`` — skipped when this sdekit does not offer it."""
    inner = _sdekit(sample, method=method, steps=steps)

    def run(p: Problem) -> tuple[Tensor, int]:
        if method not in sde_methods():
            pytest.skip(f"{method!r} is not in sdekit.sampling.sde_methods()")
        try:
            return inner(p)
        except ValueError as error:
            if "unknown method" in str(error):
                pytest.skip(f"{method!r} not available: {error}")
            raise

    return run


# --- diffusers ---------------------------------------------------------------------------------------------------

NUM_TRAIN = 1000


def _vp_trained_betas(sde: VPSDE, n: int = NUM_TRAIN) -> Tensor:
    """β_i = 1 − α(t_i)²/α(t_{i−1})² at t_i = i/N: diffusers' index i ↔ sdekit t = (i + 1)/N."""
    t = torch.arange(n + 1, dtype=torch.float64) / n
    log_abar = 2 * sde.log_mean_coeff(t)
    return -torch.expm1(torch.diff(log_abar))


def _diffusers(nfe: int, spacing: str) -> Runner:
    def run(p: Problem) -> tuple[Tensor, int]:
        if importlib.util.find_spec("diffusers") is None:
            pytest.skip("diffusers is not installed")
        from diffusers import DPMSolverMultistepScheduler

        scheduler = DPMSolverMultistepScheduler(
            num_train_timesteps=NUM_TRAIN, trained_betas=_vp_trained_betas(p.sde).numpy()
        )
        if spacing == "linspace":
            scheduler.set_timesteps(num_inference_steps=nfe, device=p.device)
        else:  # sdekit's log-SNR grid (nfe − 1 steps T → eps, as sdekit's dpmpp_2m + its final denoising)
            grid = make_grid("log_snr", p.sde, nfe - 1, p.eps)
            index = torch.round(grid * NUM_TRAIN - 1).long().clamp(0, NUM_TRAIN - 1).unique_consecutive()
            scheduler.set_timesteps(timesteps=index.tolist(), device=p.device)
        x, calls = p.x_prior.clone(), 0
        with torch.no_grad():
            for timestep in scheduler.timesteps:
                t = torch.full((1,), (int(timestep) + 1) / NUM_TRAIN, dtype=torch.float64)
                sigma = float(p.sde.std(t))
                eps_pred = -sigma * p.score(x, t.to(p.device, x.dtype).expand(x.shape[0]))
                calls += 1
                x = scheduler.step(eps_pred, timestep, x).prev_sample
        return x, calls

    return run


# --- k-diffusion -------------------------------------------------------------------------------------------------


def _k_diffusion(
    sampler: str, nfe: int = 0, schedule: str = "karras", rtol: float = 0.05, atol: float = 0.0078
) -> Runner:
    def run(p: Problem) -> tuple[Tensor, int]:
        k, why = k_diffusion_sampling()
        if k is None:
            pytest.skip(why)
        model = KDenoiser(p.sde, p.score)
        sigma_min, sigma_max = model.sigma(p.eps), model.sigma(p.sde.T)
        x = p.x_prior.clone() / float(p.sde.mean_coeff(torch.full((1,), p.sde.T, dtype=torch.float64)))  # VE frame
        torch.manual_seed(2)  # k-diffusion draws from the global RNG (unused by these ODE samplers)
        if sampler == "dpm_adaptive":
            x = k.sample_dpm_adaptive(model, x, sigma_min, sigma_max, rtol=rtol, atol=atol, disable=True)
            with torch.no_grad():
                x = model(x, torch.full((x.shape[0],), sigma_min, device=x.device))  # final denoising
            return x, model.calls
        get_sigmas = k.get_sigmas_karras if schedule == "karras" else k.get_sigmas_exponential
        sigmas = get_sigmas(nfe, sigma_min, sigma_max, device=p.device)
        x = getattr(k, f"sample_{sampler}")(model, x, sigmas, disable=True)
        return x, model.calls

    return run


def _peer_cases() -> list[Case]:
    cases: list[Case] = []
    for nfe, slow in ((11, False), (16, True), (21, False)):
        for spacing in ("linspace", "log_snr"):
            label = f"NFE={nfe}, {'default linspace' if spacing == 'linspace' else 'log-SNR'} timesteps"
            cases.append(
                Case("diffusers DPMSolverMultistep", label, _diffusers(nfe, spacing), slow, ("VP",), "diffusers")
            )
    for nfe, slow in ((11, False), (16, True), (21, False)):
        for schedule in ("karras", "exponential"):
            run = _k_diffusion("dpmpp_2m", nfe, schedule)
            cases.append(
                Case("k-diffusion sample_dpmpp_2m", f"NFE={nfe}, {schedule} σ", run, slow, requires="k-diffusion")
            )
    for nfe, slow in ((21, False), (101, False), (501, True)):
        run = _k_diffusion("euler", nfe, "karras")
        cases.append(Case("k-diffusion sample_euler", f"NFE={nfe}, karras σ", run, slow, requires="k-diffusion"))
    for rtol, atol, slow in ((0.05, 0.0078, False), (1e-3, 1e-3, True)):
        run = _k_diffusion("dpm_adaptive", rtol=rtol, atol=atol)
        label = f"rtol={rtol:g}, atol={atol:g}" + (" (default)" if rtol == 0.05 else "")
        cases.append(Case("k-diffusion sample_dpm_adaptive", label, run, slow, requires="k-diffusion"))
    return cases


CASES = _sdekit_cases() + _peer_cases()
PARAMS = [
    pytest.param(kind, case, id=f"{kind}-{case.id}", marks=[pytest.mark.slow] if case.slow else [])
    for kind in ("VP", "VE")
    for case in CASES
    if kind in case.sdes
]


_PROBLEMS: dict[tuple[str, str, int, int], Problem] = {}


def _problem(kind: str, device: str, n: int, mixture: GaussianMixture) -> Problem:
    """The VP or VE problem with its prior draw x_prior (seed 1), built once per session."""
    key = (kind, device, n, id(mixture))
    if key in _PROBLEMS:
        return _PROBLEMS[key]
    sde: LinearSDE = VPSDE(beta_min=0.1, beta_max=20.0) if kind == "VP" else VESDE(sigma_min=0.01, sigma_max=50.0)
    dev = torch.device(device)
    x_prior = sde.prior_sample((n, mixture.dim), generator=torch.Generator(device=dev).manual_seed(1), device=dev)
    _PROBLEMS[key] = Problem(kind, sde, mixture.score(sde), mixture, x_prior, default_eps(sde), dev)
    return _PROBLEMS[key]


def _peer_version(requires: str | None) -> str:
    if requires is None:
        return ""
    try:
        return f"{requires} {importlib.metadata.version(requires)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{requires} (not installed)"


@pytest.mark.parametrize(("kind", "case"), PARAMS)
def test_quality(benchmark, bench_table, device, mixture, num_samples, kind, case):
    problem = _problem(kind, str(device), num_samples, mixture)
    seconds: list[float] = []

    def target() -> tuple[Tensor, int]:
        start = time.perf_counter()
        out = case.run(problem)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
        return out

    x, nfe = benchmark.pedantic(target, rounds=1, iterations=1)
    assert torch.isfinite(x).all(), f"{case.sampler} {case.setting}: non-finite samples"
    report = evaluate(x.detach().float().cpu(), mixture)
    at_floor = report.at_floor()  # indistinguishable from exact samples at false-alarm rate 0.1 %
    info = {
        "sde": kind,
        "sampler": case.sampler,
        "setting": case.setting,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "n": report.n,
        "nfe": nfe,
        "sw1": report.sw1,
        "sw1_floor": report.sw1_floor,
        "tv": report.tv,
        "tv_floor": report.tv_floor,
        "nll_gap": report.nll_gap,
        "nll_floor": report.nll_floor,
        "entropy": report.entropy,
        "floor_level": at_floor,
        "seconds": seconds[0],
        "peer": _peer_version(case.requires),
    }
    benchmark.extra_info.update(info)
    sampler = case.sampler + (f" [{device}]" if device.type != "cpu" else "")
    bench_table(
        TITLE.format(sde=kind),
        HEADER,
        f"| {kind} | {sampler} | {case.setting} | {nfe} | {_ratio(report.sw1, report.sw1_floor)} "
        f"| {_ratio(report.tv, report.tv_floor)} | {report.nll_gap:+.3f} | {'yes' if at_floor else 'no'} "
        f"| {seconds[0]:.2f} |",
    )


def _ratio(value: float, floor: float) -> str:
    return f"{value / floor:.2f}" if floor > 0 and math.isfinite(value) else "n/a"
