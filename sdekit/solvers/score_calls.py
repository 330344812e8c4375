"""The score as solvers see it: every call counted, the first call's output checked."""

from __future__ import annotations

import torch
from torch import Tensor

from sdekit.reverse import ScoreFn


class CountedScore:
    """Wraps ``score(x, t)``: counts calls (one batched call = one NFE) and checks the first result.

    ``t`` reaches the wrapped score in the state's dtype with shape ``(B,)``; solvers on a
    shared time may pass shape ``(1,)``, which is expanded. The first call checks that
    the result is a tensor of ``x``'s shape, dtype and device, so a network with the
    wrong output layout fails at once with a message rather than deep in a solver.
    """

    def __init__(self, score: ScoreFn) -> None:
        if not callable(score):
            raise TypeError(f"score must be callable as score(x, t), got {type(score).__name__}")
        self.score = score
        self.nfe = 0
        self._checked = False

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        out = self.score(x, t.to(x.dtype).expand(x.shape[0]))
        self.nfe += 1
        if not self._checked:
            _check_output(out, x)
            self._checked = True
        return out


def _check_output(out: object, x: Tensor) -> None:
    if not isinstance(out, Tensor):
        raise TypeError(f"score must return a torch.Tensor, got {type(out).__name__}")
    if out.shape != x.shape:
        raise ValueError(f"score returned shape {tuple(out.shape)}; it must match x's shape {tuple(x.shape)}")
    if out.dtype != x.dtype:
        raise TypeError(f"score returned dtype {out.dtype}; it must match x's dtype {x.dtype}")
    if out.device != x.device:
        raise ValueError(f"score returned a tensor on {out.device}; x is on {x.device}")


def gaussian_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise with ``x``'s shape, dtype and device, drawn from ``generator``."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
