"""Name → class registries, so that a new predictor, corrector or ODE method is one decorated class."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from sdekit.checks import check_choice

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from method names to classes, with errors that list the valid names."""

    def __init__(self, kind: str, base: type | None = None) -> None:
        self.kind = kind
        #: Entries must be subclasses of ``base`` (when given): registering anything else fails at once.
        self.base = base
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: ``@PREDICTORS.register("euler_maruyama")``."""

        def add(entry: T) -> T:
            if self.base is not None and not (isinstance(entry, type) and issubclass(entry, self.base)):
                raise TypeError(
                    f"{self.kind} {name!r}: register a {self.base.__name__} subclass (a configured method class), "
                    f"got {entry!r}"
                )
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = entry
            return entry

        return add

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return its entry (``ValueError`` listing the valid names if absent)."""
        check_choice(self.kind, name, self._entries)
        return self._entries.pop(name)

    def get(self, name: str) -> T:
        """The entry called ``name``; ``ValueError`` listing the valid names otherwise."""
        check_choice(self.kind, name, self._entries)
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
