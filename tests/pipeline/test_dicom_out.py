"""DICOM out: the SR and SEG written for the pip-shipped chest radiograph (RG1) and CT slice re-read with
pydicom (references, values) and highdicom (masks, measurement report)."""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ComprehensiveSRStorage, SegmentationStorage

from chestlens.errors import ChestlensInputError
from chestlens.io.samples import sample_path
from chestlens.pipeline.dicom_out import MANUFACTURER, write_segmentation, write_structured_report
from chestlens.pipeline.schema import (
    Classification,
    Decision,
    Explanation,
    GateVerdict,
    InputInfo,
    Lesion,
    LesionSummary,
    LungMeasurement,
    ModelRef,
    ScreeningResult,
)

pytestmark = pytest.mark.inference

SAMPLES = ("RG1_UNCR.dcm", "CT_small.dcm")
CLASS_CODES = {"COVID-19": "840539006", "pneumonia": "233604007", "normal": "17621005"}


# --- fixtures and builders -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sources() -> dict[str, Dataset]:
    """The two pip-shipped images, read once (pixel data included, as the pipeline has it)."""
    return {name: pydicom.dcmread(sample_path(name)) for name in SAMPLES}


def _model(name: str, kind: str) -> ModelRef:
    return ModelRef(name=name, version="0.1.0", kind=kind, weights_sha256="3f" * 32)


def _result(source: Dataset) -> ScreeningResult:
    """A realistic result for ``source``: areas in mm² only when the image has a usable pixel spacing."""
    is_ct = source.Modality == "CT"
    spacing = tuple(float(v) for v in source.PixelSpacing)
    usable = spacing if min(spacing) > 0 else None
    return ScreeningResult(
        chestlens_version="0.1.0",
        input=InputInfo(
            source=Path(source.filename).name,
            format="dicom",
            modality=source.Modality,
            body_part=source.get("BodyPartExamined"),
            view=source.get("ViewPosition"),
            rows=source.Rows,
            cols=source.Columns,
            pixel_spacing_mm=usable,
            warnings=["2 pixel(s) were not finite and were masked"],
        ),
        gate=GateVerdict(accepted=True, image_type="chest_ct" if is_ct else "chest_radiograph", reason="ok"),
        classification=Classification(
            model=_model("xray3-screener", "classifier"),
            probabilities={"COVID-19": 0.6873120832443237, "pneumonia": 0.2514, "normal": 0.0612879167556763},
            top_label="COVID-19",
            temperature=1.37,
            decisions=[
                Decision(label="COVID-19", threshold=0.41, positive=True, criterion="sensitivity >= 0.90"),
                Decision(label="pneumonia", threshold=0.35, positive=False, criterion="sensitivity >= 0.90"),
            ],
            meaning="What the COVID-19 output means: a test statement.",
        ),
        explanation=Explanation(
            method="gradcam", target_label="COVID-19", layer="blocks.6", energy_in_lungs=0.874
        ),
        lungs=LungMeasurement(
            model=_model("lungs-segmenter", "segmenter"),
            area_mm2=18234.5 if usable else None,
            area_fraction=0.2871,
        ),
        lesions=LesionSummary(
            model=_model("lesions-ct" if is_ct else "lesions-xray", "segmenter"),
            ran=True,
            gate="classifier positive for COVID-19",
            lesions=[
                Lesion(
                    label="ground_glass_opacity",
                    area_mm2=812.25 if usable else None,
                    area_pixels=1856,
                    box=(40, 30, 80, 90),
                    score=0.81,
                )
            ],
            area_mm2_by_label={"ground_glass_opacity": 812.25, "consolidation": 95.5} if usable else {},
            lung_fraction_by_label={"ground_glass_opacity": 0.0445, "consolidation": 0.0052},
        ),
    )


