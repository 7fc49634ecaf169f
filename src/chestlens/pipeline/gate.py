"""Input quality gate: accept frontal chest radiographs and chest CT, reject everything else with a reason.

Three groups of checks, each a :class:`~chestlens.pipeline.schema.GateCheck`; an input is accepted only
when every check passed (:func:`gate_verdict`). A rejection is a verdict, never an exception.

1. :func:`check_metadata`: DICOM tags where present (Modality, BodyPartExamined, ViewPosition). Pictures
   (PNG, JPEG...) have none and get no metadata checks.
2. :func:`check_pixels`: checks that need no model: single frame, grey DICOM, size, contrast and, for CT
   in Hounsfield units, a body with air-filled lungs inside it (:mod:`chestlens.pipeline.ct_lungs`).
3. :func:`check_lung_fields`: for radiographs, the lung segmenter's probability map must look like the
   lung fields of a frontal chest radiograph (:class:`LungFieldStats`; thresholds below).

Why colour alone does not reject a picture: 26 of the frontal radiographs in the shared data are colour
figures (arrows and labels from papers, sepia scans; up to 100% of pixels coloured), so a colour picture
is judged on its grey version by the lung-field check; colour DICOM is rejected (radiographs and CT are
grey; colour DICOM is ultrasound, photographs and screen captures).

Why two lungs are not required: frontal radiographs with a completely opacified hemithorax show one lung
field (e.g. NIH ``00000506_013.png``); they are the images screening must not miss. Lateral views are
rejected by the DICOM ViewPosition where there is one, and from pixels by the ``view`` check
(:mod:`chestlens.pipeline.view`: a logistic regression on the working image and the lung map, with its
cross-validated figures), which the screener runs after :func:`check_lung_fields`.

Calibration of :func:`check_lung_fields` (``lungs-segmenter`` 0.2.0, 256 px grid, mask = probability >=
0.5), measured on the production path, the screener's (:class:`~chestlens.pipeline.screener.Screener`
with no classifier: tag and pixel checks, the working image, the segmenter's graph on it, then the
lung-field, view and CT-picture checks), by ``python bench/gate_false_rejections.py --json
bench/results/gate_false_rejections.json`` (2585 inputs, 222 s on 2 CPU cores). Inputs: the 1975
frontal radiographs of the nine X-ray sources in the shared data (ieee8023, hannover, kermany, nih,
radiopaedia, actualmed, figure1, v7_lungs, generalblockchain; the 32 lateral films are rejected), the 83
Inf-Net pictures of CT slices (all rejected, by the ``ct_picture`` check of :mod:`chestlens.pipeline.view`
where the lung fields pass), and the negatives: non-chest DICOM shipped by pydicom/pydicom-data (RG3 leg
radiograph, MR ``MR_small``/``MR2``/``emri_small``/``MR-SIEMENS``, ultrasound ``US1``/``gdcm-US-ALOKA-16``/
``OBXXXX1A``/``examples_ybr_color``, ``OT-PAL-8-face``, ``SC_rgb*``, NM ``JPEG2000``, head CT
``693_UNCR``), each also as an 8-bit grey PNG without tags, and 17 scikit-image pictures (astronaut,
camera, chelsea, coffee, moon...). Of these 46 negatives, 21 are rejected by tags or pixels before the
lung stage and have no statistics; the table covers the other 25. ``*`` marks negatives that fail that
statistic alone:

============  ===================  ===========  =====================================================
statistic     frontal chest range  threshold    closest negatives
============  ===================  ===========  =====================================================
area          0.0773 .. 0.6302     0.07 .. 0.75 clock 0.072, MR2 (PNG) 0.062, grass 0.056
confidence    >= 0.8941            >= 0.88      clock 0.874*, retina 0.866, coffee 0.852
outline       <= 8.39              <= 9.0       coffee 8.73, MR2 (PNG) 9.36, immunohistochemistry 11.1*
extent        >= 0.2890            >= 0.20      MR2 (PNG) 0.198, coffee 0.156, chelsea 0.151
solidity      >= 0.6339            >= 0.60      gravel 0.630
centre_row    <= 0.682             <= 0.75      moon 0.694, grass 0.740, gdcm-US-ALOKA-16 (PNG) 0.811
============  ===================  ===========  =====================================================

The lower area and confidence bounds moved with the segmenter: 0.1.0's frontal range started at 0.1155
and 0.9312 (bounds 0.09 and 0.90); 0.2.0, fitted on all 162 V7 masks, gives one Kermany film
(``person1306_bacteria_3277``, a dense bilateral pneumonia) 7.7% of the image at confidence 0.894, so
the bounds keep the same kind of margin below the new frontal minimum (9% and 1.6%).

Every picture and film of the shared data is at most 512 px on its longer side, so its working image is
the image itself and its statistics are those of any path; negatives larger than that are downsampled
first, and that moves their statistics (a real 1955 x 1841 chest film, pydicom's ``RG1_UNCR``, moves by
0.003).

Two negatives pass every check and are accepted (known accepted negatives): the grey first frame of the
echocardiography loop ``examples_ybr_color.dcm`` and the MR slice ``MR-SIEMENS-DICOM-WithOverlays.dcm``,
both as grey PNG (as DICOM they are rejected by modality and colour), inside the frontal range on every
statistic. The thresholds keep margins beyond the frontal range, so no frontal film of the shared data
is rejected. The lung-field check is a plausibility check for a segmenter trained on frontal
radiographs, not a chest classifier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

from chestlens.io.image import ImageMeta, MedicalImage
from chestlens.pipeline.ct_lungs import body_mask_from_hu, lung_mask_from_hu
from chestlens.pipeline.schema import GateCheck, GateVerdict

ImageType = Literal["chest_radiograph", "chest_ct", "unknown"]

#: DICOM Modality values the gate accepts (chest radiographs and CT), with their meaning.
ACCEPTED_MODALITIES: dict[str, str] = {
    "CR": "computed radiography",
    "DX": "digital radiography",
    "RG": "radiographic imaging (film/screen)",
    "CT": "computed tomography",
}
#: Modalities that say nothing about the content (secondary captures): the pixels decide.
NEUTRAL_MODALITIES: dict[str, str] = {"OT": "other", "SC": "secondary capture"}
#: Names of common rejected modalities, for readable reasons (any other value is rejected too).
MODALITY_NAMES: dict[str, str] = {
    "MR": "magnetic resonance",
    "US": "ultrasound",
    "NM": "nuclear medicine",
    "PT": "positron emission tomography",
    "XA": "X-ray angiography",
    "RF": "radio fluoroscopy",
    "MG": "mammography",
    "IO": "intra-oral radiography",
    "PX": "panoramic X-ray",
    "BMD": "bone densitometry",
    "ES": "endoscopy",
    "XC": "external-camera photography",
    "OP": "ophthalmic photography",
    "SM": "slide microscopy",
    "SEG": "segmentation",
    "SR": "structured report",
    "RTDOSE": "radiotherapy dose",
    "RTSTRUCT": "radiotherapy structure set",
    "ECG": "electrocardiography",
}

#: BodyPartExamined words that name the chest (matched as word prefixes, any language of the list).
CHEST_WORDS = ("CHEST", "THORA", "TORAX", "TORACE", "LUNG", "PULMO", "POUMON", "BRUST")
#: Word prefixes that name another body part. Free text naming neither list passes.
OTHER_PART_WORDS = (
    "EXTREM", "LEG", "KNEE", "FOOT", "FEET", "ANKLE", "HEEL", "CALCAN", "TOE", "HAND", "WRIST", "FINGER",
    "THUMB", "ARM", "FOREARM", "ELBOW", "HUMER", "SHOULDER", "FEMUR", "TIBIA", "FIBULA", "PATELLA", "HIP",
    "PELVI", "SACRUM", "COCCYX", "SPINE", "CSPINE", "TSPINE", "LSPINE", "HEAD", "SKULL", "BRAIN", "FACE",
    "SINUS", "ORBIT", "JAW", "MANDIBLE", "TMJ", "NECK", "ABD", "KIDNEY", "LIVER", "BLADDER", "PROSTATE",
    "UTERUS", "BREAST", "MAMMA",
)  # fmt: skip
#: ViewPosition words of a non-frontal projection (lateral or oblique); decubitus views are frontal.
NON_FRONTAL_VIEWS = frozenset(
    {"L", "LL", "RL", "LAT", "LATERAL", "RLO", "LLO", "RAO", "LAO", "OBL", "OBLIQUE"}
)

#: Images with a shorter side than this (pixels) are thumbnails, not diagnostic images.
MIN_SIDE_PX = 96
#: Near-constant images: the 1st to 99th percentile spread must reach this ([0, 1] units for radiographs,
#: HU for CT).
MIN_SPREAD_UNIT = 0.05
#: Fewer distinct 8-bit grey levels than this: a mask or label map (2-3 levels in the shared data's
#: masks), not a radiograph (at least 126 in each of the 1861 X-ray images of the shared data).
MIN_GREY_LEVELS = 32
MIN_SPREAD_HU = 100.0

#: CT: the body must cover at least this fraction of a slice.
CT_MIN_BODY_FRACTION = 0.02
#: CT: a slice shows the chest when its lungs (HU rule) are at least this fraction of the body. On
#: COVID-CT-MD P001 the slices above the lung apices (trachea only) reach 0.0074, the highest slice
#: with apical lung 0.0136, mid-chest slices 0.46; pydicom's CT_small.dcm 0.22; a head CT (pydicom-data
#: 693_UNCR.dcm) 0.0024. Slices through the upper abdomen with a lot of bowel gas can pass.
CT_MIN_LUNG_FRACTION = 0.01
#: CT volumes: at least this share of the (sampled) slices must show lungs (P001: 138 of 148).
CT_MIN_LUNG_SLICE_SHARE = 0.5
#: CT volumes: at most this many evenly spaced slices are examined (the rule costs ~50 ms per slice).
CT_MAX_SAMPLED_SLICES = 32

#: Lung-field thresholds (see the calibration table in the module docstring).
LUNG_AREA_RANGE = (0.07, 0.75)
MIN_LUNG_CONFIDENCE = 0.88
MAX_OUTLINE_COMPLEXITY = 9.0
MIN_LUNG_EXTENT = 0.20
MIN_LUNG_SOLIDITY = 0.60
MAX_LUNG_CENTRE_ROW = 0.75
#: Components holding at least this share of the mask count as lung fields for the solidity.
_MAIN_COMPONENT_SHARE = 0.1


def _passed(name: str, detail: str) -> GateCheck:
    return GateCheck(name=name, passed=True, detail=detail)


def _failed(name: str, detail: str) -> GateCheck:
    return GateCheck(name=name, passed=False, detail=detail)


# ------------------------------------------------------------------------------------------- metadata
def check_metadata(meta: ImageMeta) -> list[GateCheck]:
    """DICOM tag checks: one per tag that is present (pictures have none and get an empty list).

    * ``dicom_modality``: CR, DX, RG and CT pass; OT (other, e.g. secondary capture) passes and leaves
      the decision to the pixels; anything else (MR, US, NM, MG...) fails with the modality named.
    * ``dicom_body_part``: fails only when BodyPartExamined names a body part other than the chest and
      no chest word (free text tolerated: ``"PORT CHEST"``, ``"THORAX PA"`` and unknown words pass).
    * ``dicom_view``: lateral and oblique ViewPosition values fail (not frontal); PA, AP and others pass.
    """
    checks = []
    if meta.modality:
        checks.append(_modality_check(meta.modality))
    if meta.body_part:
        checks.append(_body_part_check(meta.body_part))
    if meta.view:
        checks.append(_view_check(meta.view))
    return checks


def _modality_check(modality: str) -> GateCheck:
    code = modality.strip().upper()
    if code in ACCEPTED_MODALITIES:
        return _passed("dicom_modality", f"Modality {code} ({ACCEPTED_MODALITIES[code]})")
    if code in NEUTRAL_MODALITIES:
        return _passed("dicom_modality", f"Modality {code} ({NEUTRAL_MODALITIES[code]}): judged from pixels")
    name = MODALITY_NAMES.get(code, "not a radiograph or CT")
    return _failed(
        "dicom_modality", f"DICOM Modality {code} ({name}): only chest radiographs and CT are screened"
    )


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Z]+", text.upper())


def _body_part_check(body_part: str) -> GateCheck:
    words = _words(body_part)
    if any(w.startswith(CHEST_WORDS) for w in words):
        return _passed("dicom_body_part", f"BodyPartExamined {body_part!r} is the chest")
    if any(w.startswith(OTHER_PART_WORDS) for w in words):
        return _failed("dicom_body_part", f"DICOM BodyPartExamined {body_part!r} is not the chest")
    return _passed("dicom_body_part", f"BodyPartExamined {body_part!r} names no other body part")


def _view_check(view: str) -> GateCheck:
    if NON_FRONTAL_VIEWS.intersection(_words(view)):
        detail = f"DICOM ViewPosition {view!r} is a lateral or oblique view; only frontal views are screened"
        return _failed("dicom_view", detail)
    return _passed("dicom_view", f"ViewPosition {view!r}")


# --------------------------------------------------------------------------------------------- pixels
def check_pixels(image: MedicalImage) -> list[GateCheck]:
    """Model-free pixel checks: ``colour``, ``frames``, ``size``, ``contrast``, then ``grey_levels`` for
    radiographs and pictures or ``ct_lungs`` for CT.

    Args:
        image: as read by :func:`chestlens.io.read_image`: radiographs and pictures ``(rows, cols)`` in
            ``[0, 1]``; CT in HU, one slice ``(rows, cols)`` or a volume ``(slices, rows, cols)``.

    Returns:
        The checks in that order; a multi-frame picture gets only ``colour`` and a failed ``frames``.
    """
    meta, pixels = image.meta, image.pixels
    ct = meta.pixel_unit == "HU"
    checks = [_colour_check(meta)]
    if pixels.ndim == 3 and not ct:
        detail = f"{pixels.shape[0]} frames (a cine loop or series): only single radiographs are screened"
        return [*checks, _failed("frames", detail)]
    checks += [
        _passed("frames", "one image" if pixels.ndim == 2 else f"CT volume of {pixels.shape[0]} slices")
    ]
    checks += [_size_check(pixels.shape[-2:]), _contrast_check(pixels, ct)]
    if not ct:
        checks.append(_grey_levels_check(pixels))
    if ct:
        checks.append(_ct_volume_check(pixels) if pixels.ndim == 3 else _ct_slice_check(pixels))
    return checks


def _colour_check(meta: ImageMeta) -> GateCheck:
    if not meta.is_colour:
        return _passed("colour", "grey image")
    if meta.format in ("dicom", "dicom-series"):
        photometric = meta.photometric_interpretation or "colour"
        detail = f"colour DICOM ({photometric}, e.g. ultrasound or a photograph): radiographs and CT are grey"
        return _failed("colour", detail)
    return _passed("colour", "colour picture (e.g. an annotated figure): judged on its grey version")


def _size_check(shape: tuple[int, ...]) -> GateCheck:
    rows, cols = shape
    if min(rows, cols) < MIN_SIDE_PX:
        return _failed(
            "size", f"image is {rows}x{cols} px; the shorter side must be at least {MIN_SIDE_PX} px"
        )
    return _passed("size", f"{rows}x{cols} px")


def _subsampled(pixels: np.ndarray) -> np.ndarray:
    """Every k-th row and column (of every slice), keeping at most about a million values in all: plenty
    for percentiles and grey-level counts."""
    step = max(1, int(np.ceil(np.sqrt(pixels.size / 1e6))))
    return pixels[..., ::step, ::step]


def _grey_levels_check(pixels: np.ndarray) -> GateCheck:
    """Masks and label maps have a handful of grey levels; radiographs hundreds (8-bit levels counted)."""
    counts = np.bincount(np.round(_subsampled(pixels) * 255).astype(np.int64).ravel(), minlength=256)
    levels = int(np.count_nonzero(counts))
    if levels < MIN_GREY_LEVELS:
        detail = f"only {levels} grey levels: a mask or label image, not a radiograph"
        return _failed("grey_levels", detail)
    return _passed("grey_levels", f"{levels} grey levels (8-bit)")


def _contrast_check(pixels: np.ndarray, ct: bool) -> GateCheck:
    low, high = np.percentile(_subsampled(pixels), [1, 99])
    spread = float(high - low)
    minimum, shown = (MIN_SPREAD_HU, f"{spread:.0f} HU") if ct else (MIN_SPREAD_UNIT, f"{spread:.2f}")
    if spread < minimum:
        return _failed(
            "contrast", f"near-constant image (1st-99th percentile spread {shown}, needs {minimum:g})"
        )
    return _passed("contrast", f"1st-99th percentile spread {shown}")


def ct_slice_fractions(hu: np.ndarray) -> tuple[float, float]:
    """``(body / slice, lungs / body)`` area fractions of one CT slice ``(rows, cols)`` in HU.

    Body and lungs by :mod:`chestlens.pipeline.ct_lungs`; the lung fraction is 0 without a body.
    """
    body = body_mask_from_hu(hu)
    body_pixels = int(body.sum())
    if body_pixels == 0:
        return 0.0, 0.0
    return body_pixels / body.size, float(lung_mask_from_hu(hu).sum()) / body_pixels


def _ct_slice_check(hu: np.ndarray) -> GateCheck:
    body, lungs = ct_slice_fractions(hu)
    if body < CT_MIN_BODY_FRACTION:
        return _failed("ct_lungs", f"no body in the CT slice (tissue covers {body:.1%} of it)")
    if lungs < CT_MIN_LUNG_FRACTION:
        detail = (
            f"no air-filled lungs inside the body ({lungs:.2%} of it, chest CT slices have at least "
            f"{CT_MIN_LUNG_FRACTION:.0%}): not a chest CT slice"
        )
        return _failed("ct_lungs", detail)
    return _passed("ct_lungs", f"lungs fill {lungs:.1%} of the body")


def _ct_volume_check(hu: np.ndarray) -> GateCheck:
    count = min(hu.shape[0], CT_MAX_SAMPLED_SLICES)
    picked = np.unique(np.linspace(0, hu.shape[0] - 1, count).round().astype(int))
    fractions = [ct_slice_fractions(hu[i]) for i in picked]
    shown = sum(b >= CT_MIN_BODY_FRACTION and f >= CT_MIN_LUNG_FRACTION for b, f in fractions)
    share = shown / len(picked)
    detail = f"lungs in {shown} of {len(picked)} sampled slices ({share:.0%})"
    if share < CT_MIN_LUNG_SLICE_SHARE:
        return _failed(
            "ct_lungs", f"{detail}; chest CT shows lungs in at least {CT_MIN_LUNG_SLICE_SHARE:.0%}"
        )
    return _passed("ct_lungs", detail)


# ---------------------------------------------------------------------------------------- lung fields
@dataclass(frozen=True, slots=True)
class LungFieldStats:
    """Shape statistics of a predicted lung mask (``probability >= 0.5``); all dimensionless.

    Attributes:
        area: mask pixels / image pixels.
        confidence: mean probability inside the mask (0 for an empty mask).
        outline: boundary pixels / sqrt(mask pixels); a disc is 3.5, two lung fields about 6, ragged
            or fragmented masks 10 and more.
        extent: mask pixels / pixels of the mask's bounding box.
        solidity: pixels of the (up to two) main components / area of their convex hulls.
        centre_row: row of the mask's centre of mass / image height (0 top, 1 bottom).
    """

    area: float
    confidence: float
    outline: float
    extent: float
    solidity: float
    centre_row: float


def lung_field_stats(lung_probability: np.ndarray) -> LungFieldStats:
    """Statistics of the lung segmenter's output ``(S, S)`` (probabilities in ``[0, 1]``)."""
    mask = np.asarray(lung_probability) >= 0.5
    pixels = int(mask.sum())
    if pixels == 0:
        return LungFieldStats(area=0.0, confidence=0.0, outline=0.0, extent=0.0, solidity=0.0, centre_row=0.0)
    boundary = int((mask & ~ndimage.binary_erosion(mask)).sum())
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
    return LungFieldStats(
        area=pixels / mask.size,
        confidence=float(np.asarray(lung_probability)[mask].mean()),
        outline=boundary / float(np.sqrt(pixels)),
        extent=pixels / float(box),
        solidity=_main_solidity(mask),
        centre_row=float(np.nonzero(mask)[0].mean() + 0.5) / mask.shape[0],
    )


