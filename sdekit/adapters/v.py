"""v-prediction networks v̂(x, t) as sdekit scores (Salimans & Ho 2022).

With x_t = α x₀ + σ ε, the velocity is v = α ε − σ x₀. Then α v + σ x_t = (α² + σ²) ε, so
ε̂ = (α v̂ + σ x)/(α² + σ²) and the score is −ε̂/σ. On a VP SDE α² + σ² = 1 and this is the
usual ε̂ = α v̂ + σ x; other linear frames (VE, sub-VP) use the same definition of v.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

import sdekit
from sdekit.adapters._common import Network
from sdekit.adapters._prediction import PredictionScore
from sdekit.checks import batch_view

__all__ = ["VelocityScore"]


class VelocityScore(PredictionScore):
    """``score(x, t) = −(α v̂ + σ x)/((α² + σ²) σ)`` with ``v̂ = v_model(x, label(t))``.

    Args:
        v_model: called as ``v_model(x, label, **kwargs)``, returns v̂ with ``x``'s shape.
        sde: any :class:`sdekit.LinearSDE` (normally VP, e.g. :class:`sdekit.DiscreteVPSDE`).
        time_label: ``"time"`` (default), ``"continuous"`` (t·(N − 1)) or ``"index"`` (nearest DDPM timestep).
        num_timesteps: N for the labels (a :class:`sdekit.DiscreteVPSDE`'s own by default, else 1000).
        model_kwargs: conditioning passed to every call.
    """

    network_name = "v_model"

    def __init__(
        self,
        v_model: Network,
        sde: sdekit.LinearSDE,
        *,
        time_label: str = "time",
        num_timesteps: int | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(v_model, sde, time_label=time_label, num_timesteps=num_timesteps, model_kwargs=model_kwargs)

    def convert(self, out: Tensor, x: Tensor, alpha: Tensor, sigma: Tensor, level: Tensor) -> Tensor:
        scale = 1 / ((alpha**2 + sigma**2) * sigma)
        return -(batch_view(alpha * scale, x) * out + batch_view(sigma * scale, x) * x)
