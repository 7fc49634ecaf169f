"""``Screener``: one call from an image (file, bytes, DICOM series) to an explained, measured result.

The chain, per image (radiographs are batched through each model stage):

1. read (:func:`chestlens.io.read_image`: DICOM, PNG/JPEG, NIfTI, series folders);
2. quality gate (:mod:`chestlens.pipeline.gate`): DICOM tags and pixel checks, then for radiographs
   the lung segmenter must find plausible lung fields; a rejected image gets a verdict, no scores;
3. classification with calibrated probabilities (bundle temperature) and decisions at the bundle's
   operating points, with a class-activation map of the top class from the same pass;
4. lung fields (segmenter for radiographs, a Hounsfield-unit rule for CT), the share of the CAM inside
   them, and lesion segmentation when a lesion bundle is loaded and its ``run_if_positive`` gate opens;
5. a :class:`~chestlens.pipeline.schema.ScreeningResult` (research use only, never a diagnosis).

Every model is a bundle, so preprocessing is the bundle's (:class:`~chestlens.preprocess.spec.PreprocessSpec`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from chestlens import __version__
from chestlens.data.lung_roi import lung_roi_with_mask
from chestlens.data.tasks import get_labelling
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.calibration import apply_temperature
from chestlens.io import MedicalImage, read_image
from chestlens.models.catalog import DEFAULT_CLASSIFIER, DEFAULT_LUNGS, bundled_lesion_segmenters
from chestlens.models.registry import get_model_config
from chestlens.models.spec import read_spec
from chestlens.pipeline import gate
from chestlens.pipeline.cam import CamMethod, energy_inside, logits_and_cams
from chestlens.pipeline.ct_lungs import lung_mask_from_hu
from chestlens.pipeline.loaded import LoadedModel, load_for_inference
from chestlens.pipeline.measure import (
    area_mm2,
    lesion_instances,
    lungs_with_lesions,
    slice_lesion_scores,
    volume_ml,
)
from chestlens.pipeline.readahead import read_ahead
from chestlens.pipeline.schema import (
    Classification,
    Decision,
    Explanation,
    FailedInput,
    GateCheck,
    GateVerdict,
    InputInfo,
    LesionSummary,
    LungMeasurement,
    ScreeningResult,
)
from chestlens.preprocess.lung_roi import classifier_frame, needs_lungs, paste_fraction
from chestlens.preprocess.resize import resize_nearest
from chestlens.preprocess.units import to_unit_range, window_hu
from chestlens.train.engine import resolve_device

Source = str | Path | bytes | MedicalImage


@dataclass(slots=True)
class Screening:
    """A result plus the arrays its overlays are drawn from.

    ``heatmap``: CAM ``(S, S)`` in ``[0, 1]`` on the classifier grid; ``lung_mask``: bool, ``(S, S)`` on
    the segmenter grid for radiographs, ``(rows, cols)`` or ``(slices, rows, cols)`` for CT;
    ``lesion_map``: uint8 label map (0 background, ``k`` = ``lesion_labels[k - 1]``) on the lesion
    segmenter grid, with a leading slice axis for CT series.
    """

    result: ScreeningResult
    image: MedicalImage
    heatmap: np.ndarray | None = None
    lung_mask: np.ndarray | None = None
    lesion_map: np.ndarray | None = None
    lesion_labels: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Case:
    """Work in progress on one image inside a batch (arrays as in :class:`Screening`)."""

    source: str
    image: MedicalImage
    timings: dict[str, float]
    checks: list[GateCheck] = field(default_factory=list)
    unit: torch.Tensor | None = None  # (1, rows, cols) grey [0, 1], radiographs
    classification: Classification | None = None
    explanation: Explanation | None = None
    lungs: LungMeasurement | None = None
    lesions: LesionSummary | None = None
    heatmap: np.ndarray | None = None
    lung_mask: np.ndarray | None = None
    lesion_map: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> bool:
        return any(not check.passed for check in self.checks)

    def add_time(self, stage: str, ms: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + ms


class _Timer:
    """Milliseconds of a stage, shared equally by the cases of a batch."""

    def __init__(self, stage: str, cases: list[_Case]) -> None:
        self.stage, self.cases = stage, cases

    def __enter__(self) -> _Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        share = (time.perf_counter() - self.start) * 1000.0 / max(1, len(self.cases))
        for case in self.cases:
            case.add_time(self.stage, share)


def source_name(source: Source, name: str | None = None) -> str:
    """How a result names its input: ``name`` if given, else the path, else ``"<bytes>"``."""
    if name is not None:
        return name
    if isinstance(source, MedicalImage):
        return source.meta.source_path or "<image>"
    return "<bytes>" if isinstance(source, bytes) else str(source)


def _read_case(source: Source, name: str | None = None) -> _Case:
    """Decode one input (timed); unreadable input raises :class:`~chestlens.errors.ChestlensInputError`."""
    start = time.perf_counter()
    image = source if isinstance(source, MedicalImage) else read_image(source)
    return _Case(source_name(source, name), image, {"read": (time.perf_counter() - start) * 1000.0})


def read_timed(source: Source) -> _Case | FailedInput:
    """Decode one input for the batch stages; an unreadable one becomes a :class:`FailedInput`."""
    try:
        return _read_case(source)
    except ChestlensInputError as error:
        return FailedInput(source=source_name(source), error=error.reason)


def _input_info(source: str, image: MedicalImage) -> InputInfo:
    meta = image.meta
    return InputInfo(
        source=source,
        format=meta.format,
        modality=meta.modality,
        body_part=meta.body_part,
        view=meta.view,
        rows=meta.rows,
        cols=meta.cols,
        n_slices=image.pixels.shape[0] if image.is_volume else 1,
        pixel_spacing_mm=meta.pixel_spacing_mm,
        patient_key=meta.patient_key,
    )


def _classification(model: LoadedModel, probabilities: np.ndarray) -> Classification:
    labels = model.spec.labels
    by_label = {label: float(p) for label, p in zip(labels, probabilities, strict=True)}
    return Classification(
        model=model.ref,
        probabilities=by_label,
        top_label=labels[int(np.argmax(probabilities))],
        temperature=model.spec.temperature,
        decisions=[
            Decision(
                label=op.label,
                threshold=op.threshold,
                positive=by_label[op.label] >= op.threshold,
                criterion=op.criterion,
            )
            for op in model.spec.operating_points
        ],
    )


def _lesion_gate(model: LoadedModel, case: _Case) -> str | None:
    """Why the lesion segmenter does not run on ``case`` (None: it runs), per ``run_if_positive``."""
    wanted = model.spec.run_if_positive
    if not wanted:
        return None
    if case.classification is None:
        return f"not run: gated on a classifier decision for {', '.join(wanted)} and none was made"
    positive = [d.label for d in case.classification.decisions if d.positive and d.label in wanted]
    if not positive:
        return f"not run: no positive decision for {', '.join(wanted)}"
    return None


def _lesion_summary(
    model: LoadedModel,
    case: _Case,
    label_map: np.ndarray,
    probabilities: np.ndarray,
    lungs: np.ndarray | None,
) -> LesionSummary:
    """Instances and per-label totals; ``label_map`` ``(S, S)`` or ``(slices, S, S)``, ``probabilities``
    ``(C, S, S)`` or ``(slices, C, S, S)``, ``lungs`` on the same grid as ``label_map`` or None."""
    labels = list(model.spec.labels[1:])
    meta = case.image.meta
    volume = label_map.ndim == 3
    maps = label_map if volume else label_map[None]
    probs = probabilities if volume else probabilities[None]
    instances = []
    for index, (slice_map, slice_probs) in enumerate(zip(maps, probs, strict=True)):
        instances += lesion_instances(
            slice_map, slice_probs, labels, meta, slice_index=index if volume else None
        )
    summary = LesionSummary(
        model=model.ref, ran=True, gate=_lesion_gate(model, case) or "run", lesions=instances
    )
    lung_grid = None
    if lungs is not None and lungs.any():  # lungs plus the lesion regions touching them (measure docs)
        lung_grid = lungs_with_lesions(lungs if volume else lungs[None], maps)
    for k, label in enumerate(labels, start=1):
        mask = maps == k
        if volume:
            ml = volume_ml(mask, meta)
            if ml is not None:
                summary.volume_ml_by_label[label] = ml
        else:
            mm2 = area_mm2(mask[0], meta)
            if mm2 is not None:
                summary.area_mm2_by_label[label] = mm2
        if lung_grid is not None:
            summary.lung_fraction_by_label[label] = float((mask & lung_grid).sum() / lung_grid.sum())
    if lung_grid is not None:
        summary.lung_fraction_total = float(((maps > 0) & lung_grid).sum() / lung_grid.sum())
        if volume:
            scores = slice_lesion_scores(maps, probs, lung_grid)
            summary.slice_scores = [round(float(s), 4) for s in scores]
            summary.series_score = round(float(scores.max()), 4) if len(scores) else None
    return summary


def _verdict(case: _Case) -> GateVerdict:
    image_type = "chest_ct" if case.image.meta.pixel_unit == "HU" else "chest_radiograph"
    return gate.gate_verdict(case.checks, image_type)


class Screener:
    """Loads the models once and screens images; see the module docstring for the chain.

    Args:
        classifier: classifier bundle (name or folder) for radiographs (task ``xray*``) or CT (``ct*``);
            None to skip classification.
        lungs: lung-field segmenter for radiographs (also the gate's image check); None skips lungs and
            the lung-field gate check.
        lesions: lesion segmenter bundles (X-ray and/or CT), run when their ``run_if_positive`` gate opens;
            default (None): every shipped lesion segmenter
            (:func:`chestlens.models.catalog.bundled_lesion_segmenters`).
        device: ``auto`` (CUDA if available), ``cpu`` or ``cuda``.
        cam: ``gradcam``, ``gradcam++``, ``hirescam`` or None for no heatmap.
        read_workers: threads decoding images ahead of the models in :meth:`iter_screen`.
        compile: run the segmenters (and the classifier when ``cam`` is None: CAM hooks need the eager
            module) through ``torch.compile``; the first batch pays the compile time (about 45 s cold on
            a 2-core CPU), results equal eager within 1e-4 (checked in tests and ``bench/``).
    """

    def __init__(
        self,
        classifier: str | None = DEFAULT_CLASSIFIER,
        lungs: str | None = DEFAULT_LUNGS,
        lesions: Sequence[str] | None = None,
        *,
        device: str = "auto",
        cam: CamMethod | None = "gradcam",
        read_workers: int = 2,
        compile: bool = False,
    ) -> None:
        self.device = resolve_device(device)
        self.cam: CamMethod | None = cam
        self.read_workers = read_workers
        self.classifiers: dict[str, LoadedModel] = {}
        if classifier is not None:
            model = load_for_inference(classifier, "classifier", self.device)
            self.classifiers[get_labelling(model.spec.task).modality] = model
        self.lungs = None if lungs is None else load_for_inference(lungs, "segmenter", self.device)
        for model in self.classifiers.values():
            if needs_lungs(model.spec.preprocess) and self.lungs is None:
                raise ChestlensInputError(
                    None, f"classifier {model.spec.name} reads the lung fields: it needs a lung segmenter"
                )
        self.lesions: dict[str, LoadedModel] = {}
        for name in bundled_lesion_segmenters() if lesions is None else lesions:
            model = load_for_inference(name, "segmenter", self.device)
            self.lesions[get_labelling(model.spec.task).modality] = model
        if compile:
            self._compile()

    def _compile(self) -> None:
        """Swap modules for ``torch.compile``d ones (not a classifier that must give CAMs)."""
        if self.lungs is not None:
            self.lungs = self.lungs.compiled()
        self.lesions = {k: m.compiled() for k, m in self.lesions.items()}
        if self.cam is None:
            self.classifiers = {k: m.compiled() for k, m in self.classifiers.items()}

    @classmethod
    def from_models(cls, names: Sequence[str], **kwargs: object) -> Screener:
        """A screener from a list of bundles of any kind (the CLI's ``--models``), sorted by kind."""
        specs = {name: read_spec(name) for name in names}
        classifiers = [n for n, s in specs.items() if s.kind == "classifier"]
        lungs = [n for n, s in specs.items() if s.kind == "segmenter" and s.task == "lungs"]
        lesions = [n for n, s in specs.items() if s.kind == "segmenter" and s.task != "lungs"]
        if len(classifiers) > 1 or len(lungs) > 1:
            raise ChestlensInputError(None, "--models takes at most one classifier and one lung segmenter")
        return cls(
            classifier=classifiers[0] if classifiers else None,
            lungs=lungs[0] if lungs else None,
            lesions=lesions,
            **kwargs,  # type: ignore[arg-type]
        )

    @property
    def models(self) -> list[LoadedModel]:
        """Every loaded model."""
        lungs = [self.lungs] if self.lungs is not None else []
        return [*self.classifiers.values(), *lungs, *self.lesions.values()]

    def screen(self, source: Source, *, name: str | None = None) -> Screening:
        """Screen one image; unreadable input raises :class:`~chestlens.errors.ChestlensInputError`."""
        return self._screen_cases([_read_case(source, name)])[0]

    def iter_screen(
        self, sources: Iterable[Source], *, batch_size: int = 8
    ) -> Iterator[Screening | FailedInput]:
        """Screen many inputs, in order: decoding runs in threads ahead of batched model stages.

        Unreadable inputs come back as :class:`FailedInput` (reported and skipped, never fatal).
        """
        workers = max(1, self.read_workers)
        with ThreadPoolExecutor(workers) as pool:
            pending: list[_Case | FailedInput] = []
            # two batches decoded ahead keep the models busy; a bounded read-ahead keeps memory flat
            for decoded in read_ahead(pool, read_timed, sources, ahead=2 * batch_size + workers):
                pending.append(decoded)
                if len(pending) == batch_size:
                    yield from self._screen_pending(pending)
                    pending = []
            yield from self._screen_pending(pending)

    def _screen_pending(self, pending: list[_Case | FailedInput]) -> Iterator[Screening | FailedInput]:
        screened = iter(self._screen_cases([p for p in pending if isinstance(p, _Case)]))
        for item in pending:
            yield item if isinstance(item, FailedInput) else next(screened)

    def _screen_cases(self, cases: list[_Case]) -> list[Screening]:
        for case in cases:
            with _Timer("gate", [case]):
                case.checks = gate.check_metadata(case.image.meta) + gate.check_pixels(case.image)
        accepted = [c for c in cases if not c.rejected]
        self._screen_radiographs([c for c in accepted if c.image.meta.pixel_unit != "HU"])
        for case in accepted:
            if case.image.meta.pixel_unit == "HU":
                self._screen_ct(case)
        return [self._finish(case) for case in cases]

    # ---------------------------------------------------------------- radiographs
    def _screen_radiographs(self, cases: list[_Case]) -> None:
        if not cases:
            return
        for case in cases:
            with _Timer("preprocess", [case]):
                spec = self.models[0].spec.preprocess
                case.unit = torch.from_numpy(np.ascontiguousarray(to_unit_range(case.image, spec)))[None]
        self._radiograph_lungs(cases)
        cases = [c for c in cases if not c.rejected]
        classifier = self.classifiers.get("xray")
        if classifier is None:
            for case in cases:
                case.notes.append("no X-ray classifier loaded: classification skipped")
        elif cases:
            self._classify(classifier, cases)
        lesion_model = self.lesions.get("xray")
        if lesion_model is not None:
            self._radiograph_lesions(lesion_model, cases)

    def _radiograph_lungs(self, cases: list[_Case]) -> None:
        """Lung masks on the segmenter grid, the lung-field gate check and the lung area."""
        if self.lungs is None:
            for case in cases:
                case.notes.append("no lung segmenter loaded: lung-field check and lung measurements skipped")
            return
        with _Timer("lungs", cases), torch.no_grad():
            logits = self.lungs.module(self.lungs.inputs([c.unit for c in cases])).float().cpu()
        for case, probability in zip(cases, torch.sigmoid(logits[:, 0]).numpy(), strict=True):
            with _Timer("gate", [case]):
                case.checks.append(gate.check_lung_fields(probability))
            case.lung_mask = probability >= 0.5
            case.lungs = LungMeasurement(
                model=self.lungs.ref,
                area_mm2=area_mm2(case.lung_mask, case.image.meta),
                area_fraction=float(case.lung_mask.mean()),
            )

    def _classify(self, model: LoadedModel, cases: list[_Case]) -> None:
        layer = get_model_config(model.spec.architecture).cam_layer
        spec = model.spec.preprocess
        with _Timer("classify", cases):
            prepared = [lung_roi_with_mask(c.unit, c.lung_mask, spec) for c in cases]
            x = model.inputs([image for image, _ in prepared])
            if self.cam is None:
                with torch.no_grad():
                    logits, maps = model.module(x).float().cpu(), None
            else:
                out = logits_and_cams(model.module, x, layer, self.cam)
                logits, maps = out.logits, out.maps
            probabilities = apply_temperature(logits.numpy(), model.spec.temperature)
        for i, case in enumerate(cases):
            case.classification = _classification(model, probabilities[i])
            if maps is None or self.cam is None:
                continue
            case.heatmap = paste_fraction(maps[i], classifier_frame(case.lung_mask, spec), maps[i].shape)
            frame_lungs = prepared[i][1]  # the lungs on the classifier's own frame and grid
            in_lungs = None
            if frame_lungs is not None:
                in_lungs = energy_inside(maps[i], resize_nearest(frame_lungs, maps[i].shape))
            case.explanation = Explanation(
                method=self.cam,
                target_label=case.classification.top_label,
                layer=layer,
                energy_in_lungs=in_lungs,
            )

    def _radiograph_lesions(self, model: LoadedModel, cases: list[_Case]) -> None:
        run = []
        for case in cases:
            reason = _lesion_gate(model, case)
            if reason is None:
                run.append(case)
            else:
                case.lesions = LesionSummary(model=model.ref, ran=False, gate=reason)
        if not run:
            return
        with _Timer("lesions", run), torch.no_grad():
            logits = model.module(model.inputs([c.unit for c in run])).float().cpu()
            probabilities = torch.softmax(logits, dim=1).numpy()
        for case, probability in zip(run, probabilities, strict=True):
            case.lesion_map = probability.argmax(0).astype(np.uint8)
            lungs = None if case.lung_mask is None else resize_nearest(case.lung_mask, case.lesion_map.shape)
            case.lesions = _lesion_summary(model, case, case.lesion_map, probability, lungs)

    # ---------------------------------------------------------------- CT
    def _screen_ct(self, case: _Case) -> None:
        """CT slice or series: lungs by the HU rule; lesions (per slice) if a CT lesion bundle is loaded."""
        meta, volume = case.image.meta, case.image.is_volume
        with _Timer("lungs", [case]):
            case.lung_mask = lung_mask_from_hu(case.image.pixels)
            case.lungs = LungMeasurement(
                model=None,
                area_mm2=None if volume else area_mm2(case.lung_mask, meta),
                area_fraction=float(case.lung_mask.mean()),
                volume_ml=volume_ml(case.lung_mask, meta) if volume else None,
            )
        if "ct" not in self.classifiers:
            case.notes.append("no CT classifier loaded: classification skipped")
        model = self.lesions.get("ct")
        if model is None:
            case.notes.append("no CT lesion segmenter loaded: lesion measurements skipped")
            return
        with _Timer("lesions", [case]), torch.no_grad():
            slices = case.image.pixels if volume else case.image.pixels[None]
            units = [torch.from_numpy(window_hu(s, model.spec.preprocess))[None] for s in slices]
            probabilities = np.concatenate(
                [
                    torch.softmax(model.module(model.inputs(units[i : i + 8])).float().cpu(), dim=1).numpy()
                    for i in range(0, len(units), 8)
                ]
            )
            label_map = probabilities.argmax(1).astype(np.uint8)
            lungs = resize_nearest(case.lung_mask if volume else case.lung_mask[None], label_map.shape[-2:])
            if not volume:
                label_map, probabilities, lungs = label_map[0], probabilities[0], lungs[0]
            case.lesion_map = label_map
            case.lesions = _lesion_summary(model, case, label_map, probabilities, lungs)

    # ---------------------------------------------------------------- result
    def _finish(self, case: _Case) -> Screening:
        verdict = _verdict(case)
        ok = verdict.accepted
        timings = {k: round(v, 2) for k, v in case.timings.items()}
        result = ScreeningResult(
            chestlens_version=__version__,
            input=_input_info(case.source, case.image),
            gate=verdict,
            classification=case.classification if ok else None,
            explanation=case.explanation if ok else None,
            lungs=case.lungs if ok else None,
            lesions=case.lesions if ok else None,
            timings_ms={**timings, "total": round(sum(case.timings.values()), 2)},
            notes=case.notes if ok else [],
        )
        lesion_model = self.lesions.get("ct" if case.image.meta.pixel_unit == "HU" else "xray")
        return Screening(
            result=result,
            image=case.image,
            heatmap=case.heatmap if ok else None,
            lung_mask=case.lung_mask,
            lesion_map=case.lesion_map if ok else None,
            lesion_labels=list(lesion_model.spec.labels[1:]) if lesion_model is not None else [],
        )
