"""Flow-matching velocity networks û(x, t) as sdekit scores (Lipman et al. 2022; Liu et al. 2022).

A flow-matching model is trained to regress the interpolant's velocity u = α̇ x₀ + σ̇ ε at
x_t = α x₀ + σ ε — on the rectified flow (:class:`sdekit.RectifiedFlowSDE`, α = 1 − t, σ = t)
u = ε − x₀. Two equations in (x₀, ε) give ε̂ = (α û − α̇ x)/(α σ̇ − σ α̇), and the score is −ε̂/σ;
on the rectified flow ε̂ = x + (1 − t) û, so the score is −(x + (1 − t) û)/t. The denominator
α σ̇ − σ α̇ = −ασ dλ/dt is positive on every linear SDE, so the adapter works on VP or VE too
(α̇, σ̇ from :meth:`sdekit.LinearSDE.kernel_derivatives`).

This is not v-prediction (:mod:`sdekit.adapters.v`, v = α ε − σ x₀): a diffusers model trained
with ``FlowMatchEulerDiscreteScheduler`` predicts u, one with ``prediction_type="v_prediction"`` v.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

import sdekit
from sdekit.adapters._common import Network
from sdekit.adapters._prediction import PredictionScore
from sdekit.checks import batch_view

__all__ = ["FlowScore", "score_from_velocity"]


class FlowScore(PredictionScore):
    """``score(x, t) = −(α û − α̇ x)/((α σ̇ − σ α̇) σ)`` with ``û = velocity_model(x, label(t))``.

    Args:
        velocity_model: called as ``velocity_model(x, label, **kwargs)``, returns û = dx_t/dt with ``x``'s shape
            (on the rectified flow: noise minus data).
        sde: the interpolant the model was trained on, normally :class:`sdekit.RectifiedFlowSDE`
            (any :class:`sdekit.LinearSDE` works: α̇, σ̇ come from its ``kernel_derivatives``).
        time_label: ``"time"`` (default: the network takes t ∈ [0, 1]) or ``"scaled"`` (t·N, diffusers'
            flow-matching timesteps σ·1000); ``"continuous"`` is t·(N − 1).
        num_timesteps: N for the labels (default 1000).
        model_kwargs: conditioning passed to every call.

    Practical advice: sample the rectified flow with ``ode_sample(..., method="dpmpp_2m")`` or, to match
    diffusers' Euler loop, ``method="ddim"`` (Euler on the flow is DDIM on this interpolant).
    """

    network_name = "velocity_model"

    def __init__(
        self,
        velocity_model: Network,
        sde: sdekit.LinearSDE,
        *,
        time_label: str = "time",
        num_timesteps: int | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            velocity_model, sde, time_label=time_label, num_timesteps=num_timesteps, model_kwargs=model_kwargs
        )

    def convert(self, out: Tensor, x: Tensor, alpha: Tensor, sigma: Tensor, level: Tensor) -> Tensor:
        d_alpha, d_sigma = self.sde.kernel_derivatives(level)
        return score_from_velocity(out, x, alpha, sigma, d_alpha, d_sigma)


def score_from_velocity(
    velocity: Tensor, x: Tensor, alpha: Tensor, sigma: Tensor, d_alpha: Tensor, d_sigma: Tensor
) -> Tensor:
    """−(α u − α̇ x)/((α σ̇ − σ α̇) σ), with float64 ``(B,)`` coefficients cast to ``x``'s dtype."""
    scale = 1 / ((alpha * d_sigma - sigma * d_alpha) * sigma)
    return batch_view(d_alpha * scale, x) * x - batch_view(alpha * scale, x) * velocity
