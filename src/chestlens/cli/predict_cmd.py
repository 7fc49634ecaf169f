"""``chestlens predict PATH...``: screen files, folders and DICOM series; table, JSON, CSV, overlays.

Unreadable inputs are reported and skipped; the exit code is 2 when any input failed to read, else 0
(a quality-gate rejection is a result, not a failure). With ``--out DIR`` a re-run skips what is done.
``--json`` prints the results as JSON on stdout instead of the table, as in every command (the old
spelling ``--json -`` still works; write a file with ``--json > results.json``).
A ``dicomweb://HOST/PATH`` input with ``--study UID`` or ``--query KEY=VALUE`` is pulled first (QIDO-RS,
WADO-RS; :mod:`chestlens.dicomnet.pull`), into ``OUT/dicomweb`` so that a re-run resumes.
``--engine ray`` screens on a Ray cluster (:mod:`chestlens.pipeline.ray_engine`) into the same ``--out``.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer

from chestlens.cli.options import CAM_CHOICES, Cam, Device, Quiet, RuntimeOption, check_out_folder
from chestlens.errors import ChestlensInputError

EXIT_SOME_FAILED = 2
#: Inputs that get a DICOM SR and SEG with --dicom-out: files, and CT series (one multi-frame SEG).
DICOM_FORMATS = ("dicom", "dicom-series")
TABLE_MAX_ROWS = 40


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)


def _stem(path: Path, key: str) -> str:
    """Overlay file stem: the input's name plus a short hash of its identity (never client-chosen alone)."""
    name = path.name.removesuffix(".nii.gz")
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(name).stem)[:60]
    return f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def table_console(*, stderr: bool = False):
    """A rich console for result tables: the terminal's width, or 140 columns when piped to a file."""
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 140)


def results_table(lines: list[dict], title: str = "chestlens predict"):
    from rich import box
    from rich.table import Table

    from chestlens.pipeline.batch import csv_row

    table = Table(title=f"{title} (research use only, not a diagnosis)", box=box.SIMPLE)
    columns = ("file", "status", "top label", "probabilities", "decision", "CAM in lungs", "lungs", "lesions")
    for column in (*columns, "ms"):
        table.add_column(column)
    for line in lines[:TABLE_MAX_ROWS]:
        row = csv_row(line)
        detail = row.get("top_label", "") if row["status"] == "screened" else row.get("reason", "")
        warned = row.get("reader_warnings", "").count(" | ") + 1 if row.get("reader_warnings") else 0
        table.add_row(
            Path(row["source"]).name,
            row["status"] + (f"\n{warned} reader warning(s)" if warned else ""),
            detail,
            _cells(row, "p_"),
            _cells(row, "decision_"),
            row.get("heatmap_in_lungs", ""),
            _lungs_cell(row),
            _lesions_cell(row),
            row.get("total_ms", ""),
        )
    captions = list(dict.fromkeys(m for m in map(_meaning, lines) if m))  # each bundle's statement once
    if len(lines) > TABLE_MAX_ROWS:
        captions.append(f"first {TABLE_MAX_ROWS} of {len(lines)} inputs; see --json / --csv / --out")
    table.caption = "\n".join(captions) or None
    return table


def _cells(row: dict[str, str], prefix: str, suffix: str = "", unit: str = "") -> str:
    """``label=value`` for every column ``<prefix><label><suffix>`` of ``row``, one per line."""
    return "\n".join(
        f"{key[len(prefix) : len(key) - len(suffix)]}={value}{unit}"
        for key, value in row.items()
        if key.startswith(prefix) and key.endswith(suffix)
    )


def _lungs_cell(row: dict[str, str]) -> str:
    """Lung volume (CT series) or area (radiograph with a pixel spacing)."""
    if "lung_volume_ml" in row:
        return f"{row['lung_volume_ml']} mL"
    return f"{row['lung_area_mm2']} mm²" if "lung_area_mm2" in row else ""


