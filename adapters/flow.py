"""``sdekit.adapters.flow`` under the top-level name (see ``adapters/__init__.py``)."""

from sdekit.adapters._toplevel import reexport

reexport(__name__)
