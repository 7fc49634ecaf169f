"""``chestlens data``: list sources, summarise confounders, check leakage, make patient-level splits.

Human output is rich tables on stdout (progress bars on stderr); ``--json`` prints one JSON document
instead. ``data check`` exits 1 when a split CSV has patient or near-duplicate overlap across splits.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from chestlens.data.records import Sample
from chestlens.errors import ChestlensInputError

if TYPE_CHECKING:
    import pandas as pd

    from chestlens.data.check import CheckReport
    from chestlens.data.hashing import HashResult
    from chestlens.data.summary import SourceContrast

ROWS_SHOWN = 30  # longest list printed in human output; --json has everything

_out = Console()
_err = Console(stderr=True)

Root = Annotated[
    str | None, typer.Option("--root", help="Data root (default: $CHESTLENS_DATA or ../shared/data).")
]
Sources = Annotated[
    list[str] | None,
    typer.Option("--sources", "-s", help="Only these source adapters (repeat or comma-separate)."),
]
TaskName = Annotated[
    str,
    typer.Option("--task", "-t", help="Task that maps findings to classes, or a segmentation target."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
SplitCsv = Annotated[Path | None, typer.Option("--splits", help="A split CSV made by `data split`.")]
CachePath = Annotated[
    Path | None,
    typer.Option("--hash-cache", help="Hash cache file (default: ~/.cache/chestlens/hashes.sqlite)."),
]
NoCache = Annotated[bool, typer.Option("--no-hash-cache", help="Hash every image again; write no cache.")]
Workers = Annotated[int, typer.Option("--workers", min=1, help="Processes for image hashing.")]


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the ``chestlens`` app."""
    data_app = typer.Typer(
        name="data",
        help="Dataset sources, confounder summaries, leakage checks and patient-level splits.",
        no_args_is_help=True,
    )
    data_app.command("sources")(sources)
    data_app.command("summary")(summary)
    data_app.command("check")(check)
    data_app.command("split")(split)
    app.add_typer(data_app, name="data")


def _root(root: str | None) -> Path:
    from chestlens.data.root import DATA_ENV, data_root

    found = data_root(root)
    if found is None:
        raise ChestlensInputError(None, f"no data root: pass --root or set {DATA_ENV}")
    return found


def _source_names(values: Sequence[str] | None) -> list[str] | None:
    if not values:
        return None
    return sorted({n.strip() for v in values for n in v.split(",") if n.strip()})


def _load(root: Path, names: Sequence[str] | None) -> list[Sample]:
    from chestlens.data.registry import load_samples

    return load_samples(root, _source_names(names))


def _label_fn(task: str) -> Callable[[Sample], str | None]:
    from chestlens.data.tasks import get_labelling

    return get_labelling(task).mapping


def _cache_path(cache: Path | None, no_cache: bool) -> Path | None:
    from chestlens.data.hashing import default_cache_path

    return None if no_cache else (cache or default_cache_path())


