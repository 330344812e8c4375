"""Time labels: what a network is told about the noise level, and which level that label means.

sdekit hands a score time ``t ∈ [0, T]``; networks were trained with their own labels:

* ``"time"`` — the network takes t itself (continuous-time x̂₀/v models). Level: t.
* ``"continuous"`` — label t·(N − 1), the convention of score_sde's continuous DDPM
  checkpoints (trained on the VP SDE with labels t·999). Level: t.
* ``"scaled"`` — label t·N, the convention of flow-matching models in diffusers (timestep = σ·1000 for
  the rectified flow, whose σ is t). Level: t.
* ``"index"`` — the nearest trained integer timestep i ∈ {0, …, N − 1} (DDPM,
  diffusers). Index i was trained at ᾱ_i, which :class:`sdekit.DiscreteVPSDE` puts at
  t_i = (i + 1)/N; the level is t_i, *not* t, so the std the adapter divides by is the
  one the network actually saw. Between trained levels the result is the network's
  score at the nearest level; sample on :func:`index_times` to be exact.
* ``"fractional"`` — a real-valued timestep τ ∈ [0, N − 1] for a network with a continuous
  time embedding sampled between its trained levels, as diffusers' σ-schedulers do
  (``EulerDiscreteScheduler`` with Karras or other σ-grids): τ interpolates the timestep
  linearly in log σ̃ (σ̃ = σ/α) between the two trained levels around σ̃(t), diffusers'
  convention. Level: t (the network sees σ̃(t) itself). Needs the DDPM's levels
  (a :class:`sdekit.DiscreteVPSDE`); at a trained level it is that level's index exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

import sdekit
from sdekit.checks import check_choice, check_positive_int

__all__ = ["TIME_LABELS", "TimeLabels", "index_times"]

TIME_LABELS = ("time", "continuous", "scaled", "index", "fractional")


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

    def __init__(self, kind: str, num_timesteps: int, sde: object = None) -> None:
        self.kind: str = check_choice("time_label", kind, TIME_LABELS)
        self.num_timesteps = check_positive_int("num_timesteps", num_timesteps)
        self.log_sigmas: Tensor | None = None
        self.sde = sde
        if self.kind == "fractional":
            if not isinstance(sde, sdekit.DiscreteVPSDE) or sde.num_timesteps != self.num_timesteps:
                raise TypeError(
                    "time_label='fractional' needs the DDPM's trained levels: a sdekit.DiscreteVPSDE with "
                    f"{self.num_timesteps} levels, got {type(sde).__name__}"
                )
            levels = torch.arange(1, self.num_timesteps + 1, dtype=torch.float64) / self.num_timesteps
            self.log_sigmas = -sde.log_snr(levels)  # log σ̃ of trained timesteps 0 … N − 1, increasing

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
        if self.kind == "scaled":
            return (t64 * n).to(dtype), t64
        if self.kind == "fractional":
            return self._fractional(t64).to(dtype), t64
        index = (t64 * n - 1).round().clamp(0, n - 1)
        return index.long(), (index + 1) / n

    def _fractional(self, t: Tensor) -> Tensor:
        """τ with log σ̃ linear in τ between the trained timesteps around log σ̃(t) (clamped to [0, N − 1])."""
        assert self.log_sigmas is not None and isinstance(self.sde, sdekit.DiscreteVPSDE)
        table = self.log_sigmas.to(t.device)
        log_sigma = -self.sde.log_snr(t)
        high = torch.searchsorted(table, log_sigma).clamp(1, table.numel() - 1)
        low = high - 1
        w = ((log_sigma - table[low]) / (table[high] - table[low])).clamp(0, 1)
        return low.to(torch.float64) + w
