"""Predictor–corrector sampling (Song et al. 2021, Algorithm 1) as one configured fixed-grid method.

``PredictorCorrector(predictor=Ancestral(), corrector=Langevin(snr=0.1), corrector_steps=2)``:
each step runs the predictor from t_i to t_{i+1}, then ``corrector_steps`` corrector moves at
t_{i+1}. Either part is a registered name or a configured object; ``"none"`` switches it off.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar, cast

from torch import Tensor

from sdekit.checks import check_nonnegative_int
from sdekit.per_sample import Generators
from sdekit.reverse import ScoreFn
from sdekit.sde import SDE
from sdekit.solvers.correctors import CORRECTORS, Corrector
from sdekit.solvers.grid_stepper import GridStepper
from sdekit.solvers.predictors import PREDICTORS, Predictor
from sdekit.solvers.registry import Registry

__all__ = ["PredictorCorrector"]

_Part = TypeVar("_Part", Predictor, Corrector)


def _configured(name: str, value: object, registry: Registry[type[_Part]], base: type) -> _Part:
    """A registered name (built with its defaults) or a configured ``base`` instance; TypeError otherwise."""
    if isinstance(value, str):
        return registry.get(value)()
    if isinstance(value, base):
        return cast(_Part, value)
    raise TypeError(f"{name} must be a registered name or a {base.__name__} object, got {type(value).__name__}")


class PredictorCorrector(GridStepper):
    """A predictor step from t_i to t_{i+1}, then ``corrector_steps`` corrector moves at t_{i+1}.

    NFE per step = predictor calls + ``corrector_steps`` × corrector calls.
    """

    defaults: ClassVar[dict[str, Any]] = {
        "predictor": "reverse_diffusion",
        "corrector": "langevin",
        "corrector_steps": 1,
    }
    predictor: Predictor
    corrector: Corrector
    corrector_steps: int

    def check_options(self, options: dict[str, Any]) -> None:
        options["predictor"] = _configured("predictor", options["predictor"], PREDICTORS, Predictor)
        options["corrector"] = _configured("corrector", options["corrector"], CORRECTORS, Corrector)
        options["corrector_steps"] = check_nonnegative_int("corrector_steps", options["corrector_steps"])
        self.nfe_per_step = options["predictor"].nfe_per_step + options["corrector_steps"] * (
            options["corrector"].nfe_per_step
        )

    def bind(self, sde: SDE, score: ScoreFn, grid: Tensor, generator: Generators | None = None) -> None:
        super().bind(sde, score, grid, generator)
        self.predict = self.predictor.start(sde, score, grid, generator)
        self.correct = self.corrector.start(sde, score, grid, generator)

    def step(self, x: Tensor, i: int) -> Tensor:
        x = self.predict.step(x, i)
        for _ in range(self.corrector_steps):
            x = self.correct.step(x, i)
        return x
