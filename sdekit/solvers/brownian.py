"""Per-sample Brownian paths for adaptive SDE solvers: revealed lazily, never contradicted.

An adaptive solver that rejects a step must not simply redraw its noise: keeping only
increments that passed the error test biases the path. A Brownian tree (Gaines & Lyons
1997) keeps every value drawn and answers a later query from the exact conditional law
(a Brownian bridge between known points, or a fresh Gaussian beyond the last one), so the
accepted steps integrate one Brownian path with exactly Brownian law. Each sample has its
own clock, which torchsde's ``BrownianInterval`` (one clock per batch) does not offer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sdekit.checks import batch_view

__all__ = ["BrownianTree"]


class BrownianTree:
    """Per-sample Brownian paths revealed lazily, relative to each sample's current time.

    Row b holds the points (τ, W(τ)) already drawn ahead of sample b: τ > 0 is the
    distance in reverse time from its current time, W(τ) the Brownian increment from
    there; rows are sorted by τ and padded with τ = inf. A new value is drawn from its
    exact conditional law given the neighbouring points (a bridge, or a fresh Gaussian
    beyond the last point) and kept, so re-querying never contradicts the past.
    """

    def __init__(self, x: Tensor) -> None:
        self.offsets = torch.full((x.shape[0], 1), math.inf, dtype=torch.float64, device=x.device)
        self.values = torch.zeros((x.shape[0], 1, *x.shape[1:]), dtype=x.dtype, device=x.device)

    def increment(self, h: Tensor, noise: Tensor) -> Tensor:
        """W(h) for each sample, consistent with every value drawn before; ``noise`` ~ N(0, I), shape of x."""
        rows = torch.arange(h.shape[0], device=h.device)
        right = torch.searchsorted(self.offsets, h[:, None]).squeeze(1)  # first point with τ ≥ h
        left = (right - 1).clamp_min(0)
        has_left = right > 0
        has_right = right < self.offsets.shape[1]
        tau_left = torch.where(has_left, self.offsets[rows, left], 0.0)
        tau_right = torch.where(has_right, self.offsets[rows, right.clamp_max(self.offsets.shape[1] - 1)], math.inf)
        w_left = self.values[rows, left] * batch_view(has_left, noise)
        w_right = self.values[rows, right.clamp_max(self.offsets.shape[1] - 1)]
        fresh = torch.isinf(tau_right)
        span = torch.where(fresh, 1.0, tau_right - tau_left)
        u = h - tau_left
        weight = torch.where(fresh, 0.0, u / span)
        variance = torch.where(fresh, u, u * (tau_right - h) / span).clamp_min(0)
        w_h = w_left + batch_view(weight, noise) * (w_right - w_left) + batch_view(variance.sqrt(), noise) * noise
        self._insert(h, w_h)
        return w_h

    def advance(self, accepted: Tensor, h: Tensor, w_h: Tensor) -> None:
        """Move accepted samples' origin forward by h: drop the points passed, re-base the rest."""
        shift = torch.where(accepted, h, 0.0)
        offsets = self.offsets - shift[:, None]
        values = self.values - (batch_view(accepted, w_h) * w_h)[:, None]
        passed = offsets <= 0
        self.offsets = offsets.masked_fill(passed, math.inf)
        self.values = values.masked_fill(passed.reshape(*passed.shape, *([1] * (values.ndim - 2))), 0)
        self._sort()

    def depth(self) -> Tensor:
        """The largest number of points held by one sample (a 0-d tensor on the device)."""
        return torch.isfinite(self.offsets).sum(dim=1).amax()

    def select(self, keep: Tensor) -> None:
        """Keep the rows ``keep`` (compaction of the active set)."""
        self.offsets, self.values = self.offsets[keep], self.values[keep]

    def trim(self, depth: int) -> None:
        """Drop padding columns beyond ``depth`` points (keeping at least one column)."""
        width = max(depth, 1)
        if width < self.offsets.shape[1]:
            self.offsets, self.values = self.offsets[:, :width].contiguous(), self.values[:, :width].contiguous()

    def _insert(self, h: Tensor, w_h: Tensor) -> None:
        self.offsets = torch.cat([self.offsets, h[:, None]], dim=1)
        self.values = torch.cat([self.values, w_h[:, None]], dim=1)
        self._sort()

    def _sort(self) -> None:
        self.offsets, order = self.offsets.sort(dim=1, stable=True)
        self.values = self.values[torch.arange(order.shape[0], device=order.device)[:, None], order]
