"""Time labels: what a network is told about the noise level, and which level that label means.

sdekit hands a score time ``t ∈ [0, T]``; networks were trained with their own labels:

* ``"time"`` — the network takes t itself (continuous-time x̂₀/v models). Level: t.
* ``"continuous"`` — label t·(N − 1), the convention of score_sde's continuous DDPM
  checkpoints (trained on the VP SDE with labels t·999). Level: t.
* ``"index"`` — the nearest trained integer timestep i ∈ {0, …, N − 1} (DDPM,
  diffusers). Index i was trained at ᾱ_i, which :class:`sdekit.DiscreteVPSDE` puts at
  t_i = (i + 1)/N; the level is t_i, *not* t, so the std the adapter divides by is the
  one the network actually saw. Between trained levels the result is the network's
  score at the nearest level; sample on :func:`index_times` to be exact.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sdekit.checks import check_choice, check_positive_int

__all__ = ["TIME_LABELS", "TimeLabels", "index_times"]

TIME_LABELS = ("time", "continuous", "index")


def index_times(indices: Tensor | list[int], num_timesteps: int) -> Tensor:
    """sdekit times t_i = (i + 1)/N (float64) of 0-based trained timesteps i.

    Use it to sample exactly on a DDPM's trained levels, e.g. on a diffusers scheduler's
    ``timesteps``: ``grid=index_times(scheduler.timesteps, 1000)``.

    ``indices``: 0-based trained timesteps (any order, e.g. a scheduler's ``timesteps``); ``num_timesteps``:
    N, the length of the training schedule. Returns the times (i + 1)/N in the order given (a scheduler's
    descending timesteps give a decreasing grid), float64.
    """
    n = check_positive_int("num_timesteps", num_timesteps)
    i = torch.as_tensor(indices).detach().to("cpu", torch.float64)
    if bool(((i < 0) | (i > n - 1) | (i != i.round())).any()):
        raise ValueError(f"indices must be integers in [0, {n - 1}] (num_timesteps={n})")
    return (i + 1) / n


class TimeLabels:
    """Map sdekit times to ``(labels, levels)``: the network's input and the float64 time of the level it saw."""

    def __init__(self, kind: str, num_timesteps: int) -> None:
        self.kind: str = check_choice("time_label", kind, TIME_LABELS)
        self.num_timesteps = check_positive_int("num_timesteps", num_timesteps)

    def __repr__(self) -> str:
        return f"TimeLabels({self.kind!r}, num_timesteps={self.num_timesteps})"

    def __call__(self, t: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Labels (``dtype``, or int64 for ``"index"``) and level times (float64), both of shape ``(B,)``."""
        t64 = t.detach().to(torch.float64)
        n = self.num_timesteps
        if self.kind == "time":
            return t.to(dtype), t64
        if self.kind == "continuous":
            return (t64 * (n - 1)).to(dtype), t64
        index = (t64 * n - 1).round().clamp(0, n - 1)
        return index.long(), (index + 1) / n
