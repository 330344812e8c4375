"""User-facing samplers: ``pc_sample``, ``sample`` (SDE methods) and ``ode_sample`` (probability flow).

All share one loop over a fixed time grid (:func:`_run_grid`) that provides the
conventions of docs/design.md: ``generator`` for every draw, a true score-call count in
``info.nfe``, a tqdm bar, a per-step ``callback`` and a check for non-finite states
that names the step and time. The check costs no host synchronisation in the loop:
the index of the first bad step is kept on the device and read back once, at the end.

Choosing a sampler, briefly: ``sample(method="ancestral")`` or ``pc_sample`` with
1000 steps reproduce the SDE paper; ``ode_sample(method="heun")`` gives
deterministic samples (and an encoder, via ``x_T=``) at a few hundred NFE.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torchsde
from torch import Tensor
from tqdm.auto import tqdm

from sdekit.checks import batch_view, check_nonnegative_int, check_open_interval, check_shape
from sdekit.grids import check_grid, make_grid
from sdekit.reverse import ScoreFn, probability_flow, reverse
from sdekit.sde import SDE, LinearSDE, time_checks
from sdekit.solvers import CORRECTORS, ODE_METHODS, PREDICTORS, SDE_STEPPERS, CountedScore, StepperFactory
from sdekit.solvers.adaptive_ode import TABLEAUS, OdeStats, solve_ivp_batched
from sdekit.solvers.adaptive_sde import adaptive_sde_sample

__all__ = ["SampleInfo", "pc_sample", "sample", "ode_sample", "default_eps", "sde_methods", "ode_methods"]

#: torchsde's methods for Itô SDEs with diagonal noise, usable as ``sample(method="torchsde:<name>")``.
TORCHSDE_METHODS = ("euler", "milstein", "srk")
Callback = Callable[[dict[str, Any]], None]


def sde_methods() -> list[str]:
    """``sample(method=...)`` names: every predictor but "none", and every registered SDE stepper."""
    predictors = [name for name in PREDICTORS.names() if name != "none"]
    return sorted(predictors + SDE_STEPPERS.names() + ["adaptive"] + [f"torchsde:{m}" for m in TORCHSDE_METHODS])


@dataclass
class SampleInfo:
    """What a sampler did: ``nfe`` true score calls (one batched call = 1), ``steps`` taken,
    ``rejected`` steps (adaptive methods), and the time ``grid`` used (float64, CPU)."""

    nfe: int
    steps: int
    rejected: int
    grid: Tensor


def default_eps(sde: SDE) -> float:
    """The end time samplers stop at by default: 1e-5 for VE-type SDEs (α ≡ 1), 1e-3 otherwise."""
    if isinstance(sde, LinearSDE) and float(sde.log_mean_coeff(torch.tensor([sde.T], dtype=torch.float64))) == 0.0:
        return 1e-5
    return 1e-3


@dataclass(frozen=True)
class _Inputs:
    """The arguments every sampler takes about its start, noise, device and score, passed through as given."""

    x_T: Tensor | None  # noqa: N815 (the public argument's name)
    generator: torch.Generator | None
    device: torch.device | str | None
    dtype: torch.dtype
    autocast: torch.dtype | None
    compile: bool | Mapping[str, Any]


@dataclass
class _Setup:
    x: Tensor
    grid: Tensor  # float64, CPU
    score: CountedScore
    eps: float
    generator: torch.Generator | None


def _prepare(
    sde: SDE,
    score: ScoreFn,
    shape: tuple[int, ...] | None,
    inputs: _Inputs,
    *,
    steps: int,
    grid: str | Tensor | None,
    eps: float | None,
) -> _Setup:
    """Validate the common arguments, build the grid, draw (or check) x_T."""
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an sdekit.SDE, got {type(sde).__name__}")
    counted = CountedScore(score, autocast=inputs.autocast, compile=inputs.compile)
    if grid is None:
        grid = "uniform"
    if isinstance(grid, str):
        eps = default_eps(sde) if eps is None else check_open_interval("eps", eps, 0.0, sde.T)
        times = make_grid(grid, sde, steps, eps)
    else:
        times = check_grid(grid, sde)
        if eps is not None and abs(float(times[-1]) - eps) > 1e-12:
            raise ValueError(f"eps={eps!r} disagrees with the explicit grid, which ends at {float(times[-1])!r}")
        eps = float(times[-1])
    x = _initial_state(sde, score, shape, inputs.x_T, inputs.generator, inputs.device, inputs.dtype)
    return _Setup(x, times, counted, eps, inputs.generator)


def _default_grid(method: object, grid: str | Tensor | None) -> str | Tensor:
    """The user's grid, else the method's preferred one (``default_grid``), else uniform in t."""
    return grid if grid is not None else str(getattr(method, "default_grid", "uniform"))


def _initial_state(
    sde: SDE,
    score: ScoreFn,
    shape: tuple[int, ...] | None,
    x_T: Tensor | None,
    generator: torch.Generator | None,
    device: torch.device | str | None,
    dtype: torch.dtype,
) -> Tensor:
    if x_T is None:
        if shape is None:
            raise TypeError("give shape=(batch, *event) or x_T=")
        return sde.prior_sample(
            check_shape("shape", shape), generator=generator, device=_device(score, device), dtype=dtype
        )
    if not isinstance(x_T, Tensor):
        raise TypeError(f"x_T must be a torch.Tensor, got {type(x_T).__name__}")
    if shape is not None and tuple(check_shape("shape", shape)) != tuple(x_T.shape):
        raise ValueError(f"shape {tuple(shape)} disagrees with x_T's shape {tuple(x_T.shape)}")
    if x_T.ndim < 2:
        raise ValueError(f"x_T must have shape (batch, *event), got {tuple(x_T.shape)}")
    return x_T.to(device=device if device is not None else x_T.device, dtype=dtype)


def _device(score: ScoreFn, device: torch.device | str | None) -> torch.device:
    """``device`` if given, else the device of the score module's first parameter, else CPU."""
    if device is not None:
        return torch.device(device)
    if isinstance(score, torch.nn.Module):
        for parameter in score.parameters():
            return parameter.device
    return torch.device("cpu")


