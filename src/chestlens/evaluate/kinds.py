"""The evaluation half of every bundle kind: how ``chestlens evaluate`` scores it, what it prints, and
how its model card is rendered.

:data:`EVALUATIONS` holds one :class:`KindEvaluation` per kind of :data:`chestlens.models.kinds.KINDS`
(same names; the models layer below cannot import this one, hence two halves). Everything here picks the
entry by the bundle's kind: :func:`evaluate_bundle` (``chestlens evaluate``), :func:`model_card_text`
and :func:`write_model_card` (training, ``chestlens audit``, the shipped cards).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chestlens.atomic import write_text_atomic
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.bootstrap import estimate_text
from chestlens.evaluate.bundle_eval import evaluate_classifier_items, evaluation_items
from chestlens.evaluate.det_eval import evaluate_detector_items
from chestlens.evaluate.detection import DetectionReport
from chestlens.evaluate.model_card import (
    MODEL_CARD,
    render_detection_card,
    render_model_card,
    render_regional_card,
    render_segmentation_card,
)
from chestlens.evaluate.regional_eval import evaluate_regional
from chestlens.evaluate.report import ReportDocument
from chestlens.evaluate.seg_eval import evaluate_segmenter_items
from chestlens.evaluate.seg_report import SegmentationDocument
from chestlens.evaluate.study_eval import SeriesFeatures, evaluate_study, render_study_card, study_lines
from chestlens.evaluate.tables import NOT_MEASURED, within_source_text
from chestlens.evaluate.within_source import WITHIN_SOURCE_LIST
from chestlens.models.bundle import Bundle, load_bundle
from chestlens.models.spec import BundleSpec, read_spec
from chestlens.models.study import REGIONAL_DIR, reads_regional, study_features
from chestlens.registry import Registry

Summary = dict[str, Any]
Files = dict[str, Path]


@dataclass(frozen=True, slots=True)
class EvaluationRequest:
    """What ``chestlens evaluate`` was asked: the cases (one split of a split CSV, or a data folder),
    where to write, the bootstrap, and a baseline to score instead of the bundle (lesion segmenters).
    ``series_features`` screens the labelled CT series of a folder for study bundles (the pipeline's
    :func:`chestlens.pipeline.study_data.screen_study_series`, passed in from above this layer)."""

    out_dir: Path
    splits: Path | None = None
    split: str = "test"
    data: Path | None = None
    root: Path | None = None
    n_boot: int = 1000
    seed: int = 0
    baseline: str | None = None
    series_features: SeriesFeatures | None = None


@dataclass(frozen=True, slots=True)
class KindEvaluation:
    """The evaluation half of one bundle kind.

    Attributes:
        name: the kind (as in :data:`chestlens.models.kinds.KINDS`).
        evaluate: ``(bundle, request) -> (headline numbers, report files)``.
        summary_lines: the headline numbers as the lines ``chestlens evaluate`` prints.
        card: ``(spec, test report JSON text, known confounders, reproduce command) -> Markdown card``;
            the report is None for a segmenter fitted on all data (no test split: its card shows the
            cross-validation of its recipe instead).
    """

    name: str
    evaluate: Callable[[Bundle, EvaluationRequest], tuple[Summary, Files]]
    summary_lines: Callable[[Summary], list[str]]
    card: Callable[[BundleSpec, str | None, Sequence[str], str | None], str]


ItemEvaluator = Callable[..., tuple[Summary, Files]]


def _on_items(evaluate_items: ItemEvaluator, *, takes_baseline: bool = False) -> Callable:
    """An ``evaluate`` that takes the request's cases (:func:`evaluation_items`) and hands them to
    ``evaluate_items(bundle, items, out_dir, title, data_info, n_boot=, seed=[, baseline=])``."""

    def evaluate(bundle: Bundle, request: EvaluationRequest) -> tuple[Summary, Files]:
        if request.baseline is not None and not takes_baseline:
            raise ChestlensInputError(bundle.path, "a baseline is defined for lesion segmenters only")
        items, data_info = evaluation_items(
            bundle.spec, splits=request.splits, split=request.split, data=request.data, root=request.root
        )
        title = f"{bundle.spec.name} {bundle.spec.version} on {data_info.get('split', 'data')}"
        extra = {"baseline": request.baseline} if takes_baseline else {}
        return evaluate_items(
            bundle,
            items,
            request.out_dir,
            title,
            data_info,
            n_boot=request.n_boot,
            seed=request.seed,
            **extra,
        )

    return evaluate


def _detector_items(bundle: Bundle, items, out_dir, title, data_info, **kwargs) -> tuple[Summary, Files]:
    return evaluate_detector_items(bundle, items, out_dir, data_info.get("split", "data"), **kwargs)


def _regional(bundle: Bundle, request: EvaluationRequest) -> tuple[Summary, Files]:
    """A regional bundle is scored on the slice labels of the COVID-CT-MD series of a data folder."""
    if request.data is None or request.baseline is not None:
        raise ChestlensInputError(
            bundle.path, "a regional bundle is evaluated on --data ROOT (labelled COVID-CT-MD series) only"
        )
    return evaluate_regional(bundle, request.data, request.out_dir, n_boot=request.n_boot, seed=request.seed)


def _study(bundle: Bundle, request: EvaluationRequest) -> tuple[Summary, Files]:
    """A study bundle is scored on the labelled CT series of a data folder, screened with the lesion
    segmenter it was trained on (and read by the regional bundle it embeds, if its features need one)."""
    if request.data is None or request.baseline is not None:
        raise ChestlensInputError(
            bundle.path, "a study bundle is evaluated on --data ROOT (labelled CT series) only"
        )
    if request.series_features is None:
        raise ChestlensInputError(
            bundle.path, "a study bundle needs the screening pipeline to measure its series"
        )
    trained_with = bundle.spec.architecture_kwargs.get("lesion_bundle") or {}
    regional = bundle.path / REGIONAL_DIR if reads_regional(study_features(bundle.spec)) else None
    series = request.series_features(
        request.data, trained_with.get("source") or "lesions-ct-segmenter", regional
    )
    return evaluate_study(bundle.path, series, request.out_dir)  # type: ignore[arg-type]


def _classifier_lines(summary: Summary) -> list[str]:
    """Within-source AUCs first (each question, the per-source AUCs it pools), then the pooled numbers."""
    within = WITHIN_SOURCE_LIST.validate_python(summary["within_source"])
    lines = [
        f"{summary['n_images']} images (95% CIs over patients)",
        "within-source AUC (pairs of images from the same source only):",
        *[f"  {line}" for line in [within_source_text(r) for r in within] or [NOT_MEASURED]],
        f"pooled over sources ({summary['pooled_auc_scope']}): "
        f"macro AUC {estimate_text(summary['macro_auc'])}",
    ]
    for name, numbers in summary["per_class"].items():
        lines.append(
            f"  {name}: AUC {estimate_text(numbers['auc'])}, "
            f"sensitivity {estimate_text(numbers['sensitivity'])}"
            f", specificity {estimate_text(numbers['specificity'])}"
        )
    return lines


def _segmenter_lines(summary: Summary) -> list[str]:
    lines = [f"{summary['n_images']} images (95% CI over patients), on the model grid:"] + [
        f"  {name}: Dice {estimate_text(numbers['dice'])}, IoU {estimate_text(numbers['iou'])}, "
        f"Dice over all images {estimate_text(numbers['dice_all_images'])}"
        for name, numbers in summary["per_class"].items()
    ]
    if native := summary.get("native"):
        lines.append("at each mask's native resolution:")
        for name, numbers in native["per_class"].items():
            p5 = numbers["p5_image_dice"]
            lines.append(
                f"  {name}: Dice {estimate_text(numbers['dice'])}, 5th-percentile image "
                + ("n/a" if p5 is None else f"{p5:.3f}")
            )
    return lines


def _detector_lines(summary: Summary) -> list[str]:
    segm, bbox = summary["segm"] or {}, summary["bbox"] or {}
    lines = [
        f"{summary['n_images']} images of {summary['n_patients']} patients (95% CIs over patients)",
        f"  mask AP@0.5 {estimate_text(segm.get('ap50'))}, AP@0.75 {estimate_text(segm.get('ap75'))}, "
        f"mAP {estimate_text(segm.get('map'))}",
        f"  box AP@0.5 {estimate_text(bbox.get('ap50'))}, mAP {estimate_text(bbox.get('map'))}",
    ]
    for name, numbers in summary["per_class"].items():
        lines.append(
            f"  {name} ({numbers['n_gt']} true instances): "
            f"mask AP@0.5 {estimate_text(numbers['segm']['ap50'])}"
        )
    return lines


def _regional_lines(summary: Summary) -> list[str]:
    def line(name: str, numbers: dict[str, Any]) -> str:
        return (
            f"  {name} ({numbers['n_slices']} slices): AUC {estimate_text(numbers['auc'])}, "
            f"sensitivity {estimate_text(numbers['sensitivity'])}, "
            f"specificity {estimate_text(numbers['specificity'])}"
        )

    lines = [f"{summary['n_images']} slices (95% CIs by a block bootstrap over consecutive slices)"]
    lines += [line(p, numbers) for p, numbers in summary["per_patient"].items()]
    return [*lines, line("all patients", summary["pooled"])]


def _test_report(spec: BundleSpec, raw: str | None) -> str:
    if raw is None:
        raise ChestlensInputError(None, f"the card of {spec.name} ({spec.kind}) needs its test report.json")
    return raw


def _classifier_card(
    spec: BundleSpec, raw: str | None, confounders: Sequence[str], reproduce: str | None
) -> str:
    document = ReportDocument.model_validate_json(_test_report(spec, raw))
    return render_model_card(spec, document, confounders=confounders, reproduce=reproduce)


def _segmenter_card(
    spec: BundleSpec, raw: str | None, confounders: Sequence[str], reproduce: str | None
) -> str:
    if raw is None and spec.training.fitted_on_all_data:
        document = None
    else:
        document = SegmentationDocument.model_validate_json(_test_report(spec, raw))
    return render_segmentation_card(spec, document, confounders=confounders, reproduce=reproduce)


def _detector_card(
    spec: BundleSpec, raw: str | None, confounders: Sequence[str], reproduce: str | None
) -> str:
    report = DetectionReport.model_validate_json(_test_report(spec, raw))
    return render_detection_card(spec, report, confounders=confounders, reproduce=reproduce)


def _regional_card(
    spec: BundleSpec, raw: str | None, confounders: Sequence[str], reproduce: str | None
) -> str:
    del raw  # the card reads the test figures the bundle stores (metrics.test)
    return render_regional_card(spec, confounders=confounders, reproduce=reproduce)


def _study_card(spec: BundleSpec, raw: str | None, confounders: Sequence[str], reproduce: str | None) -> str:
    del raw  # the card reads the leave-one-patient-out table the bundle stores (metrics.lopo)
    return render_study_card(spec, confounders=confounders, reproduce=reproduce)


EVALUATIONS: Registry[KindEvaluation] = Registry(
    "bundle kind",
    [
        KindEvaluation(
            "classifier", _on_items(evaluate_classifier_items), _classifier_lines, _classifier_card
        ),
        KindEvaluation(
            "segmenter",
            _on_items(evaluate_segmenter_items, takes_baseline=True),
            _segmenter_lines,
            _segmenter_card,
        ),
        KindEvaluation("detector", _on_items(_detector_items), _detector_lines, _detector_card),
        KindEvaluation("regional", _regional, _regional_lines, _regional_card),
        KindEvaluation("study", _study, study_lines, _study_card),
    ],
)


def evaluation_of(spec: BundleSpec) -> KindEvaluation:
    """The evaluation half of ``spec``'s kind."""
    return EVALUATIONS.get(spec.kind)


