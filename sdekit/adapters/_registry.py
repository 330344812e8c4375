"""The adapter registry: built-ins by name, third-party adapters from the ``sdekit.adapters`` entry-point group.

A third-party package registers an adapter in its ``pyproject.toml``::

    [project.entry-points."sdekit.adapters"]
    mynet = "mypackage.sdekit_adapter"      # a module (or any object) exposing its constructors

and users get it with ``adapters.get("mynet")``. Built-in names cannot be shadowed: an
entry point with a built-in's name is ignored. Entry points are read on each call
(cheap), so a package installed at run time is found without a restart.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

__all__ = ["ENTRY_POINT_GROUP", "available", "get", "register"]

ENTRY_POINT_GROUP = "sdekit.adapters"

#: Built-in adapters: name -> module, imported on first use (``diffusers`` stays unimported until asked for).
_BUILTINS = {
    "ddpm": "sdekit.adapters.ddpm",
    "ncsn": "sdekit.adapters.ncsn",
    "x0": "sdekit.adapters.x0",
    "v": "sdekit.adapters.v",
    "flow": "sdekit.adapters.flow",
    "edm": "sdekit.adapters.edm",
    "diffusers": "sdekit.adapters.diffusers",
}
_REGISTERED: dict[str, Any] = {}


def register(name: str, adapter: Any, *, replace: bool = False) -> None:
    """Register ``adapter`` (a module, class or factory) under ``name`` for this process.

    Packages should prefer the entry-point group; this is for scripts and tests.
    ``replace=True`` overrides an earlier :func:`register` (never a built-in).
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if name in _BUILTINS:
        raise ValueError(f"name {name!r} is a built-in adapter and cannot be replaced")
    if name in _REGISTERED and not replace:
        raise ValueError(f"an adapter named {name!r} is already registered; pass replace=True to override it")
    _REGISTERED[name] = adapter


def _entry_points() -> dict[str, metadata.EntryPoint]:
    found: dict[str, metadata.EntryPoint] = {}
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name not in _BUILTINS:
            found.setdefault(entry_point.name, entry_point)
    return found


def available() -> list[str]:
    """Sorted names of every adapter: built-ins, :func:`register`-ed ones and installed entry points."""
    return sorted({*_BUILTINS, *_REGISTERED, *_entry_points()})


def get(name: str) -> Any:
    """The adapter registered as ``name``: a built-in module (``adapters.get("ddpm").from_betas(...)``),
    a :func:`register`-ed object, or the object an ``sdekit.adapters`` entry point loads.

    Raises ``ValueError`` listing the available names when ``name`` is unknown.
    """
    if not isinstance(name, str):
        raise TypeError(f"adapter name must be a str, got {type(name).__name__}")
    if name in _BUILTINS:
        return importlib.import_module(_BUILTINS[name])
    if name in _REGISTERED:
        return _REGISTERED[name]
    entry_point = _entry_points().get(name)
    if entry_point is None:
        raise ValueError(f"unknown adapter {name!r}; available: {', '.join(available())}")
    try:
        return entry_point.load()
    except Exception as error:
        raise ImportError(
            f"adapter {name!r} (entry point {entry_point.value!r} in group {ENTRY_POINT_GROUP!r}) "
            f"failed to load: {error}"
        ) from error