class _FiniteGuard:
    """Remembers, on the device, the first step after which the state was not finite."""

    def __init__(self, grid: Tensor, device: torch.device) -> None:
        self.grid = grid
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def observe(self, x: Tensor, i: int) -> None:
        # One reduction: a NaN or Inf anywhere makes the sum non-finite.
        failed = ~torch.isfinite(x.sum(dtype=torch.float64 if x.dtype == torch.float64 else torch.float32))
        self.first_bad = self.first_bad.masked_fill(failed & (self.first_bad < 0), i)

    def check(self) -> None:
        i = int(self.first_bad)
        if i < 0:
            return
        last = len(self.grid) - 1
        where = (
            f"step {i} of {last} (t = {float(self.grid[i]):.6g} -> {float(self.grid[i + 1]):.6g})"
            if i < last
            else f"the final denoising step (t = {float(self.grid[-1]):.6g})"
        )
        raise FloatingPointError(
            f"non-finite state after {where}: the score returned NaN/Inf or the step diverged; "
            "check the score network, or use more steps or a more robust method (ancestral)"
        )


def _check_finite(x: Tensor, grid: Tensor, i: int) -> None:
    """Raise the sampler's FloatingPointError if ``x``, the state after step ``i`` of ``grid``, is not finite."""
    guard = _FiniteGuard(grid, x.device)
    guard.observe(x, i)
    guard.check()


Step = Callable[[Tensor, int], Tensor]


def _run_grid(
    step: Step,
    setup: _Setup,
    *,
    progress: bool,
    callback: Callback | None,
) -> Tensor:
    """Apply ``step(x, i)`` (grid[i] → grid[i + 1]) along the grid, with bar, callback and finite check.

    Nothing in the loop waits for the device: the finite check records the first bad step
    on the device and is read once, after the last step.
    """
    x = setup.x
    times = setup.grid.tolist()
    guard = _FiniteGuard(setup.grid, x.device)
    with torch.no_grad(), time_checks(False):
        for i in tqdm(range(len(times) - 1), disable=not progress, desc="sampling", unit="step"):
            x = step(x, i)
            guard.observe(x, i)
            if callback is not None:
                callback({"x": x, "i": i, "t": times[i], "t_next": times[i + 1]})
    guard.check()
    return x


def _run_stepper(
    factory: StepperFactory,
    sde: SDE,
    setup: _Setup,
    progress: bool,
    callback: Callback | None,
    denoise: bool,
    return_info: bool,
) -> Tensor | tuple[Tensor, SampleInfo]:
    """Build the method's stepper for the grid, run it, and finish (denoise, info)."""
    stepper = factory(sde, setup.score, setup.grid.to(setup.x.device), setup.generator)
    x = _run_grid(stepper.step, setup, progress=progress, callback=callback)
    return _finish(sde, setup, x, denoise, return_info)