def _masks(source: Dataset) -> dict[str, np.ndarray]:
    """Lungs, a ground-glass patch and an empty consolidation mask on the source's pixel grid."""
    rows, cols = int(source.Rows), int(source.Columns)
    rng = np.random.default_rng(7)
    lungs = np.zeros((rows, cols), bool)
    lungs[rows // 8 : rows * 7 // 8, cols // 10 : cols * 9 // 10] = True
    ggo = lungs & (rng.random((rows, cols)) < 0.05)
    return {"lungs": lungs, "ground_glass_opacity": ggo, "consolidation": np.zeros((rows, cols), bool)}


def _items(sequence: Iterable[Dataset]) -> Iterator[Dataset]:
    """Every content item of an SR content tree, depth first."""
    for item in sequence:
        yield item
        yield from _items(item.get("ContentSequence", []))


def _concept(item: Dataset) -> tuple[str, str]:
    code = item.ConceptNameCodeSequence[0]
    return code.CodingSchemeDesignator, code.CodeValue


def _groups(sr: Dataset) -> dict[str, Dataset]:
    """TID 1501 measurement groups by their tracking identifier text."""
    groups = {}
    for item in _items(sr.ContentSequence):
        if item.ValueType == "CONTAINER" and _concept(item) == ("DCM", "125007"):
            (tracking,) = [c for c in item.ContentSequence if _concept(c) == ("DCM", "112039")]
            groups[tracking.TextValue] = item
    return groups


def _numbers(group: Dataset) -> dict[tuple[str, str], tuple[float, str]]:
    """NUM items of a group: concept -> (value, UCUM unit)."""
    numbers = {}
    for item in group.ContentSequence:
        if item.ValueType == "NUM":
            measured = item.MeasuredValueSequence[0]
            numbers[_concept(item)] = (
                float(measured.NumericValue),
                measured.MeasurementUnitsCodeSequence[0].CodeValue,
            )
    return numbers


def _codes(group: Dataset) -> dict[tuple[str, str], str]:
    """CODE items of a group: concept -> code value."""
    return {
        _concept(c): c.ConceptCodeSequence[0].CodeValue
        for c in group.ContentSequence
        if c.ValueType == "CODE"
    }


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- structured report -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_sr_joins_the_source_study_and_references_the_image(sources, tmp_path, name):
    source = sources[name]
    path = write_structured_report(_result(source), source, tmp_path / "report.sr.dcm")
    sr = pydicom.dcmread(path)

    assert path == tmp_path / "report.sr.dcm" and _leftovers(tmp_path) == ["report.sr.dcm"]
    assert sr.Modality == "SR" and sr.SOPClassUID == ComprehensiveSRStorage
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    assert sr.SeriesInstanceUID != source.SeriesInstanceUID
    assert sr.SOPInstanceUID != source.SOPInstanceUID
    assert (sr.PatientID, sr.PatientName) == (source.PatientID, source.PatientName)  # filed with the patient
    assert sr.Manufacturer == MANUFACTURER and sr.SoftwareVersions == "0.1.0"
    (evidence,) = sr.CurrentRequestedProcedureEvidenceSequence
    assert evidence.StudyInstanceUID == source.StudyInstanceUID
    (series,) = evidence.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    (instance,) = series.ReferencedSOPSequence
    assert (instance.ReferencedSOPClassUID, instance.ReferencedSOPInstanceUID) == (
        source.SOPClassUID,
        source.SOPInstanceUID,
    )
    images = [item for item in _items(sr.ContentSequence) if item.ValueType == "IMAGE"]
    assert images and all(
        item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID for item in images
    )


@pytest.mark.parametrize("name", SAMPLES)
def test_sr_values_equal_the_result(sources, tmp_path, name):
    source = sources[name]
    result = _result(source)
    sr = pydicom.dcmread(write_structured_report(result, source, tmp_path / "r.dcm"))
    groups = _groups(sr)

    for label, probability in result.classification.probabilities.items():
        group = groups[f"classification {label}"]
        assert _codes(group)[("DCM", "121071")] == CLASS_CODES[label]
        value, unit = _numbers(group)[("DCM", "122157")]
        assert value == pytest.approx(probability, abs=1e-9) and unit == "1"
    for decision in result.classification.decisions:
        group = groups[f"classification {decision.label}"]
        assert _numbers(group)[("DCM", "122411")][0] == pytest.approx(decision.threshold)
        present = _codes(group)[("SCT", CLASS_CODES[decision.label])]
        assert present == ("52101004" if decision.positive else "272519000")
    assert ("DCM", "122411") not in _numbers(groups["classification normal"])  # no operating point

    cam = _numbers(groups["explanation gradcam COVID-19"])
    assert cam[("99CHESTLENS", "CAMLUNGENERGY")][0] == pytest.approx(result.explanation.energy_in_lungs)
    lungs = _numbers(groups["lungs"])
    assert lungs[("99CHESTLENS", "LUNGAREAFRACTION")][0] == pytest.approx(result.lungs.area_fraction)
    assert _codes(groups["lungs"])[("DCM", "121071")] == "39607008"
    ggo = _numbers(groups["lesion ground_glass_opacity"])
    assert _codes(groups["lesion ground_glass_opacity"])[("DCM", "121071")] == "112120"
    assert _codes(groups["lesion consolidation"])[("DCM", "121071")] == "95436008"
    assert ggo[("99CHESTLENS", "LESIONLUNGFRAC")][0] == pytest.approx(0.0445)
    if result.lungs.area_mm2 is None:  # RG1: Pixel Spacing 0\0, so no areas in mm²
        assert ("SCT", "42798000") not in lungs and ("SCT", "42798000") not in ggo
    else:
        assert lungs[("SCT", "42798000")] == (pytest.approx(result.lungs.area_mm2), "mm2")
        assert ggo[("SCT", "42798000")] == (pytest.approx(812.25), "mm2")

    texts = [item.TextValue for item in _items(sr.ContentSequence) if item.ValueType == "TEXT"]
    assert result.disclaimer in texts and result.classification.meaning in texts
    assert "reader warning: 2 pixel(s) were not finite and were masked" in texts
    (procedure,) = [c for c in sr.ContentSequence if _concept(c) == ("DCM", "121058")]
    assert procedure.ConceptCodeSequence[0].CodeValue == (
        "169069000" if source.Modality == "CT" else "399208008"
    )


def test_sr_observer_is_the_chestlens_device(sources, tmp_path):
    source = sources["CT_small.dcm"]
    sr = pydicom.dcmread(write_structured_report(_result(source), source, tmp_path / "r.dcm"))
    context = {
        _concept(item): item for item in sr.ContentSequence if item.RelationshipType == "HAS OBS CONTEXT"
    }

    assert context[("DCM", "121005")].ConceptCodeSequence[0].CodeValue == "121007"  # observer type: device
    assert context[("DCM", "121013")].TextValue == "chestlens"
    assert context[("DCM", "121014")].TextValue == "chestlens"
    assert (
        context[("DCM", "121015")].TextValue
        == "xray3-screener 0.1.0; lungs-segmenter 0.1.0; lesions-ct 0.1.0"
    )


def test_sr_reads_back_as_a_highdicom_measurement_report(sources, tmp_path):
    source = sources["RG1_UNCR.dcm"]
    result = _result(source)
    report = hd.sr.srread(write_structured_report(result, source, tmp_path / "r.dcm")).content

    (group,) = report.get_image_measurement_groups(
        finding_type=hd.sr.CodedConcept("233604007", "SCT", "Pneumonia"),
        referenced_sop_instance_uid=source.SOPInstanceUID,
    )
    assert group.tracking_identifier == "classification pneumonia"
    (probability,) = group.get_measurements(name=codes.DCM.Probability)
    assert probability.value == pytest.approx(result.classification.probabilities["pneumonia"])
    assert group.get_qualitative_evaluations()[0].value == codes.SCT.Absent


def test_sr_leaves_out_missing_sections(sources, tmp_path):
    source = sources["CT_small.dcm"]
    result = _result(source).model_copy(update={"explanation": None, "lungs": None})
    result.lesions.ran = False
    sr = pydicom.dcmread(write_structured_report(result, source, tmp_path / "r.dcm"))

    assert sorted(_groups(sr)) == [
        "classification COVID-19",
        "classification normal",
        "classification pneumonia",
    ]


def test_sr_refuses_a_result_with_nothing_to_report(sources, tmp_path):
    source = sources["CT_small.dcm"]
    rejected = _result(source).model_copy(
        update={
            "gate": GateVerdict(accepted=False, image_type="unknown", reason="not a chest image"),
            "classification": None,
            "explanation": None,
            "lungs": None,
            "lesions": None,
        }
    )
    with pytest.raises(ChestlensInputError, match=r"no measurements.*not a chest image") as caught:
        write_structured_report(rejected, source, tmp_path / "r.dcm")
    assert caught.value.path == str(sample_path("CT_small.dcm"))
    assert _leftovers(tmp_path) == []


# --- segmentation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_seg_masks_and_references_round_trip(sources, tmp_path, name):
    source = sources[name]
    masks = _masks(source)
    path = write_segmentation(
        masks, source, tmp_path / "masks.seg.dcm", algorithm_name="lungs-segmenter", algorithm_version="0.1.0"
    )
    seg = pydicom.dcmread(path)

    assert _leftovers(tmp_path) == ["masks.seg.dcm"]
    assert (
        seg.Modality == "SEG" and seg.SOPClassUID == SegmentationStorage and seg.SegmentationType == "BINARY"
    )
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID
    assert (seg.PatientID, seg.Manufacturer) == (source.PatientID, MANUFACTURER)
    (series,) = seg.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    assert [i.ReferencedSOPInstanceUID for i in series.ReferencedInstanceSequence] == [source.SOPInstanceUID]
    assert seg.NumberOfFrames == len(masks)  # the empty consolidation mask keeps its frame
    for frame in seg.PerFrameFunctionalGroupsSequence:
        (reference,) = frame.DerivationImageSequence[0].SourceImageSequence
        assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID

    segments = seg.SegmentSequence
    assert [s.SegmentLabel for s in segments] == list(masks)
    assert [s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in segments] == [
        "39607008",
        "112120",
        "95436008",
    ]
    assert [s.SegmentedPropertyCategoryCodeSequence[0].CodeValue for s in segments] == [
        "91723000",
        "49755003",
        "49755003",
    ]
    assert {s.SegmentAlgorithmType for s in segments} == {"AUTOMATIC"}
    assert {s.SegmentAlgorithmName for s in segments} == {"lungs-segmenter"}

    frames = seg.pixel_array.reshape(len(masks), source.Rows, source.Columns)  # pydicom decode
    numbers = [
        f.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        for f in seg.PerFrameFunctionalGroupsSequence
    ]
    for frame, number in zip(frames, numbers, strict=True):
        np.testing.assert_array_equal(frame.astype(bool), list(masks.values())[number - 1])
    pixels = hd.seg.segread(path).get_pixels_by_source_instance(
        [source.SOPInstanceUID], combine_segments=False
    )
    assert pixels.shape == (1, source.Rows, source.Columns, len(masks))
    for index, mask in enumerate(masks.values()):
        np.testing.assert_array_equal(pixels[0, ..., index].astype(bool), mask)


def test_seg_of_a_radiograph_has_no_pixel_measures(sources, tmp_path):
    source = sources["RG1_UNCR.dcm"]
    seg = pydicom.dcmread(
        write_segmentation(
            _masks(source), source, tmp_path / "s.dcm", algorithm_name="a", algorithm_version="1"
        )
    )
    assert "FrameOfReferenceUID" not in seg
    assert "PixelMeasuresSequence" not in seg.SharedFunctionalGroupsSequence[0]


@pytest.mark.parametrize(
    ("masks", "message"),
    [
        ({}, "no masks"),
        ({"lungs": np.zeros((64, 64), bool)}, "shape"),
        ({"lungs": np.full((128, 128), 2, np.uint8)}, "not binary"),
    ],
)
def test_seg_refuses_bad_masks(sources, tmp_path, masks, message):
    with pytest.raises(ValueError, match=message):
        write_segmentation(
            masks, sources["CT_small.dcm"], tmp_path / "s.dcm", algorithm_name="a", algorithm_version="1"
        )
    assert _leftovers(tmp_path) == []


def test_seg_accepts_integer_masks(sources, tmp_path):
    source = sources["CT_small.dcm"]
    mask = _masks(source)["lungs"].astype(np.uint8)
    path = write_segmentation(
        {"lungs": mask}, source, tmp_path / "s.dcm", algorithm_name="a", algorithm_version="1"
    )
    np.testing.assert_array_equal(pydicom.dcmread(path).pixel_array, mask)


# --- bad sources, failed writes, privacy -----------------------------------------------------------


def _without(source: Dataset, *keywords: str) -> Dataset:
    copied = copy.deepcopy(source)
    for keyword in keywords:
        delattr(copied, keyword)
    return copied


def _write_both(source: Dataset, folder: Path) -> None:
    """Call both writers, expecting each to raise :class:`ChestlensInputError`."""
    with pytest.raises(ChestlensInputError) as sr_error:
        write_structured_report(
            _result(pydicom.dcmread(sample_path("CT_small.dcm"))), source, folder / "r.dcm"
        )
    with pytest.raises(ChestlensInputError) as seg_error:
        write_segmentation(
            {"lungs": np.zeros((128, 128), bool)},
            source,
            folder / "s.dcm",
            algorithm_name="a",
            algorithm_version="1",
        )
    assert sr_error.value.reason == seg_error.value.reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda ds: _without(ds, "StudyInstanceUID"), "lacks StudyInstanceUID"),
        (lambda ds: _without(ds, "Rows", "Columns"), "not an image: no Rows, Columns"),
        (lambda ds: _without(ds, "Modality"), "lacks Modality"),
    ],
    ids=["no-study-uid", "no-rows-columns", "no-modality"],
)
def test_unusable_sources_are_refused_without_output(sources, tmp_path, change, reason):
    source = change(sources["CT_small.dcm"])
    _write_both(source, tmp_path)
    with pytest.raises(ChestlensInputError, match=reason):
        write_structured_report(_result(sources["CT_small.dcm"]), source, tmp_path / "r.dcm")
    assert _leftovers(tmp_path) == []


