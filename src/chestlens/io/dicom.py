"""DICOM files (pydicom + pylibjpeg decoders) to :class:`MedicalImage`.

Pipeline for one file:

1. Parse (``DICM`` preamble, or a headerless data set read with ``force=True`` only when the first
   bytes look like a DICOM element). A file that ends early (inside its preamble, its file meta
   information, a data element or the pixel data) is reported as ``truncated DICOM: <where>``.
2. Refuse, before decoding: no pixel data (SR, RT plan...), a transfer syntax pydicom has no
   decoder for, a frame or file over the pixel limits.
3. Decode with ``pydicom`` (``Dataset.pixel_array``; YBR colour is converted to RGB by pydicom).
4. Grey images: modality LUT (rescale slope/intercept or Modality LUT Sequence), then NaN and
   infinite values are refused or masked by the rule of :mod:`chestlens.io.finite`.

   * CT (``Modality == "CT"`` or ``RescaleType == "HU"``): pixels stay in Hounsfield units,
     ``meta.window`` is the file's first Window Center/Width (None if absent).
   * Everything else (CR, DX, MR, NM...): VOI, then ``[0, 1]``:

     - VOI LUT Sequence (first item) when present: pydicom's ``apply_voi``, then the LUT's own
       output range (its smallest and largest entry) is mapped to ``[0, 1]``;
     - else the first Window Center/Width with the file's VOI LUT Function (LINEAR, LINEAR_EXACT,
       SIGMOID), computed by pydicom's ``apply_windowing`` with an output range of ``[0, 1]``;
     - else (no window, or a width below 1) min-max of the data (the smallest modality value -> 0,
       the largest -> 1), because the full stored range (``BitsStored``) is often far wider than
       what the detector used.

     ``meta.window`` records what was applied: the file's window, the data range as
     ``(centre, width)`` for min-max, None for a VOI LUT.

   * MONOCHROME1 is inverted last (``1 - v``), so lungs are dark in every output.
5. Colour (RGB, YBR_*, PALETTE COLOR): scaled to ``[0, 1]`` by the stored bit depth (the palette's
   bit depth for PALETTE COLOR), converted to grey (BT.601), ``meta.is_colour`` set when the
   channels really differ.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import dictionary_has_tag, dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, apply_windowing, get_decoder
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from chestlens.errors import ChestlensInputError
from chestlens.io.colour import rgb_to_grey
from chestlens.io.deid import salted_key
from chestlens.io.finite import mask_non_finite
from chestlens.io.image import ImageMeta, MedicalImage, PixelUnit
from chestlens.io.limits import DEFAULT_MAX_PIXELS, DEFAULT_MAX_VOXELS, check_size
from chestlens.io.sniff import NOT_RECOGNISED, SNIFF_BYTES, dicom_kind

HU_MODALITIES = frozenset({"CT"})
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_PIXEL_TAGS = frozenset(Tag(keyword) for keyword in _PIXEL_KEYWORDS)
_UNDEFINED_LENGTH = 0xFFFFFFFF
_MAX_DETAIL_CHARS = 160
#: Part 10 file meta information starts after the preamble and ``DICM``; its group length element
#: (0002,0000) takes 12 bytes (explicit VR little endian) and gives the length of the rest of the group.
_META_START = 132
_GROUP_LENGTH_ELEMENT_BYTES = 12
_PARSE_ERRORS = (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError)

DicomSource = Path | bytes


@dataclass(frozen=True, slots=True)
class GreyPresentation:
    """Grey pixels ready for :class:`ImageMeta`: values, unit and the window that was applied."""

    pixels: np.ndarray
    unit: PixelUnit
    window: tuple[float, float] | None


def is_image_sop_class(sop_class_uid: str) -> bool:
    """True for image storage SOP classes (CT, CR, DX, MR, secondary capture...), by their DICOM name."""
    return "Image Storage" in UID(sop_class_uid).name


def open_dicom(source: DicomSource, where: str | None, *, header_only: bool = False) -> Dataset:
    """Parse a DICOM file or its bytes.

    Args:
        source: file path or the file's bytes.
        where: file name for error messages.
        header_only: stop before the pixel data (fast scanning of series).

    Raises:
        ChestlensInputError: not DICOM, unreadable or truncated.
    """
    head = source[:SNIFF_BYTES] if isinstance(source, bytes) else _read_head(source, where)
    kind = dicom_kind(head, name=where)
    if kind is None:
        raise ChestlensInputError(where, f"not a DICOM file: {NOT_RECOGNISED}")
    if kind == "cut-preamble":
        raise _truncated(where, f"the file ends at byte {len(head)}, inside the 128-byte preamble (no DICM)")
    target = io.BytesIO(source) if isinstance(source, bytes) else source
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(target, force=kind == "raw", stop_before_pixels=header_only)
        except _PARSE_ERRORS as error:
            # pydicom's parse messages can quote element values, so only the error type is reported.
            raise ChestlensInputError(where, f"not a readable DICOM file ({type(error).__name__})") from error
    if any("End of file" in str(w.message) for w in caught) or _last_element_is_short(ds):
        inside = "the pixel data" if _PIXEL_TAGS & set(ds.keys()) else "a data element"
        raise _truncated(where, f"the file ends at byte {_size_of(source):,}, inside {inside}")
    if len(ds) == 0 and kind == "part10":
        raise _truncated(where, _empty_part10_reason(ds, _size_of(source)))
    if len(ds) == 0:
        raise ChestlensInputError(where, "not a readable DICOM file (no data elements)")
    _ensure_transfer_syntax(ds)
    _convert_uids(ds)
    return ds


def _truncated(where: str | None, detail: str) -> ChestlensInputError:
    """The one message shape for a DICOM file that ends early: ``truncated DICOM: <detail>``."""
    return ChestlensInputError(where, f"truncated DICOM: {detail}")


def _size_of(source: DicomSource) -> int:
    return len(source) if isinstance(source, bytes) else source.stat().st_size


def _empty_part10_reason(ds: Dataset, size: int) -> str:
    """Where a Part 10 file with no data set ends: inside its file meta information, or right after it."""
    group_length = header_int(ds.file_meta, "FileMetaInformationGroupLength")  # None when cut inside it
    if group_length is None or size < _META_START + _GROUP_LENGTH_ELEMENT_BYTES + group_length:
        return f"the file ends at byte {size:,}, inside the file meta information"
    return f"the file ends at byte {size:,}, before the first data element after the file meta information"


def _element_bytes(ds: Dataset, keyword: str) -> int:
    """Length of the value of ``keyword`` (0 when absent or empty), without converting the element."""
    if keyword not in ds:
        return 0
    value = ds.get_item(keyword).value
    return 0 if value is None else len(value)


def _convert_uids(ds: Dataset) -> None:
    """Convert the top-level UID (VR UI) elements of ``ds`` now, with pydicom's value validation off.

    Some scanners store UUID strings where DICOM wants dotted-digit UIDs (e.g. COVID-CT-MD's cap002 and
    normal002). pydicom reads them, but converts each element lazily on first access and then warns
    (and logs) once per element and file, quoting the raw UID: one warning per slice of a series, and
    an identifier that chestlens only ever reports salted (:mod:`chestlens.io.deid`). The values are
    kept as stored.
    """
    with pydicom.config.disable_value_validation():
        for element in ds.elements():
            if isinstance(element, RawDataElement) and _vr(element) == "UI":
                _ = ds[element.tag]  # converts the raw element in place


def _vr(element: RawDataElement) -> str | None:
    """VR of a raw element: as stored (explicit VR) or from the data dictionary (implicit VR)."""
    if element.VR is not None:
        return str(element.VR)
    return dictionary_VR(element.tag) if dictionary_has_tag(element.tag) else None


def read_dicom(
    source: DicomSource,
    *,
    where: str | None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> MedicalImage:
    """Read one DICOM file (single or multi-frame) into a :class:`MedicalImage`.

    Shapes: ``(rows, cols)`` for one frame, ``(frames, rows, cols)`` for multi-frame files.
    Units: HU for CT, else ``[0, 1]`` (see the module docstring).
    """
    ds = open_dicom(source, where)
    frames = check_decodable(ds, where, max_pixels=max_pixels, max_voxels=max_voxels)
    raw = decode_pixels(ds, where)
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    samples = int(ds.get("SamplesPerPixel", 1))
    is_colour = False
    unit: PixelUnit
    if photometric == "PALETTE COLOR" or samples == 3:
        values, notes = mask_non_finite(raw, where)
        pixels, is_colour = _colour_to_grey(values, ds, photometric, where)
        unit, window = "unit", None
    elif samples == 1 and photometric in ("MONOCHROME1", "MONOCHROME2"):
        values, notes = mask_non_finite(modality_values(ds, raw), where)
        grey = present_grey(values, ds)
        pixels, unit, window = grey.pixels, grey.unit, grey.window
    else:
        raise ChestlensInputError(
            where, f"unsupported photometric interpretation {photometric!r} with {samples} samples per pixel"
        )
    meta = ImageMeta(
        source_path=where,
        format="dicom",
        rows=int(ds.Rows),
        cols=int(ds.Columns),
        pixel_unit=unit,
        n_frames=frames,
        is_colour=is_colour,
        window=window,
        value_range=(float(np.min(values)), float(np.max(values))),
        warnings=notes,
        **header_fields(ds),
    )
    return MedicalImage(pixels=np.ascontiguousarray(pixels, dtype=np.float32), meta=meta)


def check_decodable(
    ds: Dataset,
    where: str | None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> int:
    """Refuse, before decoding, what cannot or must not be decoded; return the number of frames."""
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        sop = sop_class_text(ds)
        if "Rows" in ds or sop.split(" (")[0].endswith("Image Storage"):
            raise _truncated(
                where, f"no pixel data although it is an image ({sop}); the file probably ends early"
            )
        raise ChestlensInputError(where, f"DICOM has no pixel data ({sop})")
    if not any(_element_bytes(ds, keyword) for keyword in _PIXEL_KEYWORDS):
        raise _truncated(where, "the pixel data element is empty (0 bytes)")
    tsyntax = UID(ds.file_meta.get("TransferSyntaxUID", ""))
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError as error:
        raise ChestlensInputError(
            where, f"unsupported transfer syntax {transfer_syntax_text(tsyntax)}"
        ) from error
    if not decoder.is_available:
        raise ChestlensInputError(
            where, f"no decoder installed for transfer syntax {transfer_syntax_text(tsyntax)}"
        )
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames") or 1)
    except (AttributeError, TypeError, ValueError) as error:
        raise ChestlensInputError(where, "DICOM header lacks valid Rows/Columns/NumberOfFrames") from error
    check_size(where, rows, cols, frames, max_pixels=max_pixels, max_voxels=max_voxels)
    return frames


def decode_pixels(ds: Dataset, where: str | None) -> np.ndarray:
    """Decoded stored values: ``(rows, cols)``, ``(frames, rows, cols)``, plus a last axis of 3 for colour."""
    tsyntax = UID(ds.file_meta.get("TransferSyntaxUID", ""))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ds.pixel_array
        except ValueError as error:
            if "less than expected" in str(error):
                raise _truncated(where, "the pixel data is shorter than the header's image size") from error
            raise _decode_error(where, tsyntax, error) from error
        except Exception as error:  # decoder plugins raise RuntimeError, NotImplementedError, OSError...
            raise _decode_error(where, tsyntax, error) from error


def modality_values(ds: Dataset, raw: np.ndarray) -> np.ndarray:
    """Stored grey values through the modality LUT (rescale slope/intercept or LUT), as float32."""
    return np.asarray(apply_modality_lut(raw, ds), dtype=np.float32)


def is_hu(ds: Dataset) -> bool:
    """True when modality values are Hounsfield units (CT, or an explicit RescaleType of HU)."""
    modality = str(ds.get("Modality", "")).upper()
    return modality in HU_MODALITIES or str(ds.get("RescaleType", "")).upper() == "HU"


def present_grey(values: np.ndarray, ds: Dataset) -> GreyPresentation:
    """Modality values -> HU (CT) or ``[0, 1]`` with VOI and MONOCHROME1 inversion (module docstring)."""
    if is_hu(ds):
        return GreyPresentation(values.astype(np.float32, copy=False), "HU", first_window(ds))
    window: tuple[float, float] | None
    scaled: np.ndarray
    if _has_voi_lut(ds):
        scaled, window = _voi_lut_to_unit(values, ds), None
    else:
        window = first_window(ds)
        if window is not None and window[1] >= 1:
            scaled = _window_to_unit(values, ds, window)
        else:
            low, high = float(np.min(values)), float(np.max(values))
            scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
            window = ((low + high) / 2.0, high - low)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        scaled = 1.0 - scaled
    return GreyPresentation(np.clip(scaled, 0.0, 1.0).astype(np.float32, copy=False), "unit", window)


def header_fields(ds: Dataset) -> dict[str, Any]:
    """The :class:`ImageMeta` fields read from the header alone (identifiers hashed, never copied)."""
    tsyntax = ds.file_meta.get("TransferSyntaxUID")
    samples = int(ds.get("SamplesPerPixel", 1))
    signed = "signed" if int(ds.get("PixelRepresentation", 0)) else "unsigned"
    bits_allocated = header_int(ds, "BitsAllocated")
    orientation = header_floats(ds, "ImageOrientationPatient", 6)
    return {
        "modality": header_text(ds, "Modality"),
        "photometric_interpretation": header_text(ds, "PhotometricInterpretation"),
        "transfer_syntax_uid": None if tsyntax is None else str(tsyntax),
        "transfer_syntax_name": None if tsyntax is None else UID(tsyntax).name,
        "bits_stored": header_int(ds, "BitsStored"),
        "bits_allocated": bits_allocated,
        "pixel_spacing_mm": pixel_spacing(ds),
        "slice_thickness_mm": _positive(header_float(ds, "SliceThickness")),
        "view": header_text(ds, "ViewPosition"),
        "body_part": header_text(ds, "BodyPartExamined"),
        "source_mode": f"{samples} sample(s) x {bits_allocated}-bit {signed}",
        "orientation": orientation,
        "patient_key": salted_key(ds.get("PatientID")),
        "study_key": salted_key(ds.get("StudyInstanceUID")),
        "series_key": salted_key(ds.get("SeriesInstanceUID")),
    }


def pixel_spacing(ds: Dataset) -> tuple[float, float] | None:
    """(row, column) spacing in mm: PixelSpacing, else ImagerPixelSpacing (at the detector); zeros ignored."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        values = header_floats(ds, keyword, 2)
        if values is not None and min(values) > 0:
            return (values[0], values[1])
    return None


