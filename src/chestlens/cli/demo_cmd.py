"""``chestlens demo``: screen the real images that ship with pip, with the bundled models.

The images: the chest radiograph ``RG1_UNCR.dcm`` (pydicom-data, MONOCHROME1), the chest CT slice
``CT_small.dcm`` (pydicom) and the leg radiograph ``RG3_UNCR.dcm`` (pydicom-data), which the quality gate
must reject. The demo prints the results, and writes overlays, ``results.json`` and one HTML page
(``index.html``) into the folder it names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from chestlens.cli.options import Device, Quiet, check_out_folder
from chestlens.errors import ChestlensInputError

DEFAULT_OUT = Path("chestlens-demo")
PAGE = "index.html"
RESULTS = "results.json"


@dataclass(frozen=True, slots=True)
class DemoSample:
    """A bundled sample: file name (see :mod:`chestlens.io.samples`) and what it shows."""

    file_name: str
    description: str


DEMO_SAMPLES = (
    DemoSample("RG1_UNCR.dcm", "chest radiograph"),
    DemoSample("CT_small.dcm", "chest CT slice"),
    DemoSample("RG3_UNCR.dcm", "leg radiograph (not a chest: the gate must reject it)"),
)


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to the CLI."""
    app.command("demo")(demo)


def run_demo(out: Path, samples: tuple[DemoSample, ...] = DEMO_SAMPLES, *, device: str = "auto"):
    """Screen every sample with the bundled models; write overlays, results.json and index.html.

    Returns the screenings in sample order.
    """
    from chestlens.atomic import write_text_atomic
    from chestlens.io.samples import sample_path
    from chestlens.models.catalog import default_models
    from chestlens.pipeline.overlay import save_overlays
    from chestlens.pipeline.results_page import write_results_page
    from chestlens.pipeline.screener import Screener

    screener = Screener.from_models(default_models(), device=device)
    screenings, pictures = [], []
    for sample in samples:
        screening = screener.screen(sample_path(sample.file_name), name=sample.file_name)
        screenings.append(screening)
        pictures.append(save_overlays(screening, out, Path(sample.file_name).stem))
    results = [s.result for s in screenings]
    payload = json.dumps([r.model_dump(mode="json") for r in results], indent=2)
    write_text_atomic(out / RESULTS, payload + "\n")
    write_results_page(results, pictures, out / PAGE, "chestlens demo: the images that ship with pip")
    return screenings


def demo(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            callback=check_out_folder,
            help="Folder for overlays, results.json and index.html.",
        ),
    ] = DEFAULT_OUT,
    device: Device = "auto",
    quiet: Quiet = False,
) -> None:
    """Screen the real DICOM samples that ship with pip (a chest radiograph, a chest CT slice and a leg
    radiograph) with the bundled models and write an HTML page of the results."""

    from chestlens import RESEARCH_USE_DISCLAIMER
    from chestlens.cli.predict_cmd import results_table, table_console
    from chestlens.pipeline.batch import record

    console = table_console()
    if not quiet:
        console.print(f"[bold]{RESEARCH_USE_DISCLAIMER}[/bold]")
    try:
        screenings = run_demo(out, device=device)
    except FileNotFoundError as error:  # a sample file is missing: pydicom-data is not installed
        raise ChestlensInputError(None, str(error)) from error
    if quiet:
        return
    console.print(
        results_table([record(s.result.input.source, s.result) for s in screenings], "chestlens demo")
    )
    typer.echo(f"Results, overlays and {PAGE} written to: {out.resolve()}")
