"""Small helpers every adapter shares: argument checks, per-sample broadcasting, calling the network.

Adapters use only sdekit's public API; the generic checks and the per-sample
broadcasting come from :mod:`sdekit.checks`, the adapter-specific ones live here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

import sdekit
from sdekit.checks import shared_time
from sdekit.per_sample import index_per_sample

#: A network as adapters call it: ``model(x, label, **kwargs) -> Tensor`` with ``x``'s shape.
Network = Callable[..., Any]


def check_network(name: str, model: object) -> Network:
    """A network must be callable (an ``nn.Module`` or a function)."""
    if not callable(model):
        raise TypeError(f"{name} must be callable as {name}(x, label, **kwargs), got {type(model).__name__}")
    return model


def check_linear_sde(sde: object) -> sdekit.LinearSDE:
    """Adapters need the Gaussian kernel α(t), σ(t) of a :class:`sdekit.LinearSDE` (VP, sub-VP, VE, discrete VP)."""
    if not isinstance(sde, sdekit.LinearSDE):
        raise TypeError(f"sde must be a sdekit.LinearSDE (VPSDE, VESDE, DiscreteVPSDE, ...), got {type(sde).__name__}")
    return sde


def check_model_kwargs(model_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Fixed conditioning passed to every network call (e.g. ``{"class_labels": y}``)."""
    if model_kwargs is None:
        return {}
    if not isinstance(model_kwargs, Mapping):
        raise TypeError(f"model_kwargs must be a mapping of keyword arguments, got {type(model_kwargs).__name__}")
    return dict(model_kwargs)


class PerSampleKwargs:
    """``select(rows, batch_size)`` for an adapter whose ``model_kwargs`` may hold per-sample tensors.

    The adaptive solvers call it when their active set shrinks (:mod:`sdekit.per_sample`): the
    result is a shallow copy (same network, same parameters) whose per-sample ``model_kwargs`` — tensors
    whose first dimension is ``batch_size`` — hold only ``rows``.
    """

    model_kwargs: dict[str, Any]

    def select(self, rows: Tensor, batch_size: int) -> Any:
        return self.with_model_kwargs(index_per_sample(self.model_kwargs, rows, batch_size))

    def with_model_kwargs(self, model_kwargs: Mapping[str, Any]) -> Any:
        """The same score (same network, same parameters) calling the network with ``model_kwargs`` instead.

        Classifier-free guidance (:class:`sdekit.guidance.ClassifierFreeGuidance`) uses it for its
        one batched call on the conditional and unconditional inputs.
        """
        selected = copy.copy(self)
        selected.model_kwargs = check_model_kwargs(model_kwargs)
        return selected


def check_inputs(x: object, t: object) -> Tensor:
    """Validate ``score(x, t)``'s arguments and return ``t`` as ``(B,)``, or ``(1,)`` when shared by the batch.

    ``x`` is ``(B, *event)``; ``t`` is ``(B,)`` per-sample times or ``(1,)``. A ``(B,)`` tensor
    expanded from one time (stride 0, as samplers on a fixed grid pass it) comes back as
    ``(1,)``, so schedules are evaluated once per call rather than once per sample.
    """
    if not isinstance(x, Tensor) or x.ndim < 1:
        raise TypeError(f"x must be a tensor of shape (B, *event), got {type(x).__name__}")
    if not isinstance(t, Tensor) or t.ndim != 1 or t.shape[0] not in (1, x.shape[0]):
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise ValueError(f"t must be a 1-D tensor of per-sample times with shape ({x.shape[0]},), got {shape}")
    return shared_time(t)


def call_network(name: str, model: Network, x: Tensor, label: Tensor, kwargs: Mapping[str, Any]) -> Tensor:
    """``model(x, label, **kwargs)``, checked to return a tensor of ``x``'s shape.

    A mismatch (a network predicting a learned variance too, a wrong channel count)
    fails here with a message instead of as a broadcasting error deep in a solver.
    """
    out = model(x, label, **kwargs)
    if not isinstance(out, Tensor):
        raise TypeError(f"{name} must return a tensor, got {type(out).__name__}")
    if out.shape != x.shape:
        raise ValueError(
            f"{name} returned shape {tuple(out.shape)}; it must match its input x's shape {tuple(x.shape)}"
        )
    return out
