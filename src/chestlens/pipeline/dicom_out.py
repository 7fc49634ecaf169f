"""DICOM out: a screening result as a DICOM Structured Report, its masks as a DICOM Segmentation and,
optionally, its overlay picture as a DICOM Secondary Capture image (:mod:`chestlens.pipeline.dicom_sc`).

Every object is built with highdicom from the *source* image's header, joins the source's study (same
Study Instance UID, patient and study modules copied so a PACS files them next to the image), starts a
new series (a fresh Series Instance UID per call) and references the source image(s) by SOP Class and
SOP Instance UID. Files are written atomically (:func:`chestlens.atomic.write_bytes_atomic`), Explicit
VR Little Endian. Nothing is logged and no patient attribute reaches a message: highdicom validates
the patient name, ID, birth date and sex (and, for the SC, the referring physician's name) with warnings
that quote them, so it works on a copy with these blanked and they are copied verbatim from the source
afterwards. Errors name the source's file
(``source.filename``, ``None`` for a data set built in memory), not the output path.

Equipment: Manufacturer :data:`MANUFACTURER` (``"chestlens"``), Manufacturer's Model Name
``"chestlens"``, Software Versions the chestlens version (the result's ``chestlens_version`` for the SR,
``chestlens.__version__`` for the SEG and SC), Device Serial Number :data:`DEVICE_SERIAL_NUMBER`.
Series Numbers are :data:`SR_SERIES_NUMBER`, :data:`SEG_SERIES_NUMBER` and
:data:`~chestlens.pipeline.dicom_sc.SC_SERIES_NUMBER`; Series Descriptions say "research use only".

Structured Report (Comprehensive SR, TID 1500 "Imaging Measurement Report", preliminary, unverified):

* observer context: a device (TID 1004): name and manufacturer ``chestlens``, model name the bundles
  that contributed (``"xray3-screener 0.1.0; lungs-segmenter 0.1.0"``), a UID derived from the
  chestlens version;
* procedure reported: SCT 169069000 "CT of chest" for CT, SCT 399208008 "Plain chest X-ray" for CR and
  DX, SCT 413815006 "Chest imaging" otherwise;
* one measurement group (TID 1501) per class: finding = the class (SCT codes for COVID-19, pneumonia,
  normal, pneumothorax; a private ``99CHESTLENS`` code otherwise), DCM 122157 "Probability" (UCUM
  ``1``), and for a decision at an operating point DCM 122411 "Threshold Value" plus a qualitative
  evaluation ``<class> = Present | Absent`` (SCT 52101004 / 272519000); the classifier bundle as
  algorithm identification (name, version, weights SHA-256, temperature);
* the heatmap (when its lung share is known): finding = the target class, private ``99CHESTLENS
  CAMLUNGENERGY`` (share of the heatmap inside the lung mask, UCUM ``1``), finding site lung;
* lungs: finding SCT 39607008 "Lung", SCT 42798000 "Area" (UCUM ``mm2``), SCT 118565006 "Volume"
  (UCUM ``ml``), private ``LUNGAREAFRACTION`` (share of the image);
* lesions (only when the lesion segmenter ran): one group per label, finding DCM 112120 "Ground glass
  opacity", SCT 95436008 "Lung consolidation", SCT 36118008 "Pneumothorax" or SCT 52988006 "Lesion",
  with area, volume and private ``LESIONLUNGFRAC`` (share of the lungs);
* the research-use disclaimer, what the headline output means (``classification.meaning``) and the
  reader's warnings (``input.warnings``): TEXT items DCM 121106 "Comment" in the report's UMLS C0034375
  "Qualitative Evaluations" container.

Every group references the source image (DCM 121112 "Source of Measurement"), so the source is listed
in the SR's Current Requested Procedure Evidence Sequence. Sections that are ``None`` are left out.

Segmentation (binary, one segment per mask, algorithm type AUTOMATIC with the given algorithm name and
version, family DCM 123110 "Artificial Intelligence"): lungs as SCT 91723000 "Anatomical Structure" /
SCT 39607008 "Lung", lesions as SCT 49755003 "Morphologically Abnormal Structure" with the codes above
(anatomic region lung). Every label keeps its segment (Segment Sequence) even when its mask is empty.

* One image: one frame per segment, all-zero frames included (``omit_empty_frames`` off), so every
  label also has a frame. For a source without a Frame of Reference (projection radiographs) the SEG
  carries no Pixel Measures: its frame is the source image's pixel grid (Spatial Locations Preserved
  YES); highdicom 0.28.2 would otherwise write a Pixel Spacing without the Slice Thickness its own
  reader requires, and the Pixel Spacing of such files is often meaningless.
* A series (single-frame slices of one series, e.g. a CT series): one multi-frame SEG over every slice.
  Mask plane ``i`` is written against slice ``i`` of the series reader's order
  (:mod:`chestlens.io.series`: by position along the slice normal, i.e. inferior to superior for axial
  CT), and highdicom records per frame the slice it derives from (Derivation Image Sequence) and that
  slice's Image Position (Patient) (Plane Position Sequence); every slice is listed in the Referenced
  Series Sequence. Frames that are empty for a segment are omitted (``omit_empty_frames`` on): an
  uncompressed binary frame of a 512 x 512 slice is 32 KiB, and most slices hold no lesion. COVID-CT-MD
  P001 (148 slices; lungs on every slice, ground glass on 81, consolidation on 45) gives 274 frames,
  8.7 MiB, instead of 444 frames, 14.1 MiB. A segment empty on every slice keeps its description but has
  no frame; readers return all-zero masks for it.

The Secondary Capture (optional) is described in :mod:`chestlens.pipeline.dicom_sc`.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import highdicom as hd
import numpy as np
import pydicom
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

import chestlens
from chestlens.atomic import write_bytes_atomic
from chestlens.errors import ChestlensInputError
from chestlens.io.series import scan_series, select_series
from chestlens.pipeline.dicom_sc import overlay_picture, secondary_capture
from chestlens.pipeline.schema import (
    Classification,
    Explanation,
    LesionSummary,
    LungMeasurement,
    ModelRef,
    ScreeningResult,
)
from chestlens.pipeline.screener import Screening
from chestlens.preprocess.resize import resize_nearest

MANUFACTURER = "chestlens"
MODEL_NAME = "chestlens"
DEVICE_SERIAL_NUMBER = "0"  # software: no hardware serial number
SR_SERIES_NUMBER = 9901
SEG_SERIES_NUMBER = 9902
SR_SERIES_DESCRIPTION = "chestlens screening report (research use only)"
SEG_SERIES_DESCRIPTION = "chestlens masks (research use only)"
PRIVATE_SCHEME = "99CHESTLENS"

_Sop = TypeVar("_Sop", bound=Dataset)

_PIXEL_KEYWORDS = frozenset({"PixelData", "FloatPixelData", "DoubleFloatPixelData"})
_UID_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
_IMAGE_KEYWORDS = ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "PhotometricInterpretation")
_NOT_IMAGES = frozenset(
    {"SEG", "SR", "DOC", "KO", "PR", "PLAN", "RWV", "REG", "FID", "RTDOSE", "RTPLAN", "RTRECORD", "RTSTRUCT"}
)
# Type 2 attributes highdicom reads from the source; absent ones are added empty to the working copy.
_TYPE2_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
# highdicom validates these and may warn or log with their values: blanked while building, then copied
# verbatim from the source.
_IDENTITY_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "ReferringPhysicianName")

_UNITLESS = codes.UCUM.NoUnits
_MM2 = codes.UCUM.SquareMillimeter
_ML = hd.sr.CodedConcept("ml", "UCUM", "milliliter")
_PRESENT = codes.SCT.Present
_ABSENT = codes.SCT.Absent
_LUNG = codes.SCT.Lung
_ANATOMY = codes.SCT.AnatomicalStructure
_ABNORMAL = codes.SCT.MorphologicallyAbnormalStructure
_LESION = codes.SCT.Lesion
_CAM_ENERGY = hd.sr.CodedConcept("CAMLUNGENERGY", PRIVATE_SCHEME, "Heatmap energy share inside lungs")
_LUNG_FRACTION = hd.sr.CodedConcept("LUNGAREAFRACTION", PRIVATE_SCHEME, "Lung area fraction of image")
_LESION_FRACTION = hd.sr.CodedConcept("LESIONLUNGFRAC", PRIVATE_SCHEME, "Lesion area fraction of lungs")
_QUALITATIVE_EVALUATIONS = hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")

_CLASS_CODES: dict[str, hd.sr.CodedConcept] = {
    "covid_19": hd.sr.CodedConcept("840539006", "SCT", "COVID-19"),
    "pneumonia": hd.sr.CodedConcept("233604007", "SCT", "Pneumonia"),
    "normal": hd.sr.CodedConcept("17621005", "SCT", "Normal"),
    "pneumothorax": hd.sr.CodedConcept("36118008", "SCT", "Pneumothorax"),
}
_REGION_CODES: dict[str, hd.sr.CodedConcept] = {
    "lung": hd.sr.CodedConcept.from_code(_LUNG),
    "lungs": hd.sr.CodedConcept.from_code(_LUNG),
    "ggo": hd.sr.CodedConcept.from_code(codes.DCM.GroundGlassOpacity),
    "ground_glass_opacity": hd.sr.CodedConcept.from_code(codes.DCM.GroundGlassOpacity),
    "consolidation": hd.sr.CodedConcept("95436008", "SCT", "Lung consolidation"),
    "pneumothorax": hd.sr.CodedConcept("36118008", "SCT", "Pneumothorax"),
}
_PROCEDURES: dict[str, hd.sr.CodedConcept] = {
    "CT": hd.sr.CodedConcept("169069000", "SCT", "CT of chest"),
    "CR": hd.sr.CodedConcept("399208008", "SCT", "Plain chest X-ray"),
    "DX": hd.sr.CodedConcept("399208008", "SCT", "Plain chest X-ray"),
}
_DEFAULT_PROCEDURE = hd.sr.CodedConcept.from_code(codes.SCT.ChestImaging)


def _new_instance(version: str) -> dict[str, object]:
    """Identity of a new chestlens instance: fresh series and SOP instance UIDs, the device description."""
    return {
        "series_instance_uid": hd.UID(),
        "sop_instance_uid": hd.UID(),
        "instance_number": 1,
        "manufacturer": MANUFACTURER,
        "manufacturer_model_name": MODEL_NAME,
        "software_versions": version,
        "device_serial_number": DEVICE_SERIAL_NUMBER,
    }


def write_structured_report(result: ScreeningResult, source: Dataset, path: Path) -> Path:
    """Write ``result`` as a DICOM Comprehensive SR (TID 1500) in the source image's study.

    Args:
        result: the screening result of ``source``.
        source: the screened DICOM image (header is enough; pixel data is not read).
        path: output file, replaced atomically.

    Returns:
        ``path``.

    Raises:
        ChestlensInputError: ``source`` is not a usable DICOM image (no UIDs, no image attributes, an SR
            or SEG...), or the result holds nothing to report (e.g. rejected by the quality gate).
    """
    where = _where(source)
    _check_source(source, where)
    header = _header(source)
    reference = hd.sr.SourceImageForMeasurementGroup.from_source_image(header)
    groups = _measurement_groups(result, reference)
    if not groups:
        raise ChestlensInputError(
            where, f"the screening result has no measurements for a DICOM SR (gate: {result.gate.reason})"
        )
    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(result),
        procedure_reported=_PROCEDURES.get(str(header.Modality).upper(), _DEFAULT_PROCEDURE),
        imaging_measurements=groups,
        title=codes.DCM.ImagingMeasurementReport,
    )
    meaning = result.classification.meaning if result.classification is not None else None
    warnings = [f"reader warning: {w}" for w in result.input.warnings]
    texts = [result.disclaimer, *([meaning] if meaning else []), *warnings]
    report[0].ContentSequence.append(_comments(texts))
    sr = _build(
        where,
        lambda: hd.sr.ComprehensiveSR(
            evidence=[header],
            content=report[0],
            series_number=SR_SERIES_NUMBER,
            is_complete=True,
            **_new_instance(result.chestlens_version),
            series_description=SR_SERIES_DESCRIPTION,
            coding_schemes=[_private_scheme()],
        ),
    )
    return _save(sr, source, path)


def write_segmentation(
    masks: Mapping[str, np.ndarray],
    source: Dataset | Sequence[Dataset],
    path: Path,
    *,
    algorithm_name: str,
    algorithm_version: str,
) -> Path:
    """Write binary masks as a DICOM SEG of the source image or series, one segment per label in ``masks``
    order (empty frames: see the module docstring).

    Args:
        masks: label (e.g. ``"lungs"``, ``"ground_glass_opacity"``, ``"consolidation"``) -> bool array on
            the source's pixel grid: ``(rows, cols)`` for one image; ``(slices, rows, cols)`` for a series,
            plane ``i`` on ``source[i]``. Empty masks keep their segment.
        source: the single-frame DICOM image the masks were computed on, or the single-frame slices of one
            series in the order of the masks' first axis (headers are enough).
        path: output file, replaced atomically.
        algorithm_name: recorded as the segments' algorithm (e.g. the segmenter bundle's name).
        algorithm_version: the algorithm's version.

    Returns:
        ``path``.

    Raises:
        ChestlensInputError: a source is not a usable single-frame DICOM image, or the slices are not one
            series highdicom can derive from (different series or sizes, no positions...).
        ValueError: no masks or no slices, or a mask that is not a binary array of the sources' shape.
    """
    sources = [source] if isinstance(source, Dataset) else list(source)
    if not sources:
        raise ValueError("no source slices for a DICOM SEG")
    for item in sources:
        _check_source(item, _where(item))
        if int(item.get("NumberOfFrames") or 1) != 1:
            raise ChestlensInputError(
                _where(item), "DICOM SEG output supports single-frame source images only"
            )
    grid = (int(sources[0].Rows), int(sources[0].Columns))
    volume = not isinstance(source, Dataset)
    pixels = _mask_stack(masks, (len(sources), *grid) if volume else grid)
    headers = [_header(item) for item in sources]
    if "FrameOfReferenceUID" not in headers[0]:
        for header in headers:
            header.pop("PixelSpacing", None)  # see the module docstring
    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name, family=codes.DCM.ArtificialIntelligence, version=algorithm_version
    )
    descriptions = _segment_descriptions(masks, algorithm)
    seg = _build(
        _where(sources[0]),
        lambda: hd.seg.Segmentation(
            source_images=headers,
            pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_number=SEG_SERIES_NUMBER,
            **_new_instance(chestlens.__version__),
            omit_empty_frames=volume,
            series_description=SEG_SERIES_DESCRIPTION,
        ),
    )
    return _save(seg, sources[0], path)


def write_secondary_capture(picture: np.ndarray, source: Dataset, path: Path) -> Path:
    """Write ``picture`` as an RGB DICOM Secondary Capture image in the source image's study, referencing
    the source (:func:`chestlens.pipeline.dicom_sc.secondary_capture`).

    Args:
        picture: uint8 RGB ``(height, width, 3)``, e.g. from
            :func:`chestlens.pipeline.dicom_sc.overlay_picture`.
        source: the DICOM image the picture shows (header is enough).
        path: output file, replaced atomically.

    Returns:
        ``path``.

    Raises:
        ChestlensInputError: ``source`` is not a usable DICOM image.
        ValueError: ``picture`` is not a uint8 RGB array.
    """
    if picture.dtype != np.uint8 or picture.ndim != 3 or picture.shape[2] != 3:
        raise ValueError(
            f"a secondary capture takes uint8 RGB (height, width, 3), not {picture.dtype} {picture.shape}"
        )
    where = _where(source)
    _check_source(source, where)
    header = _header(source)
    sc = _build(where, lambda: secondary_capture(picture, header, **_new_instance(chestlens.__version__)))
    return _save(sc, source, path)


# --- the source ------------------------------------------------------------------------------------


def _where(source: Dataset) -> str | None:
    """The source's file name for error messages (``None`` for a data set built in memory)."""
    filename = getattr(source, "filename", None)
    return filename if isinstance(filename, str) and filename else None


