"""Configuration of ``chestlens serve``: one frozen pydantic-settings model for
:func:`chestlens.serve.app.create_app`.

Every field can come from the environment: ``CHESTLENS_SERVE_<FIELD>`` (``CHESTLENS_SERVE_MAX_BATCH=4``;
lists comma-separated: ``CHESTLENS_SERVE_MODELS=xray3-screener,ct-lesions``), except the secrets: the API
keys, read from :data:`API_KEYS_ENV` only (comma-separated ``role:key`` entries), and the JWT secret, read
from :data:`JWT_SECRET_ENV` only. Values given to the constructor (the CLI's
options) win over the environment, which wins over the defaults. A bad value raises
:class:`pydantic.ValidationError`; :meth:`ServeSettings.load` turns it into a one-line
:class:`~chestlens.errors.ChestlensInputError` that names the variable.

With ``--workers N`` uvicorn imports the app in N processes, so the settings travel as JSON in the
environment variable :data:`SETTINGS_ENV` (:meth:`ServeSettings.to_env` / :meth:`ServeSettings.from_env`);
the secrets travel in their own variables.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from chestlens.dicomnet.settings import DEFAULT_AE_TITLE, Destination, check_ae_title
from chestlens.errors import ChestlensInputError
from chestlens.io.limits import DEFAULT_MAX_PIXELS
from chestlens.models.catalog import default_models
from chestlens.serve.auth import parse_key_entries, parse_role_map

ENV_PREFIX = "CHESTLENS_SERVE_"
SETTINGS_ENV = "CHESTLENS_SERVE_SETTINGS"
API_KEYS_ENV = "CHESTLENS_API_KEYS"
JWT_SECRET_ENV = "CHESTLENS_JWT_SECRET"
DEFAULT_DATA_DIR = Path("chestlens-serve")
MB = 1024 * 1024
#: Secret fields and their only environment variable; their values are never quoted in an error message,
#: never in ``repr`` and never in :meth:`ServeSettings.to_env`.
_SECRET = {"api_keys": API_KEYS_ENV, "jwt_secret": JWT_SECRET_ENV}


def _split(value: Any) -> Any:
    """``"a, b,"`` -> ``["a", "b"]`` (blank entries ignored); anything else as it is."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class ServeSettings(BaseSettings):
    """Everything the service needs to know.

    Attributes:
        models: bundles to load (names or folders, any kind; see ``Screener.from_models``); default:
            :func:`~chestlens.models.catalog.default_models`, the same set as ``predict`` and ``demo``.
        data_dir: the SQLite database, the job spool and the instance files live here.
        database_url: any SQLAlchemy URL (e.g. ``postgresql+psycopg://...``); None: SQLite in ``data_dir``.
        max_upload_bytes: largest request body accepted (bytes); larger ones answer 413.
        max_pixels: largest image frame accepted (pixels), checked from the header before decoding.
        max_series_bytes: largest total uncompressed size of a zipped series (bytes).
        max_series_files: most files in a zipped series.
        max_spool_bytes: most bytes the series spool may hold for queued and running jobs; a series that
            would go over answers 503 with Retry-After.
        max_batch: most images per model batch (micro-batching across concurrent requests).
        batch_wait_ms: how long the batcher waits for more requests after the first one (ms).
        queue_size: images admitted at once (decoding, waiting or in the running batch); one more
            answers 503 with Retry-After before it is decoded.
        decode_workers: uploads decoded at once (each holds a full-resolution image in memory).
        retry_after_s: the Retry-After value of that 503 (seconds).
        api_keys: accepted ``X-API-Key`` values, each ``role:key`` (``submitter``, ``reader`` or
            ``admin``; a bare ``key`` is an admin key); see :mod:`chestlens.serve.auth`. Without keys and
            without a JWT key the API is open and everyone acts as admin (bind to loopback then).
            From the environment: :data:`API_KEYS_ENV`, never ``CHESTLENS_SERVE_API_KEYS``.
        jwt_secret: HS256 secret of bearer tokens (at least 32 bytes); from the environment:
            :data:`JWT_SECRET_ENV` only.
        jwt_public_key_file: PEM public key (RSA: RS256, EC P-256: ES256) of bearer tokens.
        jwt_jwks_file: JWKS file (RSA/EC keys by ``kid``) of bearer tokens, read at start-up; no network.
            At most one of ``jwt_secret``, ``jwt_public_key_file`` and ``jwt_jwks_file``.
        jwt_issuer: required ``iss`` of bearer tokens; None: not checked.
        jwt_audience: required ``aud`` of bearer tokens; None: not checked.
        jwt_roles_claim: dotted path of the claim holding the roles (a list or a space-separated string),
            e.g. ``realm_access.roles`` (Keycloak).
        jwt_role_map: ``value=role`` entries mapping claim values to chestlens roles; empty: the values
            ``submitter``, ``reader`` and ``admin`` themselves.
        jwt_leeway_s: clock skew allowed when checking ``exp``/``nbf``/``iat`` (seconds).
        header_timeout_s: a connection must complete its request line and headers within this many seconds
            of connecting (or of sending the first byte of its next request), else it gets 408 and is
            closed (:mod:`chestlens.serve.http_limits`).
        body_timeout_s: the whole request body must arrive within this many seconds of the headers, else
            408 and the connection is closed (:class:`chestlens.serve.middleware.GuardMiddleware`).
        keep_alive_timeout_s: an idle keep-alive connection is closed after this many seconds (uvicorn).
        max_connections: open connections plus running requests above which new requests get 503
            (uvicorn's ``limit_concurrency``).
        max_header_bytes: largest request line plus headers (bytes); more answers 431 and closes.
        backlog: TCP listen backlog (connections waiting to be accepted).
        cors_origins: origins allowed by CORS; empty (default): CORS headers are never sent.
        runtime: ``onnx`` (ONNX Runtime, default) or ``torch`` (needs the ``[train]`` extra).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (``cuda`` with the ``torch`` runtime).
        history_limit: most results the worklist lists.
        retention_days: screenings older than this (days) are deleted with everything derived from
            them (overlays, job rows), checked at start-up and every hour; None (default): kept until
            deleted (``DELETE /api/v1/screenings/{id}``).
        return_to: destinations (``AE@HOST:PORT`` for C-STORE, an ``http(s)://`` DICOMweb root for
            STOW-RS) that get the SR and SEG of every DICOM received by STOW-RS (and of DICOM series
            jobs), in the source study, through the durable outbox of ``chestlens listen``
            (``<data_dir>/dicom-return``); empty (default): results stay in the service.
        return_ae_title: the calling AE title of those C-STORE deliveries.
        return_secondary_capture: also return the overlay as a DICOM Secondary Capture image.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        env_ignore_empty=True,  # CHESTLENS_SERVE_MAX_BATCH= (empty) means unset
        populate_by_name=True,  # api_keys= as well as its environment variable's name
    )

    models: Annotated[tuple[str, ...], NoDecode] = Field(default_factory=default_models)
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None
    max_upload_bytes: int = Field(100 * MB, ge=1)
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)
    max_series_bytes: int = Field(1024 * MB, ge=1)
    max_series_files: int = Field(2000, ge=1)
    max_spool_bytes: int = Field(2 * 1024 * MB, ge=1)
    max_batch: int = Field(8, ge=1)
    batch_wait_ms: float = Field(5.0, ge=0.0)
    queue_size: int = Field(64, ge=1)
    decode_workers: int = Field(2, ge=1)
    retry_after_s: int = Field(2, ge=0)
    api_keys: Annotated[frozenset[str], NoDecode] = Field(
        default_factory=frozenset, validation_alias=API_KEYS_ENV, repr=False
    )
    jwt_secret: str | None = Field(None, validation_alias=JWT_SECRET_ENV, repr=False)
    jwt_public_key_file: Path | None = None
    jwt_jwks_file: Path | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_roles_claim: str = Field("roles", pattern=r"^[^.\s]+(\.[^.\s]+)*$")
    jwt_role_map: Annotated[tuple[str, ...], NoDecode] = ()
    jwt_leeway_s: float = Field(30.0, ge=0.0)
    header_timeout_s: float = Field(10.0, gt=0.0)
    body_timeout_s: float = Field(120.0, gt=0.0)
    keep_alive_timeout_s: float = Field(5.0, gt=0.0)
    max_connections: int = Field(1000, ge=1)
    max_header_bytes: int = Field(16 * 1024, ge=1024)
    backlog: int = Field(2048, ge=1)
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    runtime: Literal["onnx", "torch"] = "onnx"
    device: str = "auto"
    history_limit: int = Field(200, ge=1)
    retention_days: float | None = Field(None, gt=0)
    return_to: Annotated[tuple[str, ...], NoDecode] = ()
    return_ae_title: str = DEFAULT_AE_TITLE
    return_secondary_capture: bool = False

    def __init__(self, **values: Any) -> None:
        # a secret goes in under its alias (the variable's name) so that it wins over the environment in
        # every pydantic-settings version: 2.7 kept both keys, and extra="forbid" refused the name
        for field, alias in _SECRET.items():
            if field in values:
                values[alias] = values.pop(field)
        super().__init__(**values)

    @field_validator("models", "api_keys", "cors_origins", "return_to", "jwt_role_map", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("api_keys")
    @classmethod
    def _key_roles(cls, value: frozenset[str]) -> frozenset[str]:
        parse_key_entries(value)  # ValueError: unknown role, empty key, one key with two roles
        return value

    @field_validator("jwt_role_map")
    @classmethod
    def _role_map(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        parse_role_map(value)
        return value

    @model_validator(mode="after")
    def _one_token_key(self) -> ServeSettings:
        sources = [self.jwt_secret, self.jwt_public_key_file, self.jwt_jwks_file]
        if sum(source is not None for source in sources) > 1:
            raise ValueError("give one of jwt_secret, jwt_public_key_file and jwt_jwks_file")
        if not self.bearer_tokens and (self.jwt_issuer or self.jwt_audience or self.jwt_role_map):
            raise ValueError(
                "jwt_issuer, jwt_audience and jwt_role_map need a token key "
                f"({JWT_SECRET_ENV}, jwt_public_key_file or jwt_jwks_file)"
            )
        return self

    @property
    def bearer_tokens(self) -> bool:
        """Whether bearer tokens are accepted (a token key is configured)."""
        return any(s is not None for s in (self.jwt_secret, self.jwt_public_key_file, self.jwt_jwks_file))

    @property
    def authenticated(self) -> bool:
        """Whether the API needs credentials (API keys or bearer tokens); False: open, everyone admin."""
        return bool(self.api_keys) or self.bearer_tokens

    @field_validator("return_to")
    @classmethod
    def _destinations(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for destination in value:
            _as_value_error(Destination.parse, destination)
        return value

    @field_validator("return_ae_title")
    @classmethod
    def _ae_title(cls, value: str) -> str:
        _as_value_error(check_ae_title, value)
        return value

    @field_validator("device")
    @classmethod
    def _device_name(cls, value: str) -> str:
        if re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", value) is None:
            raise ValueError("use auto, cpu, cuda or cuda:N")
        return value

    @property
    def url(self) -> str:
        """The SQLAlchemy URL in use."""
        return self.database_url or f"sqlite:///{(Path(self.data_dir) / 'chestlens.sqlite3').resolve()}"

    def replace(self, **changes: object) -> ServeSettings:
        """A validated copy with ``changes`` (the environment is not read again)."""
        return type(self).model_validate({**self.model_dump(), **changes})

    @classmethod
    def load(cls, **values: Any) -> ServeSettings:
        """``ServeSettings(**values)`` with the environment; a bad value raises a one-line
        :class:`~chestlens.errors.ChestlensInputError` naming the setting or variable, never a traceback."""
        try:
            return cls(**values)
        except ValidationError as error:
            raise ChestlensInputError(None, settings_problem(error, given=values)) from None
        except SettingsError as error:
            raise ChestlensInputError(None, f"invalid serve settings: {error}") from None

    def to_env(self) -> str:
        """JSON for :data:`SETTINGS_ENV` (secrets excluded: they stay in :data:`API_KEYS_ENV` and
        :data:`JWT_SECRET_ENV`, see :meth:`secrets_env`)."""
        return self.model_dump_json(exclude=set(_SECRET))

    def secrets_env(self) -> dict[str, str]:
        """The variables that carry the secrets to worker processes (unset ones left out)."""
        values = {API_KEYS_ENV: ",".join(sorted(self.api_keys)), JWT_SECRET_ENV: self.jwt_secret or ""}
        return {name: value for name, value in values.items() if value}

    @classmethod
    def from_env(cls) -> ServeSettings:
        """Settings from :data:`SETTINGS_ENV` plus the secrets from :data:`API_KEYS_ENV` and
        :data:`JWT_SECRET_ENV`; the fields that JSON does not name come from ``CHESTLENS_SERVE_*`` or the
        defaults."""
        try:
            values = json.loads(os.environ.get(SETTINGS_ENV) or "{}")
        except json.JSONDecodeError:
            values = None
        if not isinstance(values, dict):
            raise ChestlensInputError(None, f"{SETTINGS_ENV} is not a JSON object of serve settings")
        return cls.load(**values)


def _as_value_error(check: Callable[[str], object], value: str) -> None:
    """Run a chestlens check inside a pydantic validator: its one-line reason becomes the ValueError."""
    try:
        check(value)
    except ChestlensInputError as error:
        raise ValueError(error.reason) from None


def env_name(field: str) -> str:
    """The environment variable of a field: ``max_batch`` -> ``CHESTLENS_SERVE_MAX_BATCH``."""
    return _SECRET.get(field) or f"{ENV_PREFIX}{field.upper()}"


def settings_problem(error: ValidationError, given: Collection[str] = ()) -> str:
    """One line for a :class:`ValidationError` of :class:`ServeSettings`.

    A field in ``given`` (a constructor argument) is named as such; any other came from the
    environment and is named by its variable. Values are quoted (shortened), API keys never.
    """
    parts = []
    by_alias = {alias: field for field, alias in _SECRET.items()}
    for item in error.errors(include_url=False):
        if not item["loc"]:  # a check of several fields together
            parts.append(item["msg"].removeprefix("Value error, "))
            continue
        field = str(item["loc"][0])
        field = by_alias.get(field, field)
        if item["type"] == "extra_forbidden":
            parts.append(f"unknown setting {field!r}")
            continue
        where = field if field in given else env_name(field)
        value = "" if field in _SECRET else f"={repr(item.get('input'))[:60]}"
        parts.append(f"{where}{value}: {item['msg']}")
    return "invalid serve settings: " + "; ".join(parts)


def api_keys_from_env() -> frozenset[str]:
    """Comma-separated keys in :data:`API_KEYS_ENV` (blank entries ignored)."""
    return frozenset(_split(os.environ.get(API_KEYS_ENV, "")))
