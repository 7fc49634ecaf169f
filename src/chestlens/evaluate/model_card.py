"""Model cards generated from a bundle and its test report: every number comes from those two files.

A classifier card leads with what says whether the model reads the lungs: the within-source AUC of every
binary question on the test split (same-source pairs only) and the shortcut audit, both from the
bundle's ``metrics``. Then it states the data per source and class, the splits, every pooled test metric
with its confidence interval (labelled as including between-source pairs), per-source results,
calibration and the operating point, the project's targets (met or not), known shortcuts and limits, and
the command that reproduces the model. Segmenter cards state the target, the per-class overlap metrics
with their empty-mask case counts instead; detector cards the COCO mask and box AP per class.

The cards are laid out by the templates ``model_card.md``, ``segmentation_card.md`` and
``detection_card.md`` (frame ``_card.md``) and ``regional_card.md``; this module computes what they show.
Which one a bundle gets is its kind's choice (:mod:`chestlens.evaluate.kinds`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chestlens.evaluate.bootstrap import Estimate, estimate_text
from chestlens.evaluate.ct_series import SeriesSliceReport, slice_report_markdown
from chestlens.evaluate.detection import DetectionReport
from chestlens.evaluate.report import ReportDocument
from chestlens.evaluate.results import ClassificationReport
from chestlens.evaluate.seg_eval import DECISIONS
from chestlens.evaluate.seg_report import SegmentationDocument
from chestlens.evaluate.segmentation import SegmentationReport
from chestlens.evaluate.shortcut_audit import ShortcutAudit
from chestlens.evaluate.within_source import WITHIN_SOURCE_LIST
from chestlens.io.windowing import WINDOWS
from chestlens.models.registry import get_model_config
from chestlens.models.spec import BundleSpec, DataSummary
from chestlens.rendering import macro_lines, render

MODEL_CARD = "MODEL_CARD.md"

#: Targets of the default X-ray screener (issue "Classification"), checked on the test split.
XRAY3_TARGETS = {
    "macro_auc": 0.97,
    "covid_sensitivity": 0.95,
    "covid_specificity": 0.95,
    "nih_pneumonia_auc": 0.80,
}


def _est(e: Estimate | None) -> str:
    return estimate_text(e, reason=True)


#: Dice targets of the default segmenters (issue "Segmentation"), per task and class, with their source.
SEGMENTATION_TARGETS = {
    "lungs": {"lungs": (0.95, "project target")},
    "lesions-ct": {
        "ggo": (0.65, "Inf-Net (IEEE TMI 2020), multi-class GGO Dice"),
        "consolidation": (0.46, "Inf-Net, best multi-class consolidation Dice reported (0.30-0.46)"),
        "any_lesion": (0.739, "Inf-Net, binary infection Dice"),
    },
}


def _verdict(estimate: Estimate | None, target: float) -> str:
    if estimate is None or estimate.value is None:
        return "not measurable"
    return "met" if estimate.value >= target else "NOT met"


def _target_row(name: str, goal: float, estimate: Estimate | None) -> list[str]:
    """``[target, goal, measured (95% CI), verdict]``."""
    return [name, f">= {goal}", _est(estimate), _verdict(estimate, goal)]


def _segmentation_targets(spec: BundleSpec, report: SegmentationReport) -> list[list[str]]:
    """The task's Dice targets (:data:`SEGMENTATION_TARGETS`) checked on the test split."""
    dice = {m.label: m.dice for m in report.per_class}
    return [
        _target_row(f"{label} Dice ({source})", goal, dice.get(label))
        for label, (goal, source) in SEGMENTATION_TARGETS.get(spec.task, {}).items()
    ]


def _targets(spec: BundleSpec, report: ClassificationReport) -> list[list[str]]:
    """The issue's targets for the xray3 screener, checked on the test split."""
    if spec.task != "xray3":
        return []
    overall = report.overall
    covid = next((p for p in overall.operating_points if p.label == "COVID-19"), None)
    nih = report.per_source.get("nih")
    nih_pneumonia = next((c.auc for c in nih.per_class if c.label == "pneumonia"), None) if nih else None
    rows = [_target_row("macro AUC", XRAY3_TARGETS["macro_auc"], overall.macro_auc)]
    if covid is not None:
        rows += [
            _target_row(
                "COVID-19 sensitivity at the operating point",
                XRAY3_TARGETS["covid_sensitivity"],
                covid.sensitivity,
            ),
            _target_row(
                "COVID-19 specificity at the operating point",
                XRAY3_TARGETS["covid_specificity"],
                covid.specificity,
            ),
        ]
    rows.append(
        _target_row(
            "pneumonia vs normal AUC within NIH (adults; CheXNet 0.768)",
            XRAY3_TARGETS["nih_pneumonia_auc"],
            nih_pneumonia,
        )
    )
    return rows


def _epoch_seconds(spec: BundleSpec) -> float:
    """Time spent in training epochs (summed over the history, so a resumed run counts every epoch)."""
    history = spec.training.history
    return sum(e.get("seconds", 0.0) for e in history) or spec.training.train_seconds or 0.0