def _check_source(source: Dataset, where: str | None) -> None:
    """Refuse data sets that are not images with the UIDs a PACS needs to file derived objects."""
    missing = [keyword for keyword in _UID_KEYWORDS if not source.get(keyword)]
    if missing:
        raise ChestlensInputError(where, f"DICOM source lacks {', '.join(missing)}")
    modality = str(source.get("Modality") or "").upper()
    if not modality:
        raise ChestlensInputError(where, "DICOM source lacks Modality")
    if modality in _NOT_IMAGES:
        raise ChestlensInputError(where, f"DICOM source is not an image (Modality {modality})")
    absent = [keyword for keyword in _IMAGE_KEYWORDS if source.get(keyword) in (None, "")]
    if absent:
        raise ChestlensInputError(where, f"DICOM source is not an image: no {', '.join(absent)}")


def _header(source: Dataset) -> Dataset:
    """A deep copy of the source without pixel data, with the Type 2 attributes highdicom reads present
    (empty when absent) and the patient identity blanked (restored by :func:`_restore_identity`)."""
    header = Dataset()
    for element in source:
        if element.keyword not in _PIXEL_KEYWORDS:
            header.add(copy.deepcopy(element))
    if hasattr(source, "file_meta"):
        header.file_meta = copy.deepcopy(source.file_meta)
    for keyword in _TYPE2_KEYWORDS:
        if keyword not in header:
            setattr(header, keyword, None)
    for keyword in _IDENTITY_KEYWORDS:
        setattr(header, keyword, None)
    return header


