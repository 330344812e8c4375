"""No host synchronisation inside sampler step loops.

A host synchronisation (the CPU waits for the device to finish its queued work so that it
can read a value) inside a step loop stalls the accelerator at every step. The samplers keep
every per-step decision on the device; this file checks that.

**On CPU** (always run) each sampler runs under :class:`ReadBackRecorder`: a
``TorchFunctionMode`` that records every call reading tensor *values* back into Python (which
would synchronise on an accelerator), plus a ``TorchDispatchMode`` for the reads ATen makes
itself (``x[i]`` with a 0-d integer tensor ``i`` calls ``item()`` in C++, unseen by
``__torch_function__``). Each read-back is stamped with the number of score calls made before
it (the score is wrapped in a counter) and its ``file:line``; that places it in the loop:

* Fixed-grid samplers (every predictor/stepper of ``sde_methods()``, every fixed-grid method of
  ``ode_methods()``, ``pc_sample`` with every corrector; on VP, VE, discrete VP and a generic
  non-linear-interface VP): **no** read-back from the first score call to the end of the last
  step (marked by the sampler's ``callback`` at its last step). Setup before the first score
  call is allowed, and so is the finite-state check after the loop (one sync point, checked).
  The part of step 0 before its first score call counts as setup, but it is the same code as
  steps 1 … N−1, which are covered.
* ``sample(method="adaptive")`` (adaptive SDE solver): **k = 1 iteration = 2 score calls**. It
  reads back one status vector per iteration (which samples finished, failures, Brownian tree
  depth), so: read-backs only at iteration boundaries (never between the two score calls of an
  iteration), at most one sync point per iteration, one device read-back there (the solver
  reads its host copy several ways, which moves no data).
* ``ode_sample(method="dopri5" | "bosh3")`` (adaptive ODE solver): read-backs are meant for check
  points only, at most ``sync_every`` iterations apart (default 1 on CPU, 4 on accelerators) and
  more often near the end (the next check is scheduled halfway to the slowest sample's finish):
  **k = ``sync_every`` iterations in mid-run, 1 at worst**. Checked: read-backs only at iteration
  boundaries (an iteration is 6 score calls for dopri5, 3 for bosh3, after 2 calls that set the
  first step size), at most one sync point per iteration, never more than ``sync_every``
  iterations between two, and fewer sync points than iterations when ``sync_every`` > 1.
* ``torchsde:*`` methods are excluded: ``torchsde.sdeint`` runs that loop, not sdekit.

What counts as a read-back (torch 2.13; every entry of :data:`SYNCS` shows one being caught):
``Tensor.item``, ``.cpu``, ``.tolist``, ``.numpy``, ``__array__`` (``numpy.asarray``),
``bool(t)`` / ``if t`` / ``not t`` (``__bool__``), ``int(t)``, ``float(t)`` and ``math.*(t)``
(``__float__``), ``complex(t)``, ``operator.index(t)`` / ``range(t)`` / ``seq[t]``
(``__index__``), f-strings (``__format__``), ``repr(t)``, ``v in t`` (``__contains__``); the
calls whose output shape depends on values (``nonzero``, ``argwhere``, ``masked_select``,
``unique``, ``unique_consecutive``, one-argument ``torch.where``, boolean-mask indexing);
``torch.equal``, ``allclose``, ``is_nonzero``; and ``item()`` inside ATen. All of these pass
through ``__torch_function__`` except the last. Not visible on CPU: host↔device copies
(``.to(device)``, ``copy_``), which a CPU run cannot tell from no-ops; the CUDA tests see them.
A read-back of a host copy (the result of ``.cpu()``, or computed only from such results)
moves no data: it is recorded with ``host=True`` and not counted.

**With CUDA** (skipped without a GPU) every sampler runs on the GPU: fixed-grid ones under
``torch.cuda.set_sync_debug_mode("error")`` from the first score call to the loop's last
step (any synchronising call there raises, pageable host↔device copies included); adaptive
ones under ``"warn"``, each warning stamped by score calls and held to the bounds above.
"""

