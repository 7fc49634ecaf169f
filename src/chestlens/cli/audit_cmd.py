"""``chestlens audit BUNDLE``: the shortcut audit of a classifier (within-source and pooled AUCs on the
full image, with the lungs masked out and with the lungs only; a source probe on its features; CAM in the
lungs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from chestlens.cli.options import check_out_folder


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)


def audit(
    bundle: Annotated[Path, typer.Argument(help="Classifier bundle folder (or bundled name).")],
    splits: Annotated[Path | None, typer.Option("--splits", help="Split CSV made by chestlens.")] = None,
    split: Annotated[str, typer.Option("--split", help="Which split of --splits to audit.")] = "test",
    data: Annotated[Path | None, typer.Option("--data", help="Any folder in a supported layout.")] = None,
    root: Annotated[Path | None, typer.Option("--root", help="Data root for --splits.")] = None,
    lungs: Annotated[str, typer.Option("--lungs", help="Lung segmenter bundle.")] = "lungs-segmenter",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", callback=check_out_folder, help="Folder for audit.json and audit.md."),
    ] = None,
    n_boot: Annotated[int, typer.Option("--n-boot", help="Bootstrap resamples over patients.")] = 1000,
    save: Annotated[
        bool, typer.Option("--save", help="Store the audit in the bundle (metrics.shortcut_audit).")
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="With --save: the bundle's test report.json; rewrites its card."),
    ] = None,
) -> None:
    """Is the classifier reading the lungs? Within-source AUC of every binary question (and the pooled AUCs)
    on the full image, with the lungs masked out and with the lungs only; how well a linear probe reads
    the source from its features; the share of the Grad-CAM heatmap inside the lungs per true class (95%
    CIs over patients). Images go through the bundle's own preprocessing (lung crop/mask, CLAHE)."""
    from chestlens import RESEARCH_USE_DISCLAIMER
    from chestlens.atomic import write_text_atomic
    from chestlens.errors import ChestlensInputError
    from chestlens.evaluate.bundle_eval import evaluation_items
    from chestlens.evaluate.kinds import write_model_card
    from chestlens.evaluate.shortcut_audit import audit_classifier, audit_markdown
    from chestlens.models.bundle import load_bundle
    from chestlens.models.catalog import resolve_bundle
    from chestlens.models.kinds import require_kind
    from chestlens.models.spec import BUNDLE_JSON, write_spec

    if (splits is None) == (data is None):
        raise ChestlensInputError(bundle, "give exactly one of --splits CSV (with --split) or --data ROOT")
    classifier = load_bundle(bundle)
    require_kind(classifier.spec, "classifier", bundle)
    items, _ = evaluation_items(classifier.spec, splits=splits, split=split, data=data, root=root)
    result = audit_classifier(classifier, load_bundle(lungs), items, n_boot=n_boot)
    folder = out or resolve_bundle(bundle).with_name(f"{resolve_bundle(bundle).name}-audit")
    write_text_atomic(folder / "audit.json", json.dumps(result, indent=2) + "\n")
    markdown = "\n".join(audit_markdown(result))
    write_text_atomic(folder / "audit.md", markdown + "\n")
    typer.echo(markdown)
    if save:
        path = resolve_bundle(bundle)
        spec = classifier.spec.model_copy(
            update={"metrics": {**classifier.spec.metrics, "shortcut_audit": result}}
        )
        write_spec(path, spec)
        if report is not None:
            write_model_card(path, report)
        typer.echo(f"audit stored in {path / BUNDLE_JSON}")
    typer.echo(f"audit written to {folder}")
    typer.echo(RESEARCH_USE_DISCLAIMER)