def _restore_identity(instance: Dataset, source: Dataset) -> None:
    """Copy the patient identity elements verbatim from the source (no validation, nothing logged)."""
    for keyword in _IDENTITY_KEYWORDS:
        if keyword in source:
            instance.add(copy.deepcopy(source[keyword]))


def _build(where: str | None, make: Callable[[], _Sop]) -> _Sop:
    """Run a highdicom constructor; its refusals of the source become :class:`ChestlensInputError`."""
    try:
        return make()
    except KeyError as error:  # highdicom's IOD tables have no entry for the source's SOP Class
        raise ChestlensInputError(
            where, f"highdicom does not support this DICOM source (unknown SOP Class or attribute {error})"
        ) from error
    except (ValueError, AttributeError) as error:
        raise ChestlensInputError(
            where, f"highdicom cannot derive from this DICOM source: {error}"
        ) from error


def _save(instance: Dataset, source: Dataset, path: Path) -> Path:
    """Restore the patient identity, encode as a DICOM file and write it atomically."""
    _restore_identity(instance, source)
    buffer = io.BytesIO()
    instance.save_as(buffer, enforce_file_format=True)
    return write_bytes_atomic(Path(path), buffer.getvalue())


# --- structured report -----------------------------------------------------------------------------


def _key(label: str) -> str:
    """Normalised label for code look-ups: ``"COVID-19"`` -> ``"covid_19"``."""
    return label.strip().lower().replace("-", "_").replace(" ", "_")