from __future__ import annotations

import bisect
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from sdekit import VESDE, VPSDE, ode_sample, pc_sample, sample
from sdekit.sampling import SampleInfo, ode_methods, sde_methods
from sdekit.sde import linear_betas
from sdekit.solvers import CORRECTORS
from sdekit.solvers.adaptive_ode import TABLEAUS

from conftest import GenericVP, gaussian_score

SHAPE = (8, 3)
STEPS = 6
SDES: dict[str, Callable[[], Any]] = {
    "vp": VPSDE,
    "ve": VESDE,
    "discrete_vp": lambda: VPSDE.from_betas(linear_betas(1000)),  # DDPM's table, interpolated (DiscreteVPSDE)
    "generic_vp": GenericVP,  # a VP SDE without the LinearSDE interface: the samplers' general steps
}

#: Loops that are not sdekit's: torchsde.sdeint steps the SDE (and reads back what it likes).
EXTERNAL_LOOPS = tuple(m for m in sde_methods() if m.startswith("torchsde:"))
ADAPTIVE_SDE = ("adaptive",)
FIXED_SDE = tuple(m for m in sde_methods() if m not in ADAPTIVE_SDE + EXTERNAL_LOOPS)
ADAPTIVE_ODE = tuple(m for m in ode_methods() if m in TABLEAUS)
FIXED_ODE = tuple(m for m in ode_methods() if m not in TABLEAUS)
PC_CORRECTORS = tuple(c for c in CORRECTORS.names() if c != "none")
#: Methods that need a LinearSDE (Gaussian kernel): not run on the generic SDE.
LINEAR_ONLY = {"ancestral", "ddim", "dpmpp_2m_sde", "dpmpp_2m", "dpmpp_3m", "annealed_langevin"}


# --- recording read-backs -------------------------------------------------------------------------------------------

#: Functions (by ``__name__``, as ``__torch_function__`` receives them) that read values into Python.
READ_BACKS = frozenset(
    {
        "item",
        "cpu",
        "tolist",
        "numpy",
        "__array__",
        "__bool__",
        "__int__",
        "__float__",
        "__index__",
        "__complex__",
        "__format__",
        "__repr__",
        "__contains__",
        "nonzero",
        "argwhere",
        "masked_select",
        "unique",
        "unique_consecutive",
        "equal",
        "allclose",
        "is_nonzero",
    }
)


