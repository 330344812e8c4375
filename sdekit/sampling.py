"""User-facing samplers: ``pc_sample``, ``sample`` (SDE methods) and ``ode_sample`` (probability flow).

All three resolve their ``method`` (a registered name with options, or a configured object, see
:mod:`sdekit.solvers.method`) and run it through one path (:func:`_solve`) that provides the
conventions of docs/design.md: validation at the call, ``generator`` for every draw, a true
score-call count in ``info.nfe``, a tqdm bar, one ``callback`` payload for every method, a
check for non-finite states that names the step and time, the final denoising step, and one
:class:`SampleInfo`. A fixed-grid method is started for the grid and stepped through the solve
loop (:func:`sdekit.solvers.loop.run_loop`), as the adaptive solvers' iterations are; an
integrator (adaptive solvers, torchsde) is handed the state and returns its result. The finite
check costs no host synchronisation in the loop: the index of the first bad step is kept on the
device and read back once, at the end.

``callback(payload)`` is called after every step (every iteration of an adaptive method)
with ``x`` (the state), ``i`` (the step or iteration), ``t`` (on a grid the step's start, a
float; for the adaptive SDE solver the active samples' times after the iteration), and
``denoised`` with ``denoised_t``: Tweedie's estimate x̂₀ = (x' + σ² s)/α from the latest score
call, at that call's input x' and time (for a multi-stage or predictor–corrector step the last
stage's; ``None`` before any score call or for an SDE without a Gaussian kernel). ``denoised``
is computed only when read. Fixed-grid methods add ``t_next``; the adaptive SDE solver ``h``,
``index`` and ``accepted``. While a callback is given, the latest call's input and output stay
referenced until the next call (about two states of memory).

Choosing a sampler, briefly: ``sdekit.best_method(nfe)`` for a budget of score calls;
``sample(method="ancestral", grid="uniform")`` or ``pc_sample(..., grid="uniform")`` with 1000 steps
reproduce the SDE paper (the default grid is uniform in log-SNR); ``ode_sample(method="heun")`` gives
deterministic samples (and an encoder, via ``x_T=``) at a few hundred NFE.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, overload

import torch
from torch import Tensor

from sdekit.checks import (
    batch_view,
    check_fits,
    check_open_interval,
    check_positive_int,
    check_shape,
    state_dtype,
)
from sdekit.constraints import Constraint
from sdekit.grids import check_grid, make_grid
from sdekit.per_sample import GeneratorLike, Generators, SampleGenerators, as_generators, randn_like
from sdekit.reverse import ScoreFn
from sdekit.sde import SDE, LinearSDE, time_checks
from sdekit.solvers import (
    CORRECTORS,
    Callback,
    Corrector,
    CountedScore,
    GridStepper,
    Integrator,
    Method,
    Predictor,
    PredictorCorrector,
    SampleInfo,
    ode_method,
    ode_methods,
    sde_method,
    sde_methods,
)
from sdekit.solvers.adaptive_ode import AdaptiveODE
from sdekit.solvers.catalog import method_label
from sdekit.solvers.loop import run_loop

__all__ = ["SampleInfo", "pc_sample", "sample", "ode_sample", "default_eps", "sde_methods", "ode_methods"]


#: Host memory a run holds per grid step (the grid and each method's per-step coefficient tables, as
#: Python floats and tensor views): measured 1.0–1.5 KB for ancestral, Euler–Maruyama and DPM-Solver++(2M)
#: at 2·10⁶ steps; requests that cannot fit are refused before any work.
BYTES_PER_STEP = 2048


def default_eps(sde: SDE) -> float:
    """The end time samplers stop at by default: the SDE's own ``default_eps`` if it sets one (EDM's σ_min),
    else 1e-5 for VE-type SDEs (α ≡ 1) and 1e-3 otherwise."""
    if sde.default_eps is not None:
        return sde.default_eps
    if isinstance(sde, LinearSDE) and float(sde.log_mean_coeff(torch.tensor([sde.T], dtype=torch.float64))) == 0.0:
        return 1e-5
    return 1e-3


@dataclass(frozen=True)
class _Inputs:
    """The arguments every sampler takes about its start, noise, device and score, passed through as given."""

    x_T: Tensor | None  # noqa: N815 (the public argument's name)
    generator: GeneratorLike
    device: torch.device | str | None
    dtype: torch.dtype | None
    autocast: torch.dtype | None
    compile: bool | Mapping[str, Any]
    denoise: bool
    t_start: float | None = None
    constraint: Constraint | None = None


@dataclass
class _Setup:
    x: Tensor
    grid: Tensor  # float64, CPU
    score: CountedScore
    eps: float
    generator: Generators | None


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
    if inputs.denoise and not isinstance(sde, LinearSDE):  # refused before the run, not after it
        raise TypeError(
            f"denoise=True needs a LinearSDE (Gaussian kernel); pass denoise=False for {type(sde).__name__}"
        )
    seeds_device = inputs.x_T.device if isinstance(inputs.x_T, Tensor) and inputs.device is None else None
    generator = as_generators("generator", inputs.generator, device=seeds_device or _device(score, inputs.device))
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
    dtype = state_dtype(inputs.dtype, inputs.x_T, score)
    x = _initial_state(sde, score, shape, inputs.x_T, generator, inputs.device, dtype)
    return _Setup(x, times, counted, eps, generator)


def _initial_state(
    sde: SDE,
    score: ScoreFn,
    shape: tuple[int, ...] | None,
    x_T: Tensor | None,
    generator: Generators | None,
    device: torch.device | str | None,
    dtype: torch.dtype,
) -> Tensor:
    if x_T is None:
        if shape is None:
            raise TypeError("give shape=(batch, *event) or x_T=")
        shape = check_shape("shape", shape)
        if len(shape) < 2:
            raise ValueError(
                f"shape must be (batch, *event) with an event of at least one dimension, got {shape}; "
                f"for scalar data use shape=({shape[0]}, 1)"
            )
        if isinstance(generator, SampleGenerators):  # row b from generator b: the SDE's own prior, row by row
            generator.check_batch(shape[0])
            rows = [
                sde.prior_sample((1, *shape[1:]), generator=g, device=_device(score, device), dtype=dtype)
                for g in generator.generators
            ]
            return torch.cat(rows)
        return sde.prior_sample(shape, generator=generator, device=_device(score, device), dtype=dtype)
    if not isinstance(x_T, Tensor):
        raise TypeError(f"x_T must be a torch.Tensor, got {type(x_T).__name__}")
    if shape is not None and tuple(check_shape("shape", shape)) != tuple(x_T.shape):
        raise ValueError(f"shape {tuple(shape)} disagrees with x_T's shape {tuple(x_T.shape)}")
    if x_T.ndim < 2:
        raise ValueError(f"x_T must have shape (batch, *event), got {tuple(x_T.shape)}; for scalar data use (batch, 1)")
    if x_T.device.type == "meta":
        raise ValueError("x_T is on device 'meta', which holds no data; give x_T on 'cpu' or 'cuda'")
    if isinstance(generator, SampleGenerators):
        generator.check_batch(x_T.shape[0])
    finite = torch.isfinite(x_T).flatten(1).all(1)  # one host synchronisation, before any work
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0])
        raise ValueError(f"x_T must be finite; sample {bad} (of {x_T.shape[0]}) contains NaN or Inf")
    return x_T.to(device=_device(score, device) if device is not None else x_T.device, dtype=dtype)


def _device(score: ScoreFn, device: torch.device | str | None) -> torch.device:
    """``device`` if given, else the device of the score module's first parameter, else CPU."""
    if device is not None:
        device = torch.device(device)
        if device.type == "meta":
            raise ValueError("device 'meta' holds no data, so nothing can be sampled on it; use 'cpu' or 'cuda'")
        return device
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
            f"non-finite state after {where}: the score returned NaN/Inf, the step diverged, or a callback "
            "returned such a state; "
            "check the score network, or use more steps or a more robust method (ancestral)"
        )