def _private_code(label: str) -> hd.sr.CodedConcept:
    """A chestlens private code for a label without a standard code (the label is value and meaning)."""
    return hd.sr.CodedConcept(label, PRIVATE_SCHEME, label[:64])


def _class_code(label: str) -> hd.sr.CodedConcept:
    return _CLASS_CODES.get(_key(label)) or _private_code(label)


def _region_code(label: str) -> hd.sr.CodedConcept:
    return _REGION_CODES.get(_key(label)) or hd.sr.CodedConcept.from_code(_LESION)


def _private_scheme() -> CodingSchemeIdentificationItem:
    return CodingSchemeIdentificationItem(
        designator=PRIVATE_SCHEME, name="chestlens private codes", responsible_organization=MANUFACTURER
    )


def _models(result: ScreeningResult) -> list[ModelRef]:
    """The bundles that contributed to the result, without repeats, in pipeline order."""
    refs = [
        result.classification.model if result.classification else None,
        result.lungs.model if result.lungs else None,
        result.lesions.model if result.lesions else None,
    ]
    unique: dict[tuple[str, str], ModelRef] = {}
    for ref in refs:
        if ref is not None:
            unique.setdefault((ref.name, ref.version), ref)
    return list(unique.values())


def _observation_context(result: ScreeningResult) -> hd.sr.ObservationContext:
    """Device observer: chestlens, with the contributing bundles as model name."""
    models = "; ".join(f"{ref.name} {ref.version}" for ref in _models(result))
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=[MANUFACTURER, result.chestlens_version]),
        name=MANUFACTURER,
        manufacturer_name=MANUFACTURER,
        model_name=models or f"{MODEL_NAME} {result.chestlens_version}",
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )


