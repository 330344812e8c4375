"""Predictors: one step of the reverse SDE from t_i to t_{i+1} < t_i (DESIGN §5).

Each predictor is a short class registered by name and built for one run over one
grid (:class:`~sdekit.solvers.grid_stepper.GridStepper`); ``step(x, i)`` returns the
state at t_{i+1}. On a :class:`~sdekit.sde.LinearSDE` every predictor's step is affine,
x' = a_i x + b_i s(x, t_i) + c_i z, and its coefficients are computed once for the whole
grid (``coefficients``); other SDEs take the general step with their drift and diffusion.

Which to choose: ``ancestral`` (the DDPM posterior step, exact for Gaussian
transitions) and ``reverse_diffusion`` are the most robust at few steps;
``euler_maruyama`` is the plain first-order scheme and needs the most steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sdekit.checks import batch_view
from sdekit.reverse import ScoreFn, reverse
from sdekit.sde import SDE, LinearSDE
from sdekit.solvers.grid_stepper import GridStepper, weighted_sum
from sdekit.solvers.registry import Registry, StepperFactory
from sdekit.solvers.score_calls import gaussian_like

__all__ = ["Predictor", "PREDICTORS", "SDE_STEPPERS", "EulerMaruyama", "ReverseDiffusion", "Ancestral", "NoPredictor"]

Coefficients = tuple[Tensor, Tensor, Tensor]


class Predictor(GridStepper):
    """A reverse-time step for ``sde`` driven by ``score``: affine on a LinearSDE, general otherwise.

    A subclass gives ``coefficients(sde, t, t_next) -> (a, b, c)`` (float64, vectorised over
    the grid's steps) for linear SDEs, and ``general_step`` for any other SDE (or sets
    ``needs_linear_sde``).
    """

    def __init__(self, sde: SDE, score: ScoreFn, grid: Tensor, generator: torch.Generator | None = None) -> None:
        super().__init__(sde, score, grid, generator)
        self.rsde = reverse(sde, score)
        self.affine: list[tuple[float, float, float]] | None = None
        if isinstance(sde, LinearSDE) and self.nfe_per_step:
            a, b, c = self.coefficients(sde, self.t, self.t_next)
            self.affine = list(zip(a.tolist(), b.tolist(), c.tolist(), strict=True))

    def coefficients(self, sde: LinearSDE, t: Tensor, t_next: Tensor) -> Coefficients:
        """(a, b, c) of x' = a x + b s(x, t) + c z for each step, float64 ``(N,)``."""
        raise NotImplementedError

    def general_step(self, x: Tensor, t: Tensor, t_next: Tensor) -> Tensor:
        """The step for an SDE that is not linear, at ``(1,)`` times."""
        raise NotImplementedError

    def step(self, x: Tensor, i: int) -> Tensor:
        if self.affine is None:
            return self.general_step(x, self.times[i], self.times[i + 1])
        a, b, c = self.affine[i]
        score = self.score(x, self.times[i])
        return weighted_sum([(a, x), (b, score)], into=(c, gaussian_like(x, self.generator)))


PREDICTORS: Registry[type[Predictor]] = Registry("predictor")

#: Fixed-grid reverse-SDE methods that are not predictor–corrector pairs (multistep,
#: exponential integrators): name -> ``factory(sde, score, grid, generator)``.
SDE_STEPPERS: Registry[StepperFactory] = Registry("SDE method")


def _scale(coefficient: Tensor, x: Tensor) -> Tensor:
    """A per-sample ``(B,)`` or elementwise (``x``-shaped) coefficient, ready to multiply ``x``."""
    return coefficient.to(x.dtype) if coefficient.shape == x.shape else batch_view(coefficient, x)


@PREDICTORS.register("euler_maruyama")
class EulerMaruyama(Predictor):
    """x' = x − h[f − g² s] + g √h z, with h = t − t'. First order (weak)."""

    def coefficients(self, sde: LinearSDE, t: Tensor, t_next: Tensor) -> Coefficients:
        h, g2 = t - t_next, sde.diffusion_squared(t)
        return 1 - h * sde.drift_coeff(t), h * g2, (g2 * h).sqrt()

    def general_step(self, x: Tensor, t: Tensor, t_next: Tensor) -> Tensor:
        h = batch_view(t - t_next, x)
        g = _scale(self.rsde.diffusion(t, x), x)
        return x - h * self.rsde.drift(x, t) + g * h.sqrt() * gaussian_like(x, self.generator)


@PREDICTORS.register("reverse_diffusion")
class ReverseDiffusion(Predictor):
    """Reverse the forward chain x_t = x_t' + f_i + G_i z: x' = x − f_i + G_i² s + G_i z.

    (f_i, G_i) come from ``sde.discretize``: DDPM's chain with the step's own β for
    VP, SMLD's for VE, Euler–Maruyama otherwise.
    """

    def coefficients(self, sde: LinearSDE, t: Tensor, t_next: Tensor) -> Coefficients:
        # A linear SDE's f_i is linear in x: discretizing x = 1 gives its coefficient.
        f_i, G_i = sde.discretize(torch.ones(t.shape[0], 1, dtype=torch.float64), t, t_next)
        return 1 - f_i[:, 0], G_i**2, G_i

    def general_step(self, x: Tensor, t: Tensor, t_next: Tensor) -> Tensor:
        f_i, G_i = self.sde.discretize(x, t, t_next)
        G = _scale(G_i, x)
        return x - f_i + G**2 * self.score(x, t) + G * gaussian_like(x, self.generator)


@PREDICTORS.register("ancestral")
class Ancestral(Predictor):
    """Sample the Gaussian posterior of x_t' given x_t, with x_0 estimated through the score.

    With the kernel x_t = a x_t' + √v z of the step (VP: a = √(1−β), v = β = 1 − ᾱ(t)/ᾱ(t')):
    x' = (x + v s)/a + √(v σ(t')²/σ(t)²) z. β is the step's own, so it stays in (0, 1)
    at any step count — the reference code's fixed 1000-entry β table gives NaN at 20 steps.
    VE reduces to x' = x + (σ² − σ'²) s + √(σ'²(σ² − σ'²)/σ²) z.
    """

    needs_linear_sde = True

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
