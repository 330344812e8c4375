"""Adaptive embedded Runge–Kutta integration of batched ODEs, with per-sample error control.

:func:`solve_ivp_batched` integrates dy/dt = func(t, y) for a batch of independent
initial values ``y0`` of shape ``(B, *event)`` from ``t0`` to ``t1`` (either direction).
Every sample has its own time and step size: its error estimate is measured on that
sample alone, and its step is accepted or rejected alone, so one hard sample neither
drags the batch to tiny steps nor hides behind the easy ones (a single RMS over the
batch, as ``torchdiffeq`` and ``scipy`` compute, lets a few samples miss the tolerance
when the rest are easy).

Methods (``backend="native"``):

* ``"dopri5"``: Dormand–Prince 5(4), 6 calls per step (first-same-as-last), 4th-order
  dense output (Hermite + Shampine's quartic correction). The default; best from
  rtol ≈ 1e-4 downwards.
* ``"bosh3"``: Bogacki–Shampine 3(2), 3 calls per step, cubic Hermite dense output.
  Cheaper per step; competitive at loose tolerances (rtol ≳ 1e-3).

The step-size controller is a PI controller (Gustafsson; Hairer & Wanner II §IV.2):
h ← h · safety · E^(−β₁/k) · E_prev^(β₂/k), k = 1 + order of the error estimate,
clamped to [min_factor, max_factor] (and to ≤ 1 right after a rejection). Samples are
never stepped past ``t1``: the last step is cut to land on it.

Choosing tolerances: the per-sample error norm is the RMS over the sample of
err / (atol + rtol · max(|y|, |y_new|)). For diffusion sampling with data scaled to
[−1, 1], rtol = atol = 1e-5 is visually exact and typically 100–200 calls; 1e-3 is
about half as many calls and still close to the exact flow map in distribution; going
below 1e-6 with float32 states hits round-off (use float64). The global error is not
bounded by the tolerance, only proportional to it: expect 1–10 × tol for smooth flows.

Cost and synchronisation: finished samples are removed from the batch (compaction by
``index_select``) at check points, which are also the only host synchronisations: one
every ``sync_every`` iterations (default 4 on accelerators, 1 on CPU), more often near the end (the next check is
scheduled from the slowest sample's remaining steps) so that a finished batch does not
keep iterating. Between check points finished samples are masked (step size 0). With
``t_eval``, each iteration additionally reads one integer back (how many output times
the step passed), so that the dense output is exact and the step sequence does not
depend on ``t_eval``.

Backends: ``"torchdiffeq"`` (any of its methods; batch-RMS error) and ``"scipy"``
(``solve_ivp`` on the flattened float64 state in host memory, as the SDE paper's
reference code does) are kept as cross-checks and baselines.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor
from tqdm.auto import tqdm

from sdekit.checks import batch_mask, batch_view, check_choice, check_positive, check_positive_int, event_rms
from sdekit.per_sample import Generators, select_rows
from sdekit.reverse import ScoreFn, probability_flow
from sdekit.sde import SDE, time_checks
from sdekit.solvers.active_set import ActiveSet, next_check
from sdekit.solvers.controllers import PIController, StepSizeController
from sdekit.solvers.grid_stepper import weighted_sum
from sdekit.solvers.info import SampleInfo
from sdekit.solvers.loop import StepLimitError, run_loop
from sdekit.solvers.method import Callback, Integrator, keyword_defaults
from sdekit.solvers.ode_backends import check_backend_method, solve_scipy, solve_torchdiffeq
from sdekit.solvers.tableaus import BOSH3, DOPRI5, HEUN_EULER, ButcherTableau, fsal_hermite_dense

__all__ = [
    "ButcherTableau",
    "fsal_hermite_dense",
    "DOPRI5",
    "BOSH3",
    "HEUN_EULER",
    "TABLEAUS",
    "PIController",
    "AdaptiveODE",
    "solve_ivp_batched",
    "BACKENDS",
    "ERROR_NORMS",
]

#: ``func(t, y) -> dy/dt``: t of shape (B,) float64, y of shape (B, *event), output like y.
OdeFn = Callable[[Tensor, Tensor], Tensor]

BACKENDS = ("native", "torchdiffeq", "scipy")
ERROR_NORMS = ("sample", "batch")


# --- tableaus ---------------------------------------------------------------------------------------------------

#: The embedded pairs the native solver runs (an embedded, FSAL tableau with a dense output each), by name.
#: Add one to run it by name: ``TABLEAUS[pair.name] = pair`` (docs/design.md has an example).
TABLEAUS: dict[str, ButcherTableau] = {pair.name: pair for pair in (DOPRI5, BOSH3, HEUN_EULER)}


# --- controller and statistics -----------------------------------------------------------------------------------


class _Counted:
    """``func`` with its batched calls and evaluated rows counted."""

    def __init__(self, func: OdeFn, stats: SampleInfo) -> None:
        self.func, self.stats = func, stats
        self.full = func

    def select(self, rows: Tensor, batch_size: int) -> None:
        """Restrict ``func``'s per-sample state to ``rows`` of the full batch (:mod:`sdekit.per_sample`)."""
        self.func = select_rows(self.full, rows, batch_size)

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        self.stats.nfe += 1
        self.stats.evaluations += y.shape[0]
        return self.func(t, y)


