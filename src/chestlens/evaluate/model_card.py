"""Model cards generated from a bundle and its test report: every number comes from those two files.

A classifier card leads with what says whether the model reads the lungs: the within-source AUC of every
binary question on the test split (same-source pairs only) and the shortcut audit, both from the
bundle's ``metrics``. Then it states the data per source and class, the splits, every pooled test metric
with its confidence interval (labelled as including between-source pairs), per-source results,
calibration and the operating point, the project's targets (met or not), known shortcuts and limits, and
the command that reproduces the model. Segmenter cards state the target, the per-class overlap metrics
with their empty-mask case counts instead; detector cards the COCO mask and box AP per class.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from chestlens import RESEARCH_USE_DISCLAIMER
from chestlens.atomic import write_text_atomic
from chestlens.evaluate.bootstrap import Estimate, estimate_text
from chestlens.evaluate.detection import APScores, DetectionReport
from chestlens.evaluate.report import ReportDocument
from chestlens.evaluate.results import ClassificationReport, MetricSet
from chestlens.evaluate.seg_report import SegmentationDocument
from chestlens.evaluate.segmentation import SegmentationReport
from chestlens.evaluate.shortcut_audit import audit_markdown
from chestlens.evaluate.tables import markdown_table, recipe_markdown, within_source_markdown
from chestlens.evaluate.within_source import WITHIN_SOURCE_LIST
from chestlens.models.bundle import BundleSpec
from chestlens.models.registry import get_model_config

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


def _class_rows(m: MetricSet) -> list[list[str]]:
    return [
        [
            c.label,
            c.n_images,
            _est(c.auc),
            _est(c.sensitivity),
            _est(c.specificity),
            _est(c.ppv),
            _est(c.npv),
            _est(c.f1),
        ]
        for c in m.per_class
    ]


def _fp16_note(
    check: dict | None,
    score: str = "macro_auc",
    score_label: str = "macro AUC",
    decisions: str = "decision(s)",
) -> str:
    if not check:
        return "fp16 storage not tried."
    verdict = "no measurable loss, stored as fp16" if check["lossless"] else "measurable change, kept fp32"
    return (
        "fp16 rounding on validation changed probabilities by at most "
        f"{check['max_probability_change']:.4f}, {score_label} by {check[f'{score}_change']:.5f} and "
        f"{check['decisions_changed']} {decisions}: {verdict}."
    )


def _data_section(spec: BundleSpec) -> list[str]:
    data = spec.training.get("data", {})
    per = data.get("images_per_source_class_split", {})
    rows = [
        [source, label, n["train"], n["val"], n["test"]]
        for source, classes in per.items()
        for label, n in classes.items()
    ]
    lines = [
        "## Data",
        "",
        "Images per source, class and split (patient-level split, seed "
        f"{data.get('split_seed')}; linked patients and near-duplicate pictures stay on one side):",
        "",
    ]
    lines += markdown_table(["source", "class", "train", "val", "test"], rows)
    patients = data.get("patients_per_split", {})
    lines += [f"Patient groups per split: {', '.join(f'{k} {v}' for k, v in patients.items())}.", ""]
    if data.get("excluded_per_source"):
        excluded = ", ".join(f"{k} {v}" for k, v in data["excluded_per_source"].items())
        lines += [f"Left out (no label for the task): {excluded}.", ""]
    return lines


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


def _segmentation_targets(spec: BundleSpec, report: SegmentationReport) -> list[str]:
    """The task's Dice targets (:data:`SEGMENTATION_TARGETS`) checked on the test split."""
    targets = SEGMENTATION_TARGETS.get(spec.task, {})
    dice = {m.label: m.dice for m in report.per_class}
    rows = [
        [f"{label} Dice ({source})", f">= {goal}", _est(dice.get(label)), _verdict(dice.get(label), goal)]
        for label, (goal, source) in targets.items()
    ]
    if not rows:
        return []
    head = ["target", "goal", "measured (95% CI)", "verdict"]
    return ["## Targets (test split)", "", *markdown_table(head, rows)]


