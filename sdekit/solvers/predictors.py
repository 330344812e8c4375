"""Predictors: one step of the reverse SDE from t to t' < t (DESIGN §5).

Each predictor is a short class registered by name. ``step`` receives the state,
per-sample times ``t`` and ``t_next`` (float64, shape ``(B,)``) and the generator,
and returns the state at ``t_next``. ``nfe_per_step`` is the number of score calls
a step makes.

Which to choose: ``ancestral`` (the DDPM posterior step, exact for Gaussian
transitions) and ``reverse_diffusion`` are the most robust at few steps;
``euler_maruyama`` is the plain first-order scheme and needs the most steps.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import torch
from torch import Tensor

from sdekit.checks import batch_view
from sdekit.reverse import ScoreFn, reverse
from sdekit.sde import SDE, LinearSDE
from sdekit.solvers.registry import Registry, SDEStepperFactory
from sdekit.solvers.score_calls import gaussian_like

__all__ = ["Predictor", "PREDICTORS", "SDE_STEPPERS", "EulerMaruyama", "ReverseDiffusion", "Ancestral", "NoPredictor"]


class Predictor(abc.ABC):
    """A reverse-time step for ``sde`` driven by ``score``."""

    nfe_per_step: ClassVar[int] = 1

    def __init__(self, sde: SDE, score: ScoreFn) -> None:
        self.sde = sde
        self.score = score
        self.rsde = reverse(sde, score)

    @abc.abstractmethod
    def step(self, x: Tensor, t: Tensor, t_next: Tensor, generator: torch.Generator | None) -> Tensor:
        """The state at ``t_next`` from the state ``x`` at ``t``."""


PREDICTORS: Registry[type[Predictor]] = Registry("predictor")

#: Fixed-grid reverse-SDE methods that are not predictor–corrector pairs (multistep,
#: exponential integrators): name -> ``factory(sde, score, grid, generator)``.
SDE_STEPPERS: Registry[SDEStepperFactory] = Registry("SDE method")


def _scale(coefficient: Tensor, x: Tensor) -> Tensor:
    """A per-sample ``(B,)`` or elementwise (``x``-shaped) coefficient, ready to multiply ``x``."""
    return coefficient.to(x.dtype) if coefficient.shape == x.shape else batch_view(coefficient, x)


@PREDICTORS.register("euler_maruyama")
class EulerMaruyama(Predictor):
    """x' = x − h[f − g² s] + g √h z, with h = t − t'. First order (weak)."""

    def step(self, x: Tensor, t: Tensor, t_next: Tensor, generator: torch.Generator | None) -> Tensor:
        h = batch_view(t - t_next, x)
        g = _scale(self.rsde.diffusion(t, x), x)
        return x - h * self.rsde.drift(x, t) + g * h.sqrt() * gaussian_like(x, generator)


@PREDICTORS.register("reverse_diffusion")
class ReverseDiffusion(Predictor):
    """Reverse the forward chain x_t = x_t' + f_i + G_i z: x' = x − f_i + G_i² s + G_i z.

    (f_i, G_i) come from ``sde.discretize``: DDPM's chain with the step's own β for
    VP, SMLD's for VE, Euler–Maruyama otherwise.
    """

    def step(self, x: Tensor, t: Tensor, t_next: Tensor, generator: torch.Generator | None) -> Tensor:
        f_i, G_i = self.sde.discretize(x, t, t_next)
        G = _scale(G_i, x)
        return x - f_i + G**2 * self.score(x, t) + G * gaussian_like(x, generator)


@PREDICTORS.register("ancestral")
class Ancestral(Predictor):
    """Sample the Gaussian posterior of x_t' given x_t, with x_0 estimated through the score.

    With the kernel x_t = a x_t' + √v z of the step (VP: a = √(1−β), v = β = 1 − ᾱ(t)/ᾱ(t')):
    x' = (x + v s)/a + √(v σ(t')²/σ(t)²) z. β is the step's own, so it stays in (0, 1)
    at any step count — the reference code's fixed 1000-entry β table gives NaN at 20 steps.
    VE reduces to x' = x + (σ² − σ'²) s + √(σ'²(σ² − σ'²)/σ²) z.
    """

    def __init__(self, sde: SDE, score: ScoreFn) -> None:
        if not isinstance(sde, LinearSDE):
            raise TypeError(f"predictor 'ancestral' needs a LinearSDE (Gaussian kernel), got {type(sde).__name__}")
        super().__init__(sde, score)
        self.linear = sde

    def step(self, x: Tensor, t: Tensor, t_next: Tensor, generator: torch.Generator | None) -> Tensor:
        a, v = self.linear.transition(t, t_next)
        posterior_var = v * (self.linear.std(t_next) / self.linear.std(t)) ** 2
        mean = (x + batch_view(v, x) * self.score(x, t)) / batch_view(a, x)
        return mean + batch_view(posterior_var.sqrt(), x) * gaussian_like(x, generator)


@PREDICTORS.register("none")
class NoPredictor(Predictor):
    """Leaves the state unchanged (corrector-only sampling, as in NCSN)."""

    nfe_per_step = 0

    def step(self, x: Tensor, t: Tensor, t_next: Tensor, generator: torch.Generator | None) -> Tensor:
        return x
