"""Roles, principals and credentials of ``chestlens serve``: API keys with a role, and OIDC/JWT bearer
tokens verified offline with PyJWT.

Roles (:class:`Role`) and what they may do (:data:`GRANTS`):

========== ====================================== ============================= =====================
role       submit (``POST /api/v1/screenings``,    read (worklist, CSV, results, delete
           STOW-RS)                                overlays, jobs)
========== ====================================== ============================= =====================
submitter  yes                                     its own only                  its own only
reader     yes                                     all                           no (403)
admin      yes                                     all                           all
========== ====================================== ============================= =====================

Credentials:

* API keys, each with a role: ``role:key`` entries (a key file line, or a comma-separated entry of
  :data:`~chestlens.serve.settings.API_KEYS_ENV`); a bare ``key`` is an admin key, which is what every key
  could do before roles existed. A key cannot contain ``:`` or ``,``.
* Bearer tokens (``Authorization: Bearer <JWT>``): HS256 with a shared secret, or RS256/ES256 with a public
  key PEM file or a JWKS file on disk (no network at run time); ``exp`` and ``sub`` are required, ``iss`` and
  ``aud`` are checked when configured. The roles come from a claim (dotted path, default ``roles``; e.g.
  Keycloak's ``realm_access.roles``), mapped to chestlens roles by ``jwt_role_map`` (``value=role``
  entries) or, without a map, taken by name; the highest one counts.

Principals are never stored by their secret: :attr:`Principal.id` is a salted hash
(:func:`chestlens.io.deid.salted_key`, the installation salt) of the key's SHA-256 fingerprint, or of the
token's ``iss`` and ``sub``. Without any credentials configured everyone is the anonymous admin.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from chestlens.errors import ChestlensInputError
from chestlens.io.deid import salted_key


class Role(StrEnum):
    """A chestlens role, lowest first."""

    SUBMITTER = "submitter"
    READER = "reader"
    ADMIN = "admin"


class Permission(StrEnum):
    """What an operation needs."""

    SUBMIT = "submit"
    READ = "read"
    DELETE = "delete"


#: Permissions of each role (see the module docstring).
GRANTS: dict[Role, frozenset[Permission]] = {
    Role.SUBMITTER: frozenset(Permission),
    Role.READER: frozenset({Permission.SUBMIT, Permission.READ}),
    Role.ADMIN: frozenset(Permission),
}
#: Roles that see every principal's screenings and jobs (the others see only their own).
SEES_ALL = frozenset({Role.READER, Role.ADMIN})
ROLE_NAMES = ", ".join(role.value for role in Role)
ANONYMOUS = "anonymous"
#: Algorithms accepted for tokens, by kind of verification key (never ``none``, never HMAC with a public key).
SECRET_ALGORITHMS = ("HS256",)
PUBLIC_KEY_ALGORITHMS = ("RS256", "ES256")
#: Shortest HS256 secret accepted (bytes): RFC 7518 asks for at least the hash size.
MIN_SECRET_BYTES = 32
_ROLE_WORD = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def who_needs(permission: Permission) -> str:
    """The roles granted ``permission``, in words (for the OpenAPI descriptions)."""
    return ", ".join(role.value for role in Role if permission in GRANTS[role])


def highest(roles: Iterable[Role]) -> Role | None:
    """The role of most rank among ``roles``; None when there is none."""
    return max(roles, key=list(Role).index, default=None)


def role_named(name: str) -> Role:
    """The role called ``name``; ValueError naming the known ones (the name quoted only when it looks
    like a role name, so that part of a mistyped key never reaches an error message)."""
    try:
        return Role(name)
    except ValueError:
        shown = f" {name!r}" if _ROLE_WORD.fullmatch(name) else ""
        raise ValueError(f"unknown role{shown} (roles: {ROLE_NAMES})") from None


# --------------------------------------------------------------------------------------------- principals
@dataclass(frozen=True, slots=True)
class Principal:
    """Who makes a request: a hashed id (or :data:`ANONYMOUS`) and a role."""

    id: str
    role: Role

    @property
    def owner(self) -> str | None:
        """The id stored as the owner of what this principal submits; None for the anonymous one."""
        return None if self.id == ANONYMOUS else self.id

    @property
    def scope(self) -> str | None:
        """The owner whose screenings and jobs this principal sees; None: all of them."""
        return None if self.role in SEES_ALL else self.id

    def may(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]


#: Everyone, when no credentials are configured (the API is open, as before roles).
OPEN = Principal(ANONYMOUS, Role.ADMIN)


def _hashed(kind: str, *parts: str) -> str:
    key = salted_key("\x1f".join((kind, *parts)))
    assert key is not None  # the kind makes the text non-empty
    return key


def key_principal(key: bytes, role: Role) -> Principal:
    """The principal of an API key: a salted hash of the key's SHA-256 fingerprint."""
    return Principal(_hashed("api-key", hashlib.sha256(key).hexdigest()), role)


