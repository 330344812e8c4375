"""The method names the samplers accept, and a name or an object turned into a configured method.

``sample`` takes every predictor but ``"none"``, every :data:`SDE_STEPPERS` entry, ``"adaptive"``
(:class:`AdaptiveSDE`) and ``"torchsde:<method>"`` (:class:`TorchSDE`); ``ode_sample`` every
:data:`ODE_METHODS` entry and every embedded pair of :data:`TABLEAUS` (:class:`AdaptiveODE`, which
with ``backend="torchdiffeq"`` or ``"scipy"`` also takes those backends' method names). A name is
built with the options given beside it; an object carries its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sdekit.solvers.adaptive_ode import TABLEAUS, AdaptiveODE
from sdekit.solvers.adaptive_sde import AdaptiveSDE
from sdekit.solvers.grid_stepper import GridStepper
from sdekit.solvers.method import Configurable, Integrator
from sdekit.solvers.ode import ODE_METHODS
from sdekit.solvers.predictors import PREDICTORS, SDE_STEPPERS
from sdekit.solvers.torchsde_solver import TORCHSDE_METHODS, TorchSDE

__all__ = ["Method", "sde_methods", "ode_methods", "sde_method", "ode_method", "method_label"]

#: A configured method: stepped on a grid by the sampler, or integrating by itself.
Method = GridStepper | Integrator


def sde_methods() -> list[str]:
    """``sample(method=...)`` names: every predictor but "none", every SDE stepper, "adaptive", torchsde's."""
    predictors = [name for name in PREDICTORS.names() if name != "none"]
    return sorted(predictors + SDE_STEPPERS.names() + ["adaptive"] + [f"torchsde:{m}" for m in TORCHSDE_METHODS])


def ode_methods() -> list[str]:
    """``ode_sample(method=...)`` names: fixed-grid :data:`ODE_METHODS` and the adaptive pairs of TABLEAUS."""
    return sorted(ODE_METHODS.names() + list(TABLEAUS))


def method_label(method: object) -> str:
    """How messages name a method: its registered name, or the object's repr."""
    return repr(method) if isinstance(method, Configurable) else repr(str(method))


def _build(
    name: str, cls: type[Configurable], options: Mapping[str, Any], factory: Callable[..., Method] | None = None
) -> Method:
    """``cls(**options)`` (or ``factory``), refusing unknown options in the name's words."""
    fixed = {"method"} if factory is not None else set()  # the name itself gives it
    valid = sorted(set(cls.defaults) - fixed)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(
            f"method {name!r} takes no option(s) {', '.join(unknown)}; valid options: {', '.join(valid) or 'none'}"
        )
    built = (factory or cls)(**options)
    assert isinstance(built, GridStepper | Integrator)
    return built


def _given(method: Method, kind: str, options: Mapping[str, Any]) -> Method:
    if method.kind != kind:
        raise TypeError(f"{method!r} is a {method.kind} method; this sampler takes {kind} methods")
    if options:
        raise TypeError(
            f"options {', '.join(sorted(options))} given beside the method object {method!r}: "
            "pass them to its constructor"
        )
    return method


def sde_method(method: object, options: Mapping[str, Any]) -> Method:
    """The configured reverse-SDE method that ``method`` (a name of :func:`sde_methods` or an object) names."""
    if isinstance(method, GridStepper | Integrator):
        return _given(method, "sde", options)
    if not isinstance(method, str) or method not in sde_methods():
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(sde_methods())}")
    if method in SDE_STEPPERS:
        return _build(method, SDE_STEPPERS.get(method), options)
    if method in PREDICTORS:
        return _build(method, PREDICTORS.get(method), options)
    if method == "adaptive":
        return _build(method, AdaptiveSDE, options)
    backend_method = method.removeprefix("torchsde:")
    return _build(method, TorchSDE, options, lambda **kw: TorchSDE(method=backend_method, **kw))


def ode_method(method: object, options: Mapping[str, Any]) -> Method:
    """The configured flow method that ``method`` (a name of :func:`ode_methods` or an object) names.

    A fixed-grid name with a ``backend`` option means that backend's method of the same name.
    """
    if isinstance(method, GridStepper | Integrator):
        return _given(method, "ode", options)
    if isinstance(method, str) and method in ODE_METHODS and options.get("backend") in (None, "native"):
        if "backend" in options:
            raise TypeError(
                f"backend is an option of the adaptive methods ({', '.join(TABLEAUS)}), not of the fixed-grid "
                f"method {method!r}; give backend='torchdiffeq' or 'scipy' for their method of that name"
            )
        return _build(method, ODE_METHODS.get(method), options)
    if isinstance(method, str) and (method in TABLEAUS or options.get("backend", "native") != "native"):
        return _build(method, AdaptiveODE, options, lambda **kw: AdaptiveODE(method=method, **kw))
    raise ValueError(f"unknown ODE method {method!r}; valid: {', '.join(ode_methods())}")
