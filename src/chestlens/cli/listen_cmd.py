"""``chestlens listen``: a DICOM C-STORE SCP that screens what a PACS or modality sends and returns the SR,
the SEG and optionally a secondary-capture overlay to configured destinations (:mod:`chestlens.dicomnet`);
``--status`` lists the outbox."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from chestlens.cli.options import Device, RuntimeOption
from chestlens.dicomnet import settings as defaults
from chestlens.errors import ChestlensInputError

if TYPE_CHECKING:
    from chestlens.dicomnet.outbox import OutboxItem


LOG_LEVELS = ("debug", "info", "warning", "error")


def register(app: typer.Typer) -> None:
    app.command("listen")(listen)


def _check_log_level(name: str) -> str:
    """``name`` when it is one of :data:`LOG_LEVELS`, else a one-line error."""
    if name.lower() not in LOG_LEVELS:
        raise ChestlensInputError(None, f"--log-level {name}: use {', '.join(LOG_LEVELS)}")
    return name


def listen(
    state_dir: Annotated[
        Path, typer.Option("--state-dir", help="Received files, results, outbox, audit log, salt.")
    ] = Path("chestlens-listen"),
    status: Annotated[
        bool, typer.Option("--status", help="List pending, delivered and failed results, then exit.")
    ] = False,
    ae_title: Annotated[str, typer.Option("--ae-title", help="This listener's AE title.")] = (
        defaults.DEFAULT_AE_TITLE
    ),
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="TCP port to listen on.")
    ] = defaults.DEFAULT_PORT,
    allow: Annotated[
        list[str] | None,
        typer.Option("--allow", help="Accepted calling AE title (repeatable); default: any."),
    ] = None,
    destination: Annotated[
        list[str] | None,
        typer.Option(
            "--destination",
            help="Send results to AE@HOST:PORT by C-STORE or to a DICOMweb URL by STOW-RS (repeatable).",
        ),
    ] = None,
    settle: Annotated[
        float,
        typer.Option("--settle", min=0.0, help="Seconds without new slices before a CT series is screened."),
    ] = defaults.DEFAULT_SETTLE_S,
    retry_base: Annotated[
        float, typer.Option("--retry-base", min=0.001, help="First retry delay (s), doubled per attempt.")
    ] = defaults.DEFAULT_RETRY_BASE_S,
    retry_max: Annotated[float, typer.Option("--retry-max", help="Longest retry delay (s).")] = (
        defaults.DEFAULT_RETRY_MAX_S
    ),
    max_attempts: Annotated[
        int, typer.Option("--max-attempts", min=1, help="Attempts before a delivery is marked failed.")
    ] = defaults.DEFAULT_MAX_ATTEMPTS,
    max_associations: Annotated[
        int,
        typer.Option(
            "--max-associations",
            min=1,
            help="Associations served at once; one more is rejected (transient) and the sender retries.",
        ),
    ] = defaults.DEFAULT_MAX_ASSOCIATIONS,
    secondary_capture: Annotated[
        bool,
        typer.Option(
            "--secondary-capture",
            help="Also return the overlay picture as an RGB DICOM secondary capture (research use caption), "
            "for viewers that cannot show a SEG.",
        ),
    ] = False,
    runtime: RuntimeOption = "onnx",
    device: Device = "auto",
    log_level: Annotated[
        str, typer.Option("--log-level", callback=_check_log_level, help="debug, info, warning or error.")
    ] = "info",
) -> None:
    """Receive DICOM by C-STORE (C-ECHO answered), screen radiographs as they arrive and CT series once
    quiet, and send each SR and SEG (and with --secondary-capture the overlay as a DICOM secondary capture)
    to every --destination, retried from a durable outbox. Research use only: never a diagnosis."""
    from chestlens.dicomnet.outbox import Outbox

    if status:
        _print_status(Outbox(state_dir).items())
        return
    from chestlens.dicomnet.scp import Listener
    from chestlens.dicomnet.settings import Destination, ListenSettings
    from chestlens.pipeline.screener import Screener

    settings = ListenSettings(
        state_dir=state_dir,
        ae_title=ae_title,
        host=host,
        port=port,
        allowed_callers=tuple(allow or ()),
        destinations=tuple(Destination.parse(text) for text in destination or ()),
        settle_s=settle,
        retry_base_s=retry_base,
        retry_max_s=max(retry_max, retry_base),
        max_attempts=max_attempts,
        max_associations=max_associations,
        secondary_capture=secondary_capture,
    )
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its INFO/DEBUG lines quote UIDs
    typer.echo("loading models...")
    listener = Listener(settings, Screener(runtime=runtime, device=device))
    listener.start()
    destinations = ", ".join(str(d) for d in settings.destinations) or "none (results stay in --state-dir)"
    typer.echo(
        f"listening as {settings.ae_title} on {settings.host}:{listener.port}; results to {destinations}"
    )
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        listener.wait()
    except KeyboardInterrupt:
        listener.stop()
        typer.echo("stopped; pending deliveries resume at the next start")


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _print_status(items: list[OutboxItem]) -> None:
    """Counts per status, then one line per item (pending and failed with their last error)."""
    counts = {name: sum(item.status == name for item in items) for name in ("pending", "delivered", "failed")}
    typer.echo(" ".join(f"{name}={count}" for name, count in counts.items()))
    for item in items:
        line = f"{item.status:9} {item.kind:3} {item.destination} attempts={item.attempts} id={item.id}"
        if item.status != "delivered" and item.last_error:
            line += f" reason: {item.last_error}"
        typer.echo(line)