def _targets(spec: BundleSpec, report: ClassificationReport) -> list[str]:
    """The issue's targets for the xray3 screener, checked on the test split."""
    if spec.task != "xray3":
        return []
    overall = report.overall
    covid = next((p for p in overall.operating_points if p.label == "COVID-19"), None)
    nih = report.per_source.get("nih")
    nih_pneumonia = next((c.auc for c in nih.per_class if c.label == "pneumonia"), None) if nih else None

    rows = [
        [
            "macro AUC",
            f">= {XRAY3_TARGETS['macro_auc']}",
            _est(overall.macro_auc),
            _verdict(overall.macro_auc, XRAY3_TARGETS["macro_auc"]),
        ],
    ]
    if covid is not None:
        rows += [
            [
                "COVID-19 sensitivity at the operating point",
                f">= {XRAY3_TARGETS['covid_sensitivity']}",
                _est(covid.sensitivity),
                _verdict(covid.sensitivity, XRAY3_TARGETS["covid_sensitivity"]),
            ],
            [
                "COVID-19 specificity at the operating point",
                f">= {XRAY3_TARGETS['covid_specificity']}",
                _est(covid.specificity),
                _verdict(covid.specificity, XRAY3_TARGETS["covid_specificity"]),
            ],
        ]
    rows.append(
        [
            "pneumonia vs normal AUC within NIH (adults; CheXNet 0.768)",
            f">= {XRAY3_TARGETS['nih_pneumonia_auc']}",
            _est(nih_pneumonia),
            _verdict(nih_pneumonia, XRAY3_TARGETS["nih_pneumonia_auc"]),
        ]
    )
    head = ["target", "goal", "measured (95% CI)", "verdict"]
    return ["## Targets (test split)", "", *markdown_table(head, rows)]


def _heading(spec: BundleSpec, lead: Sequence[str] = ()) -> list[str]:
    """Title and disclaimer, the ``lead`` lines (read before anything else), then the model heading."""
    return [
        f"# Model card: {spec.name} {spec.version}",
        "",
        f"> **{RESEARCH_USE_DISCLAIMER}**",
        "",
        *lead,
        "## Model",
        "",
    ]


def _shortcut_lead(spec: BundleSpec) -> list[str]:
    """The within-source AUCs of the test split and the shortcut audit, from the bundle's ``metrics``
    (``test.within_source``, :func:`chestlens.evaluate.bundle_eval.metrics_summary`; ``shortcut_audit``,
    ``chestlens audit --save``)."""
    test = spec.metrics.get("test") or {}
    lines = ["## Within-source AUC (test split; read this first)", ""]
    if "within_source" in test:
        lines += within_source_markdown(WITHIN_SOURCE_LIST.validate_python(test["within_source"]))
    else:
        lines += ["Not recorded: this bundle was tested before within-source AUCs were measured.", ""]
    audit = spec.metrics.get("shortcut_audit")
    if audit:
        return lines + audit_markdown(audit)
    return [*lines, "## Shortcut audit", "", "Not run yet: `chestlens audit BUNDLE --save` adds it.", ""]


def _recipe_grid_section(spec: BundleSpec) -> list[str]:
    """The cross-validated recipe comparison the model was chosen from (``training.recipe_grid``:
    ``folds``, ``settings``, ``chosen``, ``rows`` of :func:`chestlens.train.crossval.recipe_row`,
    ``reproduce``), and the previous version's figures (``training.previous_version``) beside it."""
    grid = spec.training.get("recipe_grid")
    if not grid:
        return _candidate_section(spec)
    lines = [
        f"## How this recipe was chosen ({grid['folds']}-fold patient-grouped cross-validation, same folds, "
        "data and budget for every recipe)",
        "",
        f"Shared settings: `{grid['settings']}`. Chosen: **{grid['chosen']}**, the best mean within-source "
        "AUC; the test split played no part.",
        "",
        *recipe_markdown(grid["rows"]),
        f"Reproduce the table: `{grid['reproduce']}`.",
        "",
    ]
    previous = spec.training.get("previous_version")
    if previous:
        lines += [f"### Previous version ({previous['name']} {previous['version']}) beside this one", ""]
        lines += markdown_table(["figure", "previous", "this version"], previous["rows"])
    return lines


def _candidate_section(spec: BundleSpec) -> list[str]:
    """A newer candidate that did not beat this bundle (``training.candidate``: ``recipe_grid``,
    ``comparison`` rows ``[figure, this version, candidate]``, ``rule``, ``reproduce``)."""
    candidate = spec.training.get("candidate")
    if not candidate:
        return []
    grid = candidate["recipe_grid"]
    return [
        f"## Recipes compared for a new version ({grid['folds']}-fold patient-grouped cross-validation); "
        "the candidate was NOT shipped",
        "",
        f"Shared settings: `{grid['settings']}`. By the mean out-of-fold within-source AUC the grid chose "
        f"**{grid['chosen']}**; that recipe, trained on all the data, is the candidate below.",
        "",
        *recipe_markdown(grid["rows"]),
        f"The candidate against this version on the candidate's validation split ({candidate['rule']}):",
        "",
        *markdown_table(["figure", "this version", "candidate"], candidate["comparison"]),
        *[f"- {note}" for note in candidate.get("notes", [])],
        "",
        f"Reproduce: `{candidate['reproduce']}`.",
        "",
    ]