# --- validation --------------------------------------------------------------------------------------------------


def _check_call(
    y0: object, t0: float, t1: float, method: str, backend: str, rtol: float, atol: float, error_norm: str
) -> None:
    if not isinstance(y0, Tensor) or y0.ndim < 1 or y0.shape[0] < 1 or not y0.is_floating_point():
        raise TypeError(f"y0 must be a floating tensor of shape (B, *event) with B >= 1, got {y0!r:.80}")
    for name, value in (("t0", t0), ("t1", t1)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite real number, got {value!r}")
    if t0 == t1:
        raise ValueError(f"t1 must differ from t0, got t0 = t1 = {t0!r}")
    _check_options(method, backend, rtol, atol, error_norm)
    info = torch.finfo(y0.dtype)
    # float32 resolves any rtol people use (1e-6 converges, measured); scipy integrates in float64
    if info.bits <= 16 and backend != "scipy" and rtol < RESOLVABLE * info.eps:  # rounding noise: h shrinks forever
        raise ValueError(
            f"rtol={rtol:g} is finer than a {str(y0.dtype).removeprefix('torch.')} state can resolve (eps "
            f"{info.eps:.1e}): use rtol >= {RESOLVABLE * info.eps:.1e}, or a float32 state"
        )


#: The finest rtol an adaptive solve accepts, in units of the state dtype's eps: below it the
#: embedded error estimate is dominated by rounding and no step is ever accepted (seen with
#: float16 and the default rtol 1e-5: max_steps reached at t = 1).
RESOLVABLE = 10


def _check_options(method: str, backend: str, rtol: float, atol: float, error_norm: str) -> None:
    """The options that do not depend on the state: errors name the option and the valid values."""
    check_positive("rtol", rtol)
    check_positive("atol", atol)
    check_choice("backend", backend, BACKENDS)
    check_choice("error_norm", error_norm, ERROR_NORMS)
    if backend == "native":
        check_choice("method", method, TABLEAUS)
    else:
        check_backend_method(backend, method)
    if error_norm == "batch" and backend != "native":
        raise ValueError(f"error_norm='batch' is a native-backend option; {backend!r} always uses a batch RMS")


def _check_t_eval(t_eval: object, t0: float, t1: float) -> Tensor:
    """``t_eval`` as a float64 CPU tensor; strictly monotone from t0 towards t1 and inside [t0, t1]."""
    if not isinstance(t_eval, Tensor):
        raise TypeError(f"t_eval must be a 1-D torch.Tensor of times, got {type(t_eval).__name__}")
    times = t_eval.detach().to("cpu", torch.float64)
    if times.ndim != 1 or times.numel() < 1:
        raise ValueError(f"t_eval must be a non-empty 1-D tensor, got shape {tuple(times.shape)}")
    direction = 1.0 if t1 > t0 else -1.0
    tau = direction * times
    if (
        not bool(torch.isfinite(times).all())
        or bool((tau < direction * t0).any())
        or bool((tau > direction * t1).any())
    ):
        raise ValueError(f"t_eval must lie within [t0, t1] = [{t0!r}, {t1!r}], got {times.tolist()!r:.200}")
    if times.numel() > 1 and not bool((tau.diff() > 0).all()):
        order = "increasing" if direction > 0 else "decreasing"
        raise ValueError(f"t_eval must be strictly {order} (from t0 = {t0!r} towards t1 = {t1!r})")
    return times


# --- the native solver -------------------------------------------------------------------------------------------


@dataclass
class _Active(ActiveSet):
    """Per-sample state of the samples still integrating (rows align; ``index`` = row in the batch)."""

    y: Tensor  # (n, *event)
    t: Tensor  # (n,) float64
    h: Tensor  # (n,) float64, signed
    f: Tensor  # (n, *event): func(t, y) (first-same-as-last)
    error_prev: Tensor  # (n,) float64, last accepted error norm (PI memory)
    next_out: Tensor  # (n,) long: first t_eval index not yet written
    steps: Tensor  # (n,) long
    rejected: Tensor  # (n,) long


class _NativeSolver:
    """The iteration of :func:`solve_ivp_batched` for one call (kept on the instance for readability)."""

    def __init__(
        self,
        func: _Counted,
        tableau: ButcherTableau,
        t0: float,
        t1: float,
        rtol: float,
        atol: float,
        error_norm: str,
        controller: StepSizeController,
        t_eval: Tensor | None,
    ) -> None:
        self.func, self.tab, self.t0, self.t1 = func, tableau, t0, t1
        self.callback: Callback | None = None
        self.accepted: Tensor | None = None
        self.direction = 1.0 if t1 > t0 else -1.0
        self.rtol, self.atol, self.error_norm, self.controller = rtol, atol, error_norm, controller
        if tableau.b_err is None or tableau.error_order is None or tableau.dense is None or not tableau.fsal:
            raise ValueError(
                f"the adaptive solver needs an embedded first-same-as-last pair with a dense output; "
                f"{tableau.name!r} is not one"
            )
        self.b_err, self.dense = tableau.b_err, tableau.dense
        self.k = tableau.error_order + 1
        self.t_eval = t_eval
        # Time and size of the first step that produced a non-finite value, on the device (NaN: none yet).
        self.bad_time: Tensor
        self.bad_step: Tensor

    # error norm -----------------------------------------------------------------------------------------------

    def rms(self, x: Tensor) -> Tensor:
        """RMS over each sample, or over the whole batch (``error_norm="batch"``): float64, shape (n,)."""
        rms = event_rms(x)
        if self.error_norm == "batch":
            return rms.square().mean().sqrt().expand_as(rms)
        return rms

    def error_norm_of(self, err: Tensor, y: Tensor, y_new: Tensor) -> Tensor:
        """RMS of err / (atol + rtol·max(|y|, |y_new|)) per sample (or over the batch)."""
        return self.rms(err / (self.atol + self.rtol * torch.maximum(y.abs(), y_new.abs())))

    # one step ------------------------------------------------------------------------------------------------

    def stages(self, s: _Active, h: Tensor) -> tuple[list[Tensor], Tensor]:
        """k_1 … k_s for a step of size h from (t, y), and y_new = y + h Σ b_i k_i.

        k_1 is the FSAL value; the last stage (a_s = b, c_s = 1) is evaluated at y_new itself.
        """
        ks = [s.f]
        for a_row, c_i in zip(self.tab.a[1:-1], self.tab.c[1:-1], strict=True):
            ks.append(self.func(s.t + c_i * s.h, s.y + h * _combine(a_row, ks)))
        y_new = s.y + h * _combine(self.tab.b, ks)
        ks.append(self.func(s.t + self.tab.c[-1] * s.h, y_new))
        return ks, y_new

    def step(self, s: _Active) -> _Active:
        """Attempt one step for every active sample; accept or reject each on its own error."""
        h = batch_view(s.h, s.y)
        ks, y_new = self.stages(s, h)
        error = self.error_norm_of(h * _combine(self.b_err, ks), s.y, y_new)
        self.watch(error, s)
        accept = error <= 1.0
        self.accepted = accept
        finished_step = s.h == self.t1 - s.t
        t_new = torch.where(finished_step, self.t1, s.t + s.h)
        if self.t_eval is not None:
            self.write_outputs(s, ks, accept, t_new, y_new)
        safe_error = torch.nan_to_num(error, nan=1e10).clamp_min(1e-10)
        h_new = self.controller.propose(s.h, safe_error, s.error_prev, accept, self.k)
        t = torch.where(accept, t_new, s.t)
        mask = batch_mask(accept, s.y)
        return _Active(
            y=torch.where(mask, y_new, s.y),
            t=t,
            h=self.clip(h_new, t),
            f=torch.where(mask, ks[-1], s.f),
            error_prev=torch.where(accept, safe_error, s.error_prev),
            next_out=s.next_out,  # advanced in write_outputs
            steps=s.steps + accept.long(),
            rejected=s.rejected + (~accept).long(),
            index=s.index,
        )

    def clip(self, h: Tensor, t: Tensor) -> Tensor:
        """Cut steps that would pass t1 to land on it exactly (0 for finished samples)."""
        remaining = self.t1 - t
        return torch.where(h.abs() >= remaining.abs(), remaining, h)

    def watch(self, error: Tensor, s: _Active) -> None:
        """Remember, on the device, the time of the first step that produced a non-finite value."""
        bad = ~torch.isfinite(error)
        first = bad.long().argmax().reshape(1)  # index_select: a 0-d index tensor would be read back
        new = bad.any() & torch.isnan(self.bad_time)
        self.bad_time = torch.where(new, s.t.index_select(0, first)[0], self.bad_time)
        self.bad_step = torch.where(new, s.h.index_select(0, first)[0], self.bad_step)

    # dense output --------------------------------------------------------------------------------------------

    def write_outputs(self, s: _Active, ks: list[Tensor], accept: Tensor, t_new: Tensor, y_new: Tensor) -> None:
        """Interpolate every t_eval time an accepted step passed (t, t_new] with the method's dense output.

        A time at the step's end gets the step's own result, so outputs never depend on interpolation there.
        """
        assert self.t_eval is not None
        tau_eval = self.direction * self.t_eval_device
        passed_to = torch.searchsorted(tau_eval, self.direction * t_new, right=True)
        passed_to = torch.where(accept, passed_to, s.next_out)
        count = int((passed_to - s.next_out).max())  # the one extra synchronisation with t_eval
        if count > 0:
            coefficients = [_combine(row, ks) for row in zip(*self.dense, strict=True)]
            last = self.t_eval_device.numel() - 1
            for slot in range(count):
                j = s.next_out + slot
                valid = j < passed_to
                jc = j.clamp(max=last)
                time = self.t_eval_device[jc]
                theta = torch.where(valid, (time - s.t) / torch.where(valid, s.h, 1.0), 0.0)
                value = s.y + batch_view(s.h * theta, s.y) * _horner(coefficients, batch_view(theta, s.y))
                value = torch.where(batch_mask(time == t_new, s.y), y_new, value)
                old = self.outputs[jc, s.index]
                self.outputs[jc, s.index] = torch.where(batch_mask(valid, s.y), value, old)
        s.next_out = passed_to

    # the loop ------------------------------------------------------------------------------------------------

    def run(self, y0: Tensor, h_init: float | None, max_steps: int, sync_every: int) -> Tensor:
        t0, batch, device = self.t0, y0.shape[0], y0.device
        t = torch.full((batch,), t0, dtype=torch.float64, device=device)
        self.bad_time = self.bad_step = torch.full((), math.nan, dtype=torch.float64, device=device)
        f0 = self.func(t, y0)
        h = self.initial_step(y0, f0, t0) if h_init is None else torch.full_like(t, self.direction * abs(h_init))
        zeros = torch.zeros(batch, dtype=torch.long, device=device)
        state = _Active(
            y=y0,
            t=t,
            h=self.clip(h, t),
            f=f0,
            error_prev=torch.ones_like(t),
            next_out=zeros,
            steps=zeros,
            rejected=zeros,
            index=torch.arange(batch, device=device),
        )
        self.final = torch.empty_like(y0)
        self.sample_steps, self.sample_rejected = zeros.clone(), zeros.clone()
        if self.t_eval is not None:
            self.t_eval_device = self.t_eval.to(device)
            self.outputs = y0.new_empty((self.t_eval.numel(), *y0.shape))
            self.write_start(state)
        self.state, self.iterations, self.pending = state, 0, 1
        self.max_steps, self.sync_every, self.finished = max_steps, sync_every, False
        run_loop(self, progress=False, callback=self.callback, grad=True)  # the bar counts NFE in func
        self.func.stats.iterations = self.iterations
        return self.final

    # --- the solve as a Run of the solve loop: one step per advance, a check point when one is due ---

    @property
    def done(self) -> bool:
        return self.finished

    def advance(self) -> int:
        state = self.step(self.state)
        # the state before this step's check point compacts it
        self._payload: dict[str, Any] = {
            "x": state.y,
            "t": state.t,
            "h": state.h,
            "index": state.index,
            "accepted": self.accepted,
            "i": self.iterations,
        }
        self.iterations += 1
        self.pending -= 1
        if self.pending == 0:
            state, until_check = self.check(state, self.sync_every)
            if state.y.shape[0] == 0:
                self.finished = True
            elif self.iterations >= self.max_steps:
                raise StepLimitError(
                    f"max_steps={self.max_steps} iterations reached with {state.y.shape[0]} samples unfinished "
                    f"(slowest at t = {float(state.t[(self.t1 - state.t).abs().argmax()]):.6g}); "
                    "raise max_steps or loosen rtol/atol"
                )
            else:
                self.pending = min(until_check, self.max_steps - self.iterations)
        self.state = state
        return 0

    def payload(self) -> dict[str, Any]:
        return self._payload

    def write_start(self, state: _Active) -> None:
        """t_eval times equal to t0 get y0."""
        assert self.t_eval is not None
        at_start = int((self.t_eval == self.t0).sum())
        if at_start:
            self.outputs[:at_start] = state.y
            state.next_out = torch.full_like(state.next_out, at_start)

    def check(self, state: _Active, sync_every: int) -> tuple[_Active, int]:
        """The check point: raise on non-finite values, store finished samples, compact, schedule the next check."""
        running = state.t != self.t1
        # Steps the slowest sample needs at its current step size: check again about halfway there.
        to_go = torch.where(running, (self.t1 - state.t).abs() / state.h.abs().clamp_min(1e-300), 0.0).amax()
        summary = torch.stack([running.sum().to(torch.float64), to_go, self.bad_time, self.bad_step]).tolist()
        n_running, to_go_value, bad_time, bad_step = summary
        if not math.isnan(bad_time):
            raise FloatingPointError(
                f"non-finite value in a step from t = {bad_time:.6g} to {bad_time + bad_step:.6g}: func returned "
                "NaN/Inf or the state diverged; check func (the score network) and the time range"
            )
        if n_running < state.y.shape[0]:
            results = {"y": self.final, "steps": self.sample_steps, "rejected": self.sample_rejected}
            state.retire(~running, results)
            if state.index.numel():
                self.func.select(state.index, self.final.shape[0])  # per-sample state follows the active set
        return state, next_check(to_go_value, sync_every)

    def initial_step(self, y0: Tensor, f0: Tensor, t0: float) -> Tensor:
        """Per-sample starting step (Hairer, Nørsett & Wanner I §II.4): one extra call of func."""
        scale = self.atol + self.rtol * y0.abs()
        d0 = self.rms(y0 / scale)
        d1 = self.rms(f0 / scale)
        h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1.clamp_min(1e-300))
        h0 = torch.minimum(h0, torch.full_like(h0, abs(self.t1 - t0)))
        t = torch.full_like(h0, t0)
        f1 = self.func(t + self.direction * h0, y0 + batch_view(self.direction * h0, y0) * f0)
        d2 = self.rms((f1 - f0) / scale) / h0
        big = torch.maximum(d1, d2)
        h1 = torch.where(big <= 1e-15, (h0 * 1e-3).clamp_min(1e-6), (0.01 / big.clamp_min(1e-300)) ** (1 / self.k))
        return self.direction * torch.minimum(100 * h0, h1)


