"""Map each source's own labels to the project's tasks.

Every sample first gets a source-independent :func:`diagnosis` (``"COVID-19"``, ``"pneumonia"``,
``"normal"`` or None = leave out), then a :class:`Task` turns that into its classes:

========================  =====================================  =========================================
task                      classes                                from the diagnosis
========================  =====================================  =========================================
``xray3``                 COVID-19 / pneumonia / normal          as is (X-ray only)
``xray2-covid``           COVID-19 / non-COVID                   non-COVID = other pneumonia + normal
``xray2-pneumonia``       pneumonia / normal                     pneumonia = COVID-19 + other pneumonia
``ct3``                   COVID-19 / CAP / normal                CAP = non-COVID pneumonia (CT only)
========================  =====================================  =========================================

Diagnosis rules per source:

* ieee8023 format (``ieee8023``, ``radiopaedia``, ``v7_lungs``, ``generalblockchain``; also the later
  hierarchical ``Pneumonia/Viral/COVID-19`` labels): any ``COVID-19`` label -> COVID-19 (so
  ``COVID-19, ARDS`` too); ``No Finding`` -> normal; the infectious pneumonias in
  :data:`INFECTIOUS_PNEUMONIA` (bacterial: Streptococcus, Klebsiella, Legionella, E.Coli, Mycoplasma,
  ``Bacterial``...; viral: Influenza, Varicella, SARS, MERS...; fungal: Pneumocystis, Aspergillosis;
  unspecified ``Pneumonia``) -> pneumonia.
  Left out: ``Lipoid`` (lipoid pneumonia is a non-infectious aspiration/exogenous-lipid process, not the
  differential this screening separates), ``ARDS`` alone (a syndrome of many causes), ``todo`` and any
  label not listed (never guessed). Unspecified ``Pneumonia`` is not always an infection (radiopaedia's
  includes organising and interstitial pneumonias, see :mod:`chestlens.data.sources.radiopaedia`); it
  stays "pneumonia", as in ieee8023, rather than being split by a guess.
* ``hannover``: COVID-19 (dataset description: all patients are COVID-19 cases). Caveat: an image of a
  COVID-19 patient may show nothing; the images ieee8023 labels ``No Finding``
  (``extra["ieee8023_finding"]``) are left out, since they are neither a visible COVID-19 case nor a
  normal patient.
* ``kermany``: ``NORMAL`` -> normal, ``PNEUMONIA`` (bacteria or virus) -> pneumonia.
* ``actualmed``: ``COVID-19``; ``No finding`` (COVID-negative, same hospital) -> normal; blank
  ("Inconclusive") -> left out.
* ``figure1``: ``COVID-19``; ``No finding`` -> normal; ``Pneumonia`` -> pneumonia; blank (unlabelled)
  -> left out.
* ``nih``: only ``No Finding`` -> normal; any label list containing ``Pneumonia`` -> pneumonia; other
  NIH labels without pneumonia (e.g. ``Effusion`` alone) -> left out (neither normal nor pneumonia).
* ``covid_ct_md``: ``COVID-19``, ``CAP`` -> pneumonia, ``Normal`` -> normal. ``infnet``: COVID-19
  (every MedSeg slice is from a COVID-19 case).
* other sources: any finding, case-insensitive, in :data:`GENERIC_TERMS` (``covid-19``, ``normal``,
  ``no finding``, ``pneumonia``, ``lung opacity``, ``cap``...); conflicting or unknown terms -> left out.

Segmentation targets (:data:`SEGMENTATION_TARGETS`) name the mask layers that make the target (their
union, or one class each); :func:`segmentation_classes` lists what a source provides and
:func:`target_label_map` encodes a sample's masks. :func:`get_labelling` finds a task or a target by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from chestlens.data.label_map import encode_target
from chestlens.data.records import Masks, Modality, Sample
from chestlens.data.sources import generalblockchain, infnet, v7_lungs
from chestlens.errors import ChestlensInputError
from chestlens.preprocess.labels import BACKGROUND, SegMode

Diagnosis = Literal["COVID-19", "pneumonia", "normal"]

INFECTIOUS_PNEUMONIA = frozenset(
    {
        "Pneumonia",
        "Bacterial",
        "Viral",
        "Fungal",
        "Streptococcus",
        "Staphylococcus",
        "MRSA",
        "Klebsiella",
        "Legionella",
        "E.Coli",
        "Mycoplasma",
        "Mycoplasma Bacterial Pneumonia",
        "Chlamydophila",
        "Nocardia",
        "Pneumocystis",
        "Aspergillosis",
        "Influenza",
        "H1N1",
        "Varicella",
        "Herpes",
        "SARS",
        "MERS",
        "MERS-CoV",
    }
)
NON_INFECTIOUS = frozenset({"Lipoid", "Aspiration"})
GENERIC_TERMS: Mapping[str, Diagnosis] = {
    "covid-19": "COVID-19",
    "covid19": "COVID-19",
    "covid": "COVID-19",
    "ncp": "COVID-19",
    "normal": "normal",
    "no finding": "normal",
    "no findings": "normal",
    "no_findings": "normal",
    "healthy": "normal",
    "pneumonia": "pneumonia",
    "lung opacity": "pneumonia",
    "cap": "pneumonia",
    "cp": "pneumonia",
    "bacterial pneumonia": "pneumonia",
    "viral pneumonia": "pneumonia",
}


def _ieee8023(sample: Sample) -> Diagnosis | None:
    labels = {part.strip() for finding in sample.findings for part in finding.split("/")}
    if "COVID-19" in labels:
        return "COVID-19"
    if labels == {"No Finding"}:
        return "normal"
    if labels & NON_INFECTIOUS:
        return None
    return "pneumonia" if labels & INFECTIOUS_PNEUMONIA else None


def _hannover(sample: Sample) -> Diagnosis | None:
    return None if sample.extra.get("ieee8023_finding") == "No Finding" else "COVID-19"


def _by_finding(table: Mapping[str, Diagnosis]) -> Callable[[Sample], Diagnosis | None]:
    """Rule of a single-label source: its first finding looked up verbatim in ``table`` (None if absent
    or if the sample has no finding)."""

    def rule(sample: Sample) -> Diagnosis | None:
        return table.get(sample.findings[0]) if sample.findings else None

    return rule


def _nih(sample: Sample) -> Diagnosis | None:
    if "Pneumonia" in sample.findings:
        return "pneumonia"
    return "normal" if tuple(sample.findings) == ("No Finding",) else None


def _generic(sample: Sample) -> Diagnosis | None:
    found = {GENERIC_TERMS.get(f.strip().lower()) for f in sample.findings} - {None}
    return found.pop() if len(found) == 1 else None


SOURCE_RULES: Mapping[str, Callable[[Sample], Diagnosis | None]] = {
    "ieee8023": _ieee8023,
    "radiopaedia": _ieee8023,
    "v7_lungs": _ieee8023,
    "generalblockchain": _ieee8023,
    "hannover": _hannover,
    "kermany": _by_finding({"NORMAL": "normal", "PNEUMONIA": "pneumonia"}),
    "nih": _nih,
    "actualmed": _by_finding({"COVID-19": "COVID-19", "No finding": "normal"}),
    "figure1": _by_finding({"COVID-19": "COVID-19", "No finding": "normal", "Pneumonia": "pneumonia"}),
    "covid_ct_md": _by_finding({"COVID-19": "COVID-19", "CAP": "pneumonia", "Normal": "normal"}),
    "infnet": lambda _: "COVID-19",
}


def diagnosis(sample: Sample) -> Diagnosis | None:
    """The sample's diagnosis under the module's rules, or None when it must be left out."""
    return SOURCE_RULES.get(sample.source, _generic)(sample)


@dataclass(frozen=True, slots=True)
class Task:
    """A classification task: ``mapping(sample)`` is one of ``classes`` or None (exclude)."""

    name: str
    classes: tuple[str, ...]
    modality: Modality
    description: str
    mapping: Callable[[Sample], str | None]


def _task(name: str, modality: Modality, classes: dict[Diagnosis, str], description: str) -> Task:
    def mapping(sample: Sample) -> str | None:
        if sample.modality != modality:
            return None
        found = diagnosis(sample)
        return None if found is None else classes[found]

    return Task(name, tuple(dict.fromkeys(classes.values())), modality, description, mapping)


TASKS: Mapping[str, Task] = {
    task.name: task
    for task in (
        _task(
            "xray3",
            "xray",
            {"COVID-19": "COVID-19", "pneumonia": "pneumonia", "normal": "normal"},
            "chest X-ray: COVID-19 / other (bacterial, viral, fungal) pneumonia / normal",
        ),
        _task(
            "xray2-covid",
            "xray",
            {"COVID-19": "COVID-19", "pneumonia": "non-COVID", "normal": "non-COVID"},
            "chest X-ray: COVID-19 vs non-COVID (non-COVID = other pneumonia + normal)",
        ),
        _task(
            "xray2-pneumonia",
            "xray",
            {"COVID-19": "pneumonia", "pneumonia": "pneumonia", "normal": "normal"},
            "chest X-ray: pneumonia (COVID-19 included) vs normal",
        ),
        _task(
            "ct3",
            "ct",
            {"COVID-19": "COVID-19", "pneumonia": "CAP", "normal": "normal"},
            "chest CT: COVID-19 / community-acquired pneumonia / normal",
        ),
    )
}


def get_task(name: str) -> Task:
    """The task registered as ``name``; raises ChestlensInputError for unknown names."""
    try:
        return TASKS[name]
    except KeyError:
        raise ChestlensInputError(None, f"unknown task {name!r}; known: {', '.join(TASKS)}") from None


def map_label(task: Task | str, sample: Sample) -> str | None:
    """The sample's class under ``task`` (a :class:`Task` or its name), or None to exclude it."""
    return (get_task(task) if isinstance(task, str) else task).mapping(sample)


