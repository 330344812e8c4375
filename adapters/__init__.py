"""sdekit's adapters under their short name: ``from adapters import ddpm``.

A thin re-export: the implementation is :mod:`sdekit.adapters`, and ``adapters.ddpm`` *is*
``sdekit.adapters.ddpm``. ``from sdekit.adapters import ddpm`` always works, including where
another distribution also named ``adapters`` is installed (see :mod:`sdekit.adapters._toplevel`).
"""

from sdekit.adapters import ENTRY_POINT_GROUP, available, get, register

#: sdekit.adapters._toplevel.MARKER: this package is sdekit's (another distribution's __init__ lacks it).
__sdekit_adapters__ = True

__all__ = ["ENTRY_POINT_GROUP", "available", "get", "register"]
