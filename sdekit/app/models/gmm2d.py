"""The built-in ``gmm2d`` model: the exact 2-D, 8-mode Gaussian mixture oracle of :mod:`sdekit.testing`.

Its score is exact, so every difference between samples and the true density is the
sampler's error — the cheapest way to compare samplers (``sdekit eval`` prints sliced W1,
mode-weight TV and the NLL gap beside their finite-sample floors).
"""

from __future__ import annotations

import torch

from sdekit.sde import VPSDE
from sdekit.testing import ExactScore, GaussianMixture

__all__ = ["mixture", "load"]


def mixture() -> GaussianMixture:
    """The fixed mixture (``GaussianMixture.random(dim=2, modes=8)`` with seed 0), the same as ``sdekit demo``'s."""
    return GaussianMixture.random(dim=2, modes=8, generator=torch.Generator().manual_seed(0))


def load(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[VPSDE, ExactScore]:
    """``(sde, score)``: VP(0.1, 20) and the mixture's exact score (computed on ``x``'s device)."""
    sde = VPSDE()
    return sde, mixture().score(sde)
