"""Fixed-step Runge–Kutta steppers for the probability-flow ODE dx/dt = f − ½ g² s.

Each method is an explicit Butcher tableau; ``order`` is its convergence order and
``nfe_per_step`` its stage count. Heun (EDM's second-order choice) is the usual
pick: at equal NFE it beats Euler by a wide margin from ~20 steps on. RK4 pays
four calls a step and wins only when the score is very smooth in t.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from sdekit.checks import batch_view
from sdekit.reverse import ScoreFn, probability_flow
from sdekit.sde import SDE
from sdekit.solvers.registry import ODEStepperFactory, Registry

__all__ = ["ExplicitRungeKutta", "ODE_METHODS", "Euler", "Heun", "RK4"]


class ExplicitRungeKutta:
    """x' = x + Δ Σ b_i k_i with k_i = v(x + Δ Σ_j a_ij k_j, t + c_i Δ), Δ = t' − t < 0."""

    a: ClassVar[tuple[tuple[float, ...], ...]]
    b: ClassVar[tuple[float, ...]]
    c: ClassVar[tuple[float, ...]]
    order: ClassVar[int]

    def __init__(self, sde: SDE, score: ScoreFn, grid: Tensor | None = None) -> None:
        self.flow = probability_flow(sde, score)

    @property
    def nfe_per_step(self) -> int:
        return len(self.b)

    def step(self, x: Tensor, t: Tensor, t_next: Tensor) -> Tensor:
        delta = t_next - t
        dt = batch_view(delta, x)
        stages: list[Tensor] = []
        for a_row, c_i in zip(self.a, self.c, strict=True):
            x_i = x
            for a_ij, k_j in zip(a_row, stages, strict=False):
                if a_ij:
                    x_i = x_i + (a_ij * dt) * k_j
            stages.append(self.flow.drift(x_i, t + c_i * delta))
        update = sum((b_i * k_i for b_i, k_i in zip(self.b, stages, strict=True) if b_i), start=0 * x)
        return x + dt * update


#: Fixed-grid probability-flow methods: name -> ``factory(sde, score, grid)`` (a class, usually).
ODE_METHODS: Registry[ODEStepperFactory] = Registry("ODE method")


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