def _algorithm(ref: ModelRef, *parameters: str) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=ref.name, version=ref.version, parameters=[f"weights_sha256={ref.weights_sha256}", *parameters]
    )


def _tracking(description: str) -> hd.sr.TrackingIdentifier:
    return hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=description)


def _measurement(
    name: Code | hd.sr.CodedConcept, value: float, unit: Code | hd.sr.CodedConcept
) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=name, value=float(value), unit=unit)


def _measurement_groups(
    result: ScreeningResult, reference: hd.sr.SourceImageForMeasurementGroup
) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    """All TID 1501 groups of the report, skipping the result's missing sections."""
    groups = []
    if result.classification is not None:
        groups += _classification_groups(result.classification, reference)
    if result.explanation is not None and result.explanation.energy_in_lungs is not None:
        groups.append(
            _explanation_group(
                result.explanation, result.explanation.energy_in_lungs, result.chestlens_version, reference
            )
        )
    if result.lungs is not None:
        groups.append(_lung_group(result.lungs, result.chestlens_version, reference))
    if result.lesions is not None and result.lesions.ran:
        groups += _lesion_groups(result.lesions, reference)
    return groups


def _classification_groups(
    classification: Classification, reference: hd.sr.SourceImageForMeasurementGroup
) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    """One group per class: probability, and the decision at the operating point when there is one."""
    decisions = {decision.label: decision for decision in classification.decisions}
    algorithm = _algorithm(classification.model, f"temperature={classification.temperature}")
    labels = list(classification.probabilities) + [
        d for d in decisions if d not in classification.probabilities
    ]
    groups = []
    for label in labels:
        finding = _class_code(label)
        measurements = []
        evaluations = []
        if label in classification.probabilities:
            measurements.append(
                _measurement(codes.DCM.Probability, classification.probabilities[label], _UNITLESS)
            )
        if label in decisions:
            decision = decisions[label]
            measurements.append(_measurement(codes.DCM.ThresholdValue, decision.threshold, _UNITLESS))
            evaluations.append(
                hd.sr.QualitativeEvaluation(finding, _PRESENT if decision.positive else _ABSENT)
            )
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=_tracking(f"classification {label}"),
                finding_type=finding,
                algorithm_id=algorithm,
                measurements=measurements,
                qualitative_evaluations=evaluations or None,
                source_images=[reference],
            )
        )
    return groups


