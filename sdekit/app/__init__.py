"""sdekit's application: the ``sdekit`` command, resumable runs, built-in models, training, plots.

Everything here is built on the core library's public API and needs the ``app`` extra
(``pip install "sdekit[app]"``: safetensors for weights and runs, scikit-learn for the
digits data, matplotlib for pictures). The core (:mod:`sdekit`) never imports this package.
"""

from __future__ import annotations

import importlib.util

__all__ = ["REQUIREMENTS", "MissingRequirementError", "missing_requirements", "require"]

#: import name -> distribution name, for what the application needs beyond the core.
REQUIREMENTS = {"safetensors": "safetensors", "sklearn": "scikit-learn", "matplotlib": "matplotlib"}


class MissingRequirementError(ImportError):
    """The application's extra is not installed."""


def missing_requirements() -> list[str]:
    """Distribution names of the application's requirements that cannot be imported."""
    return [dist for module, dist in REQUIREMENTS.items() if importlib.util.find_spec(module) is None]


def require() -> None:
    """Raise :class:`MissingRequirementError` (one line, naming the extra) if any requirement is missing."""
    missing = missing_requirements()
    if missing:
        raise MissingRequirementError(
            f"the sdekit command needs {', '.join(missing)}: install the application extra, "
            'pip install "sdekit[app]" (the library itself, import sdekit, does not)'
        )