@contextmanager
def _hash_progress(quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A progress callback for image hashing, drawn as a transient bar on stderr."""
    with Progress(
        TextColumn("hashing images"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_err,
        disable=quiet,
        transient=True,
    ) as bar:
        task = bar.add_task("hash", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _hash(
    samples: Sequence[Sample], cache: Path | None, no_cache: bool, workers: int, quiet: bool
) -> HashResult:
    from chestlens.data.hashing import hash_samples

    with _hash_progress(quiet) as progress:
        return hash_samples(samples, _cache_path(cache, no_cache), workers, progress=progress)


def _echo_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, default=str))


def sources(root: Root = None, as_json: AsJson = False) -> None:
    """List the registered dataset layouts and which were found under the data root."""
    from chestlens.data.registry import adapters, find_sources

    base = _root(root)
    found = {adapter.name: folder for adapter, folder in find_sources(base)}
    rows = [
        {
            "name": a.name,
            "modality": a.modality,
            "folder": a.folder,
            "found": str(found[a.name]) if a.name in found else None,
            "description": a.description,
        }
        for a in adapters()
    ]
    if as_json:
        _echo_json({"root": str(base), "sources": rows})
        return
    table = Table(title=f"Dataset layouts (root {base})")
    for column in ("name", "modality", "found at", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["modality"], row["found"] or "-", row["description"])
    _out.print(table)


def summary(
    root: Root = None,
    task: TaskName = "xray3",
    names: Sources = None,
    splits: SplitCsv = None,
    as_json: AsJson = False,
) -> None:
    """Counts per source x class (x split) and the confounders per class: age band, sex, view, source.

    With --splits, labels and splits come from the CSV (and its task from the sidecar). For a
    classification task it also lists, per source, the classes it holds (within-source contrasts,
    per view), counted over every loaded sample.
    """
    from chestlens.data.splits import load_splits
    from chestlens.data.summary import source_contrasts, summarize
    from chestlens.data.tasks import TASKS

    samples = _load(_root(root), names)
    if splits is not None:
        table = load_splits(splits, samples)
        task = table.meta.task or task
        result = summarize(samples, table=table)
    else:
        result = summarize(samples, _label_fn(task))
    contrasts = source_contrasts(samples, task) if task in TASKS else []
    if as_json:
        _echo_json(
            {
                "task": task,
                "splits": str(splits) if splits else None,
                **result.to_dict(),
                "source_contrasts": [c.to_dict() for c in contrasts],
            }
        )
        return
    counts = result.counts
    table = Table(title=f"Samples per source x class{' x split' if splits else ''} (task {task})")
    table.add_column("source")
    table.add_column("class")
    for column in counts.columns:
        table.add_column(str(column), justify="right")
    for (source, label), row in counts.iterrows():
        table.add_row(source, label, *(str(int(v)) for v in row))
    table.add_section()
    table.add_row("all", "all", *(str(int(v)) for v in counts.sum()))
    _out.print(table)
    if result.excluded:
        left_out = ", ".join(f"{s} {n}" for s, n in result.excluded.items())
        _out.print(f"Left out (no {task} label): {left_out}")
    for name, frame in result.confounders.items():
        _out.print(_share_table(f"{name.replace('_', ' ')} per class x split", frame))
    if contrasts:
        _out.print(_contrast_table(task, contrasts))
        _out.print(_view_table(task, contrasts))
    for warning in result.warnings:
        _out.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


def _contrast_table(task: str, contrasts: Sequence[SourceContrast]) -> Table:
    """Per source: images / patients per class, and whether two or more classes coexist."""
    classes = list(contrasts[0].images)
    table = Table(title=f"Same-source contrasts: classes per source (task {task}; images / patients)")
    table.add_column("source")
    for label in classes:
        table.add_column(label, justify="right")
    for column in ("left out", "patient namespace", "contrast"):
        table.add_column(column, justify="right" if column == "left out" else "left")
    for c in contrasts:
        table.add_row(
            c.source,
            *(f"{c.images[label]} / {c.patients[label]}" if c.images[label] else "-" for label in classes),
            str(c.excluded),
            " ".join(c.patient_namespaces),
            "[green]within-source[/green]" if c.within_source else "-",
        )
    return table


def _view_table(task: str, contrasts: Sequence[SourceContrast]) -> Table:
    """Images per source x view x class, for the sources whose images have views."""
    classes = list(contrasts[0].images)
    table = Table(title=f"Classes per source x view (task {task}; images)")
    for column in ("source", "view", *classes, "2+ classes"):
        table.add_column(column, justify="right" if column in classes else "left")
    for c in (c for c in contrasts if c.views):
        for view, row in c.views.items():
            counts = (str(row[label]) if row[label] else "-" for label in classes)
            table.add_row(c.source, view, *counts, "yes" if view in c.contrast_views else "-")
        table.add_section()
    return table


def _share_table(title: str, frame: pd.DataFrame) -> Table:
    table = Table(title=title)
    table.add_column("class")
    table.add_column("split")
    for value in frame.columns:
        table.add_column(str(value), justify="right")
    for (label, split_name), row in frame.iterrows():
        total = row.sum()
        table.add_row(label, split_name, *(f"{int(n)} ({n / total:.0%})" if n else "-" for n in row))
    return table


def check(
    root: Root = None,
    names: Sources = None,
    splits: SplitCsv = None,
    as_json: AsJson = False,
    cache: CachePath = None,
    no_cache: NoCache = False,
    workers: Workers = 2,
) -> None:
    """Report linked patients and near-duplicate images; with --splits, overlap across splits (exit 1)."""
    from chestlens.data.check import analyse
    from chestlens.data.check import check as run_check
    from chestlens.data.splits import load_splits

    samples = _load(_root(root), names)
    table = load_splits(splits, samples) if splits is not None else None
    hashed = _hash(samples, cache, no_cache, workers, quiet=as_json)
    pairs, groups = analyse(samples, hashed.hashes)
    report = run_check(samples, groups, pairs, table, hashed.failures, len(hashed.hashes))
    if as_json:
        _echo_json({"splits": str(splits) if splits else None, **report.to_dict()})
    else:
        _print_check(report, hashed.n_cached)
    if not report.clean:
        raise typer.Exit(code=1)


def _print_check(report: CheckReport, n_cached: int) -> None:
    _out.print(
        f"{report.n_samples} samples, {report.n_hashed} hashed ({n_cached} files from cache), "
        f"{len(report.hash_failures)} unreadable; near-duplicate = phash <= {report.phash_threshold} "
        f"and dhash <= {report.dhash_threshold} of 256 bits"
    )
    for uid, reason in list(report.hash_failures.items())[:ROWS_SHOWN]:
        _out.print(f"[red]unreadable:[/red] {uid}: {reason}", highlight=False)
    groups = Table(title=f"Patient groups joining several ids ({len(report.linked_groups)})")
    for column in ("group", "patient ids", "sources", "samples", "evidence"):
        groups.add_column(column)
    for group in report.linked_groups[:ROWS_SHOWN]:
        reasons = sorted({link.reason for link in group.links})
        groups.add_row(
            group.group,
            " ".join(group.patient_ids),
            " ".join(group.sources),
            str(group.n_samples),
            "; ".join(reasons),
        )
    _out.print(groups)
    _more(len(report.linked_groups))
    pairs = Table(title=f"Near-duplicate image pairs ({len(report.near_duplicates)})")
    for column in ("sample a", "sample b", "phash", "dhash"):
        pairs.add_column(column)
    for pair in report.near_duplicates[:ROWS_SHOWN]:
        pairs.add_row(pair.a, pair.b, str(pair.phash_distance), str(pair.dhash_distance))
    _out.print(pairs)
    _more(len(report.near_duplicates))
    if report.n_split_rows is None:
        return
    for overlap in report.patient_overlap[:ROWS_SHOWN]:
        sides = ", ".join(f"{name}: {len(uids)}" for name, uids in overlap.splits.items())
        _out.print(
            f"[red]patient overlap:[/red] {overlap.group} ({' '.join(overlap.patient_ids)}) in {sides}"
        )
    for crossing in report.duplicate_overlap[:ROWS_SHOWN]:
        pair = crossing.pair
        _out.print(
            f"[red]near-duplicate overlap:[/red] {pair.a} ({crossing.split_a}) ~ "
            f"{pair.b} ({crossing.split_b}), phash {pair.phash_distance}",
            highlight=False,
        )
    verdict = (
        "[green]clean:[/green] no patient group and no near-duplicate pair spans two splits"
        if report.clean
        else f"[red]LEAK:[/red] {len(report.patient_overlap)} patient group(s) and "
        f"{len(report.duplicate_overlap)} near-duplicate pair(s) span two splits"
    )
    _out.print(f"{report.n_split_rows} split rows: {verdict}")


def _more(total: int) -> None:
    if total > ROWS_SHOWN:
        _out.print(f"... {total - ROWS_SHOWN} more (use --json for all)")


def split(
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV to write (a .json sidecar goes next to it).")],
    root: Root = None,
    task: TaskName = "xray3",
    names: Sources = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same file.")] = 0,
    fractions: Annotated[
        tuple[float, float, float], typer.Option("--fractions", help="Train, val and test fractions.")
    ] = (0.70, 0.15, 0.15),
    as_json: AsJson = False,
    cache: CachePath = None,
    no_cache: NoCache = False,
    workers: Workers = 2,
) -> None:
    """Make a patient-level split stratified by source and class, and save it as an editable CSV.

    Patients are linked across every source under the root, including those --sources leaves out.
    """
    from chestlens.data.make_split import build_splits
    from chestlens.data.splits import SPLITS, save_splits

    base = _root(root)
    with _hash_progress(as_json) as progress:
        built = build_splits(
            base,
            task,
            _source_names(names),
            seed=seed,
            fractions=fractions,
            cache=_cache_path(cache, no_cache),
            workers=workers,
            progress=progress,
        )
    table, pairs = built.table, built.near_duplicates
    save_splits(table, out)
    achieved = table.achieved()
    if as_json:
        records = [
            {"source": s, "label": lab, "n": int(row["n"]), **{k: float(row[k]) for k in SPLITS}}
            for (s, lab), row in achieved.iterrows()
        ]
        _echo_json(
            {
                "out": str(out),
                "rows": len(table.rows),
                "excluded": table.meta.excluded,
                "near_duplicates": len(pairs),
                "achieved": records,
                "unreadable": built.hash_failures,
            }
        )
        return
    _out.print(
        f"Wrote {out} ({len(table.rows)} samples, seed {seed}, task {task}); "
        f"{len({r.group for r in table.rows})} patient groups, {len(pairs)} near-duplicate pairs linked"
    )
    target = " / ".join(f"{f:.2f}" for f in fractions)
    view = Table(title=f"Achieved fractions per source x class (target {target})")
    for column in ("source", "class", "n", "train", "val", "test"):
        view.add_column(column, justify="left" if column in ("source", "class") else "right")
    for (source, label), row in achieved.iterrows():
        view.add_row(source, label, str(int(row["n"])), *(f"{row[s]:.2f}" for s in ("train", "val", "test")))
    _out.print(view)
    if table.meta.excluded:
        _out.print("Left out (no label): " + ", ".join(f"{s} {n}" for s, n in table.meta.excluded.items()))
    if built.hash_failures:
        unreadable = len(built.hash_failures)
        _out.print(f"[yellow]warning:[/yellow] {unreadable} image(s) unreadable, not checked for duplicates")