def _explanation_group(
    explanation: Explanation, energy: float, version: str, reference: hd.sr.SourceImageForMeasurementGroup
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """The share of the class-activation map's mass inside the lungs."""
    algorithm = hd.sr.AlgorithmIdentification(
        name=f"chestlens {explanation.method}", version=version, parameters=[f"layer={explanation.layer}"]
    )
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(f"explanation {explanation.method} {explanation.target_label}"),
        finding_type=_class_code(explanation.target_label),
        algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(_LUNG)],
        measurements=[_measurement(_CAM_ENERGY, energy, _UNITLESS)],
        source_images=[reference],
    )


def _lung_group(
    lungs: LungMeasurement, version: str, reference: hd.sr.SourceImageForMeasurementGroup
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """Lung area (mm²), volume (mL, CT series) and share of the image."""
    if lungs.model is not None:
        algorithm = _algorithm(lungs.model)
    else:
        algorithm = hd.sr.AlgorithmIdentification(name="chestlens Hounsfield-unit lung rule", version=version)
    measurements = _sizes(lungs.area_mm2, lungs.volume_ml)
    measurements.append(_measurement(_LUNG_FRACTION, lungs.area_fraction, _UNITLESS))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking("lungs"),
        finding_category=_ANATOMY,
        finding_type=_LUNG,
        algorithm_id=algorithm,
        measurements=measurements,
        source_images=[reference],
    )


