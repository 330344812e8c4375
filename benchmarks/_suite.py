"""Quality against NFE on the oracle suite: sdekit's methods at their defaults beside k-diffusion's samplers.

Shared by ``benchmarks/test_suite_quality.py`` (the pytest benchmark) and
``benchmarks/suite_quality_table.py`` (the full sweep that writes docs/suite.md and its plots).

Every problem of :func:`sdekit.testing.suite.problems` is solved from one prior draw x_T per
problem and sample size (seed 1); stochastic samplers draw their noise from a generator seeded 2
(k-diffusion's from the global RNG, seeded 2). A sampler is asked for an NFE budget and spends at
most that many score calls, final denoising included: a fixed-grid sdekit method takes
``(nfe − 1) // nfe_per_step`` steps on its default grid and eps, then denoises; a budget too
small for one step is skipped. k-diffusion's samplers run on their Karras σ grid (ρ = 7) from
σ̃(T) to σ̃(eps) with sdekit's default eps, ending with their own step to σ = 0, through the
denoiser D(x, σ̃) built from the exact score in the VE frame (x_ve = x/α, σ̃ = σ/α), as in
``benchmarks/test_quality.py``. Judged by :func:`sdekit.testing.evaluate`: NLL gap, sliced W1 and
mode TV against the limits exact sets of the same size exceed with probability 0.1 %.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from sdekit import ode_sample, pc_sample, sample
from sdekit.sampling import default_eps
from sdekit.solvers.catalog import ode_method, sde_method
from sdekit.testing import evaluate
from sdekit.testing.suite import Problem

from _peers import KDenoiser, k_diffusion_sampling

#: The NFE budgets of the full sweep.
NFES = (5, 8, 10, 12, 15, 20, 30, 50, 100, 200, 1000)
#: The 256-dimensional problems' scores cost 20-90 ms a call at n = 4096 on one core: swept up to 200 NFE.
MAX_NFE = {"high_dim": 200, "image": 200}

Run = Callable[[Problem, int, Tensor, int], tuple[Tensor, int]]  # (problem, nfe, x_T, seed) -> (x, nfe spent)


class CaseUnavailableError(Exception):
    """The sampler cannot run at this budget or here (a peer not installed, a budget below one step)."""


@dataclass(frozen=True)
class Sampler:
    """One configuration: its label, "deterministic" or "stochastic", how to run it, the peer it needs."""

    label: str
    kind: str
    run: Run
    requires: str | None = None
    max_nfe: int = 1000


def _sdekit(
    function: Callable[..., object], method: str, kind: str, *, max_nfe: int = 1000, **options: object
) -> Sampler:
    build = ode_method if function is ode_sample else sde_method
    per_step = build(method, dict(options)).nfe_per_step  # type: ignore[union-attr]

    def run(problem: Problem, nfe: int, x_T: Tensor, seed: int) -> tuple[Tensor, int]:
        steps = (nfe - 1) // per_step
        if steps < 1:
            raise CaseUnavailableError(f"{method} needs {per_step + 1} NFE for one step and the final denoising")
        x, info = function(  # type: ignore[operator]
            problem.sde, problem.data.score(problem.sde), x_T=x_T.clone(), method=method, steps=steps,
            generator=torch.Generator().manual_seed(seed), return_info=True, **options,
        )  # fmt: skip
        return x, int(info.nfe)

    label = f"sdekit {method}" + "".join(f" {k}={v}" for k, v in options.items())
    return Sampler(label, kind, run, max_nfe=max_nfe)


def _sdekit_pc(predictor: str, corrector: str) -> Sampler:
    def run(problem: Problem, nfe: int, x_T: Tensor, seed: int) -> tuple[Tensor, int]:
        steps = (nfe - 1) // 2
        if steps < 1:
            raise CaseUnavailableError("a predictor-corrector step takes 2 NFE")
        x, info = pc_sample(
            problem.sde, problem.data.score(problem.sde), x_T=x_T.clone(), predictor=predictor, corrector=corrector,
            steps=steps, generator=torch.Generator().manual_seed(seed), return_info=True,
        )  # fmt: skip
        return x, int(info.nfe)

    return Sampler(f"sdekit pc {predictor}+{corrector}", "stochastic", run)


def _k_diffusion(name: str, kind: str, calls_per_sigma: Callable[[int], int]) -> Sampler:
    """k-diffusion's ``sample_<name>`` on its Karras grid; ``calls_per_sigma(n)``: its NFE on n + 1 σ's."""

    def run(problem: Problem, nfe: int, x_T: Tensor, seed: int) -> tuple[Tensor, int]:
        k, why = k_diffusion_sampling()
        if k is None:
            raise CaseUnavailableError(why)
        n = max((m for m in range(1, nfe + 1) if calls_per_sigma(m) <= nfe), default=0)
        if n < 1:
            raise CaseUnavailableError(f"k-diffusion {name} cannot run on {nfe} NFE")
        model = KDenoiser(problem.sde, problem.data.score(problem.sde))
        eps = default_eps(problem.sde)
        sigmas = k.get_sigmas_karras(n, model.sigma(eps), model.sigma(problem.sde.T))
        x = x_T.clone() / float(problem.sde.mean_coeff(torch.full((1,), problem.sde.T, dtype=torch.float64)))
        torch.manual_seed(seed)  # k-diffusion draws its noise from the global RNG
        # dpmpp_2m_sde would default to a torchsde Brownian tree (50-90 s a run at 256-D): i.i.d. noise instead,
        # which is what its steps need (the tree only makes the noise consistent across step sizes).
        extra = {"noise_sampler": k.default_noise_sampler(x)} if name == "dpmpp_2m_sde" else {}
        x = getattr(k, f"sample_{name}")(model, x, sigmas, disable=True, **extra)
        return x, model.calls

    return Sampler(f"k-diffusion {name}", kind, run, requires="k-diffusion")


def samplers() -> list[Sampler]:
    """Every configuration of the sweep: sdekit's methods at their defaults, then the peers."""
    return [
        _sdekit(ode_sample, "euler", "deterministic"),
        _sdekit(ode_sample, "heun", "deterministic"),
        _sdekit(ode_sample, "rk4", "deterministic", max_nfe=200),
        _sdekit(ode_sample, "ddim", "deterministic"),
        _sdekit(ode_sample, "dpmpp_2m", "deterministic", max_nfe=200),
        _sdekit(ode_sample, "dpmpp_3m", "deterministic", max_nfe=200),
        _sdekit(ode_sample, "unipc", "deterministic", max_nfe=200),
        _sdekit(sample, "euler_maruyama", "stochastic"),
        _sdekit(sample, "reverse_diffusion", "stochastic"),
        _sdekit(sample, "ancestral", "stochastic"),
        _sdekit(sample, "ddim", "stochastic", max_nfe=200, eta=0.5),
        _sdekit(sample, "dpmpp_2m_sde", "stochastic", max_nfe=200),
        _sdekit(sample, "edm_stochastic", "stochastic", max_nfe=200),
        _sdekit_pc("reverse_diffusion", "langevin"),
        _k_diffusion("euler", "deterministic", lambda n: n),
        _k_diffusion("heun", "deterministic", lambda n: 2 * n - 1),
        _k_diffusion("dpmpp_2m", "deterministic", lambda n: n),
        _k_diffusion("euler_ancestral", "stochastic", lambda n: n),
        _k_diffusion("dpmpp_2m_sde", "stochastic", lambda n: n),
    ]