def _initialisation(architecture: str, weights: str | None) -> str:
    if weights is None:
        return "random"
    if weights == "default":
        return f"ImageNet (`{get_model_config(architecture).pretrained}`)"
    return f"`{weights}`"


def recipe_row(spec: BundleSpec, report: ClassificationReport) -> dict[str, str]:
    """One row of the side-by-side recipe table: how a bundle was trained and its headline test numbers."""
    cfg = spec.training.config
    overall = report.overall
    covid = next((p for p in overall.operating_points if p.label == "COVID-19"), None)
    covid_auc = next((c.auc for c in overall.per_class if c.label == "COVID-19"), None)
    nih = report.per_source.get("nih")
    nih_pneumonia = next((c.auc for c in nih.per_class if c.label == "pneumonia"), None) if nih else None
    weights = cfg.get("weights")
    return {
        "bundle": spec.name,
        "architecture": spec.architecture,
        "initialisation": _initialisation(spec.architecture, weights),
        "trained": "head only" if cfg.get("freeze_backbone") else "all layers",
        "input": f"{spec.preprocess.input_size} px",
        "epoch minutes (CPU)": f"{_epoch_seconds(spec) / 60:.0f}",
        "macro AUC": _est(overall.macro_auc),
        "accuracy": _est(overall.accuracy),
        "COVID-19 AUC": _est(covid_auc),
        "COVID-19 sens. / spec. at op.": "n/a"
        if covid is None
        else f"{_est(covid.sensitivity)} / {_est(covid.specificity)}",
        "NIH pneumonia AUC": _est(nih_pneumonia),
        "ECE": _est(overall.calibration.ece),
    }


def _seed_recipes(spec: BundleSpec, report: ClassificationReport) -> tuple[list[str], list[list[str]]] | None:
    """Head and rows of the seed recipes trained with the same data, split and pipeline, this model first
    (``training.comparison``); None without them."""
    others = spec.training.comparison
    if not others:
        return None
    rows = [recipe_row(spec, report), *others]
    return list(rows[0]), [list(r.values()) for r in rows]


def _card_context(spec: BundleSpec, limits: Sequence[str], reproduce: str | None) -> dict[str, Any]:
    """What the frame of every card (``_card.md``) reads."""
    return {
        "spec": spec,
        "training": spec.training,
        "cfg": spec.training.config,
        "data": spec.training.data or DataSummary(),
        "limits": list(limits),
        "reproduce": reproduce,
    }


def render_model_card(
    spec: BundleSpec,
    document: ReportDocument,
    *,
    confounders: Sequence[str] = (),
    reproduce: str | None = None,
) -> str:
    """Markdown model card for a classifier bundle and the report of its test split."""
    report = document.metrics
    test = spec.metrics.get("test") or {}
    audit = spec.metrics.get("shortcut_audit")
    return render(
        "model_card.md",
        **_card_context(spec, [*confounders, *report.warnings], reproduce),
        report=report,
        within_source=WITHIN_SOURCE_LIST.validate_python(test["within_source"])
        if "within_source" in test
        else None,
        audit=ShortcutAudit.model_validate(audit) if audit else None,
        targets=_targets(spec, report),
        seed_recipes=_seed_recipes(spec, report),
    )


def render_segmentation_card(
    spec: BundleSpec,
    document: SegmentationDocument | None,
    *,
    confounders: Sequence[str] = (),
    reproduce: str | None = None,
) -> str:
    """Markdown model card for a segmenter bundle and the report of its test split; ``document`` None for
    a segmenter fitted on all data (``training.split.fit_all``), whose card leads with its recipe's
    cross-validation and has no test section."""
    warnings = document.metrics.warnings if document is not None else []
    return render(
        "segmentation_card.md",
        **_card_context(spec, [*confounders, *warnings], reproduce),
        document=document,
        decision=DECISIONS[spec.architecture_kwargs["mode"]],
        lung_preset=list(WINDOWS["lung"]),
        targets=_segmentation_targets(spec, document.metrics) if document is not None else None,
    )


def detection_results(report: DetectionReport) -> list[str]:
    """Markdown lines: the sizes and the per-class and mean COCO AP table of a detection report."""
    return macro_lines("_macros.md", "detection_results", report)


def render_detection_card(
    spec: BundleSpec,
    report: DetectionReport,
    *,
    confounders: Sequence[str] = (),
    reproduce: str | None = None,
) -> str:
    """Markdown model card for a detector bundle and the report of its test split."""
    return render("detection_card.md", **_card_context(spec, confounders, reproduce), report=report)


def render_regional_card(
    spec: BundleSpec, *, confounders: Sequence[str] = (), reproduce: str | None = None
) -> str:
    """Markdown model card for a regional bundle, from the test figures of its training run that the
    bundle stores (``metrics.test``: the regional classifier and its region source alone on the test
    slices)."""
    tests = {
        name: SeriesSliceReport.model_validate(report)
        for name, report in (spec.metrics.get("test") or {}).items()
    }
    return render(
        "regional_card.md",
        spec=spec,
        training=spec.training,
        tests=tests,
        slice_lines=slice_report_markdown,
        limits=list(confounders),
        reproduce=reproduce,
    )