def class_counts(task: Task | str, samples: Iterable[Sample]) -> dict[str, int]:
    """Number of samples per class of ``task`` (every class listed, excluded samples not counted)."""
    task = get_task(task) if isinstance(task, str) else task
    counts = dict.fromkeys(task.classes, 0)
    for sample in samples:
        label = task.mapping(sample)
        if label is not None:
            counts[label] += 1
    return counts


@dataclass(frozen=True, slots=True)
class SegmentationTarget:
    """A segmentation target on ``modality`` images: the mask layers named in ``classes``.

    ``mode="binary"``: one foreground, the union of the layers; ``"multiclass"``: class ``k`` is
    ``classes[k - 1]`` (later classes win where layers overlap).
    """

    name: str
    modality: Modality
    classes: tuple[str, ...]
    description: str
    mode: SegMode = "binary"

    @property
    def labels(self) -> list[str]:
        """A segmenter bundle's labels: ``[name]`` (binary) or ``["background", *classes]``."""
        return [self.name] if self.mode == "binary" else [BACKGROUND, *self.classes]

    def mapping(self, sample: Sample) -> str | None:
        """The split label of ``sample``, or None (leave it out) unless it is of the target's modality and
        its masks list at least one of the target's layers.

        Binary: the target's name. Multiclass: the target's layers the masks list, joined by ``+`` (e.g.
        ``"ggo"``, ``"ggo+consolidation"``), so a split stratified by label spreads each class over the
        splits. Read from the mask source's class list, without loading masks.
        """
        listed = [c for c in self.classes if sample.masks is not None and c in sample.masks.classes]
        if not listed or sample.modality != self.modality:
            return None
        return self.name if self.mode == "binary" else "+".join(listed)


