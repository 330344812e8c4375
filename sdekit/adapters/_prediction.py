"""The shared shape of the ε, x̂₀ and v adapters: call the network at its label, convert its output to a score.

A subclass only says how one prediction becomes a score (:meth:`PredictionScore.convert`);
labelling, conditioning, shape checks and schedule evaluation (float64, then cast) live here.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

import sdekit
from sdekit.adapters._common import (
    Network,
    PerSampleKwargs,
    call_network,
    check_inputs,
    check_linear_sde,
    check_model_kwargs,
    check_network,
)
from sdekit.adapters._labels import TimeLabels


def resolve_num_timesteps(sde: sdekit.LinearSDE, num_timesteps: int | None, time_label: str) -> int:
    """N for the labels: the discrete SDE's own N by default, else 1000 (DDPM's)."""
    own = sde.num_timesteps if isinstance(sde, sdekit.DiscreteVPSDE) else None
    if num_timesteps is None:
        return own if own is not None else 1000
    if own is not None and num_timesteps != own and time_label in ("index", "fractional"):
        raise ValueError(
            f"num_timesteps={num_timesteps!r} disagrees with the DiscreteVPSDE's {own} trained levels; "
            "leave num_timesteps unset to use the SDE's"
        )
    return num_timesteps


class PredictionScore(PerSampleKwargs, torch.nn.Module, abc.ABC):
    """``score(x, t)`` from a network that predicts some function of (x_t, t) on a linear SDE's kernel.

    The network is called as ``model(x, label, **model_kwargs, **kwargs)`` and must
    return a tensor of ``x``'s shape. α and σ are taken at the level the network saw
    (see :mod:`sdekit.adapters._labels`), in float64, then cast to ``x``'s dtype.
    """

    #: Name of the network argument in messages ("eps_model", "x0_model", ...).
    network_name: ClassVar[str] = "model"

    def __init__(
        self,
        model: Network,
        sde: sdekit.LinearSDE,
        *,
        time_label: str,
        num_timesteps: int | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = check_network(self.network_name, model)
        self.sde = check_linear_sde(sde)
        self.labels = TimeLabels(time_label, resolve_num_timesteps(self.sde, num_timesteps, time_label), self.sde)
        self.model_kwargs = check_model_kwargs(model_kwargs)

    def extra_repr(self) -> str:
        return f"sde={self.sde!r}, time_label={self.labels.kind!r}, num_timesteps={self.labels.num_timesteps}"

    def forward(self, x: Tensor, t: Tensor, **kwargs: Any) -> Tensor:
        """The score at ``x`` (``(B, *event)``) and times ``t`` (``(B,)``); ``kwargs`` go to the network."""
        t = check_inputs(x, t)
        self.sde.check_time(t)
        labels, level = self.labels(t, x.dtype)
        labels = labels.to(x.device).expand(x.shape[0]).contiguous()
        out = call_network(self.network_name, self.model, x, labels, {**self.model_kwargs, **kwargs})
        level = level.to(x.device)
        alpha, sigma = self.sde.kernel(level)
        if sigma.device.type == "cpu":  # free to check there; the samplers never reach σ = 0 (they stop at eps)
            _check_level(self, sigma, t)
        return self.convert(out, x, alpha, sigma, level)

    @abc.abstractmethod
    def convert(self, out: Tensor, x: Tensor, alpha: Tensor, sigma: Tensor, level: Tensor) -> Tensor:
        """The score from the network output; ``alpha``, ``sigma`` are float64, ``(B,)`` or ``(1,)``, at the level
        the network saw, whose time is ``level`` (float64, same shape)."""


def _check_level(score: PredictionScore, sigma: Tensor, t: Tensor) -> None:
    """Refuse a time whose noise level is σ = 0: the network's prediction defines no score there."""
    if bool((sigma <= 0).any()):
        raise ValueError(
            f"{type(score).__name__}: t = {float(t.min()):g} is noise level σ = 0, where a network's prediction "
            "defines no score (it would be NaN or Inf); evaluate at t > 0 (the samplers stop at eps)"
        )
