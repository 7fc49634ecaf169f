"""Model cards generated from a bundle and its test report: every number comes from those two files.

The card states the data per source and class, the splits, every test metric with its confidence
interval, per-source results, calibration, the operating point, the project's targets (met or not),
known shortcuts and limits, and the command that reproduces the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from chestlens import RESEARCH_USE_DISCLAIMER
from chestlens.atomic import write_text_atomic
from chestlens.evaluate.bootstrap import Estimate
from chestlens.evaluate.report import ReportDocument
from chestlens.evaluate.results import ClassificationReport, MetricSet
from chestlens.models.bundle import BundleSpec

MODEL_CARD = "MODEL_CARD.md"

#: Targets of the default X-ray screener (issue "Classification"), checked on the test split.
XRAY3_TARGETS = {
    "macro_auc": 0.97,
    "covid_sensitivity": 0.95,
    "covid_specificity": 0.95,
    "nih_pneumonia_auc": 0.80,
}


def _est(e: Estimate | None) -> str:
    if e is None or e.value is None:
        return "n/a" if e is None or not e.reason else f"n/a ({e.reason})"
    if e.low is None or e.high is None:
        return f"{e.value:.3f}"
    return f"{e.value:.3f} [{e.low:.3f}, {e.high:.3f}]"


def _table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


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


def _fp16_note(check: dict | None) -> str:
    if not check:
        return "fp16 storage not tried."
    verdict = "no measurable loss, stored as fp16" if check["lossless"] else "measurable change, kept fp32"
    return (
        "fp16 rounding on validation changed probabilities by at most "
        f"{check['max_probability_change']:.4f}, macro AUC by {check['macro_auc_change']:.5f} and "
        f"{check['decisions_changed']} decision(s): {verdict}."
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
    lines += _table(["source", "class", "train", "val", "test"], rows)
    patients = data.get("patients_per_split", {})
    lines += [f"Patient groups per split: {', '.join(f'{k} {v}' for k, v in patients.items())}.", ""]
    if data.get("excluded_per_source"):
        excluded = ", ".join(f"{k} {v}" for k, v in data["excluded_per_source"].items())
        lines += [f"Left out (no label for the task): {excluded}.", ""]
    return lines


def _targets(spec: BundleSpec, report: ClassificationReport) -> list[str]:
    """The issue's targets for the xray3 screener, checked on the test split."""
    if spec.task != "xray3":
        return []
    overall = report.overall
    covid = next((p for p in overall.operating_points if p.label == "COVID-19"), None)
    nih = report.per_source.get("nih")
    nih_pneumonia = next((c.auc for c in nih.per_class if c.label == "pneumonia"), None) if nih else None

    def verdict(estimate: Estimate | None, target: float) -> str:
        if estimate is None or estimate.value is None:
            return "not measurable"
        return "met" if estimate.value >= target else "NOT met"

    rows = [
        [
            "macro AUC",
            f">= {XRAY3_TARGETS['macro_auc']}",
            _est(overall.macro_auc),
            verdict(overall.macro_auc, XRAY3_TARGETS["macro_auc"]),
        ],
    ]
    if covid is not None:
        rows += [
            [
                "COVID-19 sensitivity at the operating point",
                f">= {XRAY3_TARGETS['covid_sensitivity']}",
                _est(covid.sensitivity),
                verdict(covid.sensitivity, XRAY3_TARGETS["covid_sensitivity"]),
            ],
            [
                "COVID-19 specificity at the operating point",
                f">= {XRAY3_TARGETS['covid_specificity']}",
                _est(covid.specificity),
                verdict(covid.specificity, XRAY3_TARGETS["covid_specificity"]),
            ],
        ]
    rows.append(
        [
            "pneumonia vs normal AUC within NIH (adults; CheXNet 0.768)",
            f">= {XRAY3_TARGETS['nih_pneumonia_auc']}",
            _est(nih_pneumonia),
            verdict(nih_pneumonia, XRAY3_TARGETS["nih_pneumonia_auc"]),
        ]
    )
    return ["## Targets (test split)", "", *_table(["target", "goal", "measured (95% CI)", "verdict"], rows)]


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
        f"# Model card: {spec.name} {spec.version}",
        "",
        f"> **{RESEARCH_USE_DISCLAIMER}**",
        "",
        "## Model",
        "",
        f"- Task: `{spec.task}`, classes {', '.join(spec.labels)}.",
        f"- Architecture: `{spec.architecture}`, grey input {spec.preprocess.input_size} x "
        f"{spec.preprocess.input_size} px, normalisation mean {spec.preprocess.mean} "
        f"std {spec.preprocess.std}, "
        f"pretrained from `{cfg.get('weights')}`.",
        f"- Weights stored as {spec.weights_dtype}: {_fp16_note(spec.training.get('fp16_check'))}",
        f"- Trained {len(spec.training.get('history', []))} epochs (best {spec.training.get('best_epoch')}, "
        f"early stop {spec.training.get('stopped_early')}) in {spec.training.get('train_seconds')} s on "
        f"{spec.training.get('device')} ({spec.training.get('threads')} threads).",
        "",
        *_data_section(spec),
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
        "## Test results (patient-disjoint test split, 95% CI by bootstrap over patients)",
        "",
        f"{overall.n_images} images, {overall.n_patients} patient groups. Accuracy {_est(overall.accuracy)}, "
        f"balanced accuracy {_est(overall.balanced_accuracy)}, macro AUC {_est(overall.macro_auc)}.",
        "",
        *_table(
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
    lines += ["## Per-source results (test split)", ""]
    for source, m in report.per_source.items():
        lines += [f"### {source}", "", f"{m.n_images} images, accuracy {_est(m.accuracy)}.", ""]
        lines += _table(
            ["class", "n", "AUC", "sensitivity", "specificity", "PPV", "NPV", "F1"], _class_rows(m)
        )
    lines += ["## Known shortcuts and limits", ""]
    limits = [*confounders, *report.warnings] or ["none reported"]
    lines += [f"- {text}" for text in limits]
    lines += [
        "- Per-source AUCs where a source holds one class only are undefined: a high overall AUC can come "
        "from telling sources apart. Check the shortcut audit before trusting any result.",
        "",
    ]
    if reproduce:
        lines += ["## Reproduce", "", "```bash", reproduce, "```", ""]
    return "\n".join(lines)


def write_model_card(
    bundle_dir: Path, report_json: Path, *, confounders: Sequence[str] = (), reproduce: str | None = None
) -> Path:
    """Render the card of ``bundle_dir`` from its ``bundle.json`` and a test ``report.json``; write it
    atomically as ``bundle_dir/MODEL_CARD.md``."""
    from chestlens.models.bundle import read_spec

    document = ReportDocument.model_validate_json(Path(report_json).read_text())
    text = render_model_card(read_spec(bundle_dir), document, confounders=confounders, reproduce=reproduce)
    return write_text_atomic(Path(bundle_dir) / MODEL_CARD, text)