def _read_back_name(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    name = getattr(func, "__name__", "")
    if name in READ_BACKS:
        return name
    if name in ("__getitem__", "__setitem__") and len(args) > 1:
        index = tree_flatten(args[1])[0]
        if any(isinstance(i, Tensor) and i.dtype == torch.bool for i in index):
            return f"{name}[bool mask]"
    if func is torch.where and len(args) + len(kwargs) == 1:
        return "where(condition)"
    return None


#: Read-backs inside ATen, seen by the dispatch-level half of the recorder: ``_local_scalar_dense`` is
#: ``item()`` in C++ (indexing with a 0-d integer tensor, slicing with tensor bounds, ``bool(t)``, ...).
SCALAR_READS = (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default)
_RECORDER_FRAMES = {"__torch_function__", "__torch_dispatch__", "_record", "_location"}
_TORCH_DIR = os.path.dirname(torch.__file__)
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Read:
    """One read-back: what, where, after how many score calls (0 = setup), whether after the loop, of a host copy."""

    name: str
    where: str
    calls: int
    after_loop: bool
    host: bool


class ReadBackRecorder(TorchFunctionMode):
    """Records every value read-back (see :data:`READ_BACKS`) with the score calls made before it.

    ``score(fn)`` wraps a score so that its calls are counted; ``loop_end(last)`` is a sampler
    callback that marks the end of the fixed-grid loop (after step ``last``). Results of
    ``.cpu()`` are host copies (cloned if ``.cpu()`` returned its input, as a device→host copy
    would), and so is anything computed only from host copies: reading those is recorded with
    ``host=True``, as it moves no data.

    Entering it also enters a ``TorchDispatchMode`` that records :data:`SCALAR_READS` made by
    ATen itself and not by one of the Python-level calls above: ``x[i]`` with a 0-d integer
    tensor ``i`` calls ``item()`` in C++ without passing through ``__torch_function__``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.after_loop = False
        self.reads: list[Read] = []
        self._host: dict[int, Tensor] = {}  # id -> tensor; the reference keeps the id unique
        self._reading = 0  # > 0 while a recorded read-back runs: its own C++ item() is not recorded again
        self._aten = _AtenScalarReads(self)

    def __enter__(self):
        super().__enter__()
        self._aten.__enter__()
        return self

    def __exit__(self, *exc):
        self._aten.__exit__(*exc)
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        tensors = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, Tensor)]
        on_host = bool(tensors) and all(id(a) in self._host for a in tensors)
        name = _read_back_name(func, args, kwargs)
        if name is None:
            out = func(*args, **kwargs)
        else:
            self._record(name, on_host)
            self._reading += 1
            try:
                out = func(*args, **kwargs)
            finally:
                self._reading -= 1
        if getattr(func, "__name__", "") == "cpu":
            if out is args[0]:
                out = out.clone()
            self._mark(out)
        elif on_host:
            self._mark(out)
        return out

    def _record(self, name: str, host: bool) -> None:
        self.reads.append(Read(name, _location(), self.calls, self.after_loop, host))

    def _mark(self, out: Any) -> None:
        for leaf in tree_flatten(out)[0]:
            if isinstance(leaf, Tensor):
                self._host[id(leaf)] = leaf

    def score(self, fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
        def counted(x: Tensor, t: Tensor) -> Tensor:
            self.calls += 1
            return fn(x, t)

        return counted

    def loop_end(self, last: int) -> Callable[[dict[str, Any]], None]:
        def callback(info: dict[str, Any]) -> None:
            if info["i"] == last:
                self.after_loop = True

        return callback

    def device_reads(self) -> list[Read]:
        """Read-backs that move data off the device (not of host copies), after the first score call."""
        return [r for r in self.reads if r.calls >= 1 and not r.host]

    def sync_points(self) -> list[int]:
        """Score-call stamps (calls made before) of the device read-backs during the loop, one per stamp."""
        return sorted({r.calls for r in self.device_reads() if not r.after_loop})


class _AtenScalarReads(TorchDispatchMode):
    def __init__(self, recorder: ReadBackRecorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        if func in SCALAR_READS and not self.recorder._reading:
            name = "item() in ATen" if func is SCALAR_READS[0] else "nonzero in ATen"
            self.recorder._record(name, id(args[0]) in self.recorder._host)
        return func(*args, **(kwargs or {}))


def _location() -> str:
    """file:line of the code that asked for the read-back (the first frame outside torch and the recorder)."""
    frame = sys._getframe(1)
    while frame is not None and (
        frame.f_code.co_name in _RECORDER_FRAMES or frame.f_code.co_filename.startswith(_TORCH_DIR)
    ):
        frame = frame.f_back
    if frame is None:
        return "?"
    return f"{os.path.relpath(frame.f_code.co_filename, _ROOT)}:{frame.f_lineno}"


def describe(reads: list[Read]) -> str:
    """``name@score calls before it [file:line]`` for each read-back."""
    return (
        ", ".join(f"{r.name}@{r.calls}{' (after loop)' if r.after_loop else ''} [{r.where}]" for r in reads) or "none"
    )


def check_fixed_grid(recorder: ReadBackRecorder, info: SampleInfo) -> None:
    """No device read-back from the first score call to the end of the last step."""
    assert recorder.calls == info.nfe, "the score wrapper must see every score call"
    assert recorder.after_loop, "the loop_end callback never saw the last step"
    inside = [r for r in recorder.device_reads() if not r.after_loop]
    assert not inside, f"host read-back inside the step loop (name@score calls before it): {describe(inside)}"


def check_iteration_bound(recorder: Any, nfe: int, setup_calls: int, calls_per_iteration: int) -> int:
    """Sync points only at iteration boundaries, at most one per iteration; returns the number of iterations."""
    iterations, remainder = divmod(nfe - setup_calls, calls_per_iteration)
    assert remainder == 0 and iterations >= 1, (nfe, setup_calls, calls_per_iteration)
    assert recorder.calls == nfe, "the score wrapper must see every score call"
    points = recorder.sync_points()
    mid_iteration = [p for p in points if p < setup_calls or (p - setup_calls) % calls_per_iteration]
    assert not mid_iteration, (
        f"read-back between score calls of one iteration, at score calls {mid_iteration}: "
        f"{describe(recorder.device_reads())}"
    )
    assert len(points) <= iterations
    return iterations


# --- fixed-grid samplers: no read-back at all inside the loop ------------------------------------------------------


def fixed_grid_cases() -> Iterator[Any]:
    for sde_name in SDES:
        for method in FIXED_SDE:
            if not (sde_name == "generic_vp" and method in LINEAR_ONLY):
                yield pytest.param("sample", method, sde_name, id=f"sample-{method}-{sde_name}")
        for method in FIXED_ODE:
            if not (sde_name == "generic_vp" and method in LINEAR_ONLY):
                yield pytest.param("ode_sample", method, sde_name, id=f"ode_sample-{method}-{sde_name}")
        for corrector in PC_CORRECTORS:
            if not (sde_name == "generic_vp" and corrector in LINEAR_ONLY):
                yield pytest.param("pc_sample", corrector, sde_name, id=f"pc_sample-{corrector}-{sde_name}")


def run_fixed_grid(
    sampler: str,
    method: str,
    sde: Any,
    score: Callable[[Tensor, Tensor], Tensor],
    callback: Callable[[dict[str, Any]], None],
    device: str = "cpu",
) -> tuple[Tensor, SampleInfo]:
    common: dict[str, Any] = {
        "steps": STEPS,
        "denoise": False,
        "generator": torch.Generator(device=device).manual_seed(0),
        "device": device,
        "callback": callback,
        "return_info": True,
    }
    try:
        if sampler == "sample":
            return sample(sde, score, SHAPE, method=method, **common)
        if sampler == "ode_sample":
            return ode_sample(sde, score, SHAPE, method=method, **common)
        # Two corrector moves per step, so that corrector-after-corrector is covered too.
        return pc_sample(
            sde, score, SHAPE, predictor="reverse_diffusion", corrector=method, corrector_steps=2, snr=0.05, **common
        )
    except TypeError as error:
        if isinstance(sde, GenericVP) and "LinearSDE" in str(error):
            pytest.skip(f"{method} needs a LinearSDE (add it to LINEAR_ONLY)")
        raise


@pytest.mark.parametrize(("sampler", "method", "sde_name"), list(fixed_grid_cases()))
def test_fixed_grid_loop_reads_nothing_back(sampler, method, sde_name):
    sde = SDES[sde_name]()
    recorder = ReadBackRecorder()
    with recorder:
        x, info = run_fixed_grid(
            sampler, method, sde, recorder.score(gaussian_score(sde)), recorder.loop_end(STEPS - 1)
        )
    assert torch.isfinite(x).all()
    check_fixed_grid(recorder, info)
    # The finite-state check is read back once, after the loop; the recorder sees it.
    after = [r for r in recorder.device_reads() if r.after_loop]
    assert len(after) == 1, describe(after)


# --- adaptive SDE solver: k = 1 iteration (2 score calls) -----------------------------------------------------------


def run_adaptive_sde(sde: Any, score: Any, device: str) -> tuple[Tensor, Any]:
    """``sample(method="adaptive")`` from the prior, without the final denoising step, on ``device``."""
    generator = torch.Generator(device=device).manual_seed(0)
    return sample(
        sde, score, SHAPE, method="adaptive", denoise=False, generator=generator, device=device, return_info=True
    )


@pytest.mark.parametrize("sde_name", ["vp", "ve", "discrete_vp"])
@pytest.mark.slow
def test_adaptive_sde_reads_back_once_per_iteration(sde_name):
    sde = SDES[sde_name]()
    recorder = ReadBackRecorder()
    with recorder:
        x, info = run_adaptive_sde(sde, recorder.score(gaussian_score(sde)), "cpu")
    assert torch.isfinite(x).all()
    iterations = check_iteration_bound(recorder, info.nfe, setup_calls=0, calls_per_iteration=2)
    # One device read-back (the status vector) per iteration, the rest of the loop reads its host copy.
    in_loop = [r for r in recorder.device_reads() if r.calls < info.nfe]
    assert len(in_loop) <= iterations - 1, describe(in_loop)


# --- adaptive ODE solvers: a check point every <= sync_every iterations, at most one per iteration ------------------

#: Tolerances giving enough iterations (10-150) for the check-point schedule to show, in well under a second each.
ODE_TOL = {"dopri5": 1e-5, "bosh3": 1e-4, "heun_euler": 3e-3}  # heun_euler at 1e-4: 1520 NFE on VE


def run_adaptive_ode(sde: Any, method: str, sync_every: int | None, score: Any, device: str) -> tuple[Tensor, Any]:
    """``ode_sample`` with an adaptive pair at the tolerance of :data:`ODE_TOL`, on ``device``."""
    options = {} if sync_every is None else {"sync_every": sync_every}
    tol = ODE_TOL.get(method, 1e-4)
    return ode_sample(
        sde,
        score,
        SHAPE,
        method=method,
        rtol=tol,
        atol=tol,
        denoise=False,
        generator=torch.Generator(device=device).manual_seed(0),
        device=device,
        return_info=True,
        **options,
    )


def check_check_points(recorder: Any, nfe: int, method: str, sync_every: int) -> None:
    """Read-backs only at iteration boundaries, at most ``sync_every`` iterations apart, and at fewer iterations
    than all when ``sync_every`` > 1. Before its first iteration the solver makes 2 score calls: f(t0, y0) and
    one for its per-sample initial step size."""
    per_iteration = TABLEAUS[method].stages - 1  # first-same-as-last: the first stage is the previous last
    iterations = check_iteration_bound(recorder, nfe, setup_calls=2, calls_per_iteration=per_iteration)
    points = recorder.sync_points()
    checked_after = [(p - 2) // per_iteration for p in points]  # iterations done at each sync point
    gaps = [b - a for a, b in zip([0, *checked_after], checked_after, strict=False)]
    assert checked_after and checked_after[-1] == iterations, "termination is found at a check point"
    assert max(gaps) <= sync_every, f"iterations between check points: {gaps}"
    if sync_every > 1:
        where = sorted({r.where for r in recorder.device_reads()})
        assert len(points) < iterations, (
            f"a read-back in each of the {iterations} iterations with sync_every={sync_every}; "
            f"read-backs at {where}: {describe(recorder.device_reads()[:8])}"
        )


@pytest.mark.parametrize(
    "sync_every",
    [None, 4],
    ids=["default", "4"],
)
@pytest.mark.parametrize("method", ADAPTIVE_ODE)
@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_adaptive_ode_reads_back_at_check_points_only(sde_name, method, sync_every):
    sde = SDES[sde_name]()
    recorder = ReadBackRecorder()
    with recorder:
        x, info = run_adaptive_ode(sde, method, sync_every, recorder.score(gaussian_score(sde)), "cpu")
    assert torch.isfinite(x).all()
    check_check_points(recorder, info.nfe, method, 1 if sync_every is None else sync_every)  # default: 1 on CPU


# --- the recorder itself: it catches each kind of read-back, and lets host copies through --------------------------

#: A read-back made inside a score: test id, the name it is recorded under, the read-back.
SYNCS: list[tuple[str, str, Callable[[Tensor], Any]]] = [
    ("item", "item", lambda x: x.sum().item()),
    ("cpu", "cpu", lambda x: x.cpu()),
    ("tolist", "tolist", lambda x: x.tolist()),
    ("numpy", "numpy", lambda x: x.numpy()),
    ("np.asarray", "__array__", lambda x: np.asarray(x)),
    ("bool", "__bool__", lambda x: bool(x.sum() > 0)),
    ("not", "__bool__", lambda x: not x.sum()),
    ("int", "__int__", lambda x: int(x.argmax())),
    ("math", "__float__", lambda x: math.isfinite(x.sum())),
    ("complex", "__complex__", lambda x: complex(x.sum())),
    ("list-index", "__index__", lambda x: [0, 1][x.argmax() % 2]),
    ("range", "__index__", lambda x: range(x.argmax())),
    ("f-string", "__format__", lambda x: f"{x.sum():.3f}"),
    ("repr", "__repr__", lambda x: repr(x)),
    ("in", "__contains__", lambda x: 0.0 in x),
    ("nonzero", "nonzero", lambda x: (x > 0).nonzero()),
    ("argwhere", "argwhere", lambda x: torch.argwhere(x > 0)),
    ("masked_select", "masked_select", lambda x: x.masked_select(x > 0)),
    ("unique", "unique", lambda x: torch.unique(x)),
    ("unique_consecutive", "unique_consecutive", lambda x: torch.unique_consecutive(x)),
    ("equal", "equal", lambda x: torch.equal(x, x)),
    ("allclose", "allclose", lambda x: torch.allclose(x, x)),
    ("is_nonzero", "is_nonzero", lambda x: torch.is_nonzero(x.sum())),
    ("bool-mask", "__getitem__[bool mask]", lambda x: x[x > 0]),
    ("where-1-arg", "where(condition)", lambda x: torch.where(x > 0)),
    ("0-d-index", "item() in ATen", lambda x: x[x.argmax() // x.shape[1]]),  # invisible to __torch_function__
]


@pytest.mark.parametrize(("kind", "read"), [(k, r) for _, k, r in SYNCS], ids=[i for i, _, _ in SYNCS])
def test_recorder_catches_a_syncing_score(kind, read):
    """A score that reads back on every call fails the fixed-grid check, at each call, with its own location."""
    sde = VPSDE()
    exact = gaussian_score(sde)

    def syncing(x: Tensor, t: Tensor) -> Tensor:
        read(x)
        return exact(x, t)

    recorder = ReadBackRecorder()
    with recorder:
        _, info = run_fixed_grid("sample", "euler_maruyama", sde, recorder.score(syncing), recorder.loop_end(STEPS - 1))
    with pytest.raises(AssertionError, match="inside the step loop"):
        check_fixed_grid(recorder, info)
    inside = [r for r in recorder.device_reads() if not r.after_loop]
    assert [(r.name, r.calls) for r in inside] == [(kind, i) for i in range(1, STEPS + 1)]
    assert all(r.where.startswith(os.path.join("tests", "test_host_sync.py:")) for r in inside), describe(inside)


def test_recorder_counts_reads_of_host_copies_as_host():
    recorder = ReadBackRecorder()
    x = torch.arange(6.0).reshape(2, 3)
    with recorder:
        host = x.cpu()
        assert host is not x  # a device->host copy is a new tensor, on CPU too
        float(host[0, 1]), int((host > 2).sum()), (host * 2).tolist(), host[torch.tensor(1)]
        float(x[0, 0])
    assert [(r.name, r.host) for r in recorder.reads] == [
        ("cpu", False),
        ("__float__", True),
        ("__int__", True),
        ("tolist", True),
        ("item() in ATen", False),  # the 0-d index is not a host copy
        ("__float__", False),
    ]


# --- with CUDA: the same loops under torch.cuda.set_sync_debug_mode -------------------------------------------------

CUDA = "cuda"
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@contextmanager
def sync_debug_mode(mode: str) -> Iterator[None]:
    """Set the CUDA sync debug mode for the block; always back to "default" afterwards."""
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


@cuda
@pytest.mark.parametrize(("sampler", "method", "sde_name"), list(fixed_grid_cases()))
def test_fixed_grid_loop_does_not_sync_cuda(sampler, method, sde_name):
    """Mode "error" from the first score call to the last step's callback: any synchronising call there raises."""
    sde = SDES[sde_name]()
    exact = gaussian_score(sde)
    calls, ended = [0], [False]

    def score(x: Tensor, t: Tensor) -> Tensor:
        if calls[0] == 0:
            torch.cuda.set_sync_debug_mode("error")
        calls[0] += 1
        return exact(x, t)

    def callback(info: dict[str, Any]) -> None:
        if info["i"] == STEPS - 1:
            torch.cuda.set_sync_debug_mode("default")
            ended[0] = True

    with sync_debug_mode("default"):  # resets the mode if the loop raises
        x, info = run_fixed_grid(sampler, method, sde, score, callback, device=CUDA)
    assert x.device.type == CUDA and ended[0] and calls[0] == info.nfe
    assert torch.isfinite(x).all()


class CudaSyncRecorder:
    """Runs a block under sync debug mode "warn" and stamps each sync warning with the score calls before it.

    Offers the ``calls`` / ``device_reads()`` / ``sync_points()`` of :class:`ReadBackRecorder`.
    """

    def __init__(self) -> None:
        self.calls = 0
        self._marks: list[int] = []  # sync warnings seen when score call i + 1 started
        self._caught: list[warnings.WarningMessage] = []

    def score(self, fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
        def counted(x: Tensor, t: Tensor) -> Tensor:
            self._marks.append(len(self._syncs()))
            self.calls += 1
            return fn(x, t)

        return counted

    @contextmanager
    def recording(self) -> Iterator[None]:
        with warnings.catch_warnings(record=True) as caught, sync_debug_mode("warn"):
            warnings.simplefilter("always")
            self._caught = caught
            yield

    def _syncs(self) -> list[warnings.WarningMessage]:
        return [w for w in self._caught if "synchroniz" in str(w.message)]

    def device_reads(self) -> list[Read]:
        reads = []
        for i, w in enumerate(self._syncs()):
            calls = bisect.bisect_right(self._marks, i)
            if calls >= 1:
                reads.append(Read("CUDA sync", f"{os.path.relpath(w.filename, _ROOT)}:{w.lineno}", calls, False, False))
        return reads

    def sync_points(self) -> list[int]:
        return sorted({r.calls for r in self.device_reads()})


@cuda
@pytest.mark.parametrize("sde_name", ["vp", "ve", "discrete_vp"])
def test_adaptive_sde_syncs_once_per_iteration_cuda(sde_name):
    sde = SDES[sde_name]()
    recorder = CudaSyncRecorder()
    with recorder.recording():
        x, info = run_adaptive_sde(sde, recorder.score(gaussian_score(sde)), CUDA)
    assert x.device.type == CUDA and torch.isfinite(x).all()
    check_iteration_bound(recorder, info.nfe, setup_calls=0, calls_per_iteration=2)


@cuda
@pytest.mark.parametrize("sync_every", [None, 4], ids=["default", "4"])
@pytest.mark.parametrize("method", ADAPTIVE_ODE)
@pytest.mark.parametrize("sde_name", ["vp", "discrete_vp"])
def test_adaptive_ode_syncs_at_check_points_only_cuda(sde_name, method, sync_every):
    sde = SDES[sde_name]()
    recorder = CudaSyncRecorder()
    with recorder.recording():
        x, info = run_adaptive_ode(sde, method, sync_every, recorder.score(gaussian_score(sde)), CUDA)
    assert x.device.type == CUDA and torch.isfinite(x).all()
    check_check_points(recorder, info.nfe, method, 4 if sync_every is None else sync_every)  # default: 4 on GPUs