@dataclass(frozen=True)
class Result:
    """One sampler at one budget on one problem, judged against the exact distribution."""

    problem: str
    sampler: str
    kind: str
    budget: int
    nfe: int
    nll_gap: float
    nll_limit: float
    sw1_ratio: float  # SW1 / its limit (≤ 1 passes)
    tv_ratio: float  # mode TV / its limit (≤ 1 passes); 0 for a single Gaussian
    at_floor: bool
    seconds: float
    #: Deterministic samplers: RMS per coordinate of x − x_ref over the first :data:`PATH_SAMPLES` samples,
    #: x_ref the tight float64 solve of the flow from the same x_T (:func:`reference_solve`); seed-free.
    path_error: float | None = None

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


_PRIORS: dict[tuple[str, int], Tensor] = {}
_REFERENCES: dict[str, Tensor] = {}
#: Samples whose paths are compared with the reference solve.
PATH_SAMPLES = 256


def prior_draw(problem: Problem, n: int) -> Tensor:
    """The problem's x_T for n samples (seed 1), float32, drawn once per process."""
    key = (problem.name, n)
    if key not in _PRIORS:
        _PRIORS[key] = problem.sde.prior_sample(problem.shape(n), generator=torch.Generator().manual_seed(1))
    return _PRIORS[key]


def reference_solve(problem: Problem, n: int) -> Tensor:
    """The probability flow from the first :data:`PATH_SAMPLES` rows of x_T, float64, dopri5 at rtol = atol = 1e-8.

    It ends like every sampler of the sweep: at sdekit's default eps, denoised (Tweedie). Solved once per process.
    """
    if problem.name not in _REFERENCES:
        x_T = prior_draw(problem, n)[:PATH_SAMPLES].double()
        score = problem.data.score(problem.sde)
        _REFERENCES[problem.name] = ode_sample(
            problem.sde, score, x_T=x_T, method="dopri5", rtol=1e-8, atol=1e-8, dtype=torch.float64
        )
    return _REFERENCES[problem.name]


def run_case(
    problem: Problem, sampler: Sampler, budget: int, n: int, *, capped: bool = True, paths: bool = False
) -> Result:
    """Run ``sampler`` on ``problem`` within ``budget`` NFE, n samples; :class:`CaseUnavailableError` if it cannot.

    ``capped=False`` lifts the sweep's NFE caps (:data:`MAX_NFE`, ``Sampler.max_nfe``); ``paths=True``
    also measures a deterministic sampler's ``path_error`` against :func:`reference_solve`.
    """
    cap = min(sampler.max_nfe, MAX_NFE.get(problem.distribution, budget))
    if capped and budget > cap:
        raise CaseUnavailableError(f"{sampler.label} on {problem.name} is swept up to {cap} NFE")
    start = time.perf_counter()
    x, nfe = sampler.run(problem, budget, prior_draw(problem, n), 2)
    seconds = time.perf_counter() - start
    if nfe > budget:
        raise AssertionError(f"{sampler.label} spent {nfe} NFE on a budget of {budget}")
    if not torch.isfinite(x).all():
        return Result(problem.name, sampler.label, sampler.kind, budget, nfe, math.inf, 0.0, math.inf, math.inf,
                      False, seconds)  # fmt: skip
    report = evaluate(x.detach().double().cpu(), problem.data)
    path_error = None
    if paths and sampler.kind == "deterministic":
        reference = reference_solve(problem, n)
        path_error = float((x[:PATH_SAMPLES].detach().double().cpu() - reference).pow(2).mean().sqrt())
    return Result(
        problem=problem.name,
        sampler=sampler.label,
        kind=sampler.kind,
        budget=budget,
        nfe=nfe,
        nll_gap=report.nll_gap,
        nll_limit=report.nll_limit,
        sw1_ratio=report.sw1 / report.sw1_limit,
        tv_ratio=report.tv / report.tv_limit if report.tv_limit > 0 else 0.0,
        at_floor=report.at_floor(),
        seconds=seconds,
        path_error=path_error,
    )
