"""The installation's secret salt for patient, study and series keys (:mod:`chestlens.io.deid`), used by
`chestlens serve` and `chestlens listen`.

With the public default salt a ``patient_key`` can be reversed by hashing every candidate id (a 6-digit
PatientID takes seconds), so the service never uses it. At start-up it takes, in this order:

1. the configured salt, ``$CHESTLENS_ID_SALT`` (e.g. for several installations that must agree on keys);
2. the installation salt in ``<data_dir>/id-salt``: 32 random bytes (64 hex characters) created on the
   first start, readable and writable only by the server's user (mode 0600). Several worker processes
   starting together agree on one: the file appears complete or not at all (a hard link of a finished
   temporary file), and whoever comes second reads the winner's.

The log says which one is in use, never the salt itself. Keys made under different salts never match,
so back the file up with the database: losing it changes every new key.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from chestlens.errors import ChestlensInputError
from chestlens.io.deid import SALT_ENV, configured_salt

SALT_FILE = "id-salt"
SALT_BYTES = 32
PRIVATE = 0o600


@dataclass(frozen=True, slots=True)
class SaltChoice:
    """The salt the service uses and, for the start-up log, where it came from (never the salt)."""

    salt: str
    origin: str


def choose_salt(data_dir: Path) -> SaltChoice:
    """The configured salt, else the installation salt of ``data_dir`` (created when missing).

    Raises:
        ChestlensInputError: the salt file exists but is empty or unreadable.
    """
    configured = configured_salt()
    if configured is not None:
        return SaltChoice(configured, f"configured salt (${SALT_ENV})")
    path = Path(data_dir) / SALT_FILE
    created = _create_if_missing(path)
    action = "created" if created else "read"
    return SaltChoice(_read(path), f"installation salt {action} in {path} (mode 0600)")


def _create_if_missing(path: Path) -> bool:
    """Write a new random salt to ``path`` unless it exists; True when this call created it."""
    if path.exists():
        return False
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as stream:
            stream.write(secrets.token_hex(SALT_BYTES) + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.link(temporary, path)  # atomic, and refuses to replace a salt another process just created
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
    return True


def _read(path: Path) -> str:
    """The salt in ``path``, after making the file private again if its mode was loosened."""
    try:
        if stat.S_IMODE(path.stat().st_mode) != PRIVATE:
            path.chmod(PRIVATE)
        salt = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ChestlensInputError(path, f"cannot read the salt file ({type(error).__name__})") from error
    if not salt:
        raise ChestlensInputError(
            path, "the salt file is empty: restore it from a backup, or delete it to start new keys"
        )
    return salt