def _combine(weights: Sequence[float], ks: Sequence[Tensor]) -> Tensor:
    """Σ_i w_i k_i (weights past the last stage given are ignored)."""
    return weighted_sum(list(zip(weights, ks, strict=False)))


def _horner(coefficients: Sequence[Tensor], theta: Tensor) -> Tensor:
    """Σ_p θ^p q_p for p = 0 … len − 1 (the dense weights divided by θ)."""
    result = coefficients[-1]
    for q in reversed(coefficients[:-1]):
        result = result * theta + q
    return result


# --- reference backends ------------------------------------------------------------------------------------------


# --- the public function ----------------------------------------------------------------------------------------


def solve_ivp_batched(
    func: OdeFn,
    y0: Tensor,
    t0: float,
    t1: float,
    *,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    t_eval: Tensor | None = None,
    backend: str = "native",
    h_init: float | None = None,
    max_steps: int = 10_000,
    error_norm: str = "sample",
    controller: StepSizeController | None = None,
    sync_every: int | None = None,
    callback: Callback | None = None,
) -> tuple[Tensor, SampleInfo]:
    """Integrate dy/dt = func(t, y) for a batch from t0 to t1 with an adaptive embedded Runge–Kutta pair.

    Args:
        func: ``func(t, y) -> dy/dt`` with per-sample times ``t`` of shape (B,) (float64) and
            ``y`` of shape (B, *event); it must treat rows independently (the native backend
            calls it on shrinking subsets of the batch). Any state works — e.g. an augmented
            (x, log-density) state for likelihoods.
        y0: initial values, shape (B, *event); the result keeps its dtype and device.
        t0, t1: start and end time; t1 < t0 integrates backwards (sampling T → eps).
        method: ``"dopri5"`` or ``"bosh3"``; with ``backend="torchdiffeq"`` any of its
            methods, with ``"scipy"`` also any ``solve_ivp`` method name.
        rtol, atol: relative and absolute tolerance (> 0) of the per-sample error norm.
        t_eval: optional 1-D tensor of times, strictly monotone from t0 towards t1 and inside
            [t0, t1]; the result then has shape (len(t_eval), *y0.shape).
        backend: ``"native"`` (batched, per-sample control), ``"torchdiffeq"`` or ``"scipy"``.
        h_init: first step size (magnitude); by default estimated per sample (one extra call).
        max_steps: iteration limit; :class:`~sdekit.solvers.loop.StepLimitError` (a RuntimeError) beyond it.
        error_norm: ``"sample"`` (each sample controls its own steps) or ``"batch"`` (one RMS over
            the whole batch, steps shared — the behaviour of torchdiffeq and scipy; native only).
        controller: the step-size controller (:mod:`sdekit.solvers.controllers`; default :class:`PIController`).
        sync_every: iterations between host synchronisations (check points) at most; default 1 on
            CPU (reading a value back costs nothing there, and finished samples leave at once), 4 on
            accelerators. Results do not depend on it.
        callback: called after every iteration (native backend only) with the active samples'
            ``x`` (samples finished since the last check point ride along at t1), ``t``, next step
            ``h``, batch positions ``index``, ``accepted`` mask and the iteration ``i``.

    Returns:
        ``(y, info)``: y at t1 (shape of y0) or at every t_eval time, and a
        :class:`~sdekit.solvers.info.SampleInfo` (``nfe`` calls of ``func``, ``evaluations`` rows,
        ``iterations``, and per-sample ``sample_steps`` / ``sample_rejected`` with the native backend).

    Raises:
        ValueError: bad tolerances, method, backend, t_eval; FloatingPointError: non-finite values.
    """
    _check_call(y0, t0, t1, method, backend, rtol, atol, error_norm)
    check_positive_int("max_steps", max_steps)
    if sync_every is None:
        sync_every = 1 if y0.device.type == "cpu" else 4
    check_positive_int("sync_every", sync_every)
    if h_init is not None:
        check_positive("h_init", h_init)
    times = None if t_eval is None else _check_t_eval(t_eval, t0, t1)
    stats = SampleInfo(samples=y0.shape[0])
    counted = _Counted(func, stats)
    t0, t1 = float(t0), float(t1)
    with time_checks(False):
        if backend == "torchdiffeq":
            return solve_torchdiffeq(counted, y0, t0, t1, method, rtol, atol, times, h_init), stats
        if backend == "scipy":
            y, stats.steps = solve_scipy(counted, y0, t0, t1, method, rtol, atol, times, h_init)
            return y, stats
        if callback is not None and backend != "native":
            raise TypeError(f"callback is an option of the native backend only, not of {backend!r}")
        solver = _NativeSolver(
            counted, TABLEAUS[method], t0, t1, rtol, atol, error_norm, controller or PIController(), times
        )
        solver.callback = callback
        result = solver.run(y0, h_init, max_steps, sync_every)
    stats.sample_steps, stats.sample_rejected = solver.sample_steps, solver.sample_rejected
    stats.steps, stats.rejected = int(solver.sample_steps.sum()), int(solver.sample_rejected.sum())
    return (solver.outputs if times is not None else result), stats


