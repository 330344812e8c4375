"""What a sampling method is: a configured object whose options are given once, at construction.

``DPMSolverPP(order=3, lower_order_final=False)`` or ``Langevin(snr=0.1)`` is a method with its
options; the samplers take such an object or a registered name (``method="dpmpp_3m"``, built with
its defaults, or with the options passed to the sampler). Two kinds:

* a fixed-grid method (:class:`~sdekit.solvers.grid_stepper.GridStepper`) is *started* for one run
  over one grid and then stepped by the sampler's loop;
* an :class:`Integrator` (the adaptive solvers, torchsde) runs the whole solve itself.

A method declares its options and their defaults in ``defaults``; a wrong option name is a
``TypeError`` listing the valid ones, a bad value a ``ValueError``/``TypeError`` from
:meth:`Configurable.check_options` naming the option — both at construction, before any work.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor

from sdekit.checks import same_value
from sdekit.per_sample import Generators
from sdekit.reverse import ScoreFn
from sdekit.sde import SDE

if TYPE_CHECKING:
    from sdekit.solvers.info import SampleInfo

__all__ = ["Configurable", "Integrator", "Callback"]

#: ``callback(payload)``: called once per step (per iteration for adaptive methods).
Callback = Callable[[dict[str, Any]], Any]


class Configurable:
    """Options as keyword arguments, checked at construction; ``repr`` and equality from them.

    A subclass lists its options and defaults in ``defaults`` (merged with its bases'), and
    may check their values in :meth:`check_options`. Options become attributes.
    """

    defaults: ClassVar[Mapping[str, Any]] = {}
    #: Options of a base class that this class fixes (``{"order": 2}`` for DPM-Solver++(2M)): class
    #: attributes, no longer options.
    fixed_options: ClassVar[Mapping[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        merged: dict[str, Any] = {}
        fixed: dict[str, Any] = {}
        for base in reversed(cls.__mro__):
            merged.update(vars(base).get("defaults", {}))
            fixed.update(vars(base).get("fixed_options", {}))
        for name, value in fixed.items():
            merged.pop(name, None)
            setattr(cls, name, value)
        cls.defaults = merged
        cls.fixed_options = fixed

    def __init__(self, *args: Any, **options: Any) -> None:
        name, valid = type(self).__name__, ", ".join(sorted(self.defaults)) or "none"
        if args:
            raise TypeError(
                f"{name} takes its options as keywords only ({valid}); "
                f"to run it on a grid, start it: {name}(...).start(sde, score, grid, generator)"
            )
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise TypeError(f"{type(self).__name__} takes no option(s) {', '.join(unknown)}; valid options: {valid}")
        values = {**self.defaults, **options}
        self.check_options(values)
        for name, value in values.items():
            setattr(self, name, value)

    def check_options(self, options: dict[str, Any]) -> None:
        """Raise ``ValueError``/``TypeError`` naming an option whose value is bad (may normalise in place)."""

    @property
    def options(self) -> dict[str, Any]:
        """The method's options and their values."""
        return {name: getattr(self, name) for name in self.defaults}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self) or not isinstance(other, Configurable):
            return False
        mine, theirs = self.options, other.options
        return all(same_value(mine[name], theirs[name]) for name in mine)

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted((k, repr(v)) for k, v in self.options.items()))))


def keyword_defaults(function: Callable[..., Any], *exclude: str) -> dict[str, Any]:
    """The keyword-only parameters of ``function`` that have defaults, less ``exclude``: a method object's
    ``defaults`` taken from the function it configures, so the two cannot drift apart."""
    return {
        name: parameter.default
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        and parameter.default is not inspect.Parameter.empty
        and name not in exclude
    }


class Integrator(Configurable, abc.ABC):
    """A method that runs a whole solve from T to ``eps`` itself (adaptive solvers, torchsde).

    ``kind`` is ``"sde"`` (a reverse-SDE method, for :func:`sdekit.sample`) or ``"ode"`` (a
    probability-flow method, for :func:`sdekit.ode_sample`).
    """

    kind: ClassVar[str]

    @property
    def takes_callback(self) -> bool:
        """Whether the sampler's ``callback`` reaches the method's steps (not where a backend runs them)."""
        return True

    #: Whether the sampler's ``steps`` mean something to the method (torchsde's dt) or not (adaptive).
    uses_steps: ClassVar[bool] = False
    #: Whether the method applies a state constraint (``integrate(..., constraint=...)``) after its steps.
    takes_constraint: ClassVar[bool] = False

    @abc.abstractmethod
    def integrate(
        self,
        sde: SDE,
        score: ScoreFn,
        x: Tensor,
        *,
        eps: float,
        steps: int,
        generator: Generators | None,
        progress: bool,
        callback: Callback | None,
    ) -> tuple[Tensor, SampleInfo]:
        """The state at ``eps`` from ``x`` at T, and what the solve did (``info.nfe`` as counted here).

        ``callback`` (only when ``takes_callback``) already carries the sampler's payload completion.
        """