def _lesions_cell(row: dict[str, str]) -> str:
    """Lesion volume (mL) or area (mm²) per class, the share of the lungs involved, the series score, the
    series verdict with its threshold and, with a study bundle, the series class with its probabilities."""
    parts = [_cells(row, "lesion_", "_ml", " mL") or _cells(row, "lesion_", "_mm2", " mm²")]
    if "lung_involved" in row:
        parts.append(f"lungs involved {float(row['lung_involved']):.1%}")
    if "series_score" in row:
        parts.append(f"series score {row['series_score']}")
    if "series_verdict" in row:
        threshold = 100 * float(row["series_threshold"])
        parts.append(f"{row['series_verdict']} (threshold {threshold:.2f}% of the lungs)")
    if "study_top_label" in row:
        probabilities = _cells(row, "study_p_", "").replace("\n", ", ")
        parts.append(f"study classifier: {row['study_top_label']} ({probabilities})")
    return "\n".join(p for p in parts if p)


def _meaning(line: dict) -> str | None:
    """The classification's one-line statement of what its headline output means (None without one)."""
    classification = (line.get("result") or {}).get("classification") or {}
    return classification.get("meaning")


def _inputs_only(paths: list[str]) -> list[str]:
    """``paths`` without ``-``: ``--json -`` was the old spelling of ``--json`` (JSON on stdout), so a
    lone ``-`` left after the ``--json`` flag is not an input."""
    inputs = [path for path in paths if path != "-"]
    if not inputs:
        raise ChestlensInputError(None, "no input: give at least one image, folder, series or manifest")
    return inputs


def _local_inputs(
    paths: list[str], studies: list[str], query: list[str], out: Path | None, stack: ExitStack, quiet: bool
) -> tuple[list[Path], int]:
    """Local paths for ``paths``: ``dicomweb(s)://`` addresses are pulled first (:mod:`chestlens.dicomnet.
    pull`) into ``OUT/dicomweb`` (resumable) or a temporary folder removed at exit. Returns the paths and
    the number of instances that could not be pulled (each reported on stderr)."""
    from chestlens.dicomnet.pull import DicomwebSource, parse_query, pull

    local: list[Path] = []
    failed = 0
    sources = [(text, DicomwebSource.parse(text)) for text in paths]
    if (studies or query) and not any(source for _, source in sources):
        raise ChestlensInputError(None, "--study and --query select what to pull from a dicomweb:// input")
    for text, source in sources:
        if source is None:
            local.append(Path(text))
            continue
        if out is not None:
            folder = out / "dicomweb"
        else:
            from tempfile import TemporaryDirectory

            folder = Path(stack.enter_context(TemporaryDirectory(prefix="chestlens-dicomweb-")))
        from tqdm import tqdm

        with tqdm(disable=quiet, unit="instance", desc="pulling") as bar:
            report, folders = pull(
                source, folder, studies=studies, query=parse_query(query), progress=bar.update
            )
        if not quiet:
            typer.echo(report.summary(), err=True)
        for key, reason in report.failed.items():
            typer.echo(f"chestlens: error: {source.url}: instance {key}: {reason}", err=True)
        failed += len(report.failed)
        local += folders
    return local, failed


def _screen_serial(
    screener,
    todo: list[Path],
    keys: dict[Path, str],
    log,
    overlays: Path | None,
    dicom_out: Path | None,
    secondary_capture: bool,
    batch_size: int,
    advance,
) -> tuple[list[dict], int]:
    """Screen ``todo`` in this process; append each batch of records to ``log`` (if any) as it is done,
    write overlays and DICOM outputs; returns the new records and the number of inputs whose DICOM
    outputs could not be written (each said in one line; the others go on). ``advance(n)``: progress."""
    from chestlens.pipeline.batch import record

    new_lines: list[dict] = []
    pending: list[dict] = []
    dicom_failures = 0
    for path, outcome in zip(todo, screener.iter_screen(todo, batch_size=batch_size), strict=True):
        result = getattr(outcome, "result", outcome)
        line = record(keys[path], result)
        if overlays is not None and line["status"] != "failed":
            from chestlens.pipeline.overlay import save_overlays

            save_overlays(outcome, overlays, _stem(path, keys[path]))
        if dicom_out is not None and line["status"] == "screened" and result.input.format in DICOM_FORMATS:
            from chestlens.pipeline.dicom_out import write_dicom_outputs

            try:
                write_dicom_outputs(
                    outcome, path, dicom_out, _stem(path, keys[path]), secondary_capture=secondary_capture
                )
            except ChestlensInputError as error:
                typer.echo(f"chestlens: error: {path}: DICOM outputs not written: {error.reason}", err=True)
                dicom_failures += 1
        new_lines.append(line)
        pending.append(line)
        if log is not None and len(pending) >= batch_size:
            log.append(pending)
            pending = []
        advance(1)
    if log is not None:
        log.append(pending)
    return new_lines, dicom_failures


