"""``chestlens demo``: read the real DICOM files that ship with pip and write previews.

Until the default models exist, the demo reads and summarises three real images: the chest
radiograph ``RG1_UNCR.dcm`` (pydicom-data), the chest CT slice ``CT_small.dcm`` (pydicom) and the leg
radiograph ``RG3_UNCR.dcm`` (pydicom-data, a natural out-of-distribution input). A later step that
runs models slots in after :func:`run_demo` loaded the images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from chestlens import RESEARCH_USE_DISCLAIMER
from chestlens.io import MedicalImage, read_image
from chestlens.io.preview import preview_array, save_png_atomic
from chestlens.io.samples import sample_path

DEFAULT_OUT = Path("chestlens-demo")
NO_MODELS_NOTE = (
    "The bundled models (see `chestlens models`) are not run here yet: screening waits for the input "
    "quality gate that rejects non-chest images such as the leg radiograph. This demo shows what chestlens "
    "reads from the images."
)


@dataclass(frozen=True, slots=True)
class DemoSample:
    """A bundled sample: file name (see :mod:`chestlens.io.samples`) and what it shows."""

    file_name: str
    description: str


@dataclass(frozen=True, slots=True)
class DemoResult:
    """One demo image as read, and where its preview was written."""

    sample: DemoSample
    image: MedicalImage
    preview: Path


DEMO_SAMPLES = (
    DemoSample("RG1_UNCR.dcm", "chest radiograph"),
    DemoSample("CT_small.dcm", "chest CT slice"),
    DemoSample("RG3_UNCR.dcm", "leg radiograph (not a chest)"),
)


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to the CLI."""
    app.command("demo")(demo)


def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the PNG previews (created if needed).")
    ] = DEFAULT_OUT,
) -> None:
    """Read the bundled real DICOM samples, print what was read and write PNG previews."""
    console = Console()
    console.print(f"[bold]{RESEARCH_USE_DISCLAIMER}[/bold]")
    try:
        results = run_demo(out)
    except FileNotFoundError as error:
        typer.echo(f"chestlens: error: {error}", err=True)
        raise typer.Exit(1) from error
    console.print(results_table(results))
    console.print(NO_MODELS_NOTE)
    console.print("Previews: " + ", ".join(result.preview.name for result in results))
    typer.echo(f"Previews written to: {out.resolve()}")


def run_demo(out: Path, samples: tuple[DemoSample, ...] = DEMO_SAMPLES) -> list[DemoResult]:
    """Read every sample and write its preview (radiographs as read, CT through the lung window)."""
    results = []
    for sample in samples:
        image = read_image(sample_path(sample.file_name))
        preview = save_png_atomic(preview_array(image), out / f"{Path(sample.file_name).stem}.png")
        results.append(DemoResult(sample=sample, image=image, preview=preview))
    return results


def results_table(results: list[DemoResult]) -> Table:
    """Summary table: one row per demo image."""
    table = Table(title="chestlens demo: what was read", box=box.SIMPLE)
    for column in ("file", "shows", "modality", "size", "values"):
        table.add_column(column, no_wrap=column != "shows")
    for result in results:
        meta = result.image.meta
        low, high = meta.value_range or (float("nan"), float("nan"))
        values = f"{low:.0f}..{high:.0f} HU" if meta.pixel_unit == "HU" else "0..1"
        table.add_row(
            result.sample.file_name,
            result.sample.description,
            f"{meta.modality or '-'} {meta.photometric_interpretation or ''}".strip(),
            f"{meta.rows}x{meta.cols}",
            values,
        )
    return table
