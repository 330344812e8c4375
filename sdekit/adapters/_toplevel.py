"""The top-level ``adapters`` package: sdekit's adapters under their short, documented name.

``from adapters import ddpm`` is the same module object as ``from sdekit.adapters import ddpm``:
each file of the top-level package replaces itself in ``sys.modules`` with the
implementation here, so nothing is written twice and a monkeypatch of one is a patch of both.

The name ``adapters`` is also taken on PyPI (AdapterHub's ``adapters`` distribution). Installed
after sdekit, it writes its own ``adapters/__init__.py`` over sdekit's and the package becomes
theirs. sdekit itself never imports the top-level name, so its CLI and ``sdekit.adapters`` keep
working; importing one of sdekit's adapters through the top-level name then raises
:class:`AdaptersClashError`, naming the other distribution and the import that works.
"""

from __future__ import annotations

import importlib
import sys
from importlib import metadata
from types import ModuleType

__all__ = ["AdaptersClashError", "MARKER", "owners", "reexport"]

#: Set in sdekit's top-level ``adapters/__init__.py``: the package is sdekit's while it is there.
MARKER = "__sdekit_adapters__"


class AdaptersClashError(ImportError):
    """The top-level ``adapters`` package belongs to another distribution."""


def owners() -> list[str]:
    """'name version' of every installed distribution other than sdekit that ships a top-level ``adapters``."""
    found = []
    for name in metadata.packages_distributions().get("adapters", []):
        if name.lower() != "sdekit":
            try:
                found.append(f"{name} {metadata.version(name)}")
            except metadata.PackageNotFoundError:
                found.append(name)
    return sorted(set(found))


def clash_message(module: str) -> str | None:
    """Why ``adapters.<module>`` cannot be sdekit's, or None when the top-level package is sdekit's.

    It is sdekit's when its ``__init__`` carries :data:`MARKER`, or when it has no ``__init__`` at all
    (a namespace package: what is left of sdekit's after another distribution that had overwritten
    the ``__init__`` is uninstalled).
    """
    package = sys.modules.get("adapters")
    if package is None or getattr(package, MARKER, False) or getattr(package, "__file__", None) is None:
        return None
    other = ", ".join(owners()) or f"the package at {package.__file__}"
    return (
        f"the top-level package 'adapters' is not sdekit's: another distribution ({other}) provides it "
        f"(its own adapters/__init__.py, over or ahead of sdekit's). Import sdekit's adapter as "
        f"`from sdekit.adapters import {module}` (which always works), or uninstall the other distribution "
        "and reinstall sdekit"
    )


def reexport(name: str) -> ModuleType:
    """Make the top-level module ``name`` (``"adapters.ddpm"``) the implementation ``sdekit.adapters.ddpm``."""
    module = name.rpartition(".")[2]
    problem = clash_message(module)
    if problem is not None:
        raise AdaptersClashError(problem)
    implementation = importlib.import_module(f"sdekit.adapters.{module}")
    sys.modules[name] = implementation
    return implementation
