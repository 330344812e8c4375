"""Fixed-step Runge–Kutta steppers for the probability-flow ODE dx/dt = f − ½ g² s.

Each method is an explicit Butcher tableau; ``order`` is its convergence order and
``nfe_per_step`` its stage count. Heun (EDM's second-order choice) is the usual
pick: at equal NFE it beats Euler by a wide margin from ~20 steps on. RK4 pays
four calls a step and wins only when the score is very smooth in t.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from sdekit.reverse import ScoreFn
from sdekit.sde import SDE
from sdekit.solvers.coefficients import coefficients
from sdekit.solvers.grid_stepper import GridStepper, weighted_sum
from sdekit.solvers.registry import Registry

__all__ = ["ExplicitRungeKutta", "ODE_METHODS", "Euler", "Heun", "RK4"]


class ExplicitRungeKutta(GridStepper):
    """x' = x + Δ Σ b_i k_i with k_i = v(x + Δ Σ_j a_ij k_j, t + c_i Δ), Δ = t' − t < 0.

    A method is its tableau (``a``, ``b``, ``c``), its ``order`` and ``nfe_per_step`` = len(b).

    The velocity is v(x, t) = f(x, t) − ½ g(t)² s(x, t), its coefficients from
    :mod:`sdekit.solvers.coefficients`: on a LinearSDE f(t) and g² at every stage time are
    computed once for the grid; other SDEs are evaluated at each stage.
    """

    kind = "ode"
    a: ClassVar[tuple[tuple[float, ...], ...]]
    b: ClassVar[tuple[float, ...]]
    c: ClassVar[tuple[float, ...]]
    order: ClassVar[int]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "b" in vars(cls):
            cls.nfe_per_step = len(cls.b)  # one score call per stage

    def bind(self, sde: SDE, score: ScoreFn, grid: Tensor, generator: torch.Generator | None = None) -> None:
        super().bind(sde, score, grid, generator)
        delta = self.t_next - self.t
        self.delta = delta.tolist()
        stage_t = self.t[:, None] + torch.tensor(self.c, dtype=torch.float64) * delta[:, None]  # (N, stages)
        self.sde_coefficients = coefficients(sde, stage_t, grid.device)

    def velocity(self, x: Tensor, i: int, stage: int) -> Tensor:
        """The flow's drift f − ½ g² s (− ½ ∇·GGᵀ) at stage ``stage`` of step ``i``."""
        c, at = self.sde_coefficients, (i, stage)
        s = self.score(x, c.time(at))
        terms = [*c.drift(x, at), (-0.5 * c.g2(x, at), s)]
        divergence = c.divergence(x, at)
        if divergence is not None:
            terms.append((-0.5, divergence))
        return weighted_sum(terms)

    def step(self, x: Tensor, i: int) -> Tensor:
        dt = self.delta[i]
        stages: list[Tensor] = []
        for stage, a_row in enumerate(self.a):
            increments = [(a * dt, k) for a, k in zip(a_row, stages, strict=False) if a]
            stages.append(self.velocity(weighted_sum([(1.0, x), *increments]) if increments else x, i, stage))
        return weighted_sum([(1.0, x), *((b * dt, k) for b, k in zip(self.b, stages, strict=True))])


#: Fixed-grid probability-flow methods: name -> a :class:`~sdekit.solvers.grid_stepper.GridStepper` class.
ODE_METHODS: Registry[type[GridStepper]] = Registry("ODE method", GridStepper)


@ODE_METHODS.register("euler")
class Euler(ExplicitRungeKutta):
    """First order: x' = x + Δ v(x, t)."""

    a = ((),)
    b = (1.0,)
    c = (0.0,)
    order = 1


@ODE_METHODS.register("heun")
class Heun(ExplicitRungeKutta):
    """Second order (explicit trapezoid), EDM's sampler: an Euler step, then the average slope."""

    a = ((), (1.0,))
    b = (0.5, 0.5)
    c = (0.0, 1.0)
    order = 2


@ODE_METHODS.register("rk4")
class RK4(ExplicitRungeKutta):
    """The classical fourth-order Runge–Kutta method."""

    a = ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0))
    b = (1 / 6, 1 / 3, 1 / 3, 1 / 6)
    c = (0.0, 0.5, 0.5, 1.0)
    order = 4