def predict(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Image files, folders (recursive), DICOM series folders, CSV manifests (path), or a "
            "DICOMweb service dicomweb://HOST[:PORT]/PATH (dicomwebs:// for HTTPS) with --study or --query.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            callback=check_out_folder,
            help="Resumable output folder: results.jsonl and results.csv.",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print all results as JSON on stdout instead of the table.")
    ] = False,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write a CSV summary.")] = None,
    overlays: Annotated[
        Path | None,
        typer.Option("--overlays", callback=check_out_folder, help="Folder for overlay PNGs."),
    ] = None,
    dicom_out: Annotated[
        Path | None,
        typer.Option(
            "--dicom-out",
            callback=check_out_folder,
            help="For DICOM inputs: write a DICOM SR and SEG here.",
        ),
    ] = None,
    secondary_capture: Annotated[
        bool,
        typer.Option(
            "--secondary-capture",
            help="With --dicom-out: also write the overlay picture as a DICOM secondary capture, for "
            "viewers that cannot show a SEG.",
        ),
    ] = False,
    studies: Annotated[
        list[str] | None,
        typer.Option(
            "--study",
            help="dicomweb:// input: a Study Instance UID to pull with WADO-RS (repeat for several).",
        ),
    ] = None,
    query: Annotated[
        list[str] | None,
        typer.Option(
            "--query",
            help="dicomweb:// input: a QIDO-RS study filter KEY=VALUE (repeat to combine), e.g. "
            "ModalitiesInStudy=CR or StudyDate=20200101-20201231. A bearer token, if the server needs "
            "one, comes from CHESTLENS_DICOMWEB_TOKEN.",
        ),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option("--models", help="Comma-separated bundles (names or folders); default: bundled."),
    ] = None,
    device: Device = "auto",
    runtime: RuntimeOption = "onnx",
    cam: Cam = "cam",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per model batch.")] = 8,
    compile_models: Annotated[
        bool,
        typer.Option(
            "--compile", help="--runtime torch: torch.compile the models (slow start, faster batches)."
        ),
    ] = False,
    quiet: Quiet = False,
    engine: Annotated[
        str, typer.Option("--engine", help="serial (this process) or ray (Ray Data actors; needs --out).")
    ] = "serial",
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", help="Ray cluster: auto, ray://HOST:10001; default: a local instance."),
    ] = None,
    actors: Annotated[int, typer.Option("--actors", min=1, help="Ray: screener actors (model copies).")] = 2,
    actor_gpus: Annotated[float, typer.Option("--actor-gpus", min=0, help="Ray: GPUs per actor.")] = 0.0,
) -> None:
    """Screen chest X-rays and CT (research use only): quality gate, probabilities, decision, heatmap,
    lung and lesion measurements. Models run on ONNX Runtime unless --runtime torch."""
    from rich.console import Console
    from tqdm import tqdm

    from chestlens import RESEARCH_USE_DISCLAIMER
    from chestlens.atomic import write_text_atomic
    from chestlens.cli.progress import SliceBar
    from chestlens.models.catalog import default_models
    from chestlens.pipeline.batch import RESULTS_CSV, ResultLog, csv_text, input_key
    from chestlens.pipeline.inputs import expand_inputs
    from chestlens.pipeline.ray_engine import (
        RESULTS_PARQUET,
        RayPlan,
        ScreenerOptions,
        in_input_order,
        screen_on_ray,
        write_parquet,
    )
    from chestlens.pipeline.screener import Screener

    if cam not in CAM_CHOICES:
        raise typer.BadParameter(f"unknown heatmap {cam!r}; use {', '.join(CAM_CHOICES)}", param_hint="--cam")
    if engine not in ("serial", "ray"):
        raise typer.BadParameter(f"unknown engine {engine!r}", param_hint="--engine")
    if secondary_capture and dicom_out is None:
        raise typer.BadParameter("writes into --dicom-out: give it too", param_hint="--secondary-capture")
    if engine == "ray" and (out is None or overlays is not None or dicom_out is not None):
        raise typer.BadParameter("needs --out; writes no --overlays, --dicom-out", param_hint="--engine ray")
    with ExitStack() as stack:
        local, pull_failed = _local_inputs(_inputs_only(paths), studies or [], query or [], out, stack, quiet)
        inputs = expand_inputs(local)
        if not inputs.items:
            raise ChestlensInputError(local[0], f"no image files found ({inputs.not_images} other files)")
        keys = {path: input_key(path) for path in inputs.items}
        log = ResultLog(out) if out is not None else None
        done: set[str] = set()
        if log is not None:
            log.repair()
            done = log.done_keys()
        todo = [p for p in inputs.items if keys[p] not in done]
        options = {
            "runtime": runtime,
            "device": device,
            "cam": None if cam == "none" else cam,
            "compile": compile_models,
        }
        console = Console(stderr=True)
        if not quiet:
            console.print(f"[bold]{RESEARCH_USE_DISCLAIMER}[/bold]")
            skipped = len(inputs.items) - len(todo)
            console.print(
                f"{len(todo)} input(s) to screen, {skipped} already done, "
                f"{inputs.not_images} non-image file(s)"
            )
        bar = tqdm(total=len(todo), disable=quiet, unit="img", desc="screening")
        new_lines: list[dict] = []
        dicom_failures = 0
        if engine == "ray":
            names = tuple(models.split(",")) if models else ()
            plan = RayPlan(address=ray_address, actors=actors, gpus_per_actor=actor_gpus)
            todo_keys = [keys[p] for p in todo]
            opts = ScreenerOptions(names, **options)
            screen_on_ray(todo, todo_keys, log, opts, plan, batch_size=batch_size, on_chunk=bar.update)
        elif todo:
            names = models.split(",") if models else default_models()
            with SliceBar(disable=quiet) as slices:
                screener = Screener.from_models(names, **options, progress=slices)
                new_lines, dicom_failures = _screen_serial(
                    screener, todo, keys, log, overlays, dicom_out, secondary_capture, batch_size, bar.update
                )
        bar.close()
    lines = [*log.records()] if log is not None else new_lines
    lines = in_input_order(lines, [keys[p] for p in inputs.items])
    if log is not None:
        write_text_atomic(out / RESULTS_CSV, csv_text(lines))
    if engine == "ray":
        write_parquet(lines, out / RESULTS_PARQUET)
    if csv_path is not None:
        write_text_atomic(csv_path, csv_text(lines))
    if as_json:
        typer.echo(json.dumps([line.get("result") or line.get("failed") for line in lines], indent=2))
    failed = [line for line in lines if line["status"] == "failed"]
    if not quiet:
        if not as_json:
            table_console().print(results_table(lines))
        counts = {
            s: sum(1 for line in lines if line["status"] == s) for s in ("screened", "rejected", "failed")
        }
        console.print(", ".join(f"{v} {k}" for k, v in counts.items()))
    for line in failed:
        typer.echo(f"chestlens: error: {line['failed']['source']}: {line['failed']['error']}", err=True)
    if failed or pull_failed or dicom_failures:
        raise typer.Exit(EXIT_SOME_FAILED)