def _training_line(spec: BundleSpec) -> str:
    return (
        f"- Trained {len(spec.training.get('history', []))} epochs (best {spec.training.get('best_epoch')}, "
        f"early stop {spec.training.get('stopped_early')}) in {spec.training.get('train_seconds')} s on "
        f"{spec.training.get('device')} ({spec.training.get('threads')} threads)."
    )


def _closing(limits: Sequence[str], caveat: str, reproduce: str | None) -> list[str]:
    """Known shortcuts and limits (``limits``, then the model kind's ``caveat``) and the reproduce command."""
    lines = ["## Known shortcuts and limits", ""]
    lines += [f"- {text}" for text in list(limits) or ["none reported"]]
    lines += [f"- {caveat}", ""]
    if reproduce:
        lines += ["## Reproduce", "", "```bash", reproduce, "```", ""]
    return lines


def _selection_section(spec: BundleSpec) -> list[str]:
    selection = spec.training.get("selection")
    if not selection:
        return []
    rows = [
        [
            c["architecture"],
            c["input_size"],
            f"{c['validation']:.4f}",
            "chosen" if c["bundle"] == selection["chosen"] else "",
        ]
        for c in sorted(selection["candidates"], key=lambda c: c["input_size"])
    ]
    return [
        f"## Model selection (on {selection['metric']}; the test split played no part)",
        "",
        *markdown_table(["architecture", "input size", "validation score", ""], rows),
    ]


def _epoch_seconds(spec: BundleSpec) -> float:
    """Time spent in training epochs (summed over the history, so a resumed run counts every epoch)."""
    history = spec.training.get("history") or []
    return sum(e.get("seconds", 0.0) for e in history) or spec.training.get("train_seconds", 0.0)


def _initialisation(architecture: str, weights: str | None) -> str:
    if weights is None:
        return "random"
    if weights == "default":
        return f"ImageNet (`{get_model_config(architecture).pretrained}`)"
    return f"`{weights}`"


def recipe_row(spec: BundleSpec, report: ClassificationReport) -> dict[str, str]:
    """One row of the side-by-side recipe table: how a bundle was trained and its headline test numbers."""
    cfg = spec.training.get("config", {})
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


def _recipes_section(spec: BundleSpec, report: ClassificationReport) -> list[str]:
    """The seed recipes trained with the same data, split and pipeline, beside this model."""
    others = spec.training.get("comparison")
    if not others:
        return []
    rows = [recipe_row(spec, report), *others]
    return [
        "## Seed recipes, same data, split and pipeline (test split, 95% CI by bootstrap over patients)",
        "",
        *markdown_table(list(rows[0]), [list(r.values()) for r in rows]),
        "Recipes with `random` initialisation had no ImageNet weights offline (pass `weights=<checkpoint or "
        "URL>` to fine-tune from them). A random backbone kept frozen (`head only`) shows what the recipe "
        "gives without pretrained features. Epoch minutes were measured on a shared 2-core CPU.",
        "",
    ]


