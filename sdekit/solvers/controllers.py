"""Step-size controllers: one interface for the adaptive ODE and SDE solvers.

A controller proposes each sample's next step from the step just tried: ``propose(h, error,
previous, accepted, k)`` with ``error`` the sample's error ratio E (≤ 1: the step meets the
tolerance), ``previous`` E of its last accepted step, ``accepted`` the mask, and ``k`` the order
of the error estimate plus one. The solver then clips the proposal to what is left of the
interval. Two are built in:

* :class:`PIController` for the embedded Runge–Kutta pairs of the ODE solver (Gustafsson's PI
  controller, with growth and shrink limits);
* :class:`GottaGoFast` for the adaptive SDE solver (Jolicoeur-Martineau et al. 2021): the same
  rule for accepted and rejected steps, h ← safety · h · E^(−exponent), and no growth limit (the
  error of an Euler–Maruyama/Heun pair on an SDE shrinks like h^(3/2), not like h^k).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

__all__ = ["StepSizeController", "PIController", "GottaGoFast"]

_TINY = torch.finfo(torch.float64).tiny


class StepSizeController(Protocol):
    """The next step per sample from the step ``h`` just tried and its error ratio (all ``(B,)`` tensors)."""

    def propose(self, h: Tensor, error: Tensor, previous: Tensor, accepted: Tensor, k: int) -> Tensor: ...


@dataclass(frozen=True)
class PIController:
    """h_new = h · safety · E^(−β₁/k) · E_prev^(β₂/k), clamped to [min_factor, max_factor].

    After a rejection the factor is the plain I-controller safety · E^(−1/k), at most 1.
    ``beta2 = 0`` gives the classical I-controller. The defaults (β₁, β₂) = (0.7, 0.4)
    are Gustafsson's PI controller, smooth on the mildly stiff end of diffusion flows.
    """

    safety: float = 0.8
    beta1: float = 0.7
    beta2: float = 0.4
    min_factor: float = 0.2
    max_factor: float = 10.0

    def accepted(self, error: Tensor, previous: Tensor, k: int) -> Tensor:
        factor = self.safety * error.pow(-self.beta1 / k) * previous.pow(self.beta2 / k)
        return factor.clamp(self.min_factor, self.max_factor)

    def rejected(self, error: Tensor, k: int) -> Tensor:
        return (self.safety * error.pow(-1.0 / k)).clamp(self.min_factor, 1.0)

    def propose(self, h: Tensor, error: Tensor, previous: Tensor, accepted: Tensor, k: int) -> Tensor:
        return h * torch.where(accepted, self.accepted(error, previous, k), self.rejected(error, k))


@dataclass(frozen=True)
class GottaGoFast:
    """h_new = safety · h · E^(−exponent) after any step (E = 0 lets the step grow without bound)."""

    safety: float = 0.9
    exponent: float = 0.9

    def propose(self, h: Tensor, error: Tensor, previous: Tensor, accepted: Tensor, k: int) -> Tensor:
        return self.safety * h * error.clamp_min(_TINY).pow(-self.exponent)