def token_principal(issuer: str, subject: str, role: Role) -> Principal:
    """The principal of a bearer token: a salted hash of its ``iss`` and ``sub``."""
    return Principal(_hashed("oidc", issuer, subject), role)


# --------------------------------------------------------------------------------------------- API keys
def parse_key_entry(entry: str) -> tuple[Role, str]:
    """``role:key`` -> (role, key); a bare ``key`` is an admin key. ValueError (never quoting the key)
    for an unknown role, an empty key or a key with ``,``."""
    entry = entry.strip()
    role_text, colon, key = entry.partition(":")
    if not colon:
        role_text, key = Role.ADMIN.value, entry
    role = role_named(role_text.strip())
    key = key.strip()
    if not key:
        raise ValueError(f"a {role} entry has no key")
    if "," in key or ":" in key:
        raise ValueError("a key cannot contain ',' or ':'")
    return role, key


def parse_key_entries(entries: Iterable[str]) -> dict[str, Role]:
    """Key -> role for ``entries`` (see :func:`parse_key_entry`); ValueError for one key with two roles."""
    keys: dict[str, Role] = {}
    for entry in entries:
        role, key = parse_key_entry(entry)
        if keys.setdefault(key, role) != role:
            raise ValueError(f"the same key is given as {keys[key]} and as {role}")
    return keys


def key_file_entries(path: Path) -> list[str]:
    """The entries of an API key file: one ``role:key`` (or bare ``key``) a line, ``#`` comments and blank
    lines skipped. A bad line raises a one-line :class:`ChestlensInputError` with its number."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise ChestlensInputError(path, f"cannot read the API key file ({reason})") from error
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            parse_key_entry(line)
        except ValueError as error:
            raise ChestlensInputError(path, f"API key file line {number}: {error}") from None
        entries.append(line.strip())
    try:
        parse_key_entries(entries)
    except ValueError as error:
        raise ChestlensInputError(path, f"API key file: {error}") from None
    return entries


class KeyTable:
    """The configured API keys; :meth:`role_of` compares a given key with every one in constant time."""

    def __init__(self, keys: Mapping[str, Role]) -> None:
        self._keys = [(key.encode(), role) for key, role in keys.items()]

    def __len__(self) -> int:
        return len(self._keys)

    def role_of(self, given: str) -> Role | None:
        """The role of ``given``, or None. Bytes are compared, not strings: :func:`hmac.compare_digest`
        refuses ``str`` with non-ASCII characters, and a header value is any byte string (latin-1)."""
        raw = given.encode("latin-1", "replace")
        found = None
        for key, role in self._keys:  # no early exit
            if hmac.compare_digest(raw, key):
                found = role
        return found


# --------------------------------------------------------------------------------------------- tokens
class TokenError(Exception):
    """A bearer token that cannot be accepted; ``reason`` is a fixed text that never quotes the token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_TOKEN_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "the bearer token has expired"),
    (jwt.ImmatureSignatureError, "the bearer token is not valid yet"),
    (jwt.InvalidAudienceError, "the bearer token is for another audience"),
    (jwt.InvalidIssuerError, "the bearer token is from another issuer"),
    (jwt.InvalidSignatureError, "the bearer token's signature is not valid"),
    (jwt.InvalidAlgorithmError, "the bearer token uses an algorithm this server does not accept"),
)