def _check_finite(x: Tensor, grid: Tensor, i: int) -> None:
    """Raise the sampler's FloatingPointError if ``x``, the state after step ``i`` of ``grid``, is not finite."""
    guard = _FiniteGuard(grid, x.device)
    guard.observe(x, i)
    guard.check()


class _GridRun:
    """A started fixed-grid method stepping along its grid (grid[i] → grid[i + 1]), as a :class:`Run`.

    Nothing here waits for the device: the finite check records the first bad step on the device
    and is read once, after the last step (:meth:`finish`). A constraint with ``resample`` r > 1
    runs each block of ``jump_length`` steps r times (RePaint): between passes the state is noised
    back to the block's first time by the forward transition kernel, and the method restarts on
    the block.
    """

    def __init__(self, stepper: GridStepper, setup: _Setup, sde: SDE, constraint: Constraint | None = None) -> None:
        self.stepper, self.x, self.sde = stepper, setup.x, sde
        self.grid, self.times = setup.grid, setup.grid.tolist()
        self.guard = _FiniteGuard(setup.grid, setup.x.device)
        self.constraint, self.generator, self.score = constraint, setup.generator, setup.score
        self.resample = int(getattr(constraint, "resample", 1))
        jump = int(getattr(constraint, "jump_length", 1))
        if self.resample < 1 or jump < 1:
            raise ValueError(f"constraint resample and jump_length must be >= 1, got {self.resample}, {jump}")
        if self.resample > 1 and not isinstance(sde, LinearSDE):
            raise TypeError(f"resample needs a LinearSDE (its forward transition kernel), got {type(sde).__name__}")
        n = len(self.times) - 1
        self.blocks = [(b, min(b + jump, n)) for b in range(0, n, jump)] if self.resample > 1 else [(0, n)]
        self.block, self.passes, self.local = 0, 0, 0  # where the run is: block, finished passes, step in the pass
        self.last = -1  # the grid step just taken
        self.steps_taken, self.renoise_pending = 0, False
        if constraint is not None:  # the known part of the start, too, is a draw at the first time
            self.x = constraint.project(self.x, self.times[0], self.generator)

    @property
    def total(self) -> int:
        return sum(e - b for b, e in self.blocks) * self.resample

    @property
    def done(self) -> bool:
        return self.block == len(self.blocks)

    def advance(self) -> int:
        b, e = self.blocks[self.block]
        if self.renoise_pending:  # back up the block: x_b = a x_e + √v z, the forward transition e → b
            self.x = self._renoise(self.x, self.times[b], self.times[e])
            self.renoise_pending = False
        if self.resample > 1 and self.local == 0:  # each pass restarts the method on its block
            self.stepper = self.stepper.start(self.sde, self.score, self.grid[b : e + 1], self.generator)
        i = b + self.local
        self.x = self.stepper.step(self.x, self.local if self.resample > 1 else i)
        if self.constraint is not None:  # the state is now at times[i + 1]
            self.x = self.constraint.project(self.x, self.times[i + 1], self.generator)
        self.guard.observe(self.x, i)
        self.last, self.local, self.steps_taken = i, self.local + 1, self.steps_taken + 1
        if b + self.local == e:
            self.local, self.passes = 0, self.passes + 1
            if self.passes < self.resample:
                self.renoise_pending = True
            else:
                self.block, self.passes = self.block + 1, 0
        return 1

    def _renoise(self, x: Tensor, t: float, t_next: float) -> Tensor:
        assert isinstance(self.sde, LinearSDE)
        a, v = self.sde.transition(torch.tensor([t], dtype=torch.float64), torch.tensor([t_next], dtype=torch.float64))
        z = randn_like(x, self.generator)
        return float(a) * x + float(v.sqrt()) * z

    def replace(self, x: Tensor) -> None:
        """A callback's replacement of the state: same shape, dtype and device, finite (checked at the end)."""
        if x.shape != self.x.shape or x.dtype != self.x.dtype or x.device != self.x.device:
            raise ValueError(
                f"callback returned a state of shape {tuple(x.shape)}, {x.dtype} on {x.device}; the state is "
                f"{tuple(self.x.shape)}, {self.x.dtype} on {self.x.device}"
            )
        self.x = x
        self.guard.observe(self.x, self.last)

    def payload(self) -> dict[str, Any]:
        i = self.last
        return {"x": self.x, "i": i, "t": self.times[i], "t_next": self.times[i + 1]}

    def finish(self) -> Tensor:
        self.guard.check()
        return self.x