def first_window(ds: Dataset) -> tuple[float, float] | None:
    """The first (Window Center, Window Width) pair, or None."""
    center, width = _first_float(ds, "WindowCenter"), _first_float(ds, "WindowWidth")
    return None if center is None or width is None else (center, width)


def sop_class_text(ds: Dataset) -> str:
    """``"SOP class <name> (<uid>)"`` for messages."""
    uid = ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID")
    return "SOP class unknown" if uid is None else f"SOP class {UID(uid).name} ({uid})"


def transfer_syntax_text(tsyntax: UID) -> str:
    """``"<name> (<uid>)"`` for messages (the uid alone when pydicom does not know it)."""
    return f"{tsyntax.name} ({tsyntax})" if tsyntax.name != str(tsyntax) else str(tsyntax or "<missing>")


def _read_head(path: Path, where: str | None) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(SNIFF_BYTES)
    except OSError as error:
        raise ChestlensInputError(where, f"cannot read file ({error.strerror})") from error


def _last_element_is_short(ds: Dataset) -> bool:
    """pydicom stops silently when a file ends inside an element; spot that on the last element."""
    if len(ds) == 0:
        return False
    element = ds.get_item(list(ds.keys())[-1])
    return (
        isinstance(element, RawDataElement)
        and element.length != _UNDEFINED_LENGTH
        and element.value is not None
        and len(element.value) < element.length
    )


