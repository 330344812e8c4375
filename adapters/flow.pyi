# The stub of a re-export: the names of the implementation, for type checkers.
from sdekit.adapters.flow import *  # noqa: F403
