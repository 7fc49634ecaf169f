"""``chestlens train classify``: train, calibrate, bundle and test a classifier."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

train_app = typer.Typer(help="Train models on data in the supported layouts.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")


@train_app.command("classify")
def classify(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a config key, e.g. --set input_size=256 --set augment.hflip=true."
        ),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/checkpoint.pt.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train a classifier on a patient-level split; writes OUT/bundle, OUT/test-report and curves."""
    from chestlens import RESEARCH_USE_DISCLAIMER
    from chestlens.evaluate.bundle_eval import format_estimate
    from chestlens.models.bundle import read_spec
    from chestlens.train.classify import run_classification
    from chestlens.train.config import load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    cfg = load_config(config, overrides)
    reproduce = " ".join(
        ["chestlens train classify"]
        + ([f"--config {config}"] if config else [])
        + [f"--set {item}" for item in overrides or []]
    )
    bundle = run_classification(cfg, resume=resume, progress=not quiet, reproduce=reproduce)
    spec = read_spec(bundle)
    typer.echo(f"bundle: {bundle}")
    for split in ("validation", "test"):
        numbers = spec.metrics.get(split)
        if numbers:
            typer.echo(f"{split} macro AUC (95% CI over patients): {format_estimate(numbers['macro_auc'])}")
    typer.echo(RESEARCH_USE_DISCLAIMER)