SEGMENTATION_TARGETS: Mapping[str, SegmentationTarget] = {
    t.name: t
    for t in (
        SegmentationTarget("lungs", "xray", ("lung", "lung_left", "lung_right"), "both lungs on chest X-ray"),
        SegmentationTarget(
            "lesions-xray", "xray", ("ggo", "consolidation"), "GGO and consolidation, X-ray", "multiclass"
        ),
        SegmentationTarget(
            "lesions-ct", "ct", ("ggo", "consolidation"), "GGO and consolidation, CT", "multiclass"
        ),
        SegmentationTarget("pneumothorax", "xray", ("pneumothorax",), "pneumothorax on chest X-ray"),
    )
}

# Mask layers each source can provide (per image, a subset may be present), and its modality.
SOURCE_MASK_CLASSES: Mapping[str, tuple[Modality, tuple[str, ...]]] = {
    "v7_lungs": ("xray", v7_lungs.MASK_CLASSES),
    "generalblockchain": ("xray", generalblockchain.MASK_CLASSES),
    "infnet": ("ct", infnet.MASK_CLASSES),
    "siim": ("xray", ("pneumothorax",)),
}


def get_segmentation_target(name: str) -> SegmentationTarget:
    """The segmentation target registered as ``name``; raises ChestlensInputError for unknown names."""
    try:
        return SEGMENTATION_TARGETS[name]
    except KeyError:
        known = ", ".join(SEGMENTATION_TARGETS)
        raise ChestlensInputError(None, f"unknown segmentation target {name!r}; known: {known}") from None


