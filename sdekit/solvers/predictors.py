"""Predictors: one step of the reverse SDE from t_i to t_{i+1} < t_i.

Each predictor is a short class registered by name and started for one run over one
grid (:class:`~sdekit.solvers.grid_stepper.GridStepper`); ``step(x, i)`` returns the
state at t_{i+1}. Each step is written once for every SDE, with the SDE's coefficients from
:mod:`sdekit.solvers.coefficients` (floats computed once for the grid on a
:class:`~sdekit.sde.LinearSDE`, evaluated per step otherwise); the ancestral step, built on the
Gaussian kernel, is :class:`AffinePredictor`'s x' = a_i x + b_i s(x, t_i) + c_i z.

Which to choose: ``ancestral`` (the DDPM posterior step, exact for Gaussian
transitions) and ``reverse_diffusion`` are the most robust at few steps;
``euler_maruyama`` is the plain first-order scheme and needs the most steps.
"""

from __future__ import annotations

import abc
import math
import numbers
from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from sdekit.per_sample import Generators
from sdekit.reverse import ScoreFn
from sdekit.sde import SDE, LinearSDE
from sdekit.solvers.coefficients import coefficients, forward_chain
from sdekit.solvers.grid_stepper import GridStepper, weighted_sum
from sdekit.solvers.ode import ODE_METHODS
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
    "DDIM",
    "DeterministicDDIM",
    "NoPredictor",
]

Coefficients = tuple[Tensor, Tensor, Tensor]


class Predictor(GridStepper):
    """A reverse-time step for ``sde`` driven by ``score`` (registered in :data:`PREDICTORS`)."""


class AffinePredictor(Predictor):
    """A predictor built on the Gaussian kernel whose step is x' = a_i x + b_i s(x, t_i) + c_i z.

    A subclass gives ``coefficients(sde, t, t_next) -> (a, b, c)`` (float64, vectorised over
    the grid's steps), computed once for the grid. Needs a LinearSDE (ancestral sampling, DDIM).
    """

    needs_linear_sde = True

    def bind(self, sde: SDE, score: ScoreFn, grid: Tensor, generator: Generators | None = None) -> None:
        super().bind(sde, score, grid, generator)
        assert isinstance(sde, LinearSDE)  # needs_linear_sde
        a, b, c = self.coefficients(sde, self.t, self.t_next)
        self.affine = list(zip(a.tolist(), b.tolist(), c.tolist(), strict=True))

    @abc.abstractmethod
    def coefficients(self, sde: LinearSDE, t: Tensor, t_next: Tensor) -> Coefficients:
        """(a, b, c) of x' = a x + b s(x, t) + c z for each step, float64 ``(N,)``."""

    def step(self, x: Tensor, i: int) -> Tensor:
        a, b, c = self.affine[i]
        score = self.score(x, self.times[i])
        if c == 0.0:  # a deterministic step draws nothing (DDIM at η = 0)
            return weighted_sum([(a, x), (b, score)])
        return weighted_sum([(a, x), (b, score)], into=(c, gaussian_like(x, self.generator)))


PREDICTORS: Registry[type[Predictor]] = Registry("predictor", Predictor)

#: Fixed-grid reverse-SDE methods that are not predictor–corrector pairs (multistep,
#: exponential integrators): name -> a :class:`~sdekit.solvers.grid_stepper.GridStepper` class.
SDE_STEPPERS: Registry[type[GridStepper]] = Registry("SDE method", GridStepper)


@PREDICTORS.register("euler_maruyama")
class EulerMaruyama(Predictor):
    """x' = x − h[f − g² s] + g √h z, with h = t − t'. First order (weak). Any SDE.

    (With a state-dependent diffusion the reverse drift also carries −∇·(GGᵀ), and g² is G².)
    """

    def bind(self, sde: SDE, score: ScoreFn, grid: Tensor, generator: Generators | None = None) -> None:
        super().bind(sde, score, grid, generator)
        self.sde_coefficients = coefficients(sde, self.t, grid.device)
        self.h = (self.t - self.t_next).tolist()

    def step(self, x: Tensor, i: int) -> Tensor:
        h, c = self.h[i], self.sde_coefficients
        s = self.score(x, self.times[i])
        g2 = c.g2(x, i)
        terms = [(1.0, x), *((-h * a, v) for a, v in c.drift(x, i)), (h * g2, s)]
        divergence = c.divergence(x, i)
        if divergence is not None:
            terms.append((h, divergence))
        noise_scale = math.sqrt(g2 * h) if isinstance(g2, float) else (g2 * h).sqrt()
        return weighted_sum(terms, into=(noise_scale, gaussian_like(x, self.generator)))