def test_an_sr_is_not_a_source(sources, tmp_path):
    source = sources["CT_small.dcm"]
    sr = pydicom.dcmread(write_structured_report(_result(source), source, tmp_path / "first.dcm"))
    with pytest.raises(ChestlensInputError, match="not an image"):
        write_structured_report(_result(source), sr, tmp_path / "second.dcm")
    assert _leftovers(tmp_path) == ["first.dcm"]


def test_unknown_sop_class_is_an_input_error(sources, tmp_path):
    source = copy.deepcopy(sources["CT_small.dcm"])
    source.SOPClassUID = "1.2.826.0.1.3680043.8.498.999"
    _write_both(source, tmp_path)
    assert _leftovers(tmp_path) == []


def test_failed_write_leaves_no_file_and_keeps_the_old_one(sources, tmp_path, monkeypatch):
    source = sources["CT_small.dcm"]
    (tmp_path / "r.dcm").write_bytes(b"previous report")

    def fail(_fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        write_structured_report(_result(source), source, tmp_path / "r.dcm")
    with pytest.raises(OSError, match="disk full"):
        write_segmentation(
            _masks(source), source, tmp_path / "s.dcm", algorithm_name="a", algorithm_version="1"
        )

    assert _leftovers(tmp_path) == ["r.dcm"]  # no temporary files, no new SEG
    assert (tmp_path / "r.dcm").read_bytes() == b"previous report"


def test_patient_identity_never_reaches_logs_or_warnings(sources, tmp_path, caplog):
    source = copy.deepcopy(sources["CT_small.dcm"])
    source.PatientName = "Jane Doe"  # no caret: highdicom would warn with the name
    source.PatientID = "PID-7731-XK"
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sr = write_structured_report(_result(source), source, tmp_path / "r.dcm")
        seg = write_segmentation(
            _masks(source), source, tmp_path / "s.dcm", algorithm_name="a", algorithm_version="1"
        )

    said = caplog.text + "\n".join(str(w.message) for w in caught)
    assert "Jane" not in said and "Doe" not in said and "7731" not in said
    for path in (sr, seg):
        written = pydicom.dcmread(path)
        assert (written.PatientName, written.PatientID) == ("Jane Doe", "PID-7731-XK")