def get_labelling(name: str) -> Task | SegmentationTarget:
    """The classification task or segmentation target called ``name``.

    Both give a sample's split label (``.mapping(sample)``, None = leave out) on ``.modality`` images,
    so one split machinery serves both (:func:`chestlens.data.make_split.build_splits`).
    """
    if name in SEGMENTATION_TARGETS:
        return SEGMENTATION_TARGETS[name]
    if name in TASKS:
        return TASKS[name]
    raise ChestlensInputError(
        None,
        f"unknown task {name!r}; known tasks: {', '.join(TASKS)}; "
        f"segmentation targets: {', '.join(SEGMENTATION_TARGETS)}",
    )


def segmentation_classes(source: str, target: str) -> tuple[str, ...]:
    """Mask layers of ``source`` whose union makes ``target`` (empty if the source has none).

    E.g. ``("lung_left", "lung_right")`` for GeneralBlockchain ``lungs``, ``("lung",)`` for V7.
    """
    spec = get_segmentation_target(target)
    modality, classes = SOURCE_MASK_CLASSES.get(source, (spec.modality, ()))
    return tuple(c for c in classes if c in spec.classes) if modality == spec.modality else ()


def sources_for(target: str) -> tuple[str, ...]:
    """Sources that provide at least one layer of ``target``."""
    return tuple(s for s in SOURCE_MASK_CLASSES if segmentation_classes(s, target))


def target_mask(target: str, masks: Masks) -> np.ndarray | None:
    """Union of the target's layers present in ``masks`` (bool, layer shape), or None if none are."""
    layers = [masks.layers[c] for c in get_segmentation_target(target).classes if c in masks.layers]
    return np.logical_or.reduce(layers) if layers else None


def target_label_map(target: str, masks: Masks) -> np.ndarray:
    """The target's ``uint8`` label map on the mask grid (conventions of
    :func:`chestlens.data.label_map.encode_target`, :data:`~chestlens.preprocess.labels.IGNORE_INDEX`
    where ``masks.ignore`` is set).

    Binary: 1 on the union of the target's layers present. Multiclass: ``k`` on ``classes[k - 1]``; a
    layer of the target the masks lack counts as empty, since a sample qualifies
    (:meth:`SegmentationTarget.mapping`) by having one of them and the sources draw every finding they
    see (GeneralBlockchain stores one mask per class present in the image).

    Raises:
        ChestlensInputError: none of the target's layers is present.
    """
    spec = get_segmentation_target(target)
    present = [c for c in spec.classes if c in masks.layers]
    if not present:
        raise ChestlensInputError(None, f"no {target} mask layer among {sorted(masks.layers)}")
    if spec.mode == "binary":
        return encode_target(masks, spec.classes, "binary")
    empty = np.zeros(masks.layers[present[0]].shape, dtype=bool)
    layers = {c: masks.layers.get(c, empty) for c in spec.classes}
    return encode_target(Masks(layers, masks.ignore), spec.classes, "multiclass")
