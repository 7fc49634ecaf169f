"""The screening stages. Each is a small callable over a batch of :class:`~chestlens.pipeline.case.Case`
that picks its model by modality (``xray`` or ``ct``) and runs it through a
:class:`~chestlens.runtime.GraphRunner`, so no stage knows which runtime ran:

========================  ==============================================================================
stage                     what it does
========================  ==============================================================================
:func:`check_inputs`      DICOM tags and pixel checks (:mod:`chestlens.pipeline.gate`)
:func:`prepare`           radiographs: the one working image every model stage reads
:class:`FindLungs`        radiographs: lung segmenter + the lung-field gate check; CT: the HU rule
:class:`Classify`         calibrated probabilities, decisions, class-activation map; CT slices and series
:class:`SegmentLesions`   lesion segmentation when the bundle's ``run_if_positive`` gate opens; CT series:
                          lesion features (:mod:`chestlens.pipeline.study_features`)
:class:`ClassifyStudy`    CT series: the study bundle's classification from the lesion features
:func:`finish`            the gate verdict (one place) and the :class:`~chestlens.pipeline.case.Screening`
========================  ==============================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from chestlens import __version__
from chestlens.explain import HeatmapMethod
from chestlens.explain.energy import energy_inside
from chestlens.models.meaning import output_meaning
from chestlens.models.registry import get_model_config
from chestlens.models.study import StudyRunner
from chestlens.pipeline import gate
from chestlens.pipeline.case import Case, Screening, Timer, input_info
from chestlens.pipeline.ct_lungs import lung_mask_from_hu
from chestlens.pipeline.measure import (
    AERATED_LUNG_MAX_HU,
    MIN_LESION_ML,
    area_mm2,
    drop_small_lesions,
    hu_on_grid,
    lesion_instances,
    lesion_instances_3d,
    lesions_denser_than_lung,
    lesions_in_lungs,
    lungs_with_lesions,
    series_verdict,
    slice_gap,
    slice_lesion_scores,
    slice_lung_fractions,
    volume_ml,
)
from chestlens.pipeline.schema import (
    Classification,
    Decision,
    Explanation,
    LesionSummary,
    LungMeasurement,
    ModelRef,
    ScreeningResult,
    SeriesClassification,
)
from chestlens.pipeline.study_features import feature_vector, grid_spacing_mm, series_lesion_features
from chestlens.pipeline.view import view_checks
from chestlens.preprocess.graph_io import INPUT_NAME, graph_feeds
from chestlens.preprocess.lung_roi import classifier_frame, crop_to_frame, paste_fraction
from chestlens.preprocess.resize import resize_nearest, working_image
from chestlens.preprocess.units import window_hu
from chestlens.runtime import GraphRunner

#: Images stacked into one graph call at most (CT slices, batches of radiographs of one size).
MAX_GRAPH_BATCH = 8
#: A CT series is classified on the slices whose HU-rule lungs cover at least this share of the slice.
CT_CLASSIFY_MIN_LUNG_SHARE = 0.01
MODALITY_NAMES = {"xray": "X-ray", "ct": "CT"}

#: ``progress(stage, done, total)``: ``done`` of the ``total`` slices of the CT series being screened are
#: through ``stage`` (``lungs`` slice by slice, ``classify`` and ``lesions`` a graph batch at a time).
#: Called only for series, from the thread that runs the stages.
SliceProgress = Callable[[str, int, int], None]


def slice_counter(progress: SliceProgress | None, stage: str, total: int) -> Callable[[int], None] | None:
    """``advance(n)``: ``n`` more of ``total`` slices are through ``stage``, reported to ``progress``;
    None when there is nothing to report to."""
    if progress is None:
        return None
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress(stage, done, total)

    return advance


def model_ref(graph: GraphRunner) -> ModelRef:
    """How results name a model."""
    spec = graph.spec
    return ModelRef(name=spec.name, version=spec.version, kind=spec.kind, weights_sha256=spec.weights_sha256)


def run_batched(
    graph: GraphRunner,
    feeds: Sequence[dict[str, np.ndarray]],
    advance: Callable[[int], None] | None = None,
) -> list[dict[str, np.ndarray]]:
    """Run each item's feeds (leading axis 1), stacking items of equal shapes into batches of at most
    :data:`MAX_GRAPH_BATCH`; returns each item's outputs, leading axis 1. ``advance(n)`` (optional) is
    called after each batch with its number of items."""
    groups: dict[tuple, list[int]] = {}
    for i, feed in enumerate(feeds):
        groups.setdefault(tuple((k, v.shape) for k, v in sorted(feed.items())), []).append(i)
    outputs: list[dict[str, np.ndarray]] = [{} for _ in feeds]
    for members in groups.values():
        for start in range(0, len(members), MAX_GRAPH_BATCH):
            chunk = members[start : start + MAX_GRAPH_BATCH]
            stacked = {k: np.concatenate([feeds[i][k] for i in chunk]) for k in feeds[chunk[0]]}
            result = graph.run(stacked)
            for j, i in enumerate(chunk):
                outputs[i] = {k: v[j : j + 1] for k, v in result.items()}
            if advance is not None:
                advance(len(chunk))
    return outputs


# ------------------------------------------------------------------------------------------ gate, prepare
def check_inputs(cases: list[Case]) -> None:
    """Gate part one, before any model: DICOM tags and pixel checks."""
    for case in cases:
        with Timer("gate", [case]):
            case.checks = gate.check_metadata(case.image.meta) + gate.check_pixels(case.image)


def prepare(cases: list[Case], longest_side: int) -> None:
    """Radiographs: decode once, downsample once to the working image (longer side ``longest_side``)."""
    for case in cases:
        with Timer("prepare", [case]):
            case.work = working_image(case.image.pixels.astype(np.float32, copy=False), longest_side)


# ------------------------------------------------------------------------------------------------- lungs
class FindLungs:
    """Lung fields: the lung segmenter for radiographs (also the gate's lung-field check), the Hounsfield
    unit rule for CT (:mod:`chestlens.pipeline.ct_lungs`; a series reports each slice to ``progress``)."""

    def __init__(self, segmenter: GraphRunner | None, progress: SliceProgress | None = None) -> None:
        self.segmenter, self.progress = segmenter, progress

    def __call__(self, cases: list[Case]) -> None:
        self._radiographs([c for c in cases if not c.is_ct])
        for case in cases:
            if case.is_ct:
                self._ct(case)

    def _radiographs(self, cases: list[Case]) -> None:
        if not cases:
            return
        if self.segmenter is None:
            for case in cases:
                case.notes.append("no lung segmenter loaded: lung-field check and lung measurements skipped")
            return
        with Timer("lungs", cases):
            outputs = run_batched(self.segmenter, [{INPUT_NAME: c.work[None, None]} for c in cases])
        for case, output in zip(cases, outputs, strict=True):
            probability = output["probabilities"][0, 0]
            with Timer("gate", [case]):
                case.checks.append(gate.check_lung_fields(probability))
                case.checks.extend(view_checks(case.work, probability))
            case.lung_mask = probability >= 0.5
            case.lungs = LungMeasurement(
                model=model_ref(self.segmenter),
                area_mm2=area_mm2(case.lung_mask, case.image.meta),
                area_fraction=float(case.lung_mask.mean()),
            )

    def _ct(self, case: Case) -> None:
        meta, volume = case.image.meta, case.image.is_volume
        advance = slice_counter(self.progress, "lungs", len(case.image.pixels)) if volume else None
        with Timer("lungs", [case]):
            case.lung_mask = lung_mask_from_hu(case.image.pixels, advance=advance)
            case.lungs = LungMeasurement(
                model=None,
                area_mm2=None if volume else area_mm2(case.lung_mask, meta),
                area_fraction=float(case.lung_mask.mean()),
                volume_ml=volume_ml(case.lung_mask, meta) if volume else None,
            )
        gap = slice_gap(meta) if volume else None
        if gap is not None:
            case.notes.append(f"no lung or lesion volumes: the series has {gap}")


# ---------------------------------------------------------------------------------------------- classify
def _classification(graph: GraphRunner, probabilities: np.ndarray, **extra: object) -> Classification:
    spec = graph.spec
    by_label = {label: float(p) for label, p in zip(spec.labels, probabilities, strict=True)}
    return Classification(
        model=model_ref(graph),
        probabilities=by_label,
        top_label=spec.labels[int(np.argmax(probabilities))],
        temperature=spec.temperature,
        meaning=output_meaning(spec),
        decisions=[
            Decision(
                label=op.label,
                threshold=op.threshold,
                positive=by_label[op.label] >= op.threshold,
                criterion=op.criterion,
            )
            for op in spec.operating_points
        ],
        **extra,  # type: ignore[arg-type]
    )


class Classify:
    """Calibrated probabilities, decisions at the bundle's operating points and the heatmap of the top
    class, for radiographs and CT (one slice, or a series: the mean over the slices that show lungs).

    ``heatmap``: ``cam`` (the graph's own class-activation map, any runtime), a gradient method
    (``gradcam``, ``gradcam++``, ``hirescam``: PyTorch runtime only) or None. A series reports its
    classified slices to ``progress``.
    """

    def __init__(
        self,
        classifiers: dict[str, GraphRunner],
        heatmap: HeatmapMethod | None,
        progress: SliceProgress | None = None,
    ) -> None:
        self.classifiers, self.heatmap, self.progress = classifiers, heatmap, progress

    def __call__(self, cases: list[Case]) -> None:
        for modality in ("xray", "ct"):
            subset = [c for c in cases if c.modality == modality]
            graph = self.classifiers.get(modality)
            if subset and graph is None:
                for case in subset:
                    case.notes.append(
                        f"no {MODALITY_NAMES[modality]} classifier loaded: classification skipped"
                    )
            elif subset:
                with Timer("classify", subset):
                    self._classify(graph, subset)

    def _classify(self, graph: GraphRunner, cases: list[Case]) -> None:
        series = [c for c in cases if c.image.is_volume]
        for case in series:
            self._series(graph, case)
        images = [c for c in cases if not c.image.is_volume]
        if not images:
            return
        preprocess = graph.spec.preprocess
        units = [self._unit(graph, c) for c in images]
        feeds = [
            graph_feeds(preprocess, u[None, None], c.lung_mask) for u, c in zip(units, images, strict=True)
        ]
        if self.heatmap in (None, "cam"):
            outputs = run_batched(graph, feeds)
            results = [(o["probabilities"][0], o["cam"][0]) for o in outputs]
        else:
            results = []
            for feed in feeds:
                probabilities, maps = graph.gradient_cams(feed, self.heatmap)  # type: ignore[attr-defined]
                results.append((probabilities[0], maps))
        for case, unit, (probabilities, maps) in zip(images, units, results, strict=True):
            case.classification = _classification(graph, probabilities)
            if self.heatmap is not None:
                top = case.classification.top_label
                heat = maps[graph.spec.labels.index(top)] if self.heatmap == "cam" else maps[0]
                self._explain(graph, case, unit, heat)

    @staticmethod
    def _unit(graph: GraphRunner, case: Case) -> np.ndarray:
        """The classifier's input image: the working image, or the windowed CT slice."""
        if case.is_ct:
            return window_hu(case.image.pixels, graph.spec.preprocess, where=case.image.meta.source_path)
        return case.work

    def _explain(self, graph: GraphRunner, case: Case, unit: np.ndarray, heat: np.ndarray) -> None:
        """The heatmap on the whole image's grid and its share inside the lungs (on the classifier frame)."""
        preprocess = graph.spec.preprocess
        lungs = case.lung_mask
        case.heatmap = paste_fraction(heat, classifier_frame(lungs, preprocess), heat.shape)
        _, frame_lungs = crop_to_frame(unit, lungs, preprocess)
        in_lungs = (
            None if frame_lungs is None else energy_inside(heat, resize_nearest(frame_lungs, heat.shape))
        )
        layer = get_model_config(graph.spec.architecture).cam_layer if self.heatmap != "cam" else "features"
        case.explanation = Explanation(
            method=self.heatmap,  # type: ignore[arg-type]
            target_label=case.classification.top_label,  # type: ignore[union-attr]
            layer=layer,
            energy_in_lungs=in_lungs,
        )

    def _series(self, graph: GraphRunner, case: Case) -> None:
        """A CT series: every slice whose lungs cover :data:`CT_CLASSIFY_MIN_LUNG_SHARE` (all slices when
        none does) is classified; the series probabilities are their mean."""
        pixels = case.image.pixels
        share = case.lung_mask.reshape(len(pixels), -1).mean(axis=1)  # type: ignore[union-attr]
        chosen = np.flatnonzero(share >= CT_CLASSIFY_MIN_LUNG_SHARE)
        chosen = chosen if chosen.size else np.arange(len(pixels))
        where = case.image.meta.source_path
        feeds = [
            {INPUT_NAME: window_hu(pixels[k], graph.spec.preprocess, where=where)[None, None]} for k in chosen
        ]
        advance = slice_counter(self.progress, "classify", len(feeds))
        slices = np.concatenate([o["probabilities"] for o in run_batched(graph, feeds, advance)])
        case.classification = _classification(
            graph,
            slices.mean(axis=0),
            slice_indices=[int(k) for k in chosen],
            slice_probabilities=[[round(float(p), 4) for p in row] for row in slices],
        )
        case.notes.append(
            f"CT series: probabilities are the mean over the {len(chosen)} slices showing lungs; "
            "screen a single slice for its heatmap"
        )


# ------------------------------------------------------------------------------------------------ lesions
def lesion_gate(graph: GraphRunner, case: Case) -> str | None:
    """Why the lesion segmenter does not run on ``case`` (None: it runs), per ``run_if_positive``."""
    wanted = graph.spec.run_if_positive
    if not wanted:
        return None
    if case.classification is None:
        return f"not run: gated on a classifier decision for {', '.join(wanted)} and none was made"
    positive = [d.label for d in case.classification.decisions if d.positive and d.label in wanted]
    if not positive:
        return f"not run: no positive decision for {', '.join(wanted)}"
    return None


def lesion_summary(
    graph: GraphRunner, case: Case, label_map: np.ndarray, probabilities: np.ndarray, lungs: np.ndarray | None
) -> LesionSummary:
    """Instances and per-label totals; ``label_map`` ``(S, S)`` or ``(slices, S, S)``, ``probabilities``
    ``(C, S, S)`` or ``(slices, C, S, S)``, ``lungs`` on the same grid as ``label_map`` or None."""
    labels = list(graph.spec.labels[1:])
    meta = case.image.meta
    volume = label_map.ndim == 3
    maps = label_map if volume else label_map[None]
    probs = probabilities if volume else probabilities[None]
    if volume:
        instances = lesion_instances_3d(maps, probs, labels, meta)
    else:
        instances = lesion_instances(maps[0], probs[0], labels, meta)
    summary = LesionSummary(
        model=model_ref(graph), ran=True, gate=lesion_gate(graph, case) or "run", lesions=instances
    )
    lung_grid = None
    if lungs is not None and lungs.any():  # the lungs and their lesions (measure.lungs_with_lesions)
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
            summary.lung_fraction_by_label[label] = float(mask.sum() / lung_grid.sum())  # mask in lung_grid
    if lung_grid is not None:
        involved = float((maps > 0).sum() / lung_grid.sum())
        summary.lung_fraction_total = involved
        if volume:
            scores = slice_lesion_scores(maps, probs, lung_grid)
            summary.slice_scores = [round(float(s), 4) for s in scores]
            summary.series_score = round(float(scores.max()), 4) if len(scores) else None
            fractions = slice_lung_fractions(maps, lung_grid)
            summary.slice_lung_fractions = [round(float(f), 6) for f in fractions]
            threshold = graph.spec.series_threshold
            if threshold is not None:
                summary.series_threshold = threshold
                summary.series_verdict = series_verdict(involved, threshold)
    return summary


class SegmentLesions:
    """Lesion segmentation per modality, when the bundle's ``run_if_positive`` gate opens; a series
    reports its segmented slices to ``progress``."""

    def __init__(self, segmenters: dict[str, GraphRunner], progress: SliceProgress | None = None) -> None:
        self.segmenters, self.progress = segmenters, progress

    def labels(self, case: Case) -> list[str]:
        """The lesion labels of the segmenter that applies to ``case`` (empty: none loaded)."""
        graph = self.segmenters.get(case.modality)
        return [] if graph is None else list(graph.spec.labels[1:])

    def __call__(self, cases: list[Case]) -> None:
        for modality in ("xray", "ct"):
            subset = [c for c in cases if c.modality == modality]
            graph = self.segmenters.get(modality)
            if not subset:
                continue
            if graph is None:
                if modality == "ct":
                    for case in subset:
                        case.notes.append("no CT lesion segmenter loaded: lesion measurements skipped")
                continue
            run = []
            for case in subset:
                reason = lesion_gate(graph, case)
                if reason is None:
                    run.append(case)
                else:
                    case.lesions = LesionSummary(model=model_ref(graph), ran=False, gate=reason)
            if run:
                with Timer("lesions", run):
                    self._segment(graph, run)

    def _segment(self, graph: GraphRunner, cases: list[Case]) -> None:
        preprocess = graph.spec.preprocess
        for case in cases:
            if case.is_ct:
                slices = case.image.pixels if case.image.is_volume else case.image.pixels[None]
                where = case.image.meta.source_path
                units = [window_hu(s, preprocess, where=where) for s in slices]
            else:
                units = [case.work]
            feeds = [{INPUT_NAME: u[None, None]} for u in units]
            advance = slice_counter(self.progress, "lesions", len(feeds)) if case.image.is_volume else None
            outputs = run_batched(graph, feeds, advance)
            probabilities = np.concatenate([o["probabilities"] for o in outputs])
            label_map = probabilities.argmax(1).astype(np.uint8)
            hu_grid = None
            if case.is_ct:  # first, so that the lung rule below judges the regions that are measured
                hu = case.image.pixels if case.image.is_volume else case.image.pixels[None]
                hu_grid = hu_on_grid(hu, label_map.shape[-2:])
                label_map, aerated = lesions_denser_than_lung(label_map, hu_grid)
                if aerated:
                    case.notes.append(
                        f"{100 * aerated:.0f}% of the segmented lesion voxels read as aerated lung "
                        f"(<= {AERATED_LUNG_MAX_HU:.0f} HU) and were left out"
                    )
            lungs = None
            if case.lung_mask is not None:
                mask = case.lung_mask if case.lung_mask.ndim == 3 else case.lung_mask[None]
                lungs = resize_nearest(mask, label_map.shape[-2:])
                label_map, removed = lesions_in_lungs(label_map, lungs, case.image.meta)
                if removed:
                    case.notes.append(f"{removed} lesion region(s) outside the lungs removed")
            else:
                case.notes.append("no lung mask: lesion regions are not checked against the lungs")
            if case.image.is_volume:
                label_map, small = drop_small_lesions(label_map, case.image.meta)
                if small:
                    case.notes.append(f"{small} lesion region(s) under {MIN_LESION_ML} mL left out")
            else:
                label_map, probabilities = label_map[0], probabilities[0]
                lungs = None if lungs is None else lungs[0]
            case.lesion_map = label_map
            case.lesions = lesion_summary(graph, case, label_map, probabilities, lungs)
            if case.image.is_volume and hu_grid is not None and lungs is not None:
                spacing = grid_spacing_mm(case.image.meta, label_map.shape[-2:])
                if spacing is not None:
                    case.lesions.features = series_lesion_features(
                        hu_grid, lungs, label_map, spacing, graph.spec.labels[1:]
                    )


# ------------------------------------------------------------------------------------------------- study
#: What the result says of every series classification (and the CLI prints): what it is and is not.
STUDY_NOTE = (
    "series-level COVID-19 / CAP / normal probabilities from lesion features (and a regional slice "
    "classifier's summary, when the study bundle embeds one), research use only, never a "
    "diagnosis: see the study bundle's card for the few patients it was trained on"
)


class ClassifyStudy:
    """CT series: the study bundle's probabilities from the series' lesion features (``lesions.features``);
    a single slice or a radiograph gets a note instead. Results are kept by case for :func:`finish`."""

    def __init__(self, study: StudyRunner | None, lesion_segmenters: dict[str, GraphRunner]) -> None:
        self.study, self.lesion_segmenters = study, lesion_segmenters
        self.results: dict[int, SeriesClassification] = {}

    def result(self, case: Case) -> SeriesClassification | None:
        """The classification of ``case`` (None: none was made), forgotten once read."""
        return self.results.pop(id(case), None)

    def __call__(self, cases: list[Case]) -> None:
        study = self.study
        if study is None:
            return
        for case in cases:
            if not (case.is_ct and case.image.is_volume):
                what = "a CT slice" if case.is_ct else "a radiograph"
                case.notes.append(
                    f"no study classification: the study bundle reads CT series, this is {what}"
                )
                continue
            features = case.lesions.features if case.lesions is not None else None
            if features is None:
                case.notes.append(
                    "no study classification: the series has no lesion features (lesions not measured, "
                    "or no voxel size)"
                )
                continue
            with Timer("study", [case]):
                self.results[id(case)] = self._classify(study, case, features)

    def _classify(self, study: StudyRunner, case: Case, features) -> SeriesClassification:
        lesion_graph = self.lesion_segmenters["ct"]
        by_name = features.model_dump()
        if study.regional is not None:  # the embedded regional slice classifier reads the HU slices
            by_name.update(study.regional.series_features(list(case.image.pixels)))
        values = feature_vector(by_name, study.features)
        probabilities = study.probabilities(values)
        trained_with = study.spec.architecture_kwargs.get("lesion_bundle") or {}
        lesion_spec = lesion_graph.spec
        if trained_with and trained_with.get("weights_sha256") not in ("", None, lesion_spec.weights_sha256):
            case.notes.append(
                f"study bundle {study.spec.name} was trained on the lesions of {trained_with.get('name')} "
                f"{trained_with.get('version')}, not {lesion_spec.name} {lesion_spec.version}: its "
                "probabilities assume the other segmenter"
            )
        spec = study.spec
        return SeriesClassification(
            model=ModelRef(
                name=spec.name, version=spec.version, kind="study", weights_sha256=spec.weights_sha256
            ),
            probabilities={label: float(p) for label, p in zip(spec.labels, probabilities, strict=True)},
            top_label=spec.labels[int(np.argmax(probabilities))],
            features={name: float(v) for name, v in zip(study.features, values, strict=True)},
            lesion_model=model_ref(lesion_graph),
            note=STUDY_NOTE,
        )


# ------------------------------------------------------------------------------------------------- result
def finish(
    case: Case,
    lesion_labels: list[str],
    runtime: str,
    series_classification: SeriesClassification | None = None,
) -> Screening:
    """The gate verdict (from every check of every stage) and the result; rejected inputs keep only
    the verdict and the lung mask that explains it. ``series_classification``: the study bundle's output
    for a CT series (:class:`ClassifyStudy`)."""
    verdict = gate.gate_verdict(case.checks, "chest_ct" if case.is_ct else "chest_radiograph")
    ok = verdict.accepted
    timings = {k: round(v, 2) for k, v in case.timings.items()}
    result = ScreeningResult(
        chestlens_version=__version__,
        runtime=runtime,
        input=input_info(case),
        gate=verdict,
        classification=case.classification if ok else None,
        explanation=case.explanation if ok else None,
        lungs=case.lungs if ok else None,
        lesions=case.lesions if ok else None,
        series_classification=series_classification if ok else None,
        timings_ms={**timings, "total": round(sum(case.timings.values()), 2)},
        notes=case.notes if ok else [],
    )
    return Screening(
        result=result,
        image=case.image,
        heatmap=case.heatmap if ok else None,
        lung_mask=case.lung_mask,
        lesion_map=case.lesion_map if ok else None,
        lesion_labels=lesion_labels,
    )