def _ensure_transfer_syntax(ds: Dataset) -> None:
    """Headerless files have no file meta: record the encoding pydicom found so decoding works."""
    if "TransferSyntaxUID" in ds.file_meta or ds.original_encoding[0] is None:
        return
    implicit, little = ds.original_encoding
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _decode_error(where: str | None, tsyntax: UID, error: Exception) -> ChestlensInputError:
    detail = " ".join(str(error).split())[:_MAX_DETAIL_CHARS]
    return ChestlensInputError(
        where, f"cannot decode pixel data with transfer syntax {transfer_syntax_text(tsyntax)}: {detail}"
    )


def _colour_to_grey(
    raw: np.ndarray, ds: Dataset, photometric: str, where: str | None
) -> tuple[np.ndarray, bool]:
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(raw, ds)
        scale = float(np.iinfo(rgb.dtype).max)
    else:
        if raw.shape[-1] != 3:
            raise ChestlensInputError(where, f"colour DICOM decoded to an unexpected shape {raw.shape}")
        rgb = raw
        scale = float(2 ** int(ds.get("BitsStored", 8)) - 1)
    return rgb_to_grey(rgb.astype(np.float64) / scale)


def _has_voi_lut(ds: Dataset) -> bool:
    sequence = ds.get("VOILUTSequence")
    return bool(sequence) and "LUTDescriptor" in sequence[0] and "LUTData" in sequence[0]


