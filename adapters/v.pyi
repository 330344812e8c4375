# The stub of a re-export: the names of the implementation, for type checkers.
from sdekit.adapters.v import *  # noqa: F403
