"""FD-digits: the Fréchet distance between Gaussians fitted to digit-classifier features.

FD = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2}), the FID formula in the 64-d feature
space of :class:`sdekit.app.models.digits.DigitClassifier`. Like FID it is biased upwards at
small sample sizes: compare figures at equal n, and read them against the floor
:func:`real_halves_fd` (the FD between two halves of the real data, n ≈ 900 each).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from scipy import linalg
from torch import Tensor

from sdekit.app.models import digits

__all__ = ["features", "frechet_distance", "fd_digits", "real_halves_fd", "real_features"]


def features(images: Tensor, batch: int = 1024) -> np.ndarray:
    """Classifier features (float64, ``(n, 64)``) of images in [−1, 1] of shape ``(n, 1, 8, 8)``."""
    model = _classifier()
    with torch.no_grad():
        parts = [model.features(part.float().cpu()) for part in images.split(batch)]
    return torch.cat(parts).double().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the rows of ``a`` and ``b``."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    root = np.real(root)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def fd_digits(images: Tensor) -> float:
    """FD-digits of samples (in [−1, 1]) against all 1 797 real digits."""
    return frechet_distance(features(images), real_features())


def real_halves_fd(seed: int = 0) -> float:
    """FD-digits between two random halves of the real data: the floor samples are judged against."""
    real = real_features()
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed)).numpy()
    half = len(real) // 2
    return frechet_distance(real[order[:half]], real[order[half:]])


@functools.cache
def real_features() -> np.ndarray:
    """Features of all 1 797 real digits, computed once per process (read-only)."""
    real, _ = digits.load_data()
    result = features(real)
    result.flags.writeable = False
    return result


@functools.cache
def _classifier() -> digits.DigitClassifier:
    return digits.load_classifier()