def _lesion_groups(
    lesions: LesionSummary, reference: hd.sr.SourceImageForMeasurementGroup
) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    """One group per lesion label: total area (mm²), volume (mL) and share of the lungs."""
    algorithm = _algorithm(lesions.model)
    groups = []
    for label in _lesion_labels(lesions):
        measurements = _sizes(lesions.area_mm2_by_label.get(label), lesions.volume_ml_by_label.get(label))
        if label in lesions.lung_fraction_by_label:
            measurements.append(
                _measurement(_LESION_FRACTION, lesions.lung_fraction_by_label[label], _UNITLESS)
            )
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=_tracking(f"lesion {label}"),
                finding_category=_ABNORMAL,
                finding_type=_region_code(label),
                algorithm_id=algorithm,
                finding_sites=[hd.sr.FindingSite(_LUNG)],
                measurements=measurements,
                source_images=[reference],
            )
        )
    return groups


def _lesion_labels(lesions: LesionSummary) -> list[str]:
    """Labels with a summary measurement, in first-seen order."""
    keys: Iterable[str] = (
        *lesions.area_mm2_by_label,
        *lesions.volume_ml_by_label,
        *lesions.lung_fraction_by_label,
    )
    return list(dict.fromkeys(keys))


def _sizes(area_mm2: float | None, volume_ml: float | None) -> list[hd.sr.Measurement]:
    """Area and volume measurements, each only when known."""
    sizes = []
    if area_mm2 is not None:
        sizes.append(_measurement(codes.SCT.Area, area_mm2, _MM2))
    if volume_ml is not None:
        sizes.append(_measurement(codes.SCT.Volume, volume_ml, _ML))
    return sizes


