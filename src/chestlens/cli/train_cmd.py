"""``chestlens train classify|segment``: train, (calibrate,) bundle and test a model."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from chestlens.models.spec import BundleSpec
    from chestlens.train.config import Config

train_app = typer.Typer(help="Train models on data in the supported layouts.", no_args_is_help=True)

ConfigFile = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")]
Overrides = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key, e.g. --set input_size=256 --set augment.hflip=true."),
]
Resume = Annotated[bool, typer.Option("--resume", help="Continue from OUT/checkpoint.pt.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
Processes = Annotated[
    int,
    typer.Option(
        "--nproc-per-node",
        min=1,
        help="Train with DistributedDataParallel on N processes of this machine (started with torchrun; "
        "one per GPU, or gloo on CPU). batch_size stays the global batch.",
    ),
]

MaxRestarts = Annotated[
    int,
    typer.Option(
        "--max-restarts",
        min=0,
        help="With --nproc-per-node: when a worker dies, restart the group up to N times (torchrun's "
        "elastic restarts); each restart resumes from the last checkpoint.",
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")


def _torchrun(command: str, args: list[str], nproc: int, max_restarts: int) -> None:
    """Run ``chestlens train COMMAND ARGS`` on ``nproc`` local processes under torchrun (restarting the
    group up to ``max_restarts`` times after a failure), then exit with its status."""
    import os
    import subprocess
    import sys

    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    launcher.append(f"--nproc-per-node={nproc}")
    if max_restarts:
        launcher.append(f"--max-restarts={max_restarts}")
    argv = [*launcher, "-m", "chestlens.cli", "train", command, *args]
    typer.echo(f"torchrun: {' '.join(argv[1:])}", err=True)
    # a restarted group must not share the dead group's rendezvous store (pytorch/pytorch#135712)
    env = {**os.environ, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    raise typer.Exit(subprocess.run(argv, check=False, env=env).returncode)


def _train(
    command: str,
    schema: type[Config],
    run: Callable[..., Path],
    config: Path | None,
    overrides: list[str] | None,
    resume: bool,
    quiet: bool,
    nproc: int = 1,
    max_restarts: int = 0,
) -> BundleSpec | None:
    """Load the config as ``schema``, run ``run(cfg, resume=, progress=, reproduce=)``, print the bundle
    folder and return its spec.

    With ``nproc > 1`` (and not already under torchrun) the command re-starts itself under torchrun on
    ``nproc`` processes (``max_restarts``: torchrun's elastic restarts, each resuming from the checkpoint).
    Under torchrun every process trains; rank 0 alone writes, prints and returns the spec, the others
    return None.
    """
    from chestlens.models.spec import read_spec
    from chestlens.train import distributed
    from chestlens.train.config import load_config

    cfg = load_config(schema, config, overrides)
    args = (["--config", str(config)] if config else []) + [a for i in overrides or [] for a in ("--set", i)]
    if max_restarts and nproc == 1:
        raise typer.BadParameter("--max-restarts needs --nproc-per-node > 1", param_hint="--max-restarts")
    if nproc > 1 and not distributed.launched_by_torchrun():
        _torchrun(command, args + ["--resume"] * resume + ["--quiet"] * quiet, nproc, max_restarts)
    reproduce = " ".join([f"chestlens train {command}", *args])
    with distributed.session(cfg.device) as where:
        level = logging.INFO if where.is_main else logging.WARNING
        logging.basicConfig(level=level, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
        bundle = run(cfg, resume=resume, progress=not quiet and where.is_main, reproduce=reproduce)
    if not where.is_main:
        return None
    typer.echo(f"bundle: {bundle}")
    return read_spec(bundle)


Folds = Annotated[
    int,
    typer.Option(
        "--folds",
        min=0,
        help="Patient-grouped K-fold cross-validation of the recipe instead of one split: every image is "
        "tested once by a model that never saw its patient; writes a CV report under OUT, no bundle.",
    ),
]
LeaveOut = Annotated[
    list[str] | None,
    typer.Option(
        "--leave-out",
        help="Train without this source and test on it alone (leave-one-source-out); repeatable.",
    ),
]


def _cross_validate(
    command: str,
    config: Path | None,
    overrides: list[str],
    folds: int,
    quiet: bool,
    resume: bool = False,
    ensemble: bool = False,
) -> None:
    """``train classify|segment|detect --folds K``: run the CV, print its report's Markdown and where it
    was written. ``resume`` (segment only): continue every fold from its checkpoint; ``ensemble`` (segment
    only): then write the fold models as one bundle."""
    from chestlens import RESEARCH_USE_DISCLAIMER
    from chestlens.train.config import ClassifyConfig, SegmentConfig, load_config

    if folds == 1:
        raise typer.BadParameter("cross-validation needs at least 2 folds", param_hint="--folds")
    if resume and command != "segment":
        raise typer.BadParameter(
            f"--resume with --folds is not supported by train {command}", param_hint="--resume"
        )
    if command == "classify":
        from chestlens.train.crossval import CV_MARKDOWN, cross_validate_classifier, cv_markdown

        schema, run_cv, markdown, name = ClassifyConfig, cross_validate_classifier, cv_markdown, CV_MARKDOWN
    elif command == "detect":
        from chestlens.train.det_crossval import DET_CV_MARKDOWN, cross_validate_detector, det_cv_markdown
        from chestlens.train.detect import DetectConfig

        schema, run_cv, markdown, name = (
            DetectConfig,
            cross_validate_detector,
            det_cv_markdown,
            DET_CV_MARKDOWN,
        )
    else:
        from chestlens.train.seg_crossval import SEG_CV_MARKDOWN, cross_validate_segmenter, seg_cv_markdown

        schema, run_cv, markdown, name = (
            SegmentConfig,
            cross_validate_segmenter,
            seg_cv_markdown,
            SEG_CV_MARKDOWN,
        )
    cfg = load_config(schema, config, overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = (["--config", str(config)] if config else []) + [a for i in overrides for a in ("--set", i)]
    reproduce = " ".join(
        [f"chestlens train {command}", *args, f"--folds {folds}", *["--ensemble"] * ensemble]
    )
    extra = {"resume": resume, "ensemble": ensemble, "reproduce": reproduce} if command == "segment" else {}
    report = run_cv(cfg, folds, progress=not quiet, **extra)
    typer.echo("\n".join(markdown(report)))
    typer.echo(f"report: {Path(cfg.out) / name}")
    if ensemble:
        from chestlens.train.run import BUNDLE_DIR

        typer.echo(f"bundle: {Path(cfg.out) / BUNDLE_DIR} (the fold ensemble)")
    typer.echo(RESEARCH_USE_DISCLAIMER)


@train_app.command("classify")
def classify(
    config: ConfigFile = None,
    overrides: Overrides = None,
    resume: Resume = False,
    quiet: Quiet = False,
    nproc: Processes = 1,
    max_restarts: MaxRestarts = 0,
    folds: Folds = 0,
    leave_out: LeaveOut = None,
) -> None:
    """Train a classifier on a patient-level split; writes OUT/bundle, OUT/test-report and curves."""
    from chestlens import RESEARCH_USE_DISCLAIMER
    from chestlens.evaluate.bootstrap import estimate_text
    from chestlens.train.classify import run_classification
    from chestlens.train.config import ClassifyConfig

    if leave_out:
        overrides = [*(overrides or []), f"leave_out=[{','.join(leave_out)}]"]
    if folds:
        _cross_validate("classify", config, overrides or [], folds, quiet, resume)
        return
    spec = _train(
        "classify", ClassifyConfig, run_classification, config, overrides, resume, quiet, nproc, max_restarts
    )
    if spec is None:
        return
    for split in ("validation", "test"):
        numbers = spec.metrics.get(split)
        if numbers:
            typer.echo(f"{split} macro AUC (95% CI over patients): {estimate_text(numbers['macro_auc'])}")
    typer.echo(RESEARCH_USE_DISCLAIMER)


@train_app.command("segment")
def segment(
    config: ConfigFile = None,
    overrides: Overrides = None,
    resume: Resume = False,
    quiet: Quiet = False,
    nproc: Processes = 1,
    max_restarts: MaxRestarts = 0,
    folds: Folds = 0,
    ensemble: Annotated[
        bool,
        typer.Option(
            "--ensemble",
            help="With --folds K: then write OUT/bundle, the K fold models averaged as one bundle (K times "
            "the cost of one model; its card leads with the cross-validation).",
        ),
    ] = False,
) -> None:
    """Train a segmenter (U-Net / UNet++) for a target (lungs, lesions-ct, lesions-xray, pneumothorax) on a
    patient-level split; writes OUT/bundle, OUT/test-report and curves. With --folds K: patient-grouped
    cross-validation of the recipe instead (OUT/seg-cv-report.md|json, OUT/oof-dice.csv, no bundle, or the
    fold ensemble with --ensemble); --resume then continues each fold from OUT/fold-K/checkpoint.pt
    (finished folds are only re-scored)."""
    from chestlens import RESEARCH_USE_DISCLAIMER
    from chestlens.evaluate.bootstrap import estimate_text
    from chestlens.train.config import SegmentConfig
    from chestlens.train.segment import run_segmentation

    if ensemble and not folds:
        raise typer.BadParameter(
            "--ensemble needs --folds K (it bundles the fold models)", param_hint="--ensemble"
        )
    if folds:
        _cross_validate("segment", config, overrides or [], folds, quiet, resume, ensemble)
        return

    spec = _train(
        "segment", SegmentConfig, run_segmentation, config, overrides, resume, quiet, nproc, max_restarts
    )
    if spec is None:
        return
    for split in ("validation", "test"):
        for label, numbers in (spec.metrics.get(split) or {}).get("per_class", {}).items():
            typer.echo(f"{split} {label} Dice (95% CI over patients): {estimate_text(numbers['dice'])}")
    typer.echo(RESEARCH_USE_DISCLAIMER)


@train_app.command("select")
def select(
    candidates: Annotated[list[Path], typer.Argument(help="Candidate bundle folders from chestlens train.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the chosen bundle.")],
    metric: Annotated[
        str,
        typer.Option(
            "--metric",
            help="Validation metric to maximise: within_source_score (classifiers: mean within-source AUC "
            "of the headline questions), macro_auc (pooled, includes between-source pairs), mean_dice.",
        ),
    ] = "within_source_score",
    reproduce: Annotated[
        str | None, typer.Option("--reproduce", help="Command that reproduces the chosen model (model card).")
    ] = None,
    compare: Annotated[
        list[Path] | None,
        typer.Option("--compare", help="Bundle of another recipe on the same split, shown side by side."),
    ] = None,
) -> None:
    """Pick the candidate with the best VALIDATION score (e.g. among input sizes); write it and its card."""
    from chestlens.models.spec import read_spec
    from chestlens.train.select import select_on_validation

    chosen = select_on_validation(candidates, out, metric=metric, reproduce=reproduce, compare=compare or [])
    selection = read_spec(chosen).training.selection
    for row in selection.candidates if selection else []:
        typer.echo(f"{row['bundle']}: {row['input_size']} px, validation {metric} {row['validation']:.4f}")
    typer.echo(f"chosen bundle written to {chosen}")


@train_app.command("detect")
def detect(
    config: ConfigFile = None,
    overrides: Overrides = None,
    resume: Resume = False,
    quiet: Quiet = False,
    folds: Folds = 0,
) -> None:
    """Train a Mask R-CNN lesion detector (instances = connected components of the lesion masks) on a
    patient-level split; writes OUT/bundle (kind detector), COCO AP reports and the model card. With
    --folds K: patient-grouped cross-validation of the recipe on the folds of train segment --folds K
    instead (OUT/det-cv-report.md|json, no bundle)."""
    from chestlens import RESEARCH_USE_DISCLAIMER
    from chestlens.evaluate.bootstrap import estimate_text
    from chestlens.train.detect import DetectConfig, run_detection

    if folds:
        _cross_validate("detect", config, overrides or [], folds, quiet, resume)
        return
    spec = _train("detect", DetectConfig, run_detection, config, overrides, resume, quiet)
    for split in ("validation", "test"):
        segm = (spec.metrics.get(split) or {}).get("segm") if spec else None
        if segm:
            ap50 = estimate_text(segm["ap50"])
            typer.echo(f"{split} mask AP@0.5 (mean over classes, 95% CI over patients): {ap50}")
    typer.echo(RESEARCH_USE_DISCLAIMER)


@train_app.command("regional")
def regional(config: ConfigFile = None, overrides: Overrides = None, folds: Folds = 0) -> None:
    """Train the COVID-CT-Mask-Net style slice classifier ("infection present") over the regions of a frozen
    detector, or of a lesion segmenter's connected components (segmenter=BUNDLE), on COVID-CT-MD slice
    labels; writes the regional bundle (OUT/bundle: region source and classifier, MODEL_CARD.md) and
    OUT/report.json/.md. With --folds K: cross-validation instead (leave one patient
    out when K is the number of patients), OUT/regional-cv-report.json/.md, no bundle."""
    from chestlens import RESEARCH_USE_DISCLAIMER
    from chestlens.evaluate.bootstrap import estimate_text
    from chestlens.train.config import load_config
    from chestlens.train.regional import RegionalConfig, run_regional

    if folds == 1:
        raise typer.BadParameter("cross-validation needs at least 2 folds", param_hint="--folds")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    cfg = load_config(RegionalConfig, config, overrides)
    if folds:
        from chestlens.train.regional_cv import (
            REGIONAL_CV_MARKDOWN,
            cross_validate_regional,
            regional_cv_markdown,
        )

        typer.echo("\n".join(regional_cv_markdown(cross_validate_regional(cfg, folds))))
        typer.echo(f"report: {Path(cfg.out) / REGIONAL_CV_MARKDOWN}")
        typer.echo(RESEARCH_USE_DISCLAIMER)
        return
    result = run_regional(cfg)
    typer.echo(f"split: {result['split']}")
    for name, report in result["test"].items():
        auc = report["auc"]
        typer.echo(f"test slice AUC, {name}: {estimate_text(auc)}")
    typer.echo(RESEARCH_USE_DISCLAIMER)


@train_app.command("study")
def study(config: ConfigFile = None, overrides: Overrides = None) -> None:
    """Train the series-level CT study classifier (COVID-19 / CAP / normal) from lesion features (and,
    with regional=BUNDLE, a regional slice classifier's series summary): screen each labelled CT series
    once with the CT lesion pipeline, leave one patient out, then fit on all and write OUT/bundle (kind
    study, MODEL_CARD.md with the LOPO table and the features) and OUT/lopo.md."""
    import os

    from chestlens import RESEARCH_USE_DISCLAIMER
    from chestlens.models.spec import read_spec
    from chestlens.pipeline.study_data import screen_study_series
    from chestlens.train.config import load_config
    from chestlens.train.study import STUDY_LABELS, StudyConfig, lopo_markdown, train_study

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    cfg = load_config(StudyConfig, config, overrides)
    root = Path(cfg.data_root or os.environ.get("CHESTLENS_DATA", "data"))
    series = screen_study_series(root, cfg.lesion_bundle, cfg.patients, cfg.regional)

    def reference(bundle: str) -> dict:
        spec = read_spec(bundle)
        return {
            "name": spec.name,
            "version": spec.version,
            "weights_sha256": spec.weights_sha256,
            "source": bundle,
        }

    regional = None
    if cfg.regional is not None:
        patients = read_spec(cfg.regional).training.config.get("patients") or ["every labelled series"]
        regional = {**reference(cfg.regional), "trained_on": list(patients)}
    args = (["--config", str(config)] if config else []) + [a for i in overrides or [] for a in ("--set", i)]
    bundle = train_study(
        cfg,
        series,
        reference(cfg.lesion_bundle),
        reproduce=" ".join(["chestlens train study", *args]),
        regional_bundle=regional,
    )
    for item in series:
        values = ", ".join(f"{k} {item.features[k]:.3f}" for k in cfg.features)
        typer.echo(f"{item.patient} ({item.label}): {values}")
    typer.echo("\n".join(lopo_markdown(read_spec(bundle).metrics["lopo"], STUDY_LABELS)))
    typer.echo(f"bundle: {bundle}")
    typer.echo(RESEARCH_USE_DISCLAIMER)
