"""Data-prediction networks x̂₀(x, t) as sdekit scores: s = (α x̂₀ − x)/σ².

Tweedie's formula read backwards: for x_t = α x₀ + σ z, E[x₀ | x_t] = (x_t + σ² ∇ log p_t)/α,
so a network estimating x₀ gives the score (α x̂₀ − x)/σ², with α = ``sde.mean_coeff`` and
σ = ``sde.std`` at the network's level. Works in any linear frame (VP, sub-VP, VE).

In float32 the subtraction α x̂₀ − x loses digits where σ is tiny (σ ≲ 1e-3): stop the
sampler at ``eps`` with σ(eps) above that, or run in float64.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

import sdekit
from sdekit.adapters._common import Network
from sdekit.adapters._prediction import PredictionScore
from sdekit.checks import batch_view

__all__ = ["DataScore"]


class DataScore(PredictionScore):
    """``score(x, t) = (α x̂₀ − x)/σ²`` with ``x̂₀ = x0_model(x, label(t))``.

    Args:
        x0_model: called as ``x0_model(x, label, **kwargs)``, returns x̂₀ with ``x``'s shape.
        sde: any :class:`sdekit.LinearSDE`.
        time_label: ``"time"`` (default: the network takes t), ``"continuous"`` (t·(N − 1))
            or ``"index"`` (nearest DDPM timestep; α, σ at that level).
        num_timesteps: N for the labels (a :class:`sdekit.DiscreteVPSDE`'s own by default, else 1000).
        model_kwargs: conditioning passed to every call.
    """

    network_name = "x0_model"

    def __init__(
        self,
        x0_model: Network,
        sde: sdekit.LinearSDE,
        *,
        time_label: str = "time",
        num_timesteps: int | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(x0_model, sde, time_label=time_label, num_timesteps=num_timesteps, model_kwargs=model_kwargs)

    def convert(self, out: Tensor, x: Tensor, alpha: Tensor, sigma: Tensor, level: Tensor) -> Tensor:
        return score_from_x0(out, x, alpha, sigma)


def score_from_x0(x0: Tensor, x: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """(α x̂₀ − x)/σ² with float64 ``(B,)`` coefficients α/σ² and 1/σ² cast to ``x``'s dtype."""
    inv_var = 1 / sigma**2
    return batch_view(alpha * inv_var, x) * x0 - batch_view(inv_var, x) * x