def render_model_card(
    spec: BundleSpec,
    document: ReportDocument,
    *,
    confounders: Sequence[str] = (),
    reproduce: str | None = None,
) -> str:
    """Markdown model card for a classifier bundle and the report of its test split."""
    report = document.metrics
    overall = report.overall
    cfg = spec.training.get("config", {})
    lines = [
        *_heading(spec, [*_shortcut_lead(spec), *_recipe_grid_section(spec)]),
        f"- Task: `{spec.task}`, classes {', '.join(spec.labels)}.",
        f"- Architecture: `{spec.architecture}`, grey input {spec.preprocess.input_size} x "
        f"{spec.preprocess.input_size} px, normalisation mean {spec.preprocess.mean} "
        f"std {spec.preprocess.std}, "
        f"pretrained from `{cfg.get('weights')}`.",
        f"- Weights stored as {spec.weights_dtype}: {_fp16_note(spec.training.get('fp16_check'))}",
        _training_line(spec),
        "",
        *_data_section(spec),
        *_selection_section(spec),
        "## Calibration and operating point (fitted on validation only)",
        "",
        f"- Temperature {spec.temperature:.3f}. Test ECE {_est(overall.calibration.ece)}, Brier "
        f"{_est(overall.calibration.brier)}.",
    ]
    for point in spec.operating_points:
        lines.append(
            f"- {point.label}: flag when p >= {point.threshold:.4f} ({point.criterion}; validation "
            f"sensitivity {point.validation_sensitivity:.3f}, "
            f"specificity {point.validation_specificity:.3f})."
        )
    lines += [f"- Decision rule: {report.decision_description}", ""]
    lines += [
        f"## Pooled test results, all sources together (every AUC {report.pooled_auc_scope}; "
        "patient-disjoint test split, 95% CI by bootstrap over patients)",
        "",
        f"{overall.n_images} images, {overall.n_patients} patient groups. Accuracy {_est(overall.accuracy)}, "
        f"balanced accuracy {_est(overall.balanced_accuracy)}, macro AUC {_est(overall.macro_auc)}.",
        "",
        *markdown_table(
            ["class", "n", "AUC", "sensitivity", "specificity", "PPV", "NPV", "F1"], _class_rows(overall)
        ),
    ]
    for point in overall.operating_points:
        lines += [
            f"At the stored operating point ({point.label} p >= {point.threshold:.4f}): sensitivity "
            f"{_est(point.sensitivity)}, specificity {_est(point.specificity)}, PPV {_est(point.ppv)}, "
            f"NPV {_est(point.npv)}.",
            "",
        ]
    lines += _targets(spec, report)
    lines += _recipes_section(spec, report)
    lines += ["## Per-source results (test split)", ""]
    for source, m in report.per_source.items():
        lines += [f"### {source}", "", f"{m.n_images} images, accuracy {_est(m.accuracy)}.", ""]
        lines += markdown_table(
            ["class", "n", "AUC", "sensitivity", "specificity", "PPV", "NPV", "F1"], _class_rows(m)
        )
    caveat = (
        "Pooled AUCs count pairs of images from different sources: where a class comes from few sources, "
        "they can be earned by telling sources apart. Judge the model by the within-source AUCs and the "
        "shortcut audit at the top of this card."
    )
    lines += _closing([*confounders, *report.warnings], caveat, reproduce)
    return "\n".join(lines)


def _segmentation_rows(report: SegmentationReport) -> list[list[object]]:
    return [
        [
            m.label,
            m.n_images,
            f"{m.cases.true_negative} / {m.cases.false_positive} / {m.cases.false_negative} / "
            f"{m.cases.true_positive}",
            _est(m.dice),
            _est(m.iou),
            _est(m.sensitivity),
            _est(m.precision),
            _est(m.dice_all_images),
        ]
        for m in report.per_class
    ]


_SEG_HEAD = ["class", "n", "TN / FP / FN / TP", "Dice", "IoU", "sensitivity", "precision", "Dice, all images"]


def render_segmentation_card(
    spec: BundleSpec,
    document: SegmentationDocument,
    *,
    confounders: Sequence[str] = (),
    reproduce: str | None = None,
) -> str:
    """Markdown model card for a segmenter bundle and the report of its test split."""
    report = document.metrics
    cfg = spec.training.get("config", {})
    pre = spec.preprocess
    fp16 = _fp16_note(spec.training.get("fp16_check"), "mean_dice", "mean Dice", "pixel label(s)")
    lines = [
        *_heading(spec),
        f"- Segmentation target: `{spec.task}` ({spec.architecture_kwargs['mode']}), labels "
        f"{', '.join(spec.labels)}. Decision: {document.decision}.",
        f"- Architecture: `{spec.architecture}` with encoder `{spec.architecture_kwargs['encoder']}` "
        f"(pretrained from `{cfg.get('encoder_weights')}`), loss `{cfg.get('loss')}`.",
        f"- Input: grey {pre.input_size} x {pre.input_size} px (stretched), normalisation mean {pre.mean} "
        f"std {pre.std}; CT in Hounsfield units is windowed with (centre, width) {pre.ct_window}, pictures "
        "already in display range (radiographs, JPEG CT crops) are not.",
        f"- Weights stored as {spec.weights_dtype}: {fp16}",
        _training_line(spec),
        "",
        *_data_section(spec),
        "## Test results (patient-disjoint test split, 95% CI by bootstrap over patients)",
        "",
        f"{report.n_images} images, {report.n_patients} patient groups, scored on the {pre.input_size} x "
        f"{pre.input_size} network grid. Cases per class: true negative / false positive / false negative / "
        "true positive images (empty-mask policy in the test report).",
        "",
        *markdown_table(_SEG_HEAD, _segmentation_rows(report)),
        *_segmentation_targets(spec, report),
        "## Per-source results (test split)",
        "",
    ]
    for source, per in document.per_source.items():
        lines += [f"### {source}", "", f"{per.n_images} images.", ""]
        lines += markdown_table(_SEG_HEAD, _segmentation_rows(per))
    caveat = (
        "Metrics are computed on the network's input grid (masks resized with nearest neighbour), not on "
        "the original resolution; boundaries are coarser than the annotation."
    )
    lines += _closing([*confounders, *report.warnings], caveat, reproduce)
    return "\n".join(lines)