def evaluate_bundle(bundle_path: Path, request: EvaluationRequest) -> tuple[Summary, Files]:
    """Evaluate a bundle of any kind as ``request`` says; returns the headline numbers and the report
    files (``json``, and ``html`` or ``md``)."""
    bundle = load_bundle(bundle_path)
    return evaluation_of(bundle.spec).evaluate(bundle, request)


def model_card_text(bundle_dir: Path, report_json: Path | None) -> str:
    """The card of ``bundle_dir`` rendered from its ``bundle.json`` and a test ``report.json`` (None for a
    segmenter fitted on all data, which has no test split).

    The known confounders (``training.data.confounder_warnings``) and the command that reproduces the
    model (``training.reproduce``) come from the bundle itself, so a card can be re-rendered any time.
    """
    spec = read_spec(bundle_dir)
    confounders = spec.training.data.confounder_warnings if spec.training.data else []
    raw = Path(report_json).read_text() if report_json is not None else None
    return evaluation_of(spec).card(spec, raw, confounders, spec.training.reproduce)


def write_model_card(bundle_dir: Path, report_json: Path | None) -> Path:
    """Write :func:`model_card_text` atomically as ``bundle_dir/MODEL_CARD.md``."""
    return write_text_atomic(Path(bundle_dir) / MODEL_CARD, model_card_text(bundle_dir, report_json))
