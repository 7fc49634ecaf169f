"""The one exception type chestlens raises for input it cannot use."""

from __future__ import annotations

from os import PathLike


class ChestlensInputError(ValueError):
    """Input that chestlens cannot read or use.

    The message names the file (or series folder) and the reason, in one line, so the CLI can print
    it as is and the server can return it in a 4xx problem body. Without a path (in-memory bytes, a
    bad option) the message is the reason alone: no placeholder stands in for a missing name.

    Attributes:
        path: the offending file or folder as given by the caller (``None`` for in-memory bytes).
        reason: a short human-readable reason, without the path.
    """

    def __init__(self, path: str | PathLike[str] | None, reason: str) -> None:
        self.path = None if path is None else str(path)
        self.reason = " ".join(reason.split())  # keep it on one line
        super().__init__(self.reason if self.path is None else f"{self.path}: {self.reason}")
