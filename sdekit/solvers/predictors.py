"""Predictors: one step of the reverse SDE from t_i to t_{i+1} < t_i.

Each predictor is a short class registered by name and built for one run over one
grid (:class:`~sdekit.solvers.grid_stepper.GridStepper`); ``step(x, i)`` returns the
state at t_{i+1}. On a :class:`~sdekit.sde.LinearSDE` every predictor's step is affine,
x' = a_i x + b_i s(x, t_i) + c_i z (:class:`AffinePredictor`), and its coefficients are
computed once for the whole grid; Euler–Maruyama and reverse diffusion also take other
SDEs, through their drift and diffusion at every step.

Which to choose: ``ancestral`` (the DDPM posterior step, exact for Gaussian
transitions) and ``reverse_diffusion`` are the most robust at few steps;
``euler_maruyama`` is the plain first-order scheme and needs the most steps.
"""

from __future__ import annotations

import abc
import functools

import torch
from torch import Tensor

from sdekit.checks import batch_view
from sdekit.reverse import ReverseSDE, ScoreFn, reverse
from sdekit.sde import SDE, LinearSDE
from sdekit.solvers.grid_stepper import GridStepper, weighted_sum
from sdekit.solvers.registry import Registry
from sdekit.solvers.score_calls import gaussian_like

__all__ = [
    "Predictor",
    "AffinePredictor",
    "PREDICTORS",
    "SDE_STEPPERS",
    "EulerMaruyama",
    "ReverseDiffusion",
    "Ancestral",
    "NoPredictor",
]

Coefficients = tuple[Tensor, Tensor, Tensor]


class Predictor(GridStepper):
    """A reverse-time step for ``sde`` driven by ``score`` (registered in :data:`PREDICTORS`)."""


class AffinePredictor(Predictor):
    """A predictor whose step on a LinearSDE is x' = a_i x + b_i s(x, t_i) + c_i z.

    A subclass gives ``coefficients(sde, t, t_next) -> (a, b, c)`` (float64, vectorised over
    the grid's steps), computed once for the grid. It needs a LinearSDE unless it also takes
    other SDEs in a ``step`` of its own (``needs_linear_sde = False``).
    """

    needs_linear_sde = True

    def bind(self, sde: SDE, score: ScoreFn, grid: Tensor, generator: torch.Generator | None = None) -> None:
        super().bind(sde, score, grid, generator)
        self.affine: list[tuple[float, float, float]] | None = None
        if isinstance(sde, LinearSDE):
            a, b, c = self.coefficients(sde, self.t, self.t_next)
            self.affine = list(zip(a.tolist(), b.tolist(), c.tolist(), strict=True))

    @abc.abstractmethod
    def coefficients(self, sde: LinearSDE, t: Tensor, t_next: Tensor) -> Coefficients:
        """(a, b, c) of x' = a x + b s(x, t) + c z for each step, float64 ``(N,)``."""

    def step(self, x: Tensor, i: int) -> Tensor:
        assert self.affine is not None, "a LinearSDE was checked at construction"
        a, b, c = self.affine[i]
        score = self.score(x, self.times[i])
        return weighted_sum([(a, x), (b, score)], into=(c, gaussian_like(x, self.generator)))


PREDICTORS: Registry[type[Predictor]] = Registry("predictor")

#: Fixed-grid reverse-SDE methods that are not predictor–corrector pairs (multistep,
#: exponential integrators): name -> a :class:`~sdekit.solvers.grid_stepper.GridStepper` class.
SDE_STEPPERS: Registry[type[GridStepper]] = Registry("SDE method")


def _scale(coefficient: Tensor, x: Tensor) -> Tensor:
    """A per-sample ``(B,)`` or elementwise (``x``-shaped) coefficient, ready to multiply ``x``."""
    return coefficient.to(x.dtype) if coefficient.shape == x.shape else batch_view(coefficient, x)


@PREDICTORS.register("euler_maruyama")
class EulerMaruyama(AffinePredictor):
    """x' = x − h[f − g² s] + g √h z, with h = t − t'. First order (weak). Any SDE."""

    needs_linear_sde = False

    def coefficients(self, sde: LinearSDE, t: Tensor, t_next: Tensor) -> Coefficients:
        h, g2 = t - t_next, sde.diffusion_squared(t)
        return 1 - h * sde.drift_coeff(t), h * g2, (g2 * h).sqrt()

    def step(self, x: Tensor, i: int) -> Tensor:
        if self.affine is not None:
            return super().step(x, i)
        t = self.times[i]
        h = batch_view(t - self.times[i + 1], x)
        g = _scale(self.rsde.diffusion(x, t), x)
        return x - h * self.rsde.drift(x, t) + g * h.sqrt() * gaussian_like(x, self.generator)

    @functools.cached_property
    def rsde(self) -> ReverseSDE:
        """The reverse SDE, for the general (non-linear SDE) step."""
        return reverse(self.sde, self.score)


@PREDICTORS.register("reverse_diffusion")
class ReverseDiffusion(AffinePredictor):
    """Reverse the forward chain x_t = x_t' + f_i + G_i z: x' = x − f_i + G_i² s + G_i z.

    (f_i, G_i) come from ``sde.discretize``: DDPM's chain with the step's own β for
    VP, SMLD's for VE, Euler–Maruyama otherwise. Any SDE.
    """

    needs_linear_sde = False

    def coefficients(self, sde: LinearSDE, t: Tensor, t_next: Tensor) -> Coefficients:
        # A linear SDE's f_i is linear in x: discretizing x = 1 gives its coefficient.
        f_i, G_i = sde.discretize(torch.ones(t.shape[0], 1, dtype=torch.float64), t, t_next)
        return 1 - f_i[:, 0], G_i**2, G_i

    def step(self, x: Tensor, i: int) -> Tensor:
        if self.affine is not None:
            return super().step(x, i)
        t = self.times[i]
        f_i, G_i = self.sde.discretize(x, t, self.times[i + 1])
        G = _scale(G_i, x)
        return x - f_i + G**2 * self.score(x, t) + G * gaussian_like(x, self.generator)


@PREDICTORS.register("ancestral")
class Ancestral(AffinePredictor):
    """Sample the Gaussian posterior of x_t' given x_t, with x_0 estimated through the score.

    With the kernel x_t = a x_t' + √v z of the step (VP: a = √(1−β), v = β = 1 − ᾱ(t)/ᾱ(t')):
    x' = (x + v s)/a + √(v σ(t')²/σ(t)²) z. β is the step's own, so it stays in (0, 1)
    at any step count — the reference code's fixed 1000-entry β table gives NaN at 20 steps.
    VE reduces to x' = x + (σ² − σ'²) s + √(σ'²(σ² − σ'²)/σ²) z.
    """

    def coefficients(self, sde: LinearSDE, t: Tensor, t_next: Tensor) -> Coefficients:
        a, v = sde.transition(t, t_next)
        posterior_var = v * (sde.std(t_next) / sde.std(t)) ** 2
        return 1 / a, v / a, posterior_var.sqrt()


@PREDICTORS.register("none")
class NoPredictor(Predictor):
    """Leaves the state unchanged (corrector-only sampling, as in NCSN)."""

    nfe_per_step = 0

    def step(self, x: Tensor, i: int) -> Tensor:
        return x
