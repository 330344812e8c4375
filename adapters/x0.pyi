# The stub of a re-export: the names of the implementation, for type checkers.
from sdekit.adapters.x0 import *  # noqa: F403
