"""De-identification: patient, study and series identifiers reduced to salted hashes.

chestlens never keeps PatientName, PatientID, PatientBirthDate or any other direct identifier in
image metadata, logs, ``chestlens info`` output or exception messages. Where a stable grouping key
is needed (same patient, same study, same series) it keeps ``salted_key(value)``: the first 16 hex
characters of SHA-256 over ``salt + "\\x1f" + value``.

The salt comes from the environment variable ``CHESTLENS_ID_SALT``; without it the public default
:data:`DEFAULT_SALT` is used. With the public default the keys are only pseudonymous (a known id can
be hashed and compared), so set your own secret salt before sharing keys outside your site.
"""

from __future__ import annotations

import hashlib
import os

SALT_ENV = "CHESTLENS_ID_SALT"
DEFAULT_SALT = "chestlens-v1"
KEY_HEX_CHARS = 16


def id_salt() -> str:
    """The salt in use: ``$CHESTLENS_ID_SALT`` if set and non-empty, else :data:`DEFAULT_SALT`."""
    return os.environ.get(SALT_ENV) or DEFAULT_SALT


def salted_key(value: object) -> str | None:
    """Salted SHA-256 key (16 hex chars) of an identifier, or None when the value is empty/absent."""
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    digest = hashlib.sha256(f"{id_salt()}\x1f{text}".encode()).hexdigest()
    return digest[:KEY_HEX_CHARS]
