"""The solve loop every method runs through: a fixed-grid stepper and the adaptive solvers alike.

A solve in progress is a :class:`Run`: ``advance()`` takes one step (one batched iteration of an
adaptive solver, checks and compaction included) and says how much progress it made, ``payload()``
describes the step just taken for the callback, ``done`` says when to stop. :func:`run_loop`
drives it with the tqdm bar and the callback (a callback that returns a tensor replaces the state,
where the run has ``replace``: the fixed-grid runs; any other return value is ignored), under
``torch.no_grad()`` and without the time
checks (grids and step sizes are validated before the loop). Nothing in the loop itself reads
back from the device; a run does where it must (an adaptive check point).
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from sdekit.sde import time_checks
from sdekit.solvers.method import Callback


class StepLimitError(RuntimeError):
    """An adaptive solve that reached its iteration limit with samples unfinished (the message says where)."""


__all__ = ["Run", "run_loop"]


class Run(Protocol):
    """One solve in progress."""

    @property
    def done(self) -> bool: ...

    def advance(self) -> int:
        """Take the next step; the progress it made (steps, or score calls), for the bar."""
        ...

    def payload(self) -> dict[str, Any]:
        """The step just taken, for the callback: at least ``x``, ``i`` and ``t``."""
        ...


def run_loop(
    run: Run,
    *,
    progress: bool,
    callback: Callback | None,
    desc: str = "sampling",
    unit: str = "step",
    total: int | None = None,
    grad: bool = False,
) -> None:
    """Advance ``run`` until it is done, updating the bar and calling ``callback(run.payload())`` after each step.

    ``grad=True`` keeps autograd as the caller has it (a generic ODE solve a caller may differentiate).
    """
    autograd = contextlib.nullcontext() if grad else torch.no_grad()
    with autograd, time_checks(False), tqdm(total=total, disable=not progress, desc=desc, unit=unit) as bar:
        while not run.done:
            bar.update(run.advance())
            if callback is not None:
                replacement = callback(run.payload())
                if isinstance(replacement, torch.Tensor):  # other return values are ignored, as they always were
                    replace = getattr(run, "replace", None)
                    if replace is None:
                        raise TypeError(
                            "callback returned a new state, which this method cannot take (its samples run on "
                            "their own clocks); return None, or use a fixed-grid method"
                        )
                    replace(replacement)
