"""``chestlens serve``: the screening web service and page (FastAPI + uvicorn).

Secrets are never taken on the command line (visible to every user in ``ps``): API keys come from
``CHESTLENS_API_KEYS`` (comma-separated ``role:key`` entries) or ``--api-key-file`` (one a line; a bare key
is an admin key), the HS256 secret of bearer tokens from ``CHESTLENS_JWT_SECRET`` or ``--jwt-secret-file``
(see :mod:`chestlens.serve.auth`). Every other setting can also come from a ``CHESTLENS_SERVE_*`` variable
(see :mod:`chestlens.serve.settings`); an option given on the command line wins over it. Bad settings, key
files and token keys stop the command with one line (exit 2) before a port is bound.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated

import typer

from chestlens.cli.options import Device, RuntimeOption
from chestlens.errors import ChestlensInputError


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the CLI."""
    app.command("serve")(serve)


def _secret_from_file(path: Path) -> str:
    """The JWT secret in ``path`` (surrounding white space removed)."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise ChestlensInputError(path, f"cannot read the JWT secret file ({reason})") from error


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port to listen on.")] = 8000,
    models: Annotated[
        str | None,
        typer.Option("--models", help="Comma-separated bundles (names or folders); default: bundled."),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Server processes (each loads the models).")
    ] = 1,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="SQLite database and job spool folder.")
    ] = Path("chestlens-serve"),
    database: Annotated[
        str | None,
        typer.Option("--database", help="SQLAlchemy URL (e.g. postgresql+psycopg://...); default SQLite."),
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", min=0.001, help="Request body limit.")
    ] = 100.0,
    max_pixels: Annotated[
        int | None, typer.Option("--max-pixels", min=1, help="Pixels per image frame.")
    ] = None,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="1: no micro-batching.")] = 8,
    batch_wait_ms: Annotated[
        float, typer.Option("--batch-wait-ms", min=0.0, help="How long a batch waits for more images (ms).")
    ] = 5.0,
    queue_size: Annotated[int, typer.Option("--queue-size", min=1, help="Waiting images before 503.")] = 64,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            "--api-key-file",
            help="Accepted X-API-Key values, one 'role:key' a line (submitter, reader, admin; "
            "a bare key is admin).",
        ),
    ] = None,
    jwt_secret_file: Annotated[
        Path | None, typer.Option("--jwt-secret-file", help="HS256 secret of bearer tokens (32+ bytes).")
    ] = None,
    jwt_public_key_file: Annotated[
        Path | None,
        typer.Option(
            "--jwt-public-key-file", help="PEM public key of bearer tokens (RSA: RS256, EC: ES256)."
        ),
    ] = None,
    jwt_jwks_file: Annotated[
        Path | None, typer.Option("--jwt-jwks-file", help="JWKS file of bearer token keys (read at start).")
    ] = None,
    jwt_issuer: Annotated[str | None, typer.Option("--jwt-issuer", help="Required 'iss' of tokens.")] = None,
    jwt_audience: Annotated[
        str | None, typer.Option("--jwt-audience", help="Required 'aud' of tokens.")
    ] = None,
    jwt_roles_claim: Annotated[
        str, typer.Option("--jwt-roles-claim", help="Dotted path of the roles claim (realm_access.roles).")
    ] = "roles",
    jwt_role_map: Annotated[
        list[str] | None,
        typer.Option("--jwt-role-map", help="VALUE=ROLE: a claim value that grants a role (repeatable)."),
    ] = None,
    allow_unauthenticated: Annotated[
        bool,
        typer.Option(
            "--allow-unauthenticated",
            help="Serve an open API on a non-loopback address (refused without credentials otherwise).",
        ),
    ] = False,
    header_timeout_s: Annotated[
        float,
        typer.Option("--header-timeout-s", min=0.001, help="Request line and headers must arrive within."),
    ] = 10.0,
    body_timeout_s: Annotated[
        float, typer.Option("--body-timeout-s", min=0.001, help="The whole request body must arrive within.")
    ] = 120.0,
    keep_alive_timeout_s: Annotated[
        float, typer.Option("--keep-alive-timeout-s", min=0.001, help="Idle keep-alive connections close.")
    ] = 5.0,
    max_connections: Annotated[
        int, typer.Option("--max-connections", min=1, help="Connections plus requests before 503.")
    ] = 1000,
    max_header_bytes: Annotated[
        int, typer.Option("--max-header-bytes", min=1024, help="Request line plus headers, at most.")
    ] = 16 * 1024,
    backlog: Annotated[int, typer.Option("--backlog", min=1, help="TCP listen backlog.")] = 2048,
    cors_origin: Annotated[
        list[str] | None, typer.Option("--cors-origin", help="Allow this origin (repeatable); default: none.")
    ] = None,
    return_to: Annotated[
        list[str] | None,
        typer.Option(
            "--return-to",
            help="Send the SR and SEG of DICOM received by STOW-RS (and of DICOM series jobs) here: "
            "AE@HOST:PORT (C-STORE) or a DICOMweb root URL (STOW-RS); repeatable. Default: keep them.",
        ),
    ] = None,
    return_ae_title: Annotated[
        str, typer.Option("--return-ae-title", help="Calling AE title of those C-STORE deliveries.")
    ] = "CHESTLENS",
    return_secondary_capture: Annotated[
        bool,
        typer.Option(
            "--return-secondary-capture", help="Also return the overlay as a DICOM secondary capture."
        ),
    ] = False,
    runtime: RuntimeOption = "onnx",
    device: Device = "auto",
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve the screening API under /api/v1 and the browser page at / (research use only)."""
    import uvicorn

    from chestlens.models.spec import read_spec
    from chestlens.serve.auth import key_file_entries
    from chestlens.serve.http_limits import ConnectionLimits, use_limits, uvicorn_options
    from chestlens.serve.middleware import configure_logging
    from chestlens.serve.security import Credentials
    from chestlens.serve.settings import API_KEYS_ENV, MB, SETTINGS_ENV, ServeSettings, api_keys_from_env

    def given(option: str) -> bool:  # on the command line, not a default (CHESTLENS_SERVE_* apply then)
        source = ctx.get_parameter_source(option)  # click's enum, or the one of typer's own copy of click
        return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")

    options = {
        "data_dir": ("data_dir", data_dir),
        "database": ("database_url", database),
        "max_upload_mb": ("max_upload_bytes", round(max_upload_mb * MB)),
        "max_batch": ("max_batch", max_batch),
        "batch_wait_ms": ("batch_wait_ms", batch_wait_ms),
        "queue_size": ("queue_size", queue_size),
        "cors_origin": ("cors_origins", tuple(cors_origin or ())),
        "runtime": ("runtime", runtime),
        "device": ("device", device),
        "models": ("models", models),  # comma-separated, like CHESTLENS_SERVE_MODELS
        "max_pixels": ("max_pixels", max_pixels),
        "return_to": ("return_to", tuple(return_to or ())),
        "return_ae_title": ("return_ae_title", return_ae_title),
        "return_secondary_capture": ("return_secondary_capture", return_secondary_capture),
        "jwt_public_key_file": ("jwt_public_key_file", jwt_public_key_file),
        "jwt_jwks_file": ("jwt_jwks_file", jwt_jwks_file),
        "jwt_issuer": ("jwt_issuer", jwt_issuer),
        "jwt_audience": ("jwt_audience", jwt_audience),
        "jwt_roles_claim": ("jwt_roles_claim", jwt_roles_claim),
        "jwt_role_map": ("jwt_role_map", tuple(jwt_role_map or ())),
        "header_timeout_s": ("header_timeout_s", header_timeout_s),
        "body_timeout_s": ("body_timeout_s", body_timeout_s),
        "keep_alive_timeout_s": ("keep_alive_timeout_s", keep_alive_timeout_s),
        "max_connections": ("max_connections", max_connections),
        "max_header_bytes": ("max_header_bytes", max_header_bytes),
        "backlog": ("backlog", backlog),
    }
    values = {field: value for option, (field, value) in options.items() if given(option) and value != ""}
    if api_key_file:
        values["api_keys"] = api_keys_from_env() | frozenset(key_file_entries(api_key_file))
    if jwt_secret_file:
        values["jwt_secret"] = _secret_from_file(jwt_secret_file)
    settings = ServeSettings.load(**values)  # a bad value: one line, exit code 2
    Credentials.from_settings(settings)  # an unusable token key file: one line, before the server starts
    for name in settings.models:
        read_spec(name)  # a wrong --models fails here, in one line, before the server starts
    if not settings.authenticated and not _is_loopback(host):
        if not allow_unauthenticated:
            raise ChestlensInputError(
                None,
                f"refusing to listen on {host} without API keys or bearer tokens: set {API_KEYS_ENV}, "
                "--api-key-file or a --jwt-* key (or --allow-unauthenticated for a trusted network)",
            )
        typer.echo(
            f"chestlens: warning: listening on {host} without credentials (everyone is admin)", err=True
        )
    configure_logging(log_level)
    options = {
        "host": host,
        "port": port,
        "log_config": None,
        "access_log": False,
        "server_header": False,
        **uvicorn_options(settings),
    }
    if workers == 1:
        from chestlens.serve.app import create_app

        use_limits(ConnectionLimits.of(settings))
        uvicorn.run(create_app(settings), **options)
        return
    os.environ[SETTINGS_ENV] = settings.to_env()  # each worker reads its settings (and limits) from here
    os.environ.update(settings.secrets_env())
    uvicorn.run("chestlens.serve.app:app_from_env", factory=True, workers=workers, **options)
