"""EDM denoisers D(x, σ) (Karras et al. 2022) as sdekit scores: s = (α D(x/α, σ/α) − x)/σ².

An EDM denoiser works in the unscaled frame x̃ = x₀ + σ̃ n, with noise level σ̃, and returns
an estimate of x₀. A linear SDE's x_t = α x₀ + σ z is that frame scaled by α, with
σ̃ = σ/α; so D(x/α, σ/α) estimates x₀ and the score follows as for x̂₀ networks.

For the EDM paper's own range use ``sdekit.VESDE(sigma_min=0.002, sigma_max=80)`` (α = 1,
σ(t) geometric) with ``grid="edm"``; a VP SDE works too (the denoiser sees σ/α).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
from sdekit.adapters.x0 import score_from_x0
from sdekit.checks import batch_view

__all__ = ["DenoiserScore"]


class DenoiserScore(PerSampleKwargs, torch.nn.Module):
    """``score(x, t) = (α D(x/α, σ/α) − x)/σ²``, a ``torch.nn.Module`` wrapping ``denoiser``.

    Args:
        denoiser: called as ``denoiser(x, sigma, **kwargs)`` with ``sigma`` of shape ``(B,)``
            in ``x``'s dtype (EDM's ``EDMPrecond``, k-diffusion denoisers); returns x̂₀.
        sde: any :class:`sdekit.LinearSDE`.
        model_kwargs: conditioning passed to every call, e.g. ``{"class_labels": y}``.
    """

    def __init__(
        self, denoiser: Network, sde: sdekit.LinearSDE, *, model_kwargs: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.denoiser = check_network("denoiser", denoiser)
        self.sde = check_linear_sde(sde)
        self.model_kwargs = check_model_kwargs(model_kwargs)

    def extra_repr(self) -> str:
        return f"sde={self.sde!r}"

    def forward(self, x: Tensor, t: Tensor, **kwargs: Any) -> Tensor:
        """The score at ``x`` (``(B, *event)``) and times ``t`` (``(B,)``); ``kwargs`` go to the denoiser."""
        t = check_inputs(x, t)
        self.sde.check_time(t)
        t64 = t.detach().to(device=x.device, dtype=torch.float64)
        alpha, sigma = self.sde.kernel(t64)
        x_scaled = x * batch_view(1 / alpha, x)
        sigma_edm = (sigma / alpha).to(x.dtype).expand(x.shape[0]).contiguous()
        denoised = call_network("denoiser", self.denoiser, x_scaled, sigma_edm, {**self.model_kwargs, **kwargs})
        return score_from_x0(denoised, x, alpha, sigma)
