"""Adaptive reverse-SDE solver with per-sample step sizes (Jolicoeur-Martineau et al. 2021, "Gotta Go Fast").

Every sample carries its own time t and step h. One iteration, for all unfinished
samples at once (reverse time, F = −(f − g² s) the drift in reverse time, ΔW the
Brownian increment over the step, ΔW = √h z):

    K1 = h F(x, t) + g(t) ΔW,  K2 = h F(x + K1, t − h) + g(t − h) ΔW
    x_EM = x + K1,  x_Heun = x + ½(K1 + K2)
    δ = max(atol, rtol · max(|x_EM|, |x_EM,prev|))       (elementwise)
    E = ‖(x_Heun − x_EM) / δ‖                             (RMS, or max, over the sample)
    accept when E ≤ 1: continue from x_Heun (``extrapolate``) or x_EM
    h ← min(t − eps, safety · h · E^(−exponent))

Both score calls of an iteration are batched over the unfinished samples and each
counts as one NFE, so NFE = 2 × iterations (the reference code undercounted).

**Choosing tolerances.** ``rtol`` sets the quality and the cost. On the 16-D,
8-mode test mixture (VP, 16 384 samples) rtol = 0.02 / 0.05 / 0.1 cost 373 / 231 /
153 NFE, all at the finite-sample floor; on VE 663 / 355 / 213, with 0.1 slightly
above it. ``atol`` = 0.0078 is one 8-bit level for data on [−1, 1]; it governs the
coordinates with |x| < atol/rtol (0.16 by default). Scale it with your data (0.0039
for [0, 1] data): on the mixture (coordinate sd 1.2) atol = 1e-4 / 0.0078 / 0.03
cost 257 / 221 / 173 NFE at equal quality. ``norm="max"`` controls the worst
coordinate and costs about twice the NFE of "rms" (the paper's choice). The
controller has no growth limit: after an easy step a sample may try to jump to
``eps`` and be rejected, which wastes its share of one iteration, never the result.

**Noise on rejected steps.** Redrawing the increment after a rejection (as the
reference code does) keeps only noise that passed the error test, so the accepted
increments no longer have the law of Brownian increments. Here every sample's Brownian path is
revealed lazily and kept (a per-sample Brownian tree, Gaines & Lyons 1997): a
retried, shorter step takes its increment from the Brownian bridge between values
already drawn, and the part of a rejected increment that lies beyond the accepted
step is reused by the next steps. The accepted path therefore integrates one
Brownian path with exactly Brownian law, whatever the step decisions. (torchsde's
``BrownianInterval`` does the same for a batch on one shared clock; with per-sample
clocks it would need one object, and one Python query, per sample.) Measured on the
test mixture, redrawing instead leaves samples too spread (NLL gap +0.35 nats for
VP, +0.61 for VE, above the floor) at about the same NFE; the tree is at the floor.

**Reproducibility.** All noise comes from ``generator``: one standard normal draw of
the active batch's shape per iteration. The same generator state, batch, device and
dtype give bit-identical results; a sample's result depends on the batch it ran in,
since the active batch's draws share one stream.

**Host synchronisation.** Once per iteration (k = 1) a small status vector is read
back: which samples finished (they are then dropped from the active tensors by indexing, so
they cost neither score evaluations nor arithmetic), whether a proposal was not
finite, whether a step fell below ``h_min``, and the depth of the Brownian trees. An
iteration makes two score calls, so this read-back is small beside them; reading it
less often would let finished samples ride along and, at the end, make whole
iterations of wasted score calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from sdekit.checks import batch_mask, batch_view, check_choice, check_open_interval, check_positive, event_rms
from sdekit.per_sample import Generators, select_rows
from sdekit.reverse import ReverseSDE, ScoreFn, reverse
from sdekit.sde import SDE
from sdekit.solvers.active_set import ActiveSet
from sdekit.solvers.brownian import BrownianTree
from sdekit.solvers.controllers import GottaGoFast, StepSizeController
from sdekit.solvers.info import SampleInfo
from sdekit.solvers.loop import StepLimitError, run_loop
from sdekit.solvers.method import Callback, Integrator, keyword_defaults
from sdekit.solvers.score_calls import gaussian_like

__all__ = ["AdaptiveSDE", "ERROR_NORMS", "adaptive_sde_sample"]

#: Smallest step, as a fraction of the interval [eps, T]: a sample rejected at a step below
#: this raises FloatingPointError (the error estimate of the pair shrinks like h^(3/2), so a
#: finite, smooth score never gets here; a non-smooth or exploding one does).
H_MIN_FRACTION = 1e-10
#: Iterations after which the solver gives up (StepLimitError, a RuntimeError); default tolerances need ~100.
MAX_ITERATIONS = 100_000


def _max(ratio: Tensor) -> Tensor:
    return ratio.flatten(1).abs().amax(dim=1)


#: Per-sample error norms of the scaled difference (x_Heun − x_EM)/δ: ``(B, *event) -> (B,)``.
ERROR_NORMS: dict[str, Callable[[Tensor], Tensor]] = {"rms": event_rms, "max": _max}


def _increment(rsde: ReverseSDE, x: Tensor, t: Tensor, h: Tensor, dW: Tensor) -> Tensor:
    """K = h F(x, t) + g(t) ΔW, with F = −(f − g² s) the drift in reverse time."""
    return -batch_view(h, x) * rsde.drift(x, t) + batch_view(rsde.diffusion(x, t), x) * dW


def _improved_euler_pair(rsde: ReverseSDE, x: Tensor, t: Tensor, h: Tensor, dW: Tensor) -> tuple[Tensor, Tensor]:
    """(x_EM, x_Heun) = (x + K1, x + ½(K1 + K2)); K1 and K2 share the increment ΔW. Two score calls."""
    k1 = _increment(rsde, x, t, h, dW)
    x_em = x + k1
    k2 = _increment(rsde, x_em, t - h, h, dW)
    return x_em, x + 0.5 * (k1 + k2)


def _error_ratio(x_em: Tensor, x_heun: Tensor, x_em_prev: Tensor | None, rtol: float, atol: float, norm: str) -> Tensor:
    """E = ‖(x_Heun − x_EM)/δ‖ per sample, δ = max(atol, rtol·max(|x_EM|, |x_EM,prev|)); float64 ``(B,)``."""
    size = x_em.abs() if x_em_prev is None else torch.maximum(x_em.abs(), x_em_prev.abs())
    delta = (rtol * size).clamp_min(atol)
    return ERROR_NORMS[norm]((x_heun - x_em) / delta).double()


@dataclass
class _Active(ActiveSet):
    """The unfinished samples: state, last accepted x_EM (x_T at first), time and next step (float64, ``(B,)``),
    their Brownian paths, and their accepted and rejected step counts (``index``: positions in the batch)."""

    x: Tensor
    x_em_prev: Tensor
    t: Tensor
    h: Tensor
    noise: BrownianTree
    steps: Tensor
    rejected: Tensor


@dataclass(frozen=True)
class _Controller:
    eps: float
    rtol: float
    atol: float
    steps: StepSizeController
    norm: str
    error_use_prev: bool
    extrapolate: bool
    h_min: float

    def next_step(self, t: Tensor, h: Tensor, error: Tensor, accepted: Tensor) -> Tensor:
        """h ← min(t − eps, the controller's proposal): GottaGoFast's safety · h · E^(−exponent) by default."""
        return torch.minimum(t - self.eps, self.steps.propose(h, error, error, accepted, 2))


def _iterate(
    state: _Active, rsde: ReverseSDE, control: _Controller, generator: Generators | None
) -> tuple[Tensor, Tensor]:
    """One iteration for every active sample; updates ``state`` in place, returns (accepted mask, error E)."""
    h = state.h
    dW = state.noise.increment(h, gaussian_like(state.x, generator))
    x_em, x_heun = _improved_euler_pair(rsde, state.x, state.t, h, dW)
    x_em_prev = state.x_em_prev if control.error_use_prev else None
    error = _error_ratio(x_em, x_heun, x_em_prev, control.rtol, control.atol, control.norm)
    accepted = error <= 1  # False for a non-finite error: the status check raises on it
    state.noise.advance(accepted, h, dW)
    keep = batch_mask(accepted, state.x)
    state.x = torch.where(keep, x_heun if control.extrapolate else x_em, state.x)
    state.x_em_prev = torch.where(keep, x_em, state.x_em_prev)
    reaches_end = h >= state.t - control.eps
    state.t = torch.where(accepted, torch.where(reaches_end, control.eps, state.t - h), state.t)
    state.h = control.next_step(state.t, h, error, accepted)
    state.steps += accepted
    state.rejected += ~accepted
    return accepted, error


# Status bits read back once per iteration.
_DONE, _NOT_FINITE, _STUCK = 1, 2, 4


def _status(state: _Active, accepted: Tensor, error: Tensor, control: _Controller) -> Tensor:
    """Per-sample status bits followed by the Brownian trees' depth, on the host: the one read-back."""
    done = state.t <= control.eps
    stuck = ~accepted & (state.h < control.h_min)
    codes = done.long() * _DONE + (~torch.isfinite(error)).long() * _NOT_FINITE + stuck.long() * _STUCK
    return torch.cat([codes, state.noise.depth().reshape(1)]).cpu()


def _raise_on_failure(codes: Tensor, state: _Active, control: _Controller) -> None:
    for bit, problem in ((_NOT_FINITE, "non-finite"), (_STUCK, "stuck")):
        bad = ((codes & bit) != 0).nonzero()
        if bad.numel() == 0:
            continue
        i = int(bad[0])
        t, sample = float(state.t[i]), int(state.index[i])
        if problem == "non-finite":
            raise FloatingPointError(
                f"non-finite state in the adaptive SDE solver at t = {t:.6g} (sample {sample}): the score "
                "returned NaN/Inf or the step diverged; check the score network"
            )
        raise FloatingPointError(
            f"adaptive SDE solver cannot meet the tolerance at t = {t:.6g} (sample {sample}): the step fell below "
            f"h_min = {control.h_min:.3g} (rtol={control.rtol:g}, atol={control.atol:g}); the score is probably "
            "not smooth or returns huge values — check it, or loosen rtol/atol"
        )


def adaptive_sde_sample(
    sde: SDE,
    score: ScoreFn,
    x: Tensor,
    *,
    eps: float,
    rtol: float = 0.05,
    atol: float = 0.0078,
    h_init: float = 0.01,
    safety: float = 0.9,
    exponent: float = 0.9,
    norm: str = "rms",
    error_use_prev: bool = True,
    extrapolate: bool = True,
    generator: Generators | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    constraint: Any = None,
) -> tuple[Tensor, SampleInfo]:
    """Integrate the reverse SDE from x at t = T down to ``eps`` with per-sample adaptive steps.

    ``score`` is called with per-sample times ``(B_active,)`` on the samples still running; a
    score with per-sample state is restricted to them through its ``select``
    (:mod:`sdekit.per_sample`) each time samples finish. Pass a
    :class:`~sdekit.solvers.CountedScore` to count calls (NFE = ``2 × stats.iterations``).
    Returns the state at ``eps`` (apply the final denoising yourself) and a
    :class:`~sdekit.solvers.info.SampleInfo` (``nfe`` = 2 × ``iterations``, per-sample
    ``sample_steps`` / ``sample_rejected``). ``error_use_prev`` includes the last accepted x_EM in δ;
    ``extrapolate`` continues from x_Heun rather than x_EM. ``callback(dict)`` is called
    once per iteration with the active samples' ``x``, ``t``, next step ``h``, batch
    positions ``index``, ``accepted`` mask and the iteration ``i``. See the module
    docstring for choosing tolerances and for how rejected steps' noise is handled.
    ``constraint`` (:class:`sdekit.constraints.Imputation`) projects x at T and each accepted
    sample after its step, at that sample's own time; its per-sample values follow the active set.

    Raises ``FloatingPointError`` (naming the time) on a non-finite proposal or when a
    sample cannot meet the tolerance with a step above ``H_MIN_FRACTION · (T − eps)``,
    :class:`~sdekit.solvers.loop.StepLimitError` after ``MAX_ITERATIONS`` iterations.
    """
    control = _controller(sde, x, eps, rtol, atol, h_init, safety, exponent, norm, error_use_prev, extrapolate)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(dict) or None, got {type(callback).__name__}")
    run = _AdaptiveRun(sde, score, x, control, min(h_init, sde.T - eps), generator, constraint)
    run_loop(run, progress=progress, callback=callback, desc="adaptive SDE", unit="NFE")
    return run.out, SampleInfo(
        nfe=2 * run.iterations,
        steps=int(run.sample_steps.sum()),
        rejected=int(run.sample_rejected.sum()),
        iterations=run.iterations,
        evaluations=run.evaluations,
        samples=x.shape[0],
        sample_steps=run.sample_steps.cpu(),
        sample_rejected=run.sample_rejected.cpu(),
    )


class _AdaptiveRun:
    """The adaptive SDE solve as a :class:`~sdekit.solvers.loop.Run`: one iteration per ``advance``."""

    def __init__(
        self,
        sde: SDE,
        score: ScoreFn,
        x: Tensor,
        control: _Controller,
        h_init: float,
        generator: Generators | None,
        constraint: Any = None,
    ) -> None:
        self.sde, self.score, self.batch, self.control = sde, score, x.shape[0], control
        self.generator = self.full_generator = generator  # per-sample generators follow the active set
        self.rsde = reverse(sde, score)
        self.constraint = self.full_constraint = constraint
        if constraint is not None:  # the known part of the start is a draw at T
            x = constraint.project(x, sde.T, generator)
        self.state = _start(x, sde.T, h_init)
        self.out = torch.empty_like(x)
        self.sample_steps, self.sample_rejected = (
            torch.zeros_like(self.state.steps),
            torch.zeros_like(self.state.rejected),
        )
        self.iterations = self.evaluations = 0
        self._payload: dict[str, Any] = {}

    @property
    def done(self) -> bool:
        return self.state.index.numel() == 0

    def advance(self) -> int:
        """One iteration for every active sample, then the status read-back, the checks and the compaction."""
        state, control = self.state, self.control
        if self.iterations == MAX_ITERATIONS:
            raise StepLimitError(
                f"adaptive SDE solver: {state.index.numel()} samples unfinished after {MAX_ITERATIONS} "
                f"iterations (the latest at t = {float(state.t.max()):.6g}); loosen rtol/atol"
            )
        accepted, error = _iterate(state, self.rsde, control, self.generator)
        if self.constraint is not None:  # accepted samples are now at their new times
            projected = self.constraint.project(state.x, state.t, self.generator)
            state.x = torch.where(batch_mask(accepted, state.x), projected, state.x)
        self.iterations, self.evaluations = self.iterations + 1, self.evaluations + 2 * state.index.numel()
        # the state before this iteration's compaction
        self._payload = {
            "x": state.x,
            "t": state.t,
            "h": state.h,
            "index": state.index,
            "accepted": accepted,
            "i": self.iterations - 1,
        }
        status = _status(state, accepted, error, control)
        codes = status[:-1]
        _raise_on_failure(codes, state, control)
        state.noise.trim(int(status[-1]))
        if _compact(state, codes, self.out, self.sample_steps, self.sample_rejected) and state.index.numel():
            self.rsde = reverse(self.sde, select_rows(self.score, state.index, self.batch))  # per-sample state follows
            if self.full_constraint is not None:
                self.constraint = select_rows(self.full_constraint, state.index, self.batch)
            self.generator = select_rows(self.full_generator, state.index, self.batch)
        return 2

    def payload(self) -> dict[str, Any]:
        return self._payload


def _start(x: Tensor, T: float, h: float) -> _Active:
    """Every sample at t = T with step h and a fresh Brownian tree."""
    times = torch.full((x.shape[0],), T, dtype=torch.float64, device=x.device)
    index = torch.arange(x.shape[0], device=x.device)
    counts = torch.zeros_like(index)
    return _Active(
        index=index,
        x=x,
        x_em_prev=x,
        t=times,
        h=torch.full_like(times, h),
        noise=BrownianTree(x),
        steps=counts,
        rejected=counts.clone(),
    )


def _controller(
    sde: SDE,
    x: Tensor,
    eps: float,
    rtol: float,
    atol: float,
    h_init: float,
    safety: float,
    exponent: float,
    norm: str,
    error_use_prev: bool,
    extrapolate: bool,
) -> _Controller:
    """Validate the arguments (errors name the argument and its range) and bundle the step control."""
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an sdekit.SDE, got {type(sde).__name__}")
    if sde.state_dependent_diffusion:
        raise TypeError(
            "the adaptive SDE solver needs a diffusion g(t) independent of the state: with a state-dependent "
            "G(x, t) its improved-Euler pair (one shared increment) converges to the Stratonovich solution"
        )
    if not isinstance(x, Tensor) or x.ndim < 2 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a floating-point tensor of shape (batch, *event), got {shape}")
    eps = check_open_interval("eps", eps, 0.0, sde.T)
    check_open_interval("h_init", h_init, 0.0, sde.T)
    options = _checked_options(rtol, atol, h_init, safety, exponent, norm, error_use_prev, extrapolate)
    steps = GottaGoFast(safety=options.pop("safety"), exponent=options.pop("exponent"))
    del options["h_init"]
    return _Controller(eps=eps, **options, steps=steps, h_min=H_MIN_FRACTION * (sde.T - eps))


def _checked_options(
    rtol: float,
    atol: float,
    h_init: float,
    safety: float,
    exponent: float,
    norm: str,
    error_use_prev: bool,
    extrapolate: bool,
) -> dict[str, Any]:
    """The step-control options, checked (errors name the option and its range)."""
    for name, value in (("error_use_prev", error_use_prev), ("extrapolate", extrapolate)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return {
        "rtol": check_positive("rtol", rtol),
        "atol": check_positive("atol", atol),
        "h_init": check_positive("h_init", h_init),
        "safety": _check_unit_interval("safety", safety),
        "exponent": _check_unit_interval("exponent", exponent),
        "norm": check_choice("norm", norm, ERROR_NORMS),
        "error_use_prev": error_use_prev,
        "extrapolate": extrapolate,
    }


def _check_unit_interval(name: str, value: float) -> float:
    """``value`` if in (0, 1], else ValueError naming ``name``."""
    number = check_positive(name, value)
    if number > 1:
        raise ValueError(f"{name} must lie in (0, 1], got {value!r}")
    return number


def _compact(state: _Active, codes: Tensor, out: Tensor, steps: Tensor, rejected: Tensor) -> bool:
    """Write finished samples (and their step counts) into ``out`` and drop them from the active set.

    Returns whether the active set changed.
    """
    return state.retire((codes & _DONE) != 0, {"x": out, "steps": steps, "rejected": rejected})


class AdaptiveSDE(Integrator):
    """The adaptive SDE solver of this module as a configured method: ``sample(method=AdaptiveSDE(rtol=0.02))``.

    Its options are :func:`adaptive_sde_sample`'s; ``sample(method="adaptive", rtol=0.02)`` is the same.
    """

    kind = "sde"
    takes_constraint = True
    #: adaptive_sde_sample's step-control keywords and their defaults (one source for both).
    defaults: ClassVar[dict[str, Any]] = keyword_defaults(
        adaptive_sde_sample, "generator", "progress", "callback", "constraint"
    )

    def check_options(self, options: dict[str, Any]) -> None:
        options.update(_checked_options(**options))

    def integrate(
        self,
        sde: SDE,
        score: ScoreFn,
        x: Tensor,
        *,
        eps: float,
        steps: int,
        generator: Generators | None,
        progress: bool,
        callback: Callback | None,
        constraint: Any = None,
    ) -> tuple[Tensor, SampleInfo]:
        return adaptive_sde_sample(
            sde,
            score,
            x,
            eps=eps,
            generator=generator,
            progress=progress,
            callback=callback,
            constraint=constraint,
            **self.options,
        )
