"""De-identification: patient, study and series identifiers reduced to salted hashes.

chestlens never keeps PatientName, PatientID, PatientBirthDate or any other direct identifier in
image metadata, logs, ``chestlens info`` output or exception messages. Where a stable grouping key
is needed (same patient, same study, same series) it keeps ``salted_key(value)``: the first 16 hex
characters of SHA-256 over ``salt + "\\x1f" + value``.

The salt, in order of precedence:

1. the environment variable ``CHESTLENS_ID_SALT`` (a configured salt);
2. the installation salt a long-running process set with :func:`use_installation_salt`:
   ``chestlens serve`` keeps a random secret one with its data (:mod:`chestlens.io.salt`);
3. the public default :data:`DEFAULT_SALT`. With it the keys are only pseudonymous (a known id can
   be hashed and compared, and short ids can be found by trying them all), so set your own secret
   salt before sharing keys outside your site.
"""

from __future__ import annotations

import hashlib
import os

SALT_ENV = "CHESTLENS_ID_SALT"
DEFAULT_SALT = "chestlens-v1"
KEY_HEX_CHARS = 16

#: This process's installation salt (see :func:`use_installation_salt`), None when unset.
_installation: dict[str, str | None] = {"salt": None}


def configured_salt() -> str | None:
    """``$CHESTLENS_ID_SALT`` when set and non-empty, else None."""
    return os.environ.get(SALT_ENV) or None


def use_installation_salt(salt: str | None) -> None:
    """Use ``salt`` for this process's keys unless a salt is configured; None goes back to the default."""
    _installation["salt"] = salt or None


def id_salt() -> str:
    """The salt in use: configured, else this process's installation salt, else :data:`DEFAULT_SALT`."""
    return configured_salt() or _installation["salt"] or DEFAULT_SALT


def salted_key(value: object) -> str | None:
    """Salted SHA-256 key (16 hex chars) of an identifier, or None when the value is empty/absent."""
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    digest = hashlib.sha256(f"{id_salt()}\x1f{text}".encode()).hexdigest()
    return digest[:KEY_HEX_CHARS]