@dataclass(frozen=True, slots=True)
class TokenVerifier:
    """Verifies bearer tokens offline and maps them to principals.

    Attributes:
        keys: key id (or None for any) -> (verification key, its one algorithm).
        issuer, audience: required values of ``iss`` and ``aud``; None: not checked.
        roles_claim: dotted path of the roles claim (``realm_access.roles``).
        role_map: claim value -> role; empty: the role names themselves.
        leeway_s: clock skew allowed for ``exp``, ``nbf`` and ``iat`` (seconds).
    """

    keys: Mapping[str | None, tuple[Any, str]]
    issuer: str | None
    audience: str | None
    roles_claim: str
    role_map: Mapping[str, Role]
    leeway_s: float

    def principal(self, token: str) -> Principal | None:
        """The principal of a valid token; None when it grants no chestlens role (an authenticated
        principal without a role: 403). Raises :class:`TokenError` for any token that is not valid."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            raise TokenError("the bearer token is malformed") from None
        key = self.keys.get(kid) if kid in self.keys else self.keys.get(None)
        if key is None:
            raise TokenError("the bearer token is signed by a key this server does not know")
        required = ["exp", "sub", *(["iss"] if self.issuer else []), *(["aud"] if self.audience else [])]
        try:
            claims = jwt.decode(
                token,
                key[0],
                algorithms=[key[1]],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": required, "verify_aud": self.audience is not None},
            )
        except jwt.MissingRequiredClaimError as error:
            raise TokenError(f"the bearer token has no {error.claim!r} claim") from None
        except jwt.InvalidTokenError as error:
            reason = next((text for kind, text in _TOKEN_REASONS if isinstance(error, kind)), None)
            raise TokenError(reason or "the bearer token is malformed") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise TokenError("the bearer token has no 'sub' claim")
        role = highest(self._roles(claims))
        issuer = claims.get("iss")
        return None if role is None else token_principal(str(issuer or ""), subject, role)

    def _roles(self, claims: Mapping[str, Any]) -> list[Role]:
        value: Any = claims
        for step in self.roles_claim.split("."):
            value = value.get(step) if isinstance(value, Mapping) else None
        names = value.split() if isinstance(value, str) else value if isinstance(value, list) else []
        if self.role_map:
            return [self.role_map[name] for name in names if isinstance(name, str) and name in self.role_map]
        known = {role.value: role for role in Role}
        return [known[name] for name in names if isinstance(name, str) and name in known]


def parse_role_map(entries: Iterable[str]) -> dict[str, Role]:
    """``value=role`` entries -> mapping; ValueError for an unknown role or a malformed entry."""
    mapping = {}
    for entry in entries:
        value, equals, role = entry.partition("=")
        if not equals or not value.strip():
            raise ValueError(f"{entry!r} is not VALUE=ROLE")
        mapping[value.strip()] = role_named(role.strip())
    return mapping


def _public_key(path: Path) -> tuple[Any, str]:
    """An RSA or P-256 EC public key from a PEM file, with its algorithm."""
    try:
        key = load_pem_public_key(path.read_bytes())
    except OSError as error:
        raise ChestlensInputError(path, f"cannot read the JWT public key ({error.strerror})") from error
    except ValueError:
        raise ChestlensInputError(path, "the JWT public key is not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key, "ES256"
    raise ChestlensInputError(path, "the JWT public key must be RSA (RS256) or EC P-256 (ES256)")


def _jwks(path: Path) -> dict[str | None, tuple[Any, str]]:
    """The RSA and EC signing keys of a JWKS file, by key id (a single key without ``kid`` under None)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ChestlensInputError(path, f"cannot read the JWKS file ({error.strerror})") from error
    except (ValueError, UnicodeDecodeError):
        raise ChestlensInputError(path, "the JWKS file is not JSON") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ChestlensInputError(path, "the JWKS file has no 'keys' list")
    keys: dict[str | None, tuple[Any, str]] = {}
    for index, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("kty") not in ("RSA", "EC"):
            raise ChestlensInputError(path, f"JWKS key {index}: only RSA and EC public keys are accepted")
        try:
            parsed = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            raise ChestlensInputError(path, f"JWKS key {index} is not a valid RSA or EC key") from None
        if parsed.algorithm_name not in PUBLIC_KEY_ALGORITHMS:
            raise ChestlensInputError(path, f"JWKS key {index}: use {' or '.join(PUBLIC_KEY_ALGORITHMS)}")
        keys[entry.get("kid") if isinstance(entry.get("kid"), str) else None] = (
            parsed.key,
            parsed.algorithm_name,
        )
    if not keys:
        raise ChestlensInputError(path, "the JWKS file holds no signing key")
    if None in keys and len(keys) > 1:
        raise ChestlensInputError(path, "every key of a JWKS file with several keys needs a 'kid'")
    return keys


def token_keys(
    secret: str | None, public_key_file: Path | None, jwks_file: Path | None
) -> dict[str | None, tuple[Any, str]]:
    """The verification keys of the one configured source (the caller checked there is exactly one)."""
    if secret is not None:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ChestlensInputError(None, f"the JWT secret must have at least {MIN_SECRET_BYTES} bytes")
        return {None: (secret.encode(), "HS256")}
    if public_key_file is not None:
        return {None: _public_key(public_key_file)}
    assert jwks_file is not None
    return _jwks(jwks_file)
