"""The secondary-capture overlay: a screening's overlay picture as an RGB DICOM Secondary Capture image,
for viewers that cannot show a DICOM SEG (Orthanc Explorer's preview, most web viewers).

Picture: :func:`chestlens.pipeline.overlay.overlay_image`, the picture ``chestlens predict --overlays``
writes for a 2-D image (the image, the class-activation heatmap with the lung contour, the lesion masks,
the legend, the probabilities and the research-use disclaimer burned in). For a volume (a CT series or a
multi-frame file) it is drawn on one representative slice: the slice with the largest lesion area (every
lesion label together, counted on the lesion segmenter's grid, the same for every slice); without lesion
pixels, the slice with the largest lung area; ties go to the first slice in the reader's order (the most
inferior for axial CT). A series has no heatmap (its probabilities are a mean over slices), so the slice
shows the lesion masks and the lung contour. The caption's first line, which for ``--overlays`` is the
input's file name, names the modality, the slice (``"CT series: slice 57 of 148 (largest lesion area),
Instance Number 92"``) and never a file name; nothing in the picture identifies the patient or dates the
image, hence Burned In Annotation ``NO``.

DICOM (built by :func:`secondary_capture` with highdicom's ``SCImage``; checks, identity handling and
the atomic write are :func:`chestlens.pipeline.dicom_out.write_secondary_capture`'s): the source's study,
its Patient and Study modules copied as for the SR and SEG, a new series (Series Number
:data:`SC_SERIES_NUMBER`, a Series Description that says research use only), Image Type
``DERIVED\\SECONDARY\\OTHER``, Conversion Type ``DI``. It references the image it shows in the Source
Image Sequence (purpose DCM 121322 "Source image for image processing operation") and in the Referenced
Series Sequence. Patient Orientation: the source's when it has two single-letter values, else derived
from its Image Orientation (Patient) (closest axis of each direction), else empty. No Pixel Spacing: the
picture is scaled for display and has caption bands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian

from chestlens.io.image import MedicalImage
from chestlens.pipeline.overlay import overlay_image
from chestlens.pipeline.schema import ScreeningResult
from chestlens.pipeline.screener import Screening

SC_SERIES_NUMBER = 9903
SC_SERIES_DESCRIPTION = "chestlens overlay (research use only)"
DERIVATION_DESCRIPTION = (
    "chestlens overlay of the screening result: lung contour, lesion masks, class-activation heatmap "
    "(single images), probabilities. Research use only, not a diagnosis."
)
# Patient direction letters of the +x, +y, +z and -x, -y, -z axes of the patient coordinate system (LPS).
_TOWARDS = ("L", "P", "H")
_AWAY = ("R", "A", "F")
_BIPED = frozenset(_TOWARDS + _AWAY)


def representative_slice(screening: Screening) -> tuple[int, str]:
    """Index (reader's order) of the slice a volume's overlay shows, and why it was chosen.

    Args:
        screening: a volume's screening: ``lesion_map`` ``(slices, S, S)`` and ``lung_mask``
            ``(slices, rows, cols)`` when present.

    Returns:
        ``(index, reason)``: the largest lesion area, else the largest lung area, else the middle slice.
    """
    lesions, lungs = screening.lesion_map, screening.lung_mask
    if lesions is not None and lesions.ndim == 3 and lesions.any():
        return int(np.argmax((lesions > 0).sum(axis=(1, 2)))), "largest lesion area"
    if lungs is not None and lungs.ndim == 3 and lungs.any():
        return int(np.argmax(lungs.sum(axis=(1, 2)))), "largest lung area"
    return screening.image.pixels.shape[0] // 2, "middle slice"


def overlay_picture(screening: Screening, sources: Sequence[Dataset]) -> tuple[np.ndarray, Dataset]:
    """The secondary capture's picture and the source image it shows.

    Args:
        screening: the screening of ``sources``.
        sources: headers of the screened image (one) or of a series' slices in the reader's order (one per
            slice of ``screening.image``).

    Returns:
        ``(picture, source)``: uint8 RGB ``(height, width, 3)``; ``sources[0]`` for a 2-D image or a
        multi-frame file, the representative slice (:func:`representative_slice`) for a series.
    """
    modality = str(sources[0].get("Modality") or "DICOM")
    if not screening.image.is_volume:
        caption = f"{modality} image{_instance_number(sources[0])}"
        plane, source = replace(screening, result=_captioned(screening.result, caption)), sources[0]
    else:
        index, reason = representative_slice(screening)
        count = screening.image.pixels.shape[0]
        series = len(sources) == count
        source = sources[index] if series else sources[0]
        what = "series: slice" if series else "file: frame"
        caption = f"{modality} {what} {index + 1} of {count} ({reason}){_instance_number(source)}"
        plane = Screening(
            result=_captioned(screening.result, caption),
            image=MedicalImage(screening.image.pixels[index], replace(screening.image.meta, n_frames=1)),
            lung_mask=None if screening.lung_mask is None else screening.lung_mask[index],
            lesion_map=None if screening.lesion_map is None else screening.lesion_map[index],
            lesion_labels=screening.lesion_labels,
        )
    return np.asarray(overlay_image(plane)), source


def secondary_capture(picture: np.ndarray, header: Dataset, **instance: object) -> hd.sc.SCImage:
    """An RGB Secondary Capture image of ``picture`` in ``header``'s study, referencing ``header``'s image.

    Args:
        picture: uint8 RGB ``(height, width, 3)``.
        header: the source image's header (without pixel data; patient identity may be blanked).
        instance: series and SOP instance UIDs, instance number and equipment (``manufacturer``,
            ``manufacturer_model_name``, ``software_versions``, ``device_serial_number``).

    Raises:
        ValueError, KeyError, AttributeError: highdicom refuses the header or the picture.
    """
    orientation = _patient_orientation(header)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=header,
        pixel_array=picture,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_number=SC_SERIES_NUMBER,
        patient_orientation=orientation or ("L", "F"),  # highdicom requires one; emptied below
        transfer_syntax_uid=ExplicitVRLittleEndian,
        series_description=SC_SERIES_DESCRIPTION,
        **instance,  # type: ignore[arg-type]
    )
    if orientation is None:
        sc.PatientOrientation = None  # Type 2C: empty when the source does not tell
    sc.copy_patient_and_study_information(header)
    sc.BurnedInAnnotation = "NO"  # see the module docstring: the caption holds no identity or date
    sc.DerivationDescription = DERIVATION_DESCRIPTION
    sc.SourceImageSequence = [_referenced_image(header, purpose=True)]
    series = Dataset()
    series.SeriesInstanceUID = header.SeriesInstanceUID
    series.ReferencedInstanceSequence = [_referenced_image(header, purpose=False)]
    sc.ReferencedSeriesSequence = [series]
    return sc


def _patient_orientation(header: Dataset) -> tuple[str, str] | None:
    """Patient Orientation (row direction, column direction) of the source's pixel grid, one letter each:
    its own when usable, else the closest patient axes of its Image Orientation (Patient), else None."""
    own = [str(value).upper() for value in header.get("PatientOrientation") or ()]
    if len(own) == 2 and set(own) <= _BIPED:
        return own[0], own[1]
    cosines = header.get("ImageOrientationPatient")
    if cosines is None or len(cosines) != 6:
        return None
    letters = []
    for direction in (np.asarray(cosines[:3], float), np.asarray(cosines[3:], float)):
        axis = int(np.argmax(np.abs(direction)))
        letters.append(_TOWARDS[axis] if direction[axis] > 0 else _AWAY[axis])
    return letters[0], letters[1]


def _captioned(result: ScreeningResult, caption: str) -> ScreeningResult:
    """A copy of ``result`` whose input name (the overlay's first caption line) is ``caption``."""
    return result.model_copy(update={"input": result.input.model_copy(update={"source": caption})})


def _instance_number(source: Dataset) -> str:
    number = source.get("InstanceNumber")
    return "" if number in (None, "") else f", Instance Number {number}"


def _referenced_image(header: Dataset, *, purpose: bool) -> Dataset:
    """An item naming the source image by SOP Class and Instance UID (with the purpose of reference for
    the Source Image Sequence)."""
    item = Dataset()
    item.ReferencedSOPClassUID = header.SOPClassUID
    item.ReferencedSOPInstanceUID = header.SOPInstanceUID
    if purpose:
        item.PurposeOfReferenceCodeSequence = [
            hd.sr.CodedConcept.from_code(codes.DCM.SourceImageForImageProcessingOperation)
        ]
    return item