def _voi_lut_to_unit(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """First VOI LUT, its output range (smallest..largest entry) mapped to ``[0, 1]``."""
    descriptor = ds.VOILUTSequence[0].LUTDescriptor
    entries, first = int(descriptor[0]) or 2**16, int(descriptor[1])
    table = apply_voi(np.arange(first, first + entries, dtype=np.int64), ds).astype(np.float64)
    low, high = float(table.min()), float(table.max())
    mapped = apply_voi(np.rint(values).astype(np.int64), ds).astype(np.float64)
    return (mapped - low) / (high - low) if high > low else np.zeros_like(mapped)


def _window_to_unit(values: np.ndarray, ds: Dataset, window: tuple[float, float]) -> np.ndarray:
    """pydicom's windowing (LINEAR / LINEAR_EXACT / SIGMOID) with an output range of exactly ``[0, 1]``.

    pydicom scales window output to the stored range of the data set it is given; a VOI-only data set
    with 1 unsigned stored bit and no rescale has the output range ``[0, 1]``.
    """
    voi = Dataset()
    voi.PhotometricInterpretation = "MONOCHROME2"
    voi.BitsStored = 1
    voi.PixelRepresentation = 0
    voi.WindowCenter, voi.WindowWidth = window
    voi.VOILUTFunction = str(ds.get("VOILUTFunction") or "LINEAR").upper()
    return apply_windowing(values, voi)


def header_text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = "" if value is None else str(value).strip()
    return text or None


def header_int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def header_float(ds: Dataset, keyword: str) -> float | None:
    try:
        value = ds.get(keyword)
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def _first_float(ds: Dataset, keyword: str) -> float | None:
    """The first value of ``keyword`` as a float; None when absent, unreadable, NaN or infinite."""
    try:
        value = ds.get(keyword)
        if isinstance(value, MultiValue):
            value = value[0] if len(value) else None
        number = None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None
    return number if number is not None and math.isfinite(number) else None


def header_floats(ds: Dataset, keyword: str, count: int) -> tuple[float, ...] | None:
    try:
        value = ds.get(keyword)
        if value is None or isinstance(value, str) or len(value) != count:
            return None
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None


def _positive(value: float | None) -> float | None:
    return value if value is not None and value > 0 else None