def _denoise(sde: SDE, setup: _Setup, x: Tensor) -> Tensor:
    """Tweedie's formula at the last time: x̂_0 = (x + σ² s(x, t))/α. One score call."""
    if not isinstance(sde, LinearSDE):
        raise TypeError(
            f"denoise=True needs a LinearSDE (Gaussian kernel); pass denoise=False for {type(sde).__name__}"
        )
    t = torch.full((1,), setup.eps, dtype=torch.float64, device=x.device)
    with torch.no_grad(), time_checks(False):
        alpha, sigma = sde.kernel(t)
        denoised = (x + batch_view(sigma**2, x) * setup.score(x, t)) / batch_view(alpha, x)
    _check_finite(denoised, setup.grid, len(setup.grid) - 1)
    return denoised


def _finish(
    sde: SDE,
    setup: _Setup,
    x: Tensor,
    denoise: bool,
    return_info: bool,
    *,
    steps: int | None = None,
    rejected: int = 0,
) -> Tensor | tuple[Tensor, SampleInfo]:
    """Denoise if asked, and attach the info (steps default to the grid's)."""
    if denoise:
        x = _denoise(sde, setup, x)
    return (x, _info(setup, steps, rejected)) if return_info else x


def _info(setup: _Setup, steps: int | None, rejected: int) -> SampleInfo:
    steps = len(setup.grid) - 1 if steps is None else steps
    return SampleInfo(nfe=setup.score.nfe, steps=steps, rejected=rejected, grid=setup.grid)


def pc_sample(
    sde: SDE,
    score: ScoreFn,
    shape: tuple[int, ...] | None = None,
    *,
    steps: int = 1000,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    snr: float = 0.16,
    corrector_steps: int = 1,
    eps: float | None = None,
    grid: str | Tensor | None = None,
    denoise: bool = True,
    x_T: Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    callback: Callback | None = None,
    return_info: bool = False,
    autocast: torch.dtype | None = None,
    compile: bool | Mapping[str, Any] = False,
) -> Tensor | tuple[Tensor, SampleInfo]:
    """Predictor–corrector sampling (Song et al. 2021, Algorithm 1) of the reverse SDE.

    Each of ``steps`` steps runs the predictor from t to t' and then
    ``corrector_steps`` corrector moves at t'; finally (``denoise=True``) one
    Tweedie step removes the noise left at ``eps``. NFE = steps × (predictor +
    corrector_steps × corrector calls) + 1. ``predictor`` is one of
    :data:`sdekit.solvers.PREDICTORS`, ``corrector`` one of :data:`sdekit.solvers.CORRECTORS`;
    either may be ``"none"``. ``grid`` is a name from :mod:`sdekit.grids` or an
    explicit decreasing tensor of times (default: uniform in t, or the method's
    preferred grid — log-SNR for exponential integrators). ``x_T`` replaces the prior draw.

    Speed options: ``autocast=torch.bfloat16`` (or ``torch.float16``, on CUDA) runs the score
    network in mixed precision while the solver's state stays in ``dtype``; ``compile=True``
    compiles the score with ``torch.compile`` (on CUDA as a CUDA graph, ``mode="reduce-overhead"``;
    a mapping is passed as ``torch.compile``'s options) — worth it for long runs of one shape.

    Returns the samples, or ``(samples, SampleInfo)`` with ``return_info=True``.
    """
    check_nonnegative_int("corrector_steps", corrector_steps)
    predictor_cls = PREDICTORS.get(predictor)
    corrector_cls = CORRECTORS.get(corrector)
    inputs = _Inputs(x_T, generator, device, dtype, autocast, compile)
    setup = _prepare(sde, score, shape, inputs, steps=steps, grid=grid, eps=eps)
    grid_on_device = setup.grid.to(setup.x.device)
    predict = predictor_cls(sde, setup.score, grid_on_device, generator)
    correct = corrector_cls(sde, setup.score, grid_on_device, generator, snr=snr)

    def step(x: Tensor, i: int) -> Tensor:
        x = predict.step(x, i)
        for _ in range(corrector_steps):
            x = correct.step(x, i)
        return x

    x = _run_grid(step, setup, progress=progress, callback=callback)
    return _finish(sde, setup, x, denoise, return_info)