class AdaptiveODE(Integrator):
    """An adaptive solve of the probability-flow ODE as a configured method: ``ode_sample(method=AdaptiveODE(...))``.

    Its options are :func:`solve_ivp_batched`'s (``method`` is the embedded pair, or with another
    ``backend`` that backend's method name); ``ode_sample(method="dopri5", rtol=1e-4)`` is the same
    as ``ode_sample(method=AdaptiveODE(method="dopri5", rtol=1e-4))``. The progress bar counts NFE.
    """

    kind = "ode"

    @property
    def takes_callback(self) -> bool:
        return self.backend == "native"  # torchdiffeq and scipy run their steps out of reach

    #: solve_ivp_batched's keywords and their defaults (one source for both).
    defaults: ClassVar[dict[str, Any]] = keyword_defaults(solve_ivp_batched, "callback")
    method: str
    t_eval: Tensor | None
    backend: str

    def check_options(self, options: dict[str, Any]) -> None:
        _check_options(options["method"], options["backend"], options["rtol"], options["atol"], options["error_norm"])
        check_positive_int("max_steps", options["max_steps"])
        if options["h_init"] is not None:
            check_positive("h_init", options["h_init"])
        if options["sync_every"] is not None:
            check_positive_int("sync_every", options["sync_every"])
        if options["t_eval"] is not None and not isinstance(options["t_eval"], Tensor):
            raise TypeError(
                f"t_eval must be a 1-D torch.Tensor of times or None, got {type(options['t_eval']).__name__}"
            )
        if options["controller"] is not None and not callable(getattr(options["controller"], "propose", None)):
            kind = type(options["controller"]).__name__
            raise TypeError(f"controller must be a step-size controller (with propose) or None, got {kind}")
        if options["backend"] != "native":
            given = [name for name in ("controller", "sync_every") if options[name] is not None]
            if given:
                raise TypeError(
                    f"{', '.join(given)}: option(s) of the native backend only, not of {options['backend']!r}"
                )

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
    ) -> tuple[Tensor, SampleInfo]:
        with torch.no_grad(), tqdm(disable=not progress, desc="sampling", unit="NFE") as bar:
            velocity = _FlowVelocity(sde, score, bar)
            return solve_ivp_batched(velocity, x, sde.T, eps, callback=callback, **self.options)


class _FlowVelocity:
    """The flow's drift as ``func(t, y)``, counting on a tqdm bar; its score follows the active set."""

    def __init__(self, sde: SDE, score: ScoreFn, bar: Any) -> None:
        self.sde, self.full, self.bar = sde, score, bar
        self.flow = probability_flow(sde, score)

    def select(self, rows: Tensor, batch_size: int) -> _FlowVelocity:
        selected = _FlowVelocity(self.sde, self.full, self.bar)
        selected.flow = probability_flow(self.sde, select_rows(self.full, rows, batch_size))
        return selected

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        self.bar.update(1)
        return self.flow.drift(y, t)
