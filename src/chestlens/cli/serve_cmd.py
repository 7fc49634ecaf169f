"""``chestlens serve``: the screening web service and page (FastAPI + uvicorn).

API keys are never taken on the command line (visible to every user in ``ps``): set
``CHESTLENS_API_KEYS`` (comma-separated) or give ``--api-key-file`` (one key a line). Every other setting
can also come from a ``CHESTLENS_SERVE_*`` variable (see :mod:`chestlens.serve.settings`); an option
given on the command line wins over it.
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


def _keys_from_file(path: Path) -> frozenset[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ChestlensInputError(path, f"cannot read the API key file ({error.strerror})") from error
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


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
        Path | None, typer.Option("--api-key-file", help="Accepted X-API-Key values.")
    ] = None,
    allow_unauthenticated: Annotated[
        bool,
        typer.Option(
            "--allow-unauthenticated",
            help="Serve an open API on a non-loopback address (refused without API keys otherwise).",
        ),
    ] = False,
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
    from chestlens.serve.middleware import configure_logging
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
    }
    values = {field: value for option, (field, value) in options.items() if given(option) and value != ""}
    if api_key_file:
        values["api_keys"] = api_keys_from_env() | _keys_from_file(api_key_file)
    settings = ServeSettings.load(**values)  # a bad value: one line, exit code 2
    for name in settings.models:
        read_spec(name)  # a wrong --models fails here, in one line, before the server starts
    if not settings.api_keys and not _is_loopback(host):
        if not allow_unauthenticated:
            raise ChestlensInputError(
                None,
                f"refusing to listen on {host} without API keys: set {API_KEYS_ENV} or --api-key-file "
                "(or --allow-unauthenticated for a trusted network)",
            )
        typer.echo(f"chestlens: warning: listening on {host} without API keys", err=True)
    configure_logging(log_level)
    options = {"host": host, "port": port, "log_config": None, "access_log": False, "server_header": False}
    if workers == 1:
        from chestlens.serve.app import create_app

        uvicorn.run(create_app(settings), **options)
        return
    os.environ[SETTINGS_ENV] = settings.to_env()
    os.environ[API_KEYS_ENV] = ",".join(sorted(settings.api_keys))
    uvicorn.run("chestlens.serve.app:app_from_env", factory=True, workers=workers, **options)
