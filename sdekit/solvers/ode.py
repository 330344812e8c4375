"""Fixed-step Runge–Kutta steppers for the probability-flow ODE dx/dt = f − ½ g² s.

Each method is an explicit Butcher tableau; ``order`` is its convergence order and
``nfe_per_step`` its stage count. Heun (EDM's second-order choice) is the usual
pick: at equal NFE it beats Euler by a wide margin from ~20 steps on. RK4 pays
four calls a step and wins only when the score is very smooth in t.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import torch
from torch import Tensor

from sdekit.reverse import ProbabilityFlow, ScoreFn, probability_flow
from sdekit.sde import SDE, LinearSDE
from sdekit.solvers.grid_stepper import GridStepper, weighted_sum
from sdekit.solvers.registry import Registry

__all__ = ["ExplicitRungeKutta", "ODE_METHODS", "Euler", "Heun", "RK4"]


class ExplicitRungeKutta(GridStepper):
    """x' = x + Δ Σ b_i k_i with k_i = v(x + Δ Σ_j a_ij k_j, t + c_i Δ), Δ = t' − t < 0.

    A method is its tableau (``a``, ``b``, ``c``), its ``order`` and ``nfe_per_step`` = len(b).

    On a LinearSDE the velocity is v(x, t) = f(t) x − ½ g(t)² s(x, t), with f and g² at
    every stage time computed once for the grid; other SDEs evaluate the flow's drift.
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
        self.stage_times = [row.split(1) for row in stage_t.to(grid.device)]
        self.linear: list[list[tuple[float, float]]] | None = None
        if isinstance(sde, LinearSDE):
            flat = stage_t.reshape(-1)  # schedules take 1-D times
            f = sde.drift_coeff(flat).reshape(stage_t.shape).tolist()
            minus_half_g2 = (-0.5 * sde.diffusion_squared(flat)).reshape(stage_t.shape).tolist()
            self.linear = [list(zip(*row, strict=True)) for row in zip(f, minus_half_g2, strict=True)]

    @functools.cached_property
    def flow(self) -> ProbabilityFlow:
        """The probability-flow ODE, for SDEs without a Gaussian kernel."""
        return probability_flow(self.sde, self.score)

    def velocity(self, x: Tensor, i: int, stage: int) -> Tensor:
        """The flow's drift at stage ``stage`` of step ``i``."""
        t = self.stage_times[i][stage]
        if self.linear is None:
            return self.flow.drift(x, t)
        f, minus_half_g2 = self.linear[i][stage]
        return weighted_sum([(f, x), (minus_half_g2, self.score(x, t))])

    def step(self, x: Tensor, i: int) -> Tensor:
        dt = self.delta[i]
        stages: list[Tensor] = []
        for stage, a_row in enumerate(self.a):
            increments = [(a * dt, k) for a, k in zip(a_row, stages, strict=False) if a]
            stages.append(self.velocity(weighted_sum([(1.0, x), *increments]) if increments else x, i, stage))
        return weighted_sum([(1.0, x), *((b * dt, k) for b, k in zip(self.b, stages, strict=True))])


#: Fixed-grid probability-flow methods: name -> a :class:`~sdekit.solvers.grid_stepper.GridStepper` class.
ODE_METHODS: Registry[type[GridStepper]] = Registry("ODE method")


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
