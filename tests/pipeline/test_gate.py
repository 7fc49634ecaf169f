"""The input quality gate: real negatives are rejected with a reason, real chest images pass."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from chestlens.data.registry import load_samples
from chestlens.io import ImageMeta, MedicalImage, read_image, scan_series
from chestlens.pipeline.ct_lungs import body_mask_from_hu, lung_mask_from_hu
from chestlens.pipeline.gate import (
    check_lung_fields,
    check_metadata,
    check_pixels,
    ct_slice_fractions,
    gate_verdict,
)
from chestlens.pipeline.schema import GateCheck

pytestmark = pytest.mark.usefixtures("one_thread")

XRAY_SOURCES = ("ieee8023", "hannover", "kermany", "nih", "v7_lungs", "generalblockchain")
PER_SOURCE = 5


@pytest.fixture(scope="module")
def gate():
    """Function: the gate verdict of one image, as the screener reaches it (the production path: DICOM
    tags and pixels, then for radiographs the lung-field and view checks of the lung stage)."""
    from chestlens.pipeline.screener import Screener

    screener = Screener(classifier=None, lesions=[], cam=None)

    def run(image: MedicalImage):
        return screener.screen(image).result.gate

    return run


def png(pixels: np.ndarray) -> bytes:
    """8-bit PNG bytes (no DICOM tags) of a ``[0, 1]`` grey image or a uint8 grey/RGB array."""
    array = pixels if pixels.dtype == np.uint8 else (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def failed(verdict) -> list[str]:
    return [c.name for c in verdict.checks if not c.passed]


def meta(**fields) -> ImageMeta:
    return ImageMeta(
        **{"source_path": None, "format": "dicom", "rows": 512, "cols": 512, "pixel_unit": "unit", **fields}
    )


# ------------------------------------------------------------------------------------------------ tags
@pytest.mark.parametrize("modality", ["CR", "DX", "RG", "CT", "OT", "cr "])
def test_radiograph_and_ct_modalities_pass(modality):
    (check,) = check_metadata(meta(modality=modality))
    assert check.name == "dicom_modality" and check.passed


@pytest.mark.parametrize(
    ("modality", "named"),
    [("MR", "magnetic resonance"), ("US", "ultrasound"), ("NM", "nuclear"), ("XX", "XX")],
)
def test_other_modalities_are_rejected_by_name(modality, named):
    (check,) = check_metadata(meta(modality=modality))
    assert not check.passed and modality in check.detail and named in check.detail


@pytest.mark.parametrize("part", ["CHEST", "PORT CHEST", "Thorax PA", "LUNG", "CHESTABDOMEN", "RIBS?"])
def test_chest_and_unknown_body_parts_pass(part):
    assert check_metadata(meta(body_part=part))[0].passed


@pytest.mark.parametrize("part", ["EXTREMITY", "LEG", "Knee left", "HEAD", "ABDOMEN", "L-SPINE"])
def test_other_body_parts_are_rejected(part):
    (check,) = check_metadata(meta(body_part=part))
    assert not check.passed and part in check.detail


@pytest.mark.parametrize(
    ("view", "frontal"),
    [
        ("PA", True),
        ("AP", True),
        ("AP SUPINE", True),
        ("RLD", True),
        ("LL", False),
        ("RL", False),
        ("LATERAL", False),
        ("lat", False),
    ],
)
def test_lateral_views_are_rejected(view, frontal):
    (check,) = check_metadata(meta(view=view))
    assert check.passed is frontal
    assert frontal or "lateral" in check.detail


def test_pictures_have_no_tag_checks():
    assert check_metadata(meta(format="png")) == []


def test_lateral_dicom_radiograph_is_rejected_even_when_the_pixels_look_frontal(pip_dicom, gate):
    image = read_image(pip_dicom("RG1_UNCR.dcm"))
    verdict = gate(MedicalImage(image.pixels, replace(image.meta, view="LL")))
    assert not verdict.accepted and failed(verdict) == ["dicom_view"] and "lateral" in verdict.reason


# ------------------------------------------------------------------------------------------ verdict
def test_verdict_is_accepted_only_when_every_check_passed():
    ok, bad = GateCheck(name="a", passed=True, detail="fine"), GateCheck(name="b", passed=False, detail="why")
    accepted = gate_verdict([ok], "chest_ct")
    assert accepted.accepted and accepted.image_type == "chest_ct" and "chest CT" in accepted.reason
    rejected = gate_verdict([ok, bad, GateCheck(name="c", passed=False, detail="later")], "chest_radiograph")
    assert not rejected.accepted and rejected.reason == "why" and rejected.image_type == "unknown"
    assert [c.name for c in rejected.checks] == ["a", "b", "c"]


# ---------------------------------------------------------------------------------- real negatives
@pytest.mark.parametrize(
    ("name", "check", "words"),
    [
        ("RG3_UNCR.dcm", "dicom_body_part", "EXTREMITY"),
        ("MR_small.dcm", "dicom_modality", "MR"),
        ("MR2_UNCR.dcm", "dicom_modality", "MR"),
        ("emri_small.dcm", "dicom_modality", "MR"),
        ("US1_UNCR.dcm", "dicom_modality", "ultrasound"),
        ("gdcm-US-ALOKA-16.dcm", "dicom_modality", "ultrasound"),
        ("OT-PAL-8-face.dcm", "colour", "colour"),
        ("SC_rgb.dcm", "colour", "colour"),
    ],
)
def test_non_chest_dicom_is_rejected_with_a_reason(pip_dicom, gate, name, check, words):
    verdict = gate(read_image(pip_dicom(name)))
    assert not verdict.accepted and check in failed(verdict) and words in verdict.reason + str(verdict.checks)


@pytest.mark.parametrize(
    ("name", "check"),
    [
        ("RG3_UNCR.dcm", "lung_fields"),
        ("RG3_J2KI.dcm", "lung_fields"),
        ("MR2_UNCR.dcm", "lung_fields"),
        ("US1_UNCR.dcm", "lung_fields"),
        ("gdcm-US-ALOKA-16.dcm", "lung_fields"),  # accepted with lungs-segmenter 0.1.0 (outline 8.68)
        ("OT-PAL-8-face.dcm", "grey_levels"),  # 27 grey levels: rejected before the lung stage
    ],
)
def test_non_chest_pixels_without_tags_fail_the_lung_fields(pip_dicom, gate, name, check):
    """The same images as grey PNG: no tags, no colour, only the image-based checks can reject them (the
    lung fields, or a pixel check before the lung stage)."""
    verdict = gate(read_image(png(read_image(pip_dicom(name)).pixels), name=f"{name}.png"))
    assert not verdict.accepted and failed(verdict)[0] == check, verdict.reason
    assert verdict.reason.endswith(("not a frontal chest radiograph", "not a radiograph"))


@pytest.mark.parametrize(("name", "check"), [("MR_small.dcm", "size"), ("emri_small.dcm", "frames")])
def test_small_and_multi_frame_images_are_rejected_from_pixels(pip_dicom, gate, name, check):
    image = read_image(pip_dicom(name))  # 64 x 64 MR; emri_small has 10 frames
    assert check in [c.name for c in check_pixels(image) if not c.passed]
    first = image.pixels if image.pixels.ndim == 2 else image.pixels[0]
    verdict = gate(read_image(png(first), name="mr.png"))
    assert not verdict.accepted and "size" in failed(verdict) and "64x64" in verdict.reason


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee", "camera"])
def test_photographs_are_rejected(gate, name):
    pictures = pytest.importorskip("skimage.data")
    image = read_image(png(getattr(pictures, name)()), name=f"{name}.png")
    verdict = gate(image)
    assert not verdict.accepted and failed(verdict)[0] == "lung_fields"  # the view check may fail too
    assert verdict.reason.endswith("not a frontal chest radiograph")


def test_colour_decides_for_dicom_but_not_for_pictures():
    rgb = MedicalImage(np.random.default_rng(0).random((128, 128), dtype=np.float32), meta(is_colour=True))
    assert not check_pixels(rgb)[0].passed
    picture = MedicalImage(rgb.pixels, meta(format="png", is_colour=True))
    assert check_pixels(picture)[0].passed  # colour figures of radiographs exist; the lung fields decide


def test_tiny_and_constant_images_are_rejected():
    tiny = MedicalImage(np.random.default_rng(0).random((64, 80), dtype=np.float32), meta(rows=64, cols=80))
    assert "64x80" in next(c.detail for c in check_pixels(tiny) if c.name == "size" and not c.passed)
    flat = MedicalImage(np.full((256, 256), 0.5, dtype=np.float32), meta(rows=256, cols=256))
    assert [c.name for c in check_pixels(flat) if not c.passed] == ["contrast", "grey_levels"]


def test_masks_and_label_maps_are_rejected_by_their_few_grey_levels(source_dir):
    masks = sorted((source_dir("covid19-cxr-segmentations-generalblockchain") / "masks").glob("*.png"))[:3]
    for path in masks:
        failed_checks = [c for c in check_pixels(read_image(path)) if not c.passed]
        assert [c.name for c in failed_checks] == ["grey_levels"], path
        assert "mask or label image" in failed_checks[0].detail


def test_empty_lung_fields_fail():
    check = check_lung_fields(np.zeros((256, 256), dtype=np.float32))
    assert not check.passed and "no lung fields" in check.detail


# ---------------------------------------------------------------------------------- real positives
def test_pip_chest_radiograph_passes_as_dicom_and_as_png(pip_dicom, gate):
    image = read_image(pip_dicom("RG1_UNCR.dcm"))  # adult chest PA, MONOCHROME1
    for candidate in (image, read_image(png(image.pixels), name="rg1.png")):
        verdict = gate(candidate)
        assert verdict.accepted and verdict.image_type == "chest_radiograph", verdict.reason
    assert {c.name for c in gate(image).checks} >= {
        "dicom_modality",
        "dicom_body_part",
        "dicom_view",
        "lung_fields",
    }


def test_pip_chest_ct_slice_passes(pip_dicom, gate):
    verdict = gate(read_image(pip_dicom("CT_small.dcm")))
    assert verdict.accepted and verdict.image_type == "chest_ct", verdict.reason
    assert "ct_lungs" in {c.name for c in verdict.checks}


def test_head_ct_and_mr_tagged_as_ct_are_rejected(pip_dicom, gate):
    head = gate(read_image(pip_dicom("693_UNCR.dcm")))
    assert not head.accepted and failed(head) == ["ct_lungs"] and "lungs" in head.reason
    mr = read_image(pip_dicom("MR2_UNCR.dcm"))
    as_ct = MedicalImage(mr.pixels * 1000.0, replace(mr.meta, modality="CT", pixel_unit="HU"))
    assert not gate(as_ct).accepted and failed(gate(as_ct)) == ["ct_lungs"]


@pytest.mark.shared_data
@pytest.mark.parametrize("source", XRAY_SOURCES)
def test_real_frontal_chest_radiographs_pass(shared_data, gate, source):
    samples = [s for s in load_samples(shared_data, [source]) if s.view not in ("L", "Lateral")]
    picked = [samples[i] for i in np.linspace(0, len(samples) - 1, PER_SOURCE).round().astype(int)]
    for sample in picked:
        verdict = gate(read_image(sample.path))
        assert verdict.accepted, f"{sample.uid}: {verdict.reason}"


# --------------------------------------------------------------------------------------- CT lungs
def phantom(cropped: bool = False) -> np.ndarray:
    """A 256 x 256 axial slice in HU: air, a table, a soft-tissue body with two lungs (-850 HU)."""
    rows, cols = np.mgrid[:256, :256]
    hu = np.full((256, 256), -1000.0, dtype=np.float32)
    hu[(rows - 128) ** 2 / 90**2 + (cols - 128) ** 2 / 115**2 <= 1] = 40.0
    hu[230:236, 20:236] = 200.0  # the table: not connected to the body
    for centre in (78, 178):
        hu[(rows - 120) ** 2 / 60**2 + (cols - centre) ** 2 / 35**2 <= 1] = -850.0
    return hu[100:200, 40:220] if cropped else hu


def test_hu_rule_finds_the_lungs_of_a_phantom_and_not_the_air_around():
    hu = phantom()
    lungs = lung_mask_from_hu(hu)
    truth = hu == -850.0
    assert (lungs & truth).sum() / (lungs | truth).sum() > 0.95
    assert not lungs[:, :20].any() and body_mask_from_hu(hu)[128, 128] and not body_mask_from_hu(hu)[232, 128]


def test_hu_rule_keeps_lungs_cut_by_a_small_field_of_view():
    hu = phantom(cropped=True)  # the top edge cuts both lungs, outside air remains in the lower corners
    truth = hu == -850.0
    assert truth[0].sum() > 100 and hu[-1, 0] == -1000.0
    lungs = lung_mask_from_hu(hu)
    assert (lungs & truth).sum() / (lungs | truth).sum() > 0.95


def test_hu_rule_works_slice_by_slice_on_volumes():
    volume = np.stack([phantom(), np.full((256, 256), 40.0, dtype=np.float32)])
    lungs = lung_mask_from_hu(volume)
    assert lungs.shape == volume.shape and lungs[0].any() and not lungs[1].any()
    with pytest.raises(ValueError, match="shape"):
        lung_mask_from_hu(np.zeros(5))


def test_hu_rule_drops_small_gas_pockets_in_volumes():
    lungs_slices = [phantom() for _ in range(4)]
    abdomen = np.full((256, 256), 40.0, dtype=np.float32)
    rows, cols = np.mgrid[:256, :256]
    abdomen[(rows - 128) ** 2 / 90**2 + (cols - 128) ** 2 / 115**2 > 1] = -1000.0
    abdomen[(rows - 120) ** 2 + (cols - 128) ** 2 <= 10**2] = -900.0  # bowel gas, inside the body
    assert lung_mask_from_hu(abdomen)[120, 128]  # one slice alone cannot tell gas from lung
    lungs = lung_mask_from_hu(np.stack([abdomen, *lungs_slices]))
    assert not lungs[0].any() and all(lungs[i].any() for i in range(1, 5))


def test_hu_rule_on_the_pip_chest_ct_slice(pip_dicom):
    hu = read_image(pip_dicom("CT_small.dcm")).pixels  # 128 x 128, 85 mm field of view inside the chest
    lungs = lung_mask_from_hu(hu)
    assert 0.15 < lungs.mean() < 0.35
    assert lungs[:, :64].any() and lungs[:, 64:].any()  # one lung on each side of the spine


@pytest.mark.shared_data
def test_hu_rule_on_real_mid_chest_slices(source_dir, gate):
    folder = source_dir("covid-ct-md") / "Sample data" / "COVID-19 subjects" / "P001"
    files = scan_series(folder)[0].files  # inferior -> superior
    for path in files[len(files) // 3 : 2 * len(files) // 3 : 10]:
        image = read_image(path)
        body, lungs = ct_slice_fractions(image.pixels)
        assert 0.3 < body < 0.7 and 0.3 < lungs < 0.6, (path.name, body, lungs)
        assert gate(image).accepted


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_ct_series_passes_as_a_volume(source_dir, gate):
    volume = read_image(source_dir("covid-ct-md") / "Sample data" / "COVID-19 subjects" / "P001")
    verdict = gate(volume)
    assert verdict.accepted and verdict.image_type == "chest_ct", verdict.reason


def test_abdomen_like_volume_is_rejected(gate):
    """A volume whose slices mostly show no lungs (as below the diaphragm) is not a chest CT."""
    body = np.where(phantom() == -850.0, 40.0, phantom()).astype(np.float32)
    volume = np.stack([phantom()] * 2 + [body] * 8)
    image = MedicalImage(volume, meta(pixel_unit="HU", modality="CT", format="dicom-series", n_frames=10))
    verdict = gate(image)
    assert not verdict.accepted and "2 of 10" in verdict.reason
