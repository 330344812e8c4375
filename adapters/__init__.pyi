from sdekit.adapters import ENTRY_POINT_GROUP as ENTRY_POINT_GROUP
from sdekit.adapters import available as available
from sdekit.adapters import get as get
from sdekit.adapters import register as register

__sdekit_adapters__: bool