@PREDICTORS.register("reverse_diffusion")
class ReverseDiffusion(Predictor):
    """Reverse the forward chain x_t = x_t' + f_i + G_i z: x' = x − f_i + G_i² s + G_i z.

    (f_i, G_i) come from ``sde.discretize``: DDPM's chain with the step's own β for
    VP, SMLD's for VE, Euler–Maruyama otherwise. Any SDE.
    """

    def bind(self, sde: SDE, score: ScoreFn, grid: Tensor, generator: Generators | None = None) -> None:
        super().bind(sde, score, grid, generator)
        self.chain = forward_chain(sde, self.t, self.t_next, self.times)

    def step(self, x: Tensor, i: int) -> Tensor:
        f_i, G, G2 = self.chain.step(x, i)
        s = self.score(x, self.times[i])
        terms = [(1.0, x), *((-a, v) for a, v in f_i), (G2, s)]
        return weighted_sum(terms, into=(G, gaussian_like(x, self.generator)))


def posterior_std(sde: LinearSDE, t: Tensor, t_next: Tensor, v: Tensor) -> Tensor:
    """√(v σ(t')²/σ(t)²): the std of x_t' given x_t and x_0 (v the step's transition variance), float64."""
    return (v * (sde.std(t_next) / sde.std(t)) ** 2).sqrt()


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
        return 1 / a, v / a, posterior_std(sde, t, t_next, v)


@PREDICTORS.register("ddim")
class DDIM(AffinePredictor):
    """DDIM (Song, Meng & Ermon 2021): x' = α' x̂₀ + √(σ'² − c²) ε̂ + c z, with c = η σ̃.

    x̂₀ = (x + σ² s)/α and ε̂ = −σ s are the score's estimates of the data and the noise; σ̃² =
    v σ'²/σ² is the variance of the step's Gaussian posterior (v the transition variance, as in
    ``ancestral``). Option ``eta`` in [0, 1] (default 0): 0 is deterministic DDIM — DPM-Solver
    of order 1, the exponential-integrator step of the probability flow, which on VE is Euler
    in σ (k-diffusion's ``sample_euler``); 1 is the ancestral step exactly; in between, DDIM's η
    (k-diffusion's ``sample_euler_ancestral`` with that ``eta``). On a discrete DDPM schedule
    at its trained timesteps it is diffusers' ``DDIMScheduler.step(..., eta=eta)``. Needs a
    LinearSDE. ``ode_sample(method="ddim")`` is the η = 0 form as a flow method.
    """

    defaults: ClassVar[Mapping[str, Any]] = {"eta": 0.0}
    eta: float

    def check_options(self, options: dict[str, Any]) -> None:
        if "eta" not in options:  # fixed by a subclass (DeterministicDDIM)
            return
        eta = options["eta"]
        if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not 0.0 <= float(eta) <= 1.0:
            raise ValueError(f"eta must be a number in [0, 1] (beyond 1 the noise exceeds the step's), got {eta!r}")
        options["eta"] = float(eta)

    def coefficients(self, sde: LinearSDE, t: Tensor, t_next: Tensor) -> Coefficients:
        alpha, sigma = sde.kernel(t)
        alpha_next, sigma_next = sde.kernel(t_next)
        c = self.eta * posterior_std(sde, t, t_next, sde.transition(t, t_next)[1])
        direction = (sigma_next**2 - c**2).clamp_min(0).sqrt()  # √(σ'² − c²), the share of ε̂ kept
        return alpha_next / alpha, alpha_next * sigma**2 / alpha - direction * sigma, c


@ODE_METHODS.register("ddim")
class DeterministicDDIM(DDIM):
    """DDIM at η = 0 as a probability-flow method, ``ode_sample(method="ddim")``: DPM-Solver of order 1."""

    kind = "ode"
    fixed_options: ClassVar[Mapping[str, Any]] = {"eta": 0.0}


@PREDICTORS.register("none")
class NoPredictor(Predictor):
    """Leaves the state unchanged (corrector-only sampling, as in NCSN)."""

    nfe_per_step = 0

    def step(self, x: Tensor, i: int) -> Tensor:
        return x