def _main_solidity(mask: np.ndarray) -> float:
    """Pixels of the (up to two) components holding >= 10% of ``mask`` over their convex hull areas."""
    labels, _ = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    main = [i for i in np.argsort(sizes)[::-1][:2] if sizes[i] >= _MAIN_COMPONENT_SHARE * mask.sum()]
    hull_area = sum(_hull_area(labels == i) for i in main)
    return float(sum(sizes[i] for i in main) / hull_area) if hull_area > 0 else 0.0


def _hull_area(component: np.ndarray) -> float:
    """Area (pixels) of the convex hull of a component's pixel squares (their corners, never collinear)."""
    edge = np.argwhere(component & ~ndimage.binary_erosion(component))
    corners = (edge[:, None, :] + np.array([[0, 0], [0, 1], [1, 0], [1, 1]])).reshape(-1, 2)
    return float(ConvexHull(corners).volume)


def check_lung_fields(lung_probability: np.ndarray) -> GateCheck:
    """Do the segmenter's lung fields look like those of a frontal chest radiograph?

    Args:
        lung_probability: ``(S, S)`` sigmoid of the ``lungs-segmenter`` logits on its input grid.

    Returns:
        ``lung_fields`` check; on failure the detail names the first statistic out of range
        (thresholds and their calibration in the module docstring).
    """
    stats = lung_field_stats(lung_probability)
    problem = _lung_field_problem(stats)
    if problem is not None:
        return _failed("lung_fields", f"{problem}: not a frontal chest radiograph")
    detail = (
        f"lung fields cover {stats.area:.0%} of the image (mean probability {stats.confidence:.3f}, "
        f"outline {stats.outline:.1f}, extent {stats.extent:.2f}, solidity {stats.solidity:.2f})"
    )
    return _passed("lung_fields", detail)


