"""DICOM out for a CT series (one multi-frame SEG over every slice) and the secondary-capture overlay.

The series is built from the pip-shipped CT_small.dcm: six slices whose file names and Instance Numbers
both disagree with their positions, so a mask plane can only land on its slice if the writer follows the
series reader's sort (Image Position (Patient) along the slice normal). The masks mark one known slice
each; the SEG is read back with highdicom and its frames are checked against the slices' UIDs and
positions. The real COVID-CT-MD series P001 (slow, shared data) is checked against an independent sort.
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

from chestlens.errors import ChestlensInputError
from chestlens.io import read_image
from chestlens.io.samples import sample_path
from chestlens.pipeline import dicom_sc
from chestlens.pipeline.dicom_out import write_dicom_outputs, write_secondary_capture, write_segmentation
from chestlens.pipeline.dicom_sc import SC_SERIES_DESCRIPTION, SC_SERIES_NUMBER, overlay_picture
from chestlens.pipeline.schema import (
    Classification,
    GateVerdict,
    InputInfo,
    LesionSummary,
    LungMeasurement,
    ModelRef,
    ScreeningResult,
)
from chestlens.pipeline.screener import Screener, Screening
from chestlens.preprocess.resize import resize_nearest

pytestmark = pytest.mark.inference

POSITIONS_MM = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)  # reader's order: ascending z
FILE_ORDER = (3, 0, 5, 1, 4, 2)  # slice k is written as f"slice{FILE_ORDER[k]}.dcm"
LUNG_SLICE, LESION_SLICE = 2, 4  # the only slices with lungs and with ground glass
LESION_LABELS = ["ground_glass_opacity", "consolidation"]  # consolidation stays empty


def _model(name: str) -> ModelRef:
    return ModelRef(name=name, version="0.1.0", kind="segmenter", weights_sha256="3f" * 32)


def _result(modality: str, name: str) -> ScreeningResult:
    """A result with probabilities, lungs and lesions (the SR needs measurements)."""
    return ScreeningResult(
        chestlens_version="0.1.0",
        input=InputInfo(
            source=name,
            format="dicom",
            modality=modality,
            body_part=None,
            view=None,
            rows=1,
            cols=1,
            pixel_spacing_mm=None,
        ),
        gate=GateVerdict(accepted=True, image_type="chest_ct", reason="ok"),
        classification=Classification(
            model=ModelRef(
                name="xray3-screener", version="0.1.0", kind="classifier", weights_sha256="ab" * 32
            ),
            probabilities={"COVID-19": 0.7, "pneumonia": 0.2, "normal": 0.1},
            top_label="COVID-19",
            temperature=1.0,
        ),
        lungs=LungMeasurement(model=_model("lungs-segmenter"), area_mm2=None, area_fraction=0.3),
        lesions=LesionSummary(
            model=_model("lesions-ct"),
            ran=True,
            gate="run",
            lung_fraction_by_label={"ground_glass_opacity": 0.1},
        ),
    )


@pytest.fixture
def series(tmp_path) -> tuple[Path, list[Dataset]]:
    """Six CT_small slices in ``tmp_path/series`` with shuffled file names and reversed Instance Numbers;
    returns the folder and the slices in position order."""
    folder = tmp_path / "series"
    folder.mkdir()
    template = pydicom.dcmread(sample_path("CT_small.dcm"))
    slices = []
    for k, z in enumerate(POSITIONS_MM):
        ds = copy.deepcopy(template)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImagePositionPatient = [-80.0, -90.0, z]
        ds.SliceLocation = z
        ds.InstanceNumber = len(POSITIONS_MM) - k
        ds.save_as(folder / f"slice{FILE_ORDER[k]}.dcm", enforce_file_format=True)
        slices.append(ds)
    return folder, slices


def _series_screening(folder: Path) -> Screening:
    """The screening of ``folder`` as the screener returns it: the reader's volume, lungs on the image grid
    (only on :data:`LUNG_SLICE`), ground glass on a coarser lesion grid (only on :data:`LESION_SLICE`)."""
    image = read_image(folder)
    slices, rows, cols = image.pixels.shape
    lungs = np.zeros((slices, rows, cols), bool)
    lungs[LUNG_SLICE, 20:100, 10:60] = True
    lesions = np.zeros((slices, 64, 64), np.uint8)
    lesions[LESION_SLICE, 30:40, 10:20] = 1
    return Screening(
        result=_result("CT", str(folder)),
        image=image,
        lung_mask=lungs,
        lesion_map=lesions,
        lesion_labels=LESION_LABELS,
    )


def _frames(seg: Dataset) -> list[tuple[int, str, list[float]]]:
    """(segment number, source SOP Instance UID, Image Position (Patient)) of every frame."""
    return [
        (
            int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber),
            str(frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID),
            [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient],
        )
        for frame in seg.PerFrameFunctionalGroupsSequence
    ]


# --- SEG of a series -------------------------------------------------------------------------------


def test_series_seg_frames_land_on_the_slices_they_came_from(series, tmp_path):
    folder, slices = series
    screening = _series_screening(folder)
    assert screening.image.meta.slice_positions_mm == POSITIONS_MM  # the reader's order is by position

    sr_path, seg_path = write_dicom_outputs(screening, folder, tmp_path / "out", "r")

    seg = hd.seg.segread(seg_path)
    uids = [str(ds.SOPInstanceUID) for ds in slices]
    assert seg.StudyInstanceUID == slices[0].StudyInstanceUID
    assert seg.SeriesInstanceUID not in (
        slices[0].SeriesInstanceUID,
        pydicom.dcmread(sr_path).SeriesInstanceUID,
    )
    (referenced,) = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == slices[0].SeriesInstanceUID
    assert sorted(i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence) == sorted(uids)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["lungs", *LESION_LABELS]  # empty one kept
    # empty frames are left out: one lung frame, one ground-glass frame, none for consolidation
    assert sorted(_frames(seg)) == [
        (1, uids[LUNG_SLICE], [-80.0, -90.0, POSITIONS_MM[LUNG_SLICE]]),
        (2, uids[LESION_SLICE], [-80.0, -90.0, POSITIONS_MM[LESION_SLICE]]),
    ]
    pixels = seg.get_pixels_by_source_instance(
        uids, segment_numbers=[1, 2, 3], combine_segments=False, assert_missing_frames_are_empty=True
    )
    assert pixels.shape == (6, 128, 128, 3)
    np.testing.assert_array_equal(pixels[..., 0].astype(bool), screening.lung_mask)
    ggo = np.zeros((6, 128, 128), bool)
    ggo[LESION_SLICE, 60:80, 20:40] = True  # the 64 px lesion grid resized (nearest) to 128 px
    np.testing.assert_array_equal(pixels[..., 1].astype(bool), ggo)
    assert not pixels[..., 2].any()
    sr = pydicom.dcmread(sr_path)  # the SR references the first slice in the reader's order
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == uids[0]


def test_series_seg_is_refused_when_the_folder_changed_after_screening(series, tmp_path):
    folder, slices = series
    screening = _series_screening(folder)
    late = copy.deepcopy(slices[0])
    late.SOPInstanceUID = late.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    late.ImagePositionPatient = [-80.0, -90.0, 30.0]
    late.save_as(folder / "late.dcm", enforce_file_format=True)

    with pytest.raises(ChestlensInputError, match="changed after it was screened: 6 slices screened, 7"):
        write_dicom_outputs(screening, folder, tmp_path / "out", "r")
    assert not (tmp_path / "out").exists()


def test_series_seg_refuses_masks_of_another_slice_count(series, tmp_path):
    _, slices = series
    with pytest.raises(ValueError, match=r"shape \(5, 128, 128\), the source is \(6, 128, 128\)"):
        write_segmentation(
            {"lungs": np.zeros((5, 128, 128), bool)},
            slices,
            tmp_path / "s.dcm",
            algorithm_name="a",
            algorithm_version="1",
        )
    assert list(tmp_path.glob("*.dcm")) == []


def test_slices_of_two_series_are_an_input_error(series, tmp_path):
    _, slices = series
    other = copy.deepcopy(slices[1])
    other.SeriesInstanceUID = generate_uid()
    with pytest.raises(ChestlensInputError, match="highdicom cannot derive"):
        write_segmentation(
            {"lungs": np.ones((2, 128, 128), bool)},
            [slices[0], other],
            tmp_path / "s.dcm",
            algorithm_name="a",
            algorithm_version="1",
        )


# --- secondary capture -----------------------------------------------------------------------------


def _image_screening(name: str) -> Screening:
    """A 2-D screening of a pip sample with a lung block and a ground-glass patch."""
    image = read_image(sample_path(name))
    rows, cols = image.pixels.shape
    lungs = np.zeros((rows, cols), bool)
    lungs[rows // 8 : rows * 7 // 8, cols // 10 : cols * 9 // 10] = True
    lesions = np.zeros((64, 64), np.uint8)
    lesions[30:40, 10:20] = 1
    modality = "CT" if name.startswith("CT") else "CR"
    return Screening(
        result=_result(modality, name),
        image=image,
        lung_mask=lungs,
        lesion_map=lesions,
        lesion_labels=LESION_LABELS,
    )


@pytest.mark.parametrize(
    ("name", "orientation"), [("RG1_UNCR.dcm", ["L", "F"]), ("CT_small.dcm", ["L", "P"])]
)
def test_sc_joins_the_study_in_a_new_series_and_references_the_source(tmp_path, name, orientation):
    path = sample_path(name)
    source = pydicom.dcmread(path)
    written = write_dicom_outputs(_image_screening(name), path, tmp_path, "r", secondary_capture=True)

    assert [p.name for p in written] == ["r_sr.dcm", "r_seg.dcm", "r_sc.dcm"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "r_sc.dcm",
        "r_seg.dcm",
        "r_sr.dcm",
    ]  # no temp files
    sr, seg, sc = (pydicom.dcmread(p) for p in written)
    assert sc.SOPClassUID == SecondaryCaptureImageStorage and sc.Modality == "OT"
    assert sc.StudyInstanceUID == source.StudyInstanceUID
    assert sc.SeriesInstanceUID not in {source.SeriesInstanceUID, sr.SeriesInstanceUID, seg.SeriesInstanceUID}
    assert (sc.SeriesNumber, sc.SeriesDescription) == (SC_SERIES_NUMBER, SC_SERIES_DESCRIPTION)
    assert "research use only" in sc.SeriesDescription
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID", "StudyDate"):
        assert sc.get(keyword) == source.get(keyword), keyword  # Patient and Study modules copied
    (reference,) = sc.SourceImageSequence
    assert (reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID) == (
        source.SOPClassUID,
        source.SOPInstanceUID,
    )
    assert reference.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
    (series_ref,) = sc.ReferencedSeriesSequence
    assert series_ref.SeriesInstanceUID == source.SeriesInstanceUID
    assert series_ref.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert list(sc.PatientOrientation) == orientation
    assert (sc.PhotometricInterpretation, sc.SamplesPerPixel, sc.BurnedInAnnotation) == ("RGB", 3, "NO")
    assert sc.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    pixels = sc.pixel_array
    assert pixels.shape == (sc.Rows, sc.Columns, 3) and pixels.dtype == np.uint8
    assert pixels.std() > 20  # a picture, not a blank


def test_sc_picture_is_the_overlay_with_a_caption_naming_no_file(monkeypatch, series):
    drawn = []
    monkeypatch.setattr(dicom_sc, "overlay_image", lambda s: drawn.append(s) or np.zeros((4, 4, 3), np.uint8))
    folder, slices = series
    screening = _series_screening(folder)

    picture, shown = overlay_picture(screening, slices)
    _, image_source = overlay_picture(_image_screening("CT_small.dcm"), slices[:1])

    assert picture.shape == (4, 4, 3) and shown is slices[LESION_SLICE] and image_source is slices[0]
    series_caption, image_caption = (s.result.input.source for s in drawn)
    assert series_caption == "CT series: slice 5 of 6 (largest lesion area), Instance Number 2"
    assert image_caption == f"CT image, Instance Number {slices[0].InstanceNumber}"
    plane = drawn[0]
    assert plane.image.pixels.shape == (128, 128) and plane.heatmap is None
    np.testing.assert_array_equal(plane.lesion_map, screening.lesion_map[LESION_SLICE])
    np.testing.assert_array_equal(plane.image.pixels, screening.image.pixels[LESION_SLICE])


def test_sc_of_a_series_without_lesions_shows_the_largest_lung_slice(series):
    folder, _ = series
    screening = _series_screening(folder)
    screening.lesion_map = None
    assert dicom_sc.representative_slice(screening) == (LUNG_SLICE, "largest lung area")
    screening.lung_mask = None
    assert dicom_sc.representative_slice(screening) == (3, "middle slice")


def test_sc_of_a_series_references_the_representative_slice(series, tmp_path):
    folder, slices = series
    written = write_dicom_outputs(_series_screening(folder), folder, tmp_path, "r", secondary_capture=True)

    sc = pydicom.dcmread(written[-1])
    assert sc.StudyInstanceUID == slices[0].StudyInstanceUID
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == slices[LESION_SLICE].SOPInstanceUID
    assert list(sc.PatientOrientation) == ["L", "P"]


def test_sc_orientation_from_image_orientation_or_empty(tmp_path):
    source = pydicom.dcmread(sample_path("CT_small.dcm"))
    source.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # sagittal: rows go posterior, columns to the feet
    picture = np.full((8, 8, 3), 128, np.uint8)
    assert list(
        pydicom.dcmread(write_secondary_capture(picture, source, tmp_path / "a.dcm")).PatientOrientation
    ) == [
        "P",
        "F",
    ]
    del source.ImageOrientationPatient
    sc = pydicom.dcmread(write_secondary_capture(picture, source, tmp_path / "b.dcm"))
    assert "PatientOrientation" in sc and sc.PatientOrientation in (None, "", [])


@pytest.mark.parametrize(
    "picture", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 4), np.uint8)]
)
def test_sc_refuses_a_picture_that_is_not_uint8_rgb(tmp_path, picture):
    with pytest.raises(ValueError, match="uint8 RGB"):
        write_secondary_capture(picture, pydicom.dcmread(sample_path("CT_small.dcm")), tmp_path / "s.dcm")
    assert list(tmp_path.iterdir()) == []


def test_sc_and_series_seg_never_log_or_warn_the_patient_identity(series, tmp_path, caplog):
    folder, _ = series
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.PatientName = "Jane Doe"  # no caret: highdicom would warn with the name
        ds.PatientID = "PID-7731-XK"
        ds.ReferringPhysicianName = "Ward"  # one component: highdicom's SC would warn with it too
        ds.save_as(path)
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = write_dicom_outputs(
            _series_screening(folder), folder, tmp_path / "out", "r", secondary_capture=True
        )

    said = caplog.text + "\n".join(str(w.message) for w in caught)
    assert "Jane" not in said and "Doe" not in said and "7731" not in said and "Ward" not in said
    for path in written:
        ds = pydicom.dcmread(path)
        assert (ds.PatientName, ds.PatientID, ds.ReferringPhysicianName) == (
            "Jane Doe",
            "PID-7731-XK",
            "Ward",
        )
        assert "7731" not in path.name


# --- a real CT series ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_ct_series_seg_matches_the_masks_slice_by_slice(source_dir, tmp_path):
    folder = source_dir("covid-ct-md") / "Sample data" / "COVID-19 subjects" / "P001"
    screening = Screener(device="cpu").screen(folder)
    by_z = sorted(
        (pydicom.dcmread(p, stop_before_pixels=True) for p in folder.glob("*.dcm")),
        key=lambda ds: float(ds.ImagePositionPatient[2]),  # axial: an independent inferior-to-superior sort
    )
    index = {str(ds.SOPInstanceUID): k for k, ds in enumerate(by_z)}

    written = write_dicom_outputs(screening, folder, tmp_path / "out", "p001", secondary_capture=True)

    seg_path = written[1]
    size_mib = seg_path.stat().st_size / 2**20
    print(f"SEG of P001 ({len(by_z)} slices): {size_mib:.1f} MiB")
    assert size_mib < 12  # empty frames omitted (all frames kept: 14.1 MiB)
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(seg_path))
    labels = ["lungs", *screening.lesion_labels]
    assert [s.SegmentLabel for s in seg.SegmentSequence] == labels
    referenced = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    assert sorted(i.ReferencedSOPInstanceUID for i in referenced) == sorted(index)
    masks = {"lungs": screening.lung_mask}
    lesion_map = resize_nearest(screening.lesion_map, (512, 512))  # from the lesion grid (352 px)
    for k, label in enumerate(screening.lesion_labels, start=1):
        masks[label] = lesion_map == k
    frames = seg.pixel_array
    for frame, (number, uid, position) in zip(frames, _frames(seg), strict=True):
        slice_index = index[uid]
        assert position == [float(v) for v in by_z[slice_index].ImagePositionPatient]
        np.testing.assert_array_equal(frame.astype(bool), masks[labels[number - 1]][slice_index])
    assert len(frames) == sum(int(m.reshape(len(m), -1).any(axis=1).sum()) for m in masks.values())
    sc = pydicom.dcmread(written[2])
    shown = index[sc.SourceImageSequence[0].ReferencedSOPInstanceUID]
    assert shown == int(np.argmax((screening.lesion_map > 0).sum(axis=(1, 2))))
