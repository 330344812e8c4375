"""Fixed-step Runge–Kutta steppers for the probability-flow ODE dx/dt = f − ½ g² s.

Each method is an explicit Butcher tableau (:mod:`sdekit.solvers.tableaus`, shared with the
adaptive pairs); ``order`` is its convergence order and ``nfe_per_step`` its stage count.
Heun (EDM's second-order choice) is the usual pick: at equal NFE it beats Euler by a wide
margin from ~20 steps on. RK4 pays four calls a step and wins only when the score is very
smooth in t.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from sdekit.checks import check_choice
from sdekit.per_sample import Generators
from sdekit.reverse import ScoreFn
from sdekit.sde import SDE
from sdekit.solvers.coefficients import coefficients
from sdekit.solvers.grid_stepper import GridStepper, weighted_sum
from sdekit.solvers.registry import Registry
from sdekit.solvers.tableaus import BOSH3, DOPRI5, EULER, HEUN, HEUN_EULER, ButcherTableau
from sdekit.solvers.tableaus import RK4 as RK4_TABLEAU

__all__ = ["ExplicitRungeKutta", "ODE_METHODS", "Euler", "Heun", "RK4", "RungeKutta", "BUILT_IN"]


class ExplicitRungeKutta(GridStepper):
    """x' = x + Δ Σ b_i k_i with k_i = v(x + Δ Σ_j a_ij k_j, t + c_i Δ), Δ = t' − t < 0.

    A method is its Butcher ``tableau`` (:class:`~sdekit.solvers.tableaus.ButcherTableau`, the type
    the adaptive pairs use too); ``nfe_per_step`` is its stage count (an FSAL pair's unused last stage
    is skipped). A subclass may instead give ``a``, ``b``, ``c`` and ``order`` as class attributes.

    The velocity is v(x, t) = f(x, t) − ½ g(t)² s(x, t), its coefficients from
    :mod:`sdekit.solvers.coefficients`: on a LinearSDE f(t) and g² at every stage time are
    computed once for the grid; other SDEs are evaluated at each stage.
    """

    kind = "ode"
    tableau: ClassVar[ButcherTableau]
    a: ClassVar[tuple[tuple[float, ...], ...]]
    b: ClassVar[tuple[float, ...]]
    c: ClassVar[tuple[float, ...]]
    order: ClassVar[int]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "b" in vars(cls):  # a tableau given as class attributes
            cls.tableau = ButcherTableau(cls.__name__, a=cls.a, b=cls.b, c=cls.c, order=cls.order)
        if "tableau" in vars(cls):
            cls._use(cls.tableau)

    @classmethod
    def _use(cls, tableau: ButcherTableau) -> None:
        cls.a, cls.b, cls.c, cls.order = tableau.a, tableau.b, tableau.c, tableau.order
        cls.nfe_per_step = tableau.solution_stages  # one score call per stage

    @property
    def stages(self) -> int:
        return self.tableau.solution_stages

    def bind(self, sde: SDE, score: ScoreFn, grid: Tensor, generator: Generators | None = None) -> None:
        super().bind(sde, score, grid, generator)
        delta = self.t_next - self.t
        self.delta = delta.tolist()
        nodes = torch.tensor(self.tableau.c[: self.stages], dtype=torch.float64)
        stage_t = self.t[:, None] + nodes * delta[:, None]  # (N, stages)
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
        dt, tableau = self.delta[i], self.tableau
        stages: list[Tensor] = []
        for stage in range(self.stages):
            increments = [(a * dt, k) for a, k in zip(tableau.a[stage], stages, strict=False) if a]
            stages.append(self.velocity(weighted_sum([(1.0, x), *increments]) if increments else x, i, stage))
        return weighted_sum([(1.0, x), *((b * dt, k) for b, k in zip(tableau.b, stages, strict=False))])


#: Fixed-grid probability-flow methods: name -> a :class:`~sdekit.solvers.grid_stepper.GridStepper` class.
ODE_METHODS: Registry[type[GridStepper]] = Registry("ODE method", GridStepper)


@ODE_METHODS.register("euler")
class Euler(ExplicitRungeKutta):
    """First order: x' = x + Δ v(x, t)."""

    tableau = EULER


@ODE_METHODS.register("heun")
class Heun(ExplicitRungeKutta):
    """Second order (explicit trapezoid), EDM's sampler: an Euler step, then the average slope."""

    tableau = HEUN


@ODE_METHODS.register("rk4")
class RK4(ExplicitRungeKutta):
    """The classical fourth-order Runge–Kutta method."""

    tableau = RK4_TABLEAU


class RungeKutta(ExplicitRungeKutta):
    """Any Butcher tableau on a fixed grid: ``ode_sample(method=RungeKutta(tableau="dopri5"), steps=10)``.

    ``tableau`` is a :class:`~sdekit.solvers.tableaus.ButcherTableau` or the name of a built-in one
    (euler, heun, rk4, and the embedded pairs dopri5, bosh3, heun_euler, whose solution weights
    are then used on the grid without error control).
    """

    defaults: ClassVar[dict[str, Any]] = {"tableau": "heun"}
    tableau: ButcherTableau  # type: ignore[misc]  # an option here, not a class constant

    def check_options(self, options: dict[str, Any]) -> None:
        tableau = options["tableau"]
        if isinstance(tableau, str):
            options["tableau"] = BUILT_IN[check_choice("tableau", tableau, BUILT_IN)]
        elif not isinstance(tableau, ButcherTableau):
            raise TypeError(f"tableau must be a ButcherTableau or a built-in name, got {type(tableau).__name__}")
        self.nfe_per_step = options["tableau"].solution_stages


#: The built-in tableaus by name, for :class:`RungeKutta`.
BUILT_IN: dict[str, ButcherTableau] = {t.name: t for t in (EULER, HEUN, RK4_TABLEAU, DOPRI5, BOSH3, HEUN_EULER)}