def _comments(texts: list[str]) -> hd.sr.ContainerContentItem:
    """TID 1500 "Qualitative Evaluations" container holding ``texts`` as comments: the research-use
    disclaimer, what the headline output means (``classification.meaning``) where known, and the
    reader's warnings (``input.warnings``)."""
    container = hd.sr.ContainerContentItem(
        name=_QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    comment = codes.DCM.Comment
    items = [hd.sr.TextContentItem(name=comment, value=t, relationship_type=contains) for t in texts]
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container


# --- segmentation ----------------------------------------------------------------------------------


def _mask_stack(masks: Mapping[str, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """``(planes, rows, cols, segments)`` uint8 of the masks in order, after checking shape and values;
    ``shape`` is ``(rows, cols)`` for one image (one plane) or ``(slices, rows, cols)`` for a series."""
    if not masks:
        raise ValueError("no masks to write as DICOM SEG")
    planes = []
    for label, mask in masks.items():
        array = np.asarray(mask)
        if array.shape != shape:
            raise ValueError(f"mask {label!r} has shape {array.shape}, the source is {shape}")
        if array.dtype != bool and not np.isin(array, (0, 1)).all():
            raise ValueError(f"mask {label!r} is not binary (values other than 0 and 1)")
        planes.append(array.view(np.uint8) if array.dtype == bool else array.astype(np.uint8, copy=False))
    stacked = np.stack(planes, axis=-1)
    return stacked if len(shape) == 3 else stacked[np.newaxis]


def _segment_descriptions(
    masks: Mapping[str, np.ndarray], algorithm: hd.AlgorithmIdentificationSequence
) -> list[hd.seg.SegmentDescription]:
    """Segment 1..n in mask order: lungs as anatomy, everything else as an abnormal structure in the lung."""
    descriptions = []
    for number, label in enumerate(masks, start=1):
        anatomy = _key(label) in ("lung", "lungs")
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=label[:64],
                segmented_property_category=_ANATOMY if anatomy else _ABNORMAL,
                segmented_property_type=_region_code(label),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                anatomic_regions=None if anatomy else [_LUNG],
            )
        )
    return descriptions


def write_dicom_outputs(
    screening: Screening, source_path: Path, folder: Path, stem: str, *, secondary_capture: bool = False
) -> list[Path]:
    """Write the DICOM results of a screening of one DICOM image or one DICOM series into ``folder``.

    * ``<stem>_sr.dcm``: :func:`write_structured_report`, referencing the image, or for a series its first
      slice in the series reader's order;
    * ``<stem>_seg.dcm``, when the screening has masks: :func:`write_segmentation` with the lung mask and
      one mask per lesion label (``screening.lesion_labels``), resized (nearest) to the source grid; for
      a series one multi-frame SEG over every slice. The 3-D masks of a multi-frame file get no SEG;
    * ``<stem>_sc.dcm``, with ``secondary_capture``: :func:`write_secondary_capture` of the overlay
      picture (:func:`chestlens.pipeline.dicom_sc.overlay_picture`; a series shows one slice).

    Args:
        screening: the screening of ``source_path``.
        source_path: the screened DICOM file, or the screened DICOM series' folder (the folder that was
            given to the screener; its slices are matched to the mask planes by the reader's sort).
        folder: where the files are written (atomically).
        stem: file name stem.
        secondary_capture: also write the overlay as a Secondary Capture image.

    Returns:
        The written paths, in the order above.

    Raises:
        ChestlensInputError: the source is unusable, the result holds nothing to report, or the series
            folder no longer holds exactly the slices that were screened.
    """
    path = Path(source_path)
    series = path.is_dir()
    files = _series_files(screening, path) if series else (path,)
    sources = [pydicom.dcmread(file, stop_before_pixels=True) for file in files]
    written = [write_structured_report(screening.result, sources[0], folder / f"{stem}_sr.dcm")]
    masks = _masks_on_grid(screening, (int(sources[0].Rows), int(sources[0].Columns)), 3 if series else 2)
    if masks:
        model = screening.result.lungs.model if screening.result.lungs else None
        written.append(
            write_segmentation(
                masks,
                sources if series else sources[0],
                folder / f"{stem}_seg.dcm",
                algorithm_name=model.name if model else "chestlens",
                algorithm_version=model.version if model else "",
            )
        )
    if secondary_capture:
        picture, shown = overlay_picture(screening, sources)
        written.append(write_secondary_capture(picture, shown, folder / f"{stem}_sc.dcm"))
    return written


def _series_files(screening: Screening, folder: Path) -> tuple[Path, ...]:
    """The screened series' slice files in the series reader's order (mask plane ``i`` is file ``i``):
    the same scan and sort as :func:`chestlens.io.series.read_series`, checked against what was screened."""
    meta = screening.image.meta
    if meta.format != "dicom-series":
        raise ChestlensInputError(str(folder), f"a folder was given but the screening is of {meta.format}")
    info, _ = select_series(scan_series(folder), meta.series_key, str(folder))
    if info.n_slices != meta.n_frames or info.positions_mm != meta.slice_positions_mm:
        raise ChestlensInputError(
            str(folder),
            f"the series changed after it was screened: {meta.n_frames} slices screened, {info.n_slices} "
            "there now",
        )
    return info.files


def _masks_on_grid(screening: Screening, grid: tuple[int, int], ndim: int) -> dict[str, np.ndarray]:
    """Lung and lesion masks of ``ndim`` dimensions (2: one image, 3: a series), resized (nearest) to the
    source's ``grid`` = ``(rows, cols)``; label -> bool ``(rows, cols)`` or ``(slices, rows, cols)``."""
    masks: dict[str, np.ndarray] = {}
    if screening.lung_mask is not None and screening.lung_mask.ndim == ndim:
        masks["lungs"] = resize_nearest(screening.lung_mask, grid)
    if screening.lesion_map is not None and screening.lesion_map.ndim == ndim:
        labels = resize_nearest(screening.lesion_map, grid)
        for k, label in enumerate(screening.lesion_labels, start=1):
            masks[label] = labels == k
    return masks