def _lung_field_problem(stats: LungFieldStats) -> str | None:
    """What is implausible about these lung fields, or None (thresholds in the module docstring)."""
    low, high = LUNG_AREA_RANGE
    if stats.area < low:
        return f"no lung fields found (lung area {stats.area:.1%} of the image, needs {low:.0%})"
    if stats.area > high:
        return f"implausibly large lung fields ({stats.area:.0%} of the image, at most {high:.0%})"
    if stats.confidence < MIN_LUNG_CONFIDENCE:
        return (
            f"the lung segmenter is unsure (mean probability {stats.confidence:.3f} inside the lung fields, "
            f"needs {MIN_LUNG_CONFIDENCE})"
        )
    if stats.outline > MAX_OUTLINE_COMPLEXITY:
        return f"ragged lung fields (outline {stats.outline:.1f}, at most {MAX_OUTLINE_COMPLEXITY:g})"
    if stats.extent < MIN_LUNG_EXTENT:
        return (
            f"scattered lung fields ({stats.extent:.0%} of their bounding box, needs {MIN_LUNG_EXTENT:.0%})"
        )
    if stats.solidity < MIN_LUNG_SOLIDITY:
        return f"lung fields of implausible shape (solidity {stats.solidity:.2f}, needs {MIN_LUNG_SOLIDITY})"
    if stats.centre_row > MAX_LUNG_CENTRE_ROW:
        centre, limit = stats.centre_row, MAX_LUNG_CENTRE_ROW
        return f"lung fields too low in the image (centre at {centre:.0%} of its height, at most {limit:.0%})"
    return None


# -------------------------------------------------------------------------------------------- verdict
def gate_verdict(checks: list[GateCheck], image_type: ImageType) -> GateVerdict:
    """Combine checks: accepted only if every check passed.

    Args:
        checks: from :func:`check_metadata`, :func:`check_pixels` and (radiographs) :func:`check_lung_fields`.
        image_type: what the input is if accepted (``chest_ct`` for HU pixels, else ``chest_radiograph``);
            a rejected input is reported as ``unknown``.

    Returns:
        The verdict; ``reason`` is the first failed check's detail, or a one-line acceptance summary.
    """
    failed = [c for c in checks if not c.passed]
    if failed:
        return GateVerdict(accepted=False, image_type="unknown", reason=failed[0].detail, checks=list(checks))
    what = {"chest_radiograph": "frontal chest radiograph", "chest_ct": "chest CT"}.get(image_type, "input")
    names = ", ".join(c.name for c in checks) or "none"
    reason = f"accepted as a {what} ({len(checks)} checks passed: {names})"
    return GateVerdict(accepted=True, image_type=image_type, reason=reason, checks=list(checks))
