"""``chestlens train classify|segment``: train, (calibrate,) bundle and test a model."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from chestlens.models.bundle import BundleSpec
    from chestlens.train.config import Config

train_app = typer.Typer(help="Train models on data in the supported layouts.", no_args_is_help=True)

ConfigFile = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")]
Overrides = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key, e.g. --set input_size=256 --set augment.hflip=true."),
]
Resume = Annotated[bool, typer.Option("--resume", help="Continue from OUT/checkpoint.pt.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")


def _train(
    command: str,
    schema: type[Config],
    run: Callable[..., Path],
    config: Path | None,
    overrides: list[str] | None,
    resume: bool,
    quiet: bool,
) -> BundleSpec:
    """Load the config as ``schema``, run ``run(cfg, resume=, progress=, reproduce=)``, print the bundle
    folder and return its spec."""
    from chestlens.models.bundle import read_spec
    from chestlens.train.config import load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    cfg = load_config(schema, config, overrides)
    reproduce = " ".join(
        [f"chestlens train {command}"]
        + ([f"--config {config}"] if config else [])
        + [f"--set {item}" for item in overrides or []]
    )
    bundle = run(cfg, resume=resume, progress=not quiet, reproduce=reproduce)
    typer.echo(f"bundle: {bundle}")
    return read_spec(bundle)


@train_app.command("classify")
def classify(
    config: ConfigFile = None, overrides: Overrides = None, resume: Resume = False, quiet: Quiet = False
) -> None:
    """Train a classifier on a patient-level split; writes OUT/bundle, OUT/test-report and curves."""
    from chestlens import RESEARCH_USE_DISCLAIMER
    from chestlens.evaluate.bundle_eval import format_estimate
    from chestlens.train.classify import run_classification
    from chestlens.train.config import ClassifyConfig

    spec = _train("classify", ClassifyConfig, run_classification, config, overrides, resume, quiet)
    for split in ("validation", "test"):
        numbers = spec.metrics.get(split)
        if numbers:
            typer.echo(f"{split} macro AUC (95% CI over patients): {format_estimate(numbers['macro_auc'])}")
    typer.echo(RESEARCH_USE_DISCLAIMER)


@train_app.command("segment")
def segment(
    config: ConfigFile = None, overrides: Overrides = None, resume: Resume = False, quiet: Quiet = False
) -> None:
    """Train a segmenter (U-Net / UNet++) for a target (lungs, lesions-ct, lesions-xray, pneumothorax) on a
    patient-level split; writes OUT/bundle, OUT/test-report and curves."""
    from chestlens import RESEARCH_USE_DISCLAIMER
    from chestlens.evaluate.bundle_eval import format_estimate
    from chestlens.train.config import SegmentConfig
    from chestlens.train.segment import run_segmentation

    spec = _train("segment", SegmentConfig, run_segmentation, config, overrides, resume, quiet)
    for split in ("validation", "test"):
        for label, numbers in (spec.metrics.get(split) or {}).get("per_class", {}).items():
            typer.echo(f"{split} {label} Dice (95% CI over patients): {format_estimate(numbers['dice'])}")
    typer.echo(RESEARCH_USE_DISCLAIMER)


@train_app.command("select")
def select(
    candidates: Annotated[list[Path], typer.Argument(help="Candidate bundle folders from chestlens train.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the chosen bundle.")],
    metric: Annotated[str, typer.Option("--metric", help="Validation metric to maximise.")] = "macro_auc",
    reproduce: Annotated[
        str | None, typer.Option("--reproduce", help="Command that reproduces the chosen model (model card).")
    ] = None,
    compare: Annotated[
        list[Path] | None,
        typer.Option("--compare", help="Bundle of another recipe on the same split, shown side by side."),
    ] = None,
) -> None:
    """Pick the candidate with the best VALIDATION score (e.g. among input sizes); write it and its card."""
    from chestlens.models.bundle import read_spec
    from chestlens.train.select import select_on_validation

    chosen = select_on_validation(candidates, out, metric=metric, reproduce=reproduce, compare=compare or [])
    for row in read_spec(chosen).training["selection"]["candidates"]:
        typer.echo(f"{row['bundle']}: {row['input_size']} px, validation {metric} {row['validation']:.4f}")
    typer.echo(f"chosen bundle written to {chosen}")