def sample(
    sde: SDE,
    score: ScoreFn,
    shape: tuple[int, ...] | None = None,
    *,
    method: str = "euler_maruyama",
    steps: int = 1000,
    eps: float | None = None,
    grid: str | Tensor | None = None,
    denoise: bool = True,
    x_T: Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    callback: Callback | None = None,
    return_info: bool = False,
    autocast: torch.dtype | None = None,
    compile: bool | Mapping[str, Any] = False,
    **options: Any,
) -> Tensor | tuple[Tensor, SampleInfo]:
    """Sample the reverse SDE with one of :func:`sde_methods`.

    Fixed-grid methods take ``steps`` and ``grid``: a predictor without corrector
    (``ancestral`` is the most robust at small step counts, ``euler_maruyama`` needs
    the most) or a registered stepper (``dpmpp_2m_sde``). ``method="adaptive"`` chooses
    its own per-sample steps and takes the options of
    :func:`sdekit.solvers.adaptive_sde.adaptive_sde_sample` (``rtol``, ``atol``,
    ``h_init``, ``safety``, ``exponent``, ``norm``, ``error_use_prev``, ``extrapolate``);
    its ``info.steps`` and ``info.rejected`` are per-sample steps summed over the batch.
    ``method="torchsde:euler" | "torchsde:milstein" | "torchsde:srk"`` hands the reverse
    SDE to ``torchsde.sdeint`` with dt = (T − eps)/steps (options ``adaptive``,
    ``rtol``, ``atol`` for torchsde's step-size control).
    See :func:`pc_sample` for the other arguments.
    """
    if not isinstance(method, str) or method not in sde_methods():
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(sde_methods())}")
    # A predictor is a fixed-grid stepper by itself (a PC sampler without corrector).
    steppers = SDE_STEPPERS if method in SDE_STEPPERS else PREDICTORS if method in PREDICTORS else None
    factory = steppers.get(method) if steppers is not None else None
    fixed_grid = factory is not None
    if fixed_grid and options:
        raise TypeError(f"method {method!r} takes no option(s) {', '.join(sorted(options))}")
    if not fixed_grid and grid is not None:
        raise TypeError(f"grid is not an option of method {method!r}: it chooses its own steps")
    if method.startswith("torchsde:") and callback is not None:
        raise TypeError(f"callback is not an option of method {method!r}: torchsde runs the steps")
    inputs = _Inputs(x_T, generator, device, dtype, autocast, compile)
    steps_or_one = 1 if method == "adaptive" else steps
    grid_or_none = _default_grid(factory, grid) if factory is not None else None
    setup = _prepare(sde, score, shape, inputs, steps=steps_or_one, grid=grid_or_none, eps=eps)
    if factory is not None:
        return _run_stepper(factory, sde, setup, progress, callback, denoise, return_info)
    if method == "adaptive":
        x, stats = adaptive_sde_sample(
            sde,
            setup.score,
            setup.x,
            eps=setup.eps,
            generator=generator,
            progress=progress,
            callback=callback,
            **options,
        )
        return _finish(sde, setup, x, denoise, return_info, steps=stats.steps, rejected=stats.rejected)
    x = _torchsde_solve(sde, setup, method.removeprefix("torchsde:"), steps, generator, **options)
    return _finish(sde, setup, x, denoise, return_info)


def _torchsde_solve(
    sde: SDE,
    setup: _Setup,
    method: str,
    steps: int,
    generator: torch.Generator | None,
    *,
    adaptive: bool = False,
    rtol: float = 1e-5,
    atol: float = 1e-4,
) -> Tensor:
    """Solve the reverse SDE with ``torchsde.sdeint`` in reversed time s = T − t, on flattened states.

    ``steps`` sets dt = (T − eps)/steps (the first step with ``adaptive=True``). The
    Brownian motion is a ``torchsde.BrownianInterval`` seeded from ``generator``, so
    results are reproducible from it; NFE counts the drift's score calls.
    """
    x = setup.x
    length = sde.T - setup.eps
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device if generator else "cpu"))
    flat = x.reshape(x.shape[0], -1)
    ts = torch.tensor([0.0, length], dtype=x.dtype, device=x.device)
    bm = torchsde.BrownianInterval(
        t0=0.0,
        t1=float(ts[-1]),  # the state dtype's rounding of T − eps, as sdeint sees it
        size=flat.shape,
        dtype=x.dtype,
        device=x.device,
        entropy=seed,
        levy_area_approximation="space-time" if method == "srk" else "none",  # SRK needs the Lévy area
    )
    rsde = reverse(sde, setup.score, event_shape=tuple(x.shape[1:]))
    with torch.no_grad(), time_checks(False):
        path = torchsde.sdeint(
            rsde, flat, ts, bm=bm, method=method, dt=length / steps, adaptive=adaptive, rtol=rtol, atol=atol
        )
    result = path[-1].reshape(x.shape)
    _check_finite(result, setup.grid, 0)
    return result