_DET_HEAD = [
    "class",
    "GT instances",
    "predicted",
    "mask AP@0.5",
    "mask AP@0.75",
    "mask mAP",
    "box AP@0.5",
    "box mAP",
]


def detection_results(report: DetectionReport) -> list[str]:
    """Markdown lines: the sizes and the per-class and mean COCO AP table of a detection report."""

    def ap(segm: APScores | None, bbox: APScores | None) -> list[str]:
        if segm is None or bbox is None:
            return ["n/a"] * 5
        return [_est(segm.ap50), _est(segm.ap75), _est(segm.map), _est(bbox.ap50), _est(bbox.map)]

    rows = [[c.label, c.n_gt, c.n_pred, *ap(c.segm, c.bbox)] for c in report.per_class]
    rows.append(["**mean over classes**", "", "", *ap(report.segm, report.bbox)])
    return [
        f"{report.n_images} images, {report.n_patients} patient groups. COCO AP (101 recall points, one area "
        f"range, at most {report.max_dets} detections per image); mAP is the mean over IoU 0.50:0.95; 95% CI "
        "by bootstrap over patients.",
        "",
        *markdown_table(_DET_HEAD, rows),
        *[f"- {w}" for w in report.warnings],
    ]


def render_detection_card(
    spec: BundleSpec,
    report: DetectionReport,
    *,
    confounders: Sequence[str] = (),
    reproduce: str | None = None,
) -> str:
    """Markdown model card for a detector bundle and the report of its test split."""
    cfg = spec.training.get("config", {})
    pre = spec.preprocess
    fp16 = spec.training.get("fp16_check")
    fp16_text = (
        "not checked"
        if not fp16
        else f"validation mask AP@0.5 change {fp16['map50_change']:.4f}, mAP change {fp16['map_change']:.4f}"
    )
    instances = spec.training.get("instances", {})
    lines = [
        *_heading(spec),
        f"- Instance detector `{spec.architecture}` for `{spec.task}`: classes {', '.join(spec.labels[1:])}.",
        f"- Backbone initialised from `{cfg.get('backbone_weights')}`; training instances: "
        f"{instances.get('rule')}, at least {instances.get('min_area_px')} px.",
        f"- Input: grey {pre.input_size} x {pre.input_size} px (stretched) in [0, 1]; CT in Hounsfield units "
        f"is windowed with (centre, width) {pre.ct_window}; the detector normalises inside.",
        f"- Weights stored as {spec.weights_dtype} ({fp16_text}).",
        _training_line(spec),
        "",
        *_data_section(spec),
        "## Test results (patient-disjoint test split)",
        "",
        *detection_results(report),
        "",
    ]
    caveat = (
        "AP is scored on the network's input grid; instances are connected components of the lesion masks."
    )
    lines += _closing(confounders, caveat, reproduce)
    return "\n".join(lines)


def model_card_text(bundle_dir: Path, report_json: Path) -> str:
    """The card of ``bundle_dir`` rendered from its ``bundle.json`` and a test ``report.json`` (classifier,
    segmenter or detector).

    The known confounders (``training.data.confounder_warnings``) and the command that reproduces the
    model (``training.reproduce``) come from the bundle itself, so a card can be re-rendered any time.
    """
    from chestlens.models.bundle import read_spec

    spec = read_spec(bundle_dir)
    confounders = spec.training.get("data", {}).get("confounder_warnings", [])
    reproduce = spec.training.get("reproduce")
    raw = Path(report_json).read_text()
    if spec.kind == "segmenter":
        document = SegmentationDocument.model_validate_json(raw)
        return render_segmentation_card(spec, document, confounders=confounders, reproduce=reproduce)
    if spec.kind == "detector":
        report = DetectionReport.model_validate_json(raw)
        return render_detection_card(spec, report, confounders=confounders, reproduce=reproduce)
    return render_model_card(
        spec, ReportDocument.model_validate_json(raw), confounders=confounders, reproduce=reproduce
    )


def write_model_card(bundle_dir: Path, report_json: Path) -> Path:
    """Write :func:`model_card_text` atomically as ``bundle_dir/MODEL_CARD.md``."""
    return write_text_atomic(Path(bundle_dir) / MODEL_CARD, model_card_text(bundle_dir, report_json))
