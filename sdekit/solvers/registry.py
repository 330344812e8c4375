"""Name → class registries, so that a new predictor, corrector or ODE method is one decorated class."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

import torch
from torch import Tensor

from sdekit.checks import check_choice
from sdekit.reverse import ScoreFn
from sdekit.sde import SDE

T = TypeVar("T")


class Stepper(Protocol):
    """One step of a fixed-grid method, built for one run over one grid t_0 > t_1 > … > t_N.

    ``step(x, i)`` returns the state at t_{i+1} from the state ``x`` at t_i; steps are taken
    in order, so a multistep method may keep its history on the instance.
    ``nfe_per_step`` is the number of score calls a step makes.
    """

    @property
    def nfe_per_step(self) -> int: ...

    def step(self, x: Tensor, i: int) -> Tensor: ...


class StepperFactory(Protocol):
    """Builds a stepper for one run: ``factory(sde, score, grid, generator)``.

    ``grid`` is the run's whole time grid, float64, on the state's device; ``generator``
    draws any noise (deterministic methods ignore it). A stepper class is a factory.
    """

    def __call__(self, sde: SDE, score: ScoreFn, grid: Tensor, generator: torch.Generator | None = None) -> Stepper: ...


class Registry(Generic[T]):
    """A mapping from method names to classes, with errors that list the valid names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: ``@PREDICTORS.register("euler_maruyama")``."""

        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        """The entry called ``name``; ``ValueError`` listing the valid names otherwise."""
        check_choice(self.kind, name, self._entries)
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