def _run_grid(
    stepper: GridStepper,
    setup: _Setup,
    sde: SDE,
    *,
    progress: bool,
    callback: Callback | None,
    constraint: Constraint | None = None,
) -> tuple[Tensor, int]:
    """Step the started method along the grid through the solve loop, check the state was finite; (x, steps)."""
    run = _GridRun(stepper, setup, sde, constraint)
    run_loop(run, progress=progress, callback=callback, total=run.total)
    return run.finish(), run.steps_taken


def _tweedie(sde: LinearSDE, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
    """x̂₀ = (x + σ(t)² s)/α(t), the kernel in float64, the result in x's dtype."""
    alpha, sigma = sde.kernel(t.double())
    return (x + batch_view((sigma**2).to(x.dtype), x) * score) / batch_view(alpha.to(x.dtype), x)


_PENDING = object()


class _Payload(dict[str, Any]):
    """The callback's payload; ``denoised`` is computed only when it is read (it costs a few passes over x)."""

    def __init__(self, items: dict[str, Any], denoise: Callable[[], Tensor | None]) -> None:
        super().__init__(items, denoised=_PENDING)
        self._denoise = denoise

    def __getitem__(self, key: str) -> Any:
        value = dict.__getitem__(self, key)
        if value is _PENDING:
            value = self._denoise()
            dict.__setitem__(self, key, value)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self.__getitem__(key) if dict.__contains__(self, key) else default

    def __iter__(self) -> Iterator[str]:  # also makes dict(payload) and {**payload} read through __getitem__
        return iter(list(dict.keys(self)))

    def values(self) -> Any:
        return [self[key] for key in self]

    def items(self) -> Any:
        return [(key, self[key]) for key in self]


def _with_denoised(callback: Callback | None, sde: SDE, score: CountedScore) -> Callback | None:
    """The user's callback, its payload completed with ``denoised`` (read lazily) and ``denoised_t``.

    Both come from the score's latest call (its input and time): Tweedie's x̂₀ = (x' + σ² s)/α there.
    """
    if callback is None:
        return None
    if not callable(callback):
        raise TypeError(f"callback must be callable as callback(dict) or None, got {type(callback).__name__}")
    score.keep_last = True

    def complete(payload: dict[str, Any]) -> Any:
        last = score.last

        def denoise() -> Tensor | None:
            if not isinstance(sde, LinearSDE) or last is None:
                return None
            with torch.no_grad(), time_checks(False):
                return _tweedie(sde, *last)

        return callback(_Payload({**payload, "denoised_t": None if last is None else last[1]}, denoise))

    return complete


def _denoise(sde: SDE, setup: _Setup, x: Tensor) -> Tensor:
    """Tweedie's formula at the last time: x̂₀ = (x + σ² s(x, t))/α. One score call."""
    assert isinstance(sde, LinearSDE)  # checked by _prepare
    t = torch.full((1,), setup.eps, dtype=torch.float64, device=x.device)
    with torch.no_grad(), time_checks(False):
        denoised = _tweedie(sde, x, t, setup.score(x, t))
    _check_finite(denoised, setup.grid, len(setup.grid) - 1)
    return denoised


def _solve(
    sde: SDE,
    score: ScoreFn,
    shape: tuple[int, ...] | None,
    method: Method,
    label: str,
    inputs: _Inputs,
    *,
    steps: int | None,
    default_steps: int,
    grid: str | Tensor | None,
    eps: float | None,
    progress: bool,
    callback: Callback | None,
) -> tuple[Tensor, SampleInfo]:
    """Every sampler's path: set up, run the method (stepped on its grid, or integrating), finish."""
    if inputs.t_start is not None:
        sde = _started_at(sde, inputs, grid, eps)
    if not isinstance(inputs.denoise, bool):
        raise TypeError(f"denoise must be a bool, got {type(inputs.denoise).__name__} {inputs.denoise!r}")
    if isinstance(method, Integrator) and not method.uses_steps:
        if steps is not None:
            raise TypeError(f"steps is not an option of method {label}: it chooses its own steps")
        steps = 1
    elif steps is None:
        steps = default_steps
    check_positive_int("steps", steps)
    check_fits(f"steps={steps}", steps * BYTES_PER_STEP, "use fewer steps (a few thousand suffice for any method here)")
    if isinstance(method, Integrator):
        if grid is not None:
            raise TypeError(f"grid is not an option of method {label}: it chooses its own steps")
        if callback is not None and not method.takes_callback:
            raise TypeError(f"callback is not an option of method {label} (it does not report its steps)")
        if inputs.constraint is not None and not method.takes_constraint:
            raise TypeError(
                f"constraint is not an option of method {label} yet: use a fixed-grid method or method='adaptive'"
            )
        if inputs.constraint is not None and int(getattr(inputs.constraint, "resample", 1)) > 1:
            raise ValueError(
                f"a constraint with resample > 1 (RePaint) needs a fixed grid of blocks; method {label} chooses its "
                "own steps: use a fixed-grid method"
            )
    setup = _prepare(
        sde,
        score,
        shape,
        inputs,
        steps=steps,
        grid=(grid if grid is not None else method.grid_for(sde)) if isinstance(method, GridStepper) else None,
        eps=eps,
    )
    complete = _with_denoised(callback, sde, setup.score)
    constraint = inputs.constraint
    if constraint is not None:
        if not isinstance(constraint, Constraint):
            raise TypeError(
                "constraint must have check(x), project(x, t, generator) and finish(x) (e.g. "
                f"sdekit.constraints.Imputation), got {type(constraint).__name__}"
            )
        constraint.check(setup.x, sde)
    if isinstance(method, GridStepper):
        stepper = method.start(sde, setup.score, setup.grid.to(setup.x.device), setup.generator)
        x, taken = _run_grid(stepper, setup, sde, progress=progress, callback=complete, constraint=constraint)
        info = SampleInfo(steps=taken, samples=x.shape[0])
    else:
        extra = {"constraint": constraint} if constraint is not None else {}
        x, info = method.integrate(
            sde,
            setup.score,
            setup.x,
            eps=setup.eps,
            steps=steps,
            generator=setup.generator,
            progress=progress,
            callback=complete,
            **extra,
        )
        _check_finite(x, setup.grid, 0)
    if inputs.denoise:
        x = _denoise(sde, setup, x)
    if constraint is not None:
        x = constraint.finish(x)
    return x, replace(info, nfe=setup.score.nfe, grid=setup.grid)


def _started_at(sde: SDE, inputs: _Inputs, grid: str | Tensor | None, eps: float | None) -> SDE:
    """The SDE on the shorter horizon [0, t_start]: the same schedules, so every method starts there.

    Named grids, adaptive methods and the torchsde/torchdiffeq/scipy backends all integrate
    from ``sde.T``; a copy with ``T = t_start`` moves the start of every one of them at once.
    """
    t_start = inputs.t_start
    if isinstance(t_start, Tensor) and t_start.numel() == 1:
        t_start = float(t_start)
    if isinstance(t_start, bool) or not isinstance(t_start, numbers.Real):
        raise TypeError(f"t_start must be a time (a float), got {type(t_start).__name__}")
    t_start = float(t_start)
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an sdekit.SDE, got {type(sde).__name__}")
    if inputs.x_T is None:
        raise TypeError("t_start needs x_T: the state at time t_start (e.g. an image noised to that level)")
    low = default_eps(sde) if eps is None else eps
    if isinstance(grid, Tensor):
        low = float(grid.detach().double().min())
    if not low < t_start <= sde.T:
        raise ValueError(f"t_start must lie in (eps, T] = ({low:g}, {sde.T:g}], got {t_start!r}")
    if isinstance(grid, Tensor):  # compared at the grid's own precision (a float32 grid holds 0.4 as 0.4000000059)
        first = float(grid.detach().double().reshape(-1)[0])
        resolution = 4 * torch.finfo(grid.dtype if grid.is_floating_point() else torch.float64).eps
        if abs(first - t_start) > resolution * max(1.0, abs(t_start)):
            raise ValueError(f"t_start={t_start!r} disagrees with the explicit grid, which starts at {first!r}")
        t_start = first
    started = copy.copy(sde)
    try:
        started.T = t_start
    except AttributeError as error:
        raise TypeError(f"t_start needs an SDE whose horizon T can be set; {type(sde).__name__}.T cannot") from error
    _check_same_schedule(sde, started, inputs.x_T, t_start)
    return started


def _check_same_schedule(sde: SDE, started: SDE, x_T: Tensor, t_start: float) -> None:
    """The copy with the shorter horizon must be the same process (an SDE whose formulas read T is not)."""
    probe = x_T[:1].detach().to("cpu", torch.float64) + 0.5  # shifted: a drift linear in x vanishes at 0
    times = torch.tensor([t_start, 0.5 * t_start], dtype=torch.float64)
    with time_checks(False):
        for t in times:
            t1 = t.reshape(1)
            same = torch.allclose(sde.drift(probe, t1), started.drift(probe, t1), rtol=1e-12, atol=0) and (
                torch.allclose(sde.diffusion(probe, t1), started.diffusion(probe, t1), rtol=1e-12, atol=0)
            )
            if not same:
                raise TypeError(
                    f"t_start needs an SDE whose drift and diffusion do not depend on its horizon T; "
                    f"{type(sde).__name__}'s change when T is set to t_start. Pass x_T with an explicit grid that "
                    "starts at t_start and leave t_start unset instead"
                )


def _corrector(corrector: str | Corrector, snr: float | None) -> Corrector:
    """``pc_sample``'s corrector: a name built with ``snr`` (default 0.16), or a configured object."""
    if isinstance(corrector, Corrector):
        if snr is not None:
            raise TypeError(
                f"snr is an option of the corrector object: give it there, as {type(corrector).__name__}(snr=...)"
            )
        return corrector
    if not isinstance(corrector, str):
        raise TypeError(f"corrector must be a registered name or a Corrector object, got {type(corrector).__name__}")
    return CORRECTORS.get(corrector)() if snr is None else CORRECTORS.get(corrector)(snr=snr)


@overload
def pc_sample(
    sde: SDE,
    score: ScoreFn,
    shape: tuple[int, ...] | None = None,
    *,
    steps: int | None = None,
    predictor: str | Predictor = "reverse_diffusion",
    corrector: str | Corrector = "langevin",
    snr: float | None = None,
    corrector_steps: int = 1,
    eps: float | None = None,
    grid: str | Tensor | None = None,
    denoise: bool = True,
    x_T: Tensor | None = None,
    t_start: float | None = None,
    constraint: Constraint | None = None,
    generator: GeneratorLike = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    return_info: Literal[False] = False,
    autocast: torch.dtype | None = None,
    compile: bool | Mapping[str, Any] = False,
) -> Tensor: ...
@overload
def pc_sample(
    sde: SDE,
    score: ScoreFn,
    shape: tuple[int, ...] | None = None,
    *,
    steps: int | None = None,
    predictor: str | Predictor = "reverse_diffusion",
    corrector: str | Corrector = "langevin",
    snr: float | None = None,
    corrector_steps: int = 1,
    eps: float | None = None,
    grid: str | Tensor | None = None,
    denoise: bool = True,
    x_T: Tensor | None = None,
    t_start: float | None = None,
    constraint: Constraint | None = None,
    generator: GeneratorLike = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    return_info: Literal[True],
    autocast: torch.dtype | None = None,
    compile: bool | Mapping[str, Any] = False,
) -> tuple[Tensor, SampleInfo]: ...
@overload
def pc_sample(
    sde: SDE,
    score: ScoreFn,
    shape: tuple[int, ...] | None = None,
    *,
    steps: int | None = None,
    predictor: str | Predictor = "reverse_diffusion",
    corrector: str | Corrector = "langevin",
    snr: float | None = None,
    corrector_steps: int = 1,
    eps: float | None = None,
    grid: str | Tensor | None = None,
    denoise: bool = True,
    x_T: Tensor | None = None,
    t_start: float | None = None,
    constraint: Constraint | None = None,
    generator: GeneratorLike = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    return_info: bool = False,
    autocast: torch.dtype | None = None,
    compile: bool | Mapping[str, Any] = False,
) -> Tensor | tuple[Tensor, SampleInfo]: ...
def pc_sample(
    sde: SDE,
    score: ScoreFn,
    shape: tuple[int, ...] | None = None,
    *,
    steps: int | None = None,
    predictor: str | Predictor = "reverse_diffusion",
    corrector: str | Corrector = "langevin",
    snr: float | None = None,
    corrector_steps: int = 1,
    eps: float | None = None,
    grid: str | Tensor | None = None,
    denoise: bool = True,
    x_T: Tensor | None = None,
    t_start: float | None = None,
    constraint: Constraint | None = None,
    generator: GeneratorLike = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    return_info: bool = False,
    autocast: torch.dtype | None = None,
    compile: bool | Mapping[str, Any] = False,
) -> Tensor | tuple[Tensor, SampleInfo]:
    """Predictor–corrector sampling (Song et al. 2021, Algorithm 1) of the reverse SDE.

    Each of ``steps`` steps (default 1000) runs the predictor from t to t' and then
    ``corrector_steps`` corrector moves at t'; finally (``denoise=True``) one
    Tweedie step removes the noise left at ``eps``. NFE = steps × (predictor +
    corrector_steps × corrector calls) + 1. ``predictor`` is a name of
    :data:`sdekit.solvers.PREDICTORS` or a configured predictor, ``corrector`` a name of
    :data:`sdekit.solvers.CORRECTORS` (built with ``snr``, default 0.16) or a configured
    corrector (``Langevin(snr=0.1)``); either may be ``"none"``. The same method as an object
    is :class:`sdekit.solvers.PredictorCorrector`, which :func:`sample` also takes. ``grid`` is
    a name from :mod:`sdekit.grids` or an explicit decreasing tensor of times (default: the
    log-SNR grid on a LinearSDE, uniform in t otherwise). ``x_T`` replaces the prior draw.

    ``sde`` is the forward SDE and ``score(x, t)`` its score (:data:`sdekit.ScoreFn`). ``shape`` is
    ``(B, *event_shape)``, the batch first (or None with ``x_T``); ``eps`` the last time (default
    1e-3 for VP-type SDEs, 1e-5 for VE), in the SDE's time units. ``generator`` makes every
    draw reproducible: one ``torch.Generator`` for the batch (default None: the global RNG), or
    one per sample — a list of B generators or of B int seeds (see
    :class:`sdekit.per_sample.SampleGenerators`) — so that a sample depends only on its own seed,
    at any batch size and position (up to rounding, which the adaptive solvers' step control
    amplifies: see the Reproducibility page). Two methods cannot honour that and refuse it: the batch-mean
    ``langevin`` corrector (one step size for the batch; use ``langevin_per_sample``) and torchsde's
    methods (one Brownian path for the batch). ``device`` and ``dtype`` are the state's: by default
    x_T's dtype, else the network's (the first floating parameter of a score that is an
    ``nn.Module``, as sdekit's adapters are), else float32; time and coefficients are float64
    whatever it is; ``progress=True`` shows a tqdm bar.

    ``t_start`` (SDEdit, image-to-image): ``x_T`` is a state at time ``t_start`` < T — an image
    noised to that level, e.g. ``α(t₀) x₀ + σ(t₀) z`` — and the sampler integrates from there:
    a named grid then has its ``steps`` steps on [eps, t_start], an adaptive method starts at
    t_start, and an explicit grid must begin at t_start. Smaller t_start keeps more of the
    image. Every sampler takes it; it needs ``x_T``.

    ``constraint`` (inpainting, imputation: :class:`sdekit.constraints.Imputation`) is applied
    after every step at the step's end time and to the output (after the denoising step), so
    the known part of each sample is held there. Fixed-grid methods only, for now.

    ``callback(payload)`` is called after every step with the state ``payload["x"]``, the step
    ``i``, its times ``t`` → ``t_next`` and, read lazily, Tweedie's ``denoised`` estimate. It may
    return a tensor of the state's shape, dtype and device, which replaces the state (fixed-grid
    methods); any other return value is ignored. Editing ``payload["x"]`` in place also works.

    Speed options: ``autocast=torch.bfloat16`` (or ``torch.float16``, on CUDA) runs the score
    network in mixed precision while the solver's state stays in ``dtype``; ``compile=True``
    compiles the score with ``torch.compile`` (on CUDA as a CUDA graph, ``mode="reduce-overhead"``;
    a mapping is passed as ``torch.compile``'s options) — worth it for long runs of one shape.

    Returns the samples, or ``(samples, SampleInfo)`` with ``return_info=True``. ``callback``
    receives the payload described in :mod:`sdekit.sampling`.
    """
    method = PredictorCorrector(
        predictor=predictor, corrector=_corrector(corrector, snr), corrector_steps=corrector_steps
    )
    inputs = _Inputs(x_T, generator, device, dtype, autocast, compile, denoise, t_start, constraint)
    x, info = _solve(
        sde,
        score,
        shape,
        method,
        "pc",
        inputs,
        steps=steps,
        default_steps=1000,
        grid=grid,
        eps=eps,
        progress=progress,
        callback=callback,
    )
    return (x, info) if return_info else x


@overload
def sample(
    sde: SDE,
    score: ScoreFn,
    shape: tuple[int, ...] | None = None,
    *,
    method: str | Method = "euler_maruyama",
    steps: int | None = None,
    eps: float | None = None,
    grid: str | Tensor | None = None,
    denoise: bool = True,
    x_T: Tensor | None = None,
    t_start: float | None = None,
    constraint: Constraint | None = None,
    generator: GeneratorLike = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    return_info: Literal[False] = False,
    autocast: torch.dtype | None = None,
    compile: bool | Mapping[str, Any] = False,
    **options: Any,
) -> Tensor: ...
@overload
def sample(
    sde: SDE,
    score: ScoreFn,
    shape: tuple[int, ...] | None = None,
    *,
    method: str | Method = "euler_maruyama",
    steps: int | None = None,
    eps: float | None = None,
    grid: str | Tensor | None = None,
    denoise: bool = True,
    x_T: Tensor | None = None,
    t_start: float | None = None,
    constraint: Constraint | None = None,
    generator: GeneratorLike = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    return_info: Literal[True],
    autocast: torch.dtype | None = None,
    compile: bool | Mapping[str, Any] = False,
    **options: Any,
) -> tuple[Tensor, SampleInfo]: ...
@overload
def sample(
    sde: SDE,
    score: ScoreFn,
    shape: tuple[int, ...] | None = None,
    *,
    method: str | Method = "euler_maruyama",
    steps: int | None = None,
    eps: float | None = None,
    grid: str | Tensor | None = None,
    denoise: bool = True,
    x_T: Tensor | None = None,
    t_start: float | None = None,
    constraint: Constraint | None = None,
    generator: GeneratorLike = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    return_info: bool = False,
    autocast: torch.dtype | None = None,
    compile: bool | Mapping[str, Any] = False,
    **options: Any,
) -> Tensor | tuple[Tensor, SampleInfo]: ...
def sample(
    sde: SDE,
    score: ScoreFn,
    shape: tuple[int, ...] | None = None,
    *,
    method: str | Method = "euler_maruyama",
    steps: int | None = None,
    eps: float | None = None,
    grid: str | Tensor | None = None,
    denoise: bool = True,
    x_T: Tensor | None = None,
    t_start: float | None = None,
    constraint: Constraint | None = None,
    generator: GeneratorLike = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    return_info: bool = False,
    autocast: torch.dtype | None = None,
    compile: bool | Mapping[str, Any] = False,
    **options: Any,
) -> Tensor | tuple[Tensor, SampleInfo]:
    """Sample the reverse SDE with a method of :func:`sde_methods`, by name or as a configured object.

    Fixed-grid methods take ``steps`` (default 1000) and ``grid``: a predictor without corrector
    (``ancestral`` is the most robust at small step counts, ``euler_maruyama`` needs
    the most), a registered stepper (``dpmpp_2m_sde``) or a
    :class:`~sdekit.solvers.PredictorCorrector`. ``method="adaptive"``
    (:class:`~sdekit.solvers.AdaptiveSDE`) chooses its own per-sample steps (giving ``steps`` or
    ``grid`` is an error) and takes the options
    of :func:`sdekit.solvers.adaptive_sde.adaptive_sde_sample` (``rtol``, ``atol``, ``h_init``,
    ``safety``, ``exponent``, ``norm``, ``error_use_prev``, ``extrapolate``); its ``info.steps``
    and ``info.rejected`` are per-sample steps summed over the batch, ``info.sample_steps`` the
    per-sample counts. ``method="torchsde:euler" | "torchsde:milstein" | "torchsde:srk"``
    (:class:`~sdekit.solvers.TorchSDE`) hands the reverse SDE to ``torchsde.sdeint`` with
    dt = (T − eps)/steps (options ``adaptive``, ``rtol``, ``atol``).

    ``options`` go to the named method (``sample(method="dpmpp_2m_sde", lower_order_final=False)``);
    an unknown option is a ``TypeError`` listing the valid ones. A method object carries its own
    options (``sample(method=AdaptiveSDE(rtol=0.02))``). See :func:`pc_sample` for the other arguments.
    """
    configured = sde_method(method, options)
    inputs = _Inputs(x_T, generator, device, dtype, autocast, compile, denoise, t_start, constraint)
    x, info = _solve(
        sde,
        score,
        shape,
        configured,
        method_label(method),
        inputs,
        steps=steps,
        default_steps=1000,
        grid=grid,
        eps=eps,
        progress=progress,
        callback=callback,
    )
    return (x, info) if return_info else x


@overload
def ode_sample(
    sde: SDE,
    score: ScoreFn,
    shape: tuple[int, ...] | None = None,
    *,
    method: str | Method = "heun",
    steps: int | None = None,
    eps: float | None = None,
    grid: str | Tensor | None = None,
    denoise: bool = True,
    x_T: Tensor | None = None,
    t_start: float | None = None,
    constraint: Constraint | None = None,
    generator: GeneratorLike = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    return_info: Literal[False] = False,
    autocast: torch.dtype | None = None,
    compile: bool | Mapping[str, Any] = False,
    **options: Any,
) -> Tensor: ...
@overload
def ode_sample(
    sde: SDE,
    score: ScoreFn,
    shape: tuple[int, ...] | None = None,
    *,
    method: str | Method = "heun",
    steps: int | None = None,
    eps: float | None = None,
    grid: str | Tensor | None = None,
    denoise: bool = True,
    x_T: Tensor | None = None,
    t_start: float | None = None,
    constraint: Constraint | None = None,
    generator: GeneratorLike = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    return_info: Literal[True],
    autocast: torch.dtype | None = None,
    compile: bool | Mapping[str, Any] = False,
    **options: Any,
) -> tuple[Tensor, SampleInfo]: ...
@overload
def ode_sample(
    sde: SDE,
    score: ScoreFn,
    shape: tuple[int, ...] | None = None,
    *,
    method: str | Method = "heun",
    steps: int | None = None,
    eps: float | None = None,
    grid: str | Tensor | None = None,
    denoise: bool = True,
    x_T: Tensor | None = None,
    t_start: float | None = None,
    constraint: Constraint | None = None,
    generator: GeneratorLike = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    return_info: bool = False,
    autocast: torch.dtype | None = None,
    compile: bool | Mapping[str, Any] = False,
    **options: Any,
) -> Tensor | tuple[Tensor, SampleInfo]: ...
def ode_sample(
    sde: SDE,
    score: ScoreFn,
    shape: tuple[int, ...] | None = None,
    *,
    method: str | Method = "heun",
    steps: int | None = None,
    eps: float | None = None,
    grid: str | Tensor | None = None,
    denoise: bool = True,
    x_T: Tensor | None = None,
    t_start: float | None = None,
    constraint: Constraint | None = None,
    generator: GeneratorLike = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
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
    (:data:`sdekit.solvers.ODE_METHODS`, ``steps`` default 100): ``euler`` (order 1, 1 NFE/step), ``heun``
    (order 2, 2 NFE/step), ``rk4`` (order 4, 4 NFE/step), ``dpmpp_2m`` / ``dpmpp_3m``
    (1 NFE/step, log-SNR grid by default — the choice below ~20 NFE; as objects
    ``DPMSolverPP(order=3, lower_order_final=False)``).

    Adaptive methods ``dopri5`` and ``bosh3`` (or any torchdiffeq method with
    ``backend="torchdiffeq"``; :class:`~sdekit.solvers.AdaptiveODE` as an object) take the
    options of :func:`sdekit.solvers.adaptive_ode.solve_ivp_batched`: ``rtol``, ``atol``
    (both 1e-5 by default), ``backend`` ("native", "torchdiffeq", "scipy"),
    ``t_eval``, ``h_init``, ``max_steps``, ``error_norm``. Error control is per
    sample. With ``t_eval`` (times from T down to eps) the result is the stack of raw
    states at those times, shape ``(len(t_eval), *x.shape)``, not denoised. The
    progress bar counts NFE; ``callback`` is for fixed-grid methods only.
    See :func:`pc_sample` for the other arguments (``sde``, ``score``, ``denoise``, ``t_start``,
    ``constraint``, ``device``, ``dtype``, ``return_info``, ``autocast``, ``compile``).
    """
    configured = ode_method(method, options)
    raw_path = isinstance(configured, AdaptiveODE) and configured.t_eval is not None
    inputs = _Inputs(x_T, generator, device, dtype, autocast, compile, denoise and not raw_path, t_start, constraint)
    x, info = _solve(
        sde,
        score,
        shape,
        configured,
        method_label(method),
        inputs,
        steps=steps,
        default_steps=100,
        grid=grid,
        eps=eps,
        progress=progress,
        callback=callback,
    )
    return (x, info) if return_info else x
