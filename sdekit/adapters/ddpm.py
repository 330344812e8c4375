"""DDPM ε-prediction networks as sdekit scores: s(x, t) = −ε̂(x, label(t)) / σ(level).

A DDPM (Ho et al. 2020) is trained on x_i = √ᾱ_i x₀ + √(1 − ᾱ_i) ε to predict ε from
(x_i, i). With σ the kernel std at the level the network saw, the score is −ε̂/σ.

* Trained on integer timesteps (DDPM, iDDPM, most checkpoints): use
  :func:`from_betas` / :func:`from_alphas_cumprod`. They build the
  :class:`sdekit.DiscreteVPSDE` of the training schedule, exact at the trained levels,
  and label times with the nearest trained index. For exact results sample on the
  trained levels (``grid=index_times(...)``); any sdekit grid works, at the cost of
  evaluating the network up to half a level away from t. The default log-SNR grid is
  fine-grained near eps: at 1000 steps about 35 consecutive steps fall between trained
  levels 1 and 2 of a linear-β schedule and share one label, so for a real checkpoint
  prefer ``grid=index_times(...)`` (measured only with the exact ε of the oracle, where it
  does not matter).
* Trained on continuous time with labels t·(N − 1) (score_sde's "DDPM continuous"):
  ``EpsilonScore(eps_model, VPSDE(), time_label="continuous")``, exact at every t.

Conditioning: ``model_kwargs={"class_labels": y}`` (fixed) or keyword arguments at
call time, both forwarded to the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

import sdekit
from sdekit.adapters._common import Network
from sdekit.adapters._labels import index_times
from sdekit.adapters._prediction import PredictionScore
from sdekit.checks import batch_view

__all__ = ["EpsilonScore", "from_betas", "from_alphas_cumprod", "index_times"]


class EpsilonScore(PredictionScore):
    """``score(x, t) = −eps_model(x, label(t)) / σ(level)``, a ``torch.nn.Module`` wrapping ``eps_model``.

    Args:
        eps_model: called as ``eps_model(x, label, **kwargs)``; returns ε̂ with ``x``'s shape.
        sde: the forward SDE the network was trained on (any :class:`sdekit.LinearSDE`; VP for DDPM).
        time_label: ``"continuous"`` (label t·(N − 1), std at t) or ``"index"`` (nearest trained
            timestep i, an int64 label, std √(1 − ᾱ_i) at that level); ``"time"`` passes t.
        num_timesteps: N; defaults to a :class:`sdekit.DiscreteVPSDE`'s own, else 1000.
        model_kwargs: conditioning passed to every call, e.g. ``{"class_labels": y}``.
    """

    network_name = "eps_model"

    def __init__(
        self,
        eps_model: Network,
        sde: sdekit.LinearSDE,
        *,
        time_label: str = "continuous",
        num_timesteps: int | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(eps_model, sde, time_label=time_label, num_timesteps=num_timesteps, model_kwargs=model_kwargs)

    def convert(self, out: Tensor, x: Tensor, alpha: Tensor, sigma: Tensor, level: Tensor) -> Tensor:
        return -out * batch_view(1 / sigma, x)


def from_alphas_cumprod(
    eps_model: Network,
    alphas_cumprod: Tensor,
    *,
    time_label: str = "index",
    model_kwargs: Mapping[str, Any] | None = None,
) -> tuple[sdekit.DiscreteVPSDE, EpsilonScore]:
    """``(sde, score)`` for an ε-network trained on ᾱ_1..ᾱ_N (strictly decreasing, in (0, 1)).

    For the iDDPM cosine schedule: ``from_alphas_cumprod(eps_model, sdekit.cosine_alphas_cumprod(1000))``.

    ``alphas_cumprod``: ᾱ_1..ᾱ_N, shape ``(N,)``; ``time_label`` and ``model_kwargs``: as for
    :class:`EpsilonScore` (default ``"index"``, the nearest trained timestep, and no extra arguments).
    """
    sde = sdekit.DiscreteVPSDE(alphas_cumprod)
    return sde, EpsilonScore(eps_model, sde, time_label=time_label, model_kwargs=model_kwargs)


def from_betas(
    eps_model: Network,
    betas: Tensor,
    *,
    time_label: str = "index",
    model_kwargs: Mapping[str, Any] | None = None,
) -> tuple[sdekit.DiscreteVPSDE, EpsilonScore]:
    """``(sde, score)`` for an ε-network trained on β_1..β_N, each in (0, 1).

    For DDPM's linear schedule: ``from_betas(eps_model, sdekit.linear_betas(1000, 1e-4, 0.02))``.

    ``betas``: β_1..β_N, shape ``(N,)``; ``time_label`` and ``model_kwargs``: as for :class:`EpsilonScore`
    (default ``"index"``, the nearest trained timestep, and no extra arguments).
    """
    sde = sdekit.DiscreteVPSDE.from_betas(betas)
    return sde, EpsilonScore(eps_model, sde, time_label=time_label, model_kwargs=model_kwargs)
