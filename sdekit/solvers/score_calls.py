"""The score as solvers see it: every call counted, the first call's output checked.

Optionally the network runs in mixed precision (``autocast``) or compiled (``compile``):
the solver's state and arithmetic stay in the state's dtype either way.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from sdekit.checks import check_score_output
from sdekit.per_sample import Generators, randn_like, select_rows
from sdekit.reverse import ScoreFn

AUTOCAST_DTYPES = (torch.float16, torch.bfloat16)


class CountedScore:
    """Wraps ``score(x, t)``: counts calls (one batched call = one NFE) and checks every result.

    ``t`` reaches the wrapped score in the state's dtype with shape ``(B,)``; solvers on a
    shared time may pass shape ``(1,)``, which is expanded. Every call checks that the result
    is a tensor of ``x``'s shape, dtype and device (metadata only: no host synchronisation), so
    a network with the wrong output layout — also one that changes it after its first call, to
    a broadcastable shape or another dtype — fails at once with a message rather than giving
    finite garbage.

    ``autocast`` (``torch.float16`` or ``torch.bfloat16``) runs the score under
    ``torch.autocast`` and casts its result back to the state's dtype: mixed precision for
    the network, float32 for the solver. (Autocast leaves float64 computations alone, and
    float16 is mainly for CUDA; on CPU prefer bfloat16.) ``compile=True`` wraps the score in
    ``torch.compile`` at the first call — on CUDA with ``mode="reduce-overhead"``, which
    replays the network as a CUDA graph — and a mapping is passed to ``torch.compile`` as
    its options. Compiling pays off for long runs of one shape; the first call takes
    seconds to minutes.
    """

    def __init__(
        self, score: ScoreFn, *, autocast: torch.dtype | None = None, compile: bool | Mapping[str, Any] = False
    ) -> None:
        if not callable(score):
            raise TypeError(f"score must be callable as score(x, t), got {type(score).__name__}")
        if autocast is not None and autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast must be None, torch.float16 or torch.bfloat16, got {autocast!r}")
        if not isinstance(compile, (bool, Mapping)):
            raise TypeError(f"compile must be a bool or a mapping of torch.compile options, got {compile!r}")
        self.score = score
        #: The score as given, for the full batch; a :meth:`select` view restricts it to some rows.
        self.full = score
        self._compiled = False
        self.autocast = autocast
        self.compile = compile
        self._shared = _Shared()

    @property
    def nfe(self) -> int:
        """Batched calls so far, of this wrapper and of every :meth:`select` view of it."""
        return self._shared.nfe

    @property
    def keep_last(self) -> bool:
        """Whether ``last`` keeps the latest call's (x, t as passed, result), for callbacks (shared with views)."""
        return self._shared.keep_last

    @keep_last.setter
    def keep_last(self, value: bool) -> None:
        self._shared.keep_last = value

    @property
    def last(self) -> tuple[Tensor, Tensor, Tensor] | None:
        return self._shared.last

    def select(self, rows: Tensor, batch_size: int) -> CountedScore:
        """A view of this wrapper whose score is restricted to ``rows`` of the full batch (:mod:`sdekit.per_sample`).

        The view shares the call count and ``last`` with this wrapper, which keeps the full score.
        """
        if not callable(getattr(self.full, "select", None)):
            return self
        view = copy.copy(self)
        view.score = select_rows(self.full, rows, batch_size)
        view._compiled = False
        return view

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        if self.compile is not False and not self._compiled:
            self.score = _compiled(self.score, self.compile, x.device)
            self._compiled = True
        t_given, t = t, t.to(x.dtype).expand(x.shape[0])
        if self.autocast is None:
            out = self.score(x, t)
        else:
            with torch.autocast(x.device.type, dtype=self.autocast):
                out = self.score(x, t)
            out = out.to(x.dtype) if isinstance(out, Tensor) else out
        self._shared.nfe += 1
        check_score_output(out, x)  # at every call: metadata only, no host synchronisation
        if self._shared.keep_last:
            self._shared.last = (x, t_given, out)
        return out


@dataclass
class _Shared:
    """What a CountedScore and its select views count and remember together."""

    nfe: int = 0
    keep_last: bool = False
    last: tuple[Tensor, Tensor, Tensor] | None = None


def _compiled(score: ScoreFn, options: bool | Mapping[str, Any], device: torch.device) -> ScoreFn:
    """``torch.compile(score)`` with the given options, or sdekit's defaults for ``True``."""
    if isinstance(options, Mapping):
        return torch.compile(score, **options)
    # dynamic=None: static shapes first, dynamic after a change (the adaptive SDE solver shrinks its batch).
    return torch.compile(score, mode="reduce-overhead" if device.type == "cuda" else None)


def gaussian_like(x: Tensor, generator: Generators | None) -> Tensor:
    """Standard normal noise with ``x``'s shape, dtype and device, drawn from ``generator`` (one, or one per sample)."""
    return randn_like(x, generator)