def ode_methods() -> list[str]:
    """``ode_sample(method=...)`` names: fixed-grid :data:`sdekit.solvers.ODE_METHODS` and adaptive pairs."""
    return sorted(ODE_METHODS.names() + list(TABLEAUS))


def ode_sample(
    sde: SDE,
    score: ScoreFn,
    shape: tuple[int, ...] | None = None,
    *,
    method: str = "heun",
    steps: int = 100,
    eps: float | None = None,
    grid: str | Tensor | None = None,
    denoise: bool = True,
    x_T: Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    callback: Callback | None = None,
    return_info: bool = False,
    autocast: torch.dtype | None = None,
    compile: bool | Mapping[str, Any] = False,
    **options: Any,
) -> Tensor | tuple[Tensor, SampleInfo]:
    """Integrate the probability-flow ODE from T to ``eps``.

    Deterministic given ``x_T`` (drawn from the prior with ``generator`` when not
    given), so it also maps given latents to data. Fixed-grid methods
    (:data:`sdekit.solvers.ODE_METHODS`): ``euler`` (order 1, 1 NFE/step), ``heun``
    (order 2, 2 NFE/step), ``rk4`` (order 4, 4 NFE/step), ``dpmpp_2m`` / ``dpmpp_3m``
    (1 NFE/step, log-SNR grid by default — the choice below ~20 NFE).

    Adaptive methods ``dopri5`` and ``bosh3`` (or any torchdiffeq method with
    ``backend="torchdiffeq"``) take the options of
    :func:`sdekit.solvers.adaptive_ode.solve_ivp_batched`: ``rtol``, ``atol``
    (both 1e-5 by default), ``backend`` ("native", "torchdiffeq", "scipy"),
    ``t_eval``, ``h_init``, ``max_steps``, ``error_norm``. Error control is per
    sample. With ``t_eval`` (times from T down to eps) the result is the stack of raw
    states at those times, shape ``(len(t_eval), *x.shape)``, not denoised. The
    progress bar counts NFE; ``callback`` is for fixed-grid methods only.
    """
    fixed_grid = isinstance(method, str) and method in ODE_METHODS and "backend" not in options
    if not fixed_grid and not (method in TABLEAUS or options.get("backend", "native") != "native"):
        raise ValueError(f"unknown ODE method {method!r}; valid: {', '.join(ode_methods())}")
    if fixed_grid and options:
        raise TypeError(f"method {method!r} takes no option(s) {', '.join(sorted(options))}")
    if not fixed_grid and (grid is not None or callback is not None):
        raise TypeError(f"grid and callback are not options of the adaptive method {method!r}")
    factory = ODE_METHODS.get(method) if fixed_grid else None
    inputs = _Inputs(x_T, generator, device, dtype, autocast, compile)
    grid_or_none = _default_grid(factory, grid) if factory is not None else None
    setup = _prepare(sde, score, shape, inputs, steps=steps if fixed_grid else 1, grid=grid_or_none, eps=eps)
    if factory is not None:
        return _run_stepper(factory, sde, setup, progress, callback, denoise, return_info)
    x, stats = _adaptive_flow(sde, setup, method, progress, options)
    if options.get("t_eval") is not None:
        return (x, _info(setup, stats.steps, stats.rejected)) if return_info else x
    return _finish(sde, setup, x, denoise, return_info, steps=stats.steps, rejected=stats.rejected)


def _adaptive_flow(
    sde: SDE, setup: _Setup, method: str, progress: bool, options: dict[str, Any]
) -> tuple[Tensor, OdeStats]:
    """Integrate the flow from T to eps with :func:`solve_ivp_batched`, a tqdm bar counting NFE."""
    flow = probability_flow(sde, setup.score)
    with torch.no_grad(), tqdm(disable=not progress, desc="sampling", unit="NFE") as bar:

        def velocity(t: Tensor, y: Tensor) -> Tensor:
            bar.update(1)
            return flow.drift(y, t)

        return solve_ivp_batched(velocity, setup.x, sde.T, setup.eps, method=method, **options)
