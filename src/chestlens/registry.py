"""One registry type for everything chestlens looks up by name.

Model architectures, segmenter decoders and encoders, detectors and data-source adapters are each a
``Registry`` of their config objects (in the spirit of timm's model registry): names are unique, a
lookup of an unknown name is a one-line :class:`~chestlens.errors.ChestlensInputError` listing the
known names, and ``names()`` is what the CLI's help and ``chestlens models`` print.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

from chestlens.errors import ChestlensInputError


class Named(Protocol):
    """Anything registered: it carries the name it is looked up by."""

    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


class Registry(Generic[T]):
    """Named entries of one kind, in registration order.

    Args:
        what: what an entry is, for messages (``"model"``, ``"segmenter encoder"``, ...).
        entries: entries registered at once, each under its ``name``.
    """

    def __init__(self, what: str, entries: Iterable[T] = ()) -> None:
        self.what = what
        self._entries: dict[str, T] = {}
        for entry in entries:
            self.register(entry)

    def register(self, entry: T) -> T:
        """Add ``entry`` under ``entry.name``; a second, different entry with that name is refused."""
        if entry.name in self._entries and self._entries[entry.name] is not entry:
            raise ValueError(f"a {self.what} named {entry.name!r} is already registered")
        self._entries[entry.name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry named ``name``; an unknown name is a ``ChestlensInputError`` listing the known ones."""
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self.names())
            raise ChestlensInputError(None, f"unknown {self.what} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def values(self) -> list[T]:
        """The entries in registration order."""
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
