"""Format detection from the bytes, never from the file extension.

Recognised (checked in this order):

* DICOM Part 10: ``"DICM"`` at byte 128 (after the 128-byte preamble). Checked first because some
  DICOM files carry a TIFF header in their preamble (dual-personality files).
* PNG, JPEG, TIFF (classic and BigTIFF) and BMP magic numbers.
* NIfTI-1 / NIfTI-2 single files (``sizeof_hdr`` 348 or 540 and magic ``n+1`` / ``n+2``), plain or
  gzip-compressed (the decompressed header is checked).
* DICOM without preamble or file meta (old ACR-NEMA style dumps): the first element is a group
  0x0002 or 0x0008 tag followed by an explicit VR or a plausible implicit length.
* A DICOM file cut inside its preamble: the one case where the name counts. A file named ``.dcm`` or
  ``.dicom`` that ends before byte 132 (so it cannot hold the ``DICM`` magic) and whose bytes could be
  a preamble (zeros, or the TIFF header of a dual-personality file, then the start of ``DICM``) is
  ``"dicom"``, so the DICOM reader reports it as a truncated DICOM rather than a broken TIFF.

A folder is ``"dicom-series"``.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from os import PathLike
from pathlib import Path

from chestlens.errors import ChestlensInputError

#: File name suffixes (lower case) that list a folder's images. Only for choosing which files of a folder
#: to look at: the format itself is always sniffed from the bytes.
PICTURE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
NIFTI_SUFFIXES = frozenset({".nii", ".gz"})
IMAGE_SUFFIXES = PICTURE_SUFFIXES | DICOM_SUFFIXES | NIFTI_SUFFIXES

#: Bytes of header read for sniffing (enough for a NIfTI-2 header and the DICOM preamble).
SNIFF_BYTES = 1024
#: DICOM Part 10: a 128-byte preamble, then the magic ``DICM``.
DICOM_PREAMBLE_BYTES = 128
DICOM_MAGIC = b"DICM"

_GZIP_MAGIC = b"\x1f\x8b"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_DICOM_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV"
    b" TM UC UI UL UN UR US UT UV".split()
)
_BMP_DIB_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
_MAX_IMPLICIT_FIRST_LENGTH = 1 << 16

NOT_RECOGNISED = "not a recognised image format (expected DICOM, PNG, JPEG, TIFF, BMP or NIfTI)"


def sniff_format(source: str | PathLike[str] | bytes, *, name: str | None = None) -> str:
    """Detect the image format of a file, folder or in-memory bytes.

    Args:
        source: path of a file or folder, or the file's bytes.
        name: shown in error messages for in-memory bytes.

    Returns:
        One of ``"dicom"``, ``"png"``, ``"jpeg"``, ``"tiff"``, ``"bmp"``, ``"nifti"``,
        ``"dicom-series"`` (folders).

    Raises:
        ChestlensInputError: missing or empty file, or bytes of no recognised format.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        where: str | None = name
        if not data:
            raise ChestlensInputError(where, "file is empty")
        head = data[:SNIFF_BYTES]
        gunzipped = _gunzip_head_bytes(data) if head.startswith(_GZIP_MAGIC) else None
    else:
        path = Path(source)
        where = str(path)
        if path.is_dir():
            return "dicom-series"
        if not path.is_file():
            raise ChestlensInputError(where, "no such file or folder")
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
        if not head:
            raise ChestlensInputError(where, "file is empty")
        gunzipped = _gunzip_head_file(path) if head.startswith(_GZIP_MAGIC) else None
    return _format_of(head, gunzipped, where)


def dicom_kind(head: bytes, *, name: str | None = None) -> str | None:
    """What kind of DICOM ``head`` (the first bytes of a file) starts, or None (not DICOM).

    ``"part10"`` (preamble + ``DICM``), ``"raw"`` (headerless data set), or ``"cut-preamble"``: a file
    named ``name`` (``.dcm``/``.dicom``) whose bytes end inside the preamble (see the module docstring).
    ``head`` must hold the whole file when it is shorter than :data:`SNIFF_BYTES`.
    """
    if head[DICOM_PREAMBLE_BYTES : DICOM_PREAMBLE_BYTES + 4] == DICOM_MAGIC:
        return "part10"
    if name is not None and is_cut_preamble(head, name):
        return "cut-preamble"
    return "raw" if _looks_like_headerless_dicom(head) else None


def is_cut_preamble(data: bytes, name: str) -> bool:
    """True when ``data`` (a whole file) is a DICOM file named ``name`` cut before its ``DICM`` magic.

    Only for DICOM names (:data:`DICOM_SUFFIXES`) and files shorter than the preamble and the magic; the
    bytes must look like a preamble: all zeros, or a TIFF header (dual-personality files such as
    pydicom's RG1_UNCR.dcm and CT_small.dcm), followed by the beginning of ``DICM`` if they reach it.
    """
    if not data or len(data) >= DICOM_PREAMBLE_BYTES + len(DICOM_MAGIC):
        return False
    if Path(name).suffix.lower() not in DICOM_SUFFIXES:
        return False
    preamble, magic = data[:DICOM_PREAMBLE_BYTES], data[DICOM_PREAMBLE_BYTES:]
    if not DICOM_MAGIC.startswith(magic):
        return False
    return not preamble.strip(b"\x00") or preamble[:4] in _TIFF_MAGICS


def _format_of(head: bytes, gunzipped: bytes | None, where: str | None) -> str:
    if dicom_kind(head, name=where) in ("part10", "cut-preamble"):
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in _TIFF_MAGICS:
        return "tiff"
    if _is_bmp(head):
        return "bmp"
    nifti = _nifti_kind(gunzipped if gunzipped is not None else head)
    if nifti == "single":
        return "nifti"
    if nifti == "pair":
        raise ChestlensInputError(
            where, "NIfTI .hdr/.img pair is not supported; convert it to a single .nii or .nii.gz file"
        )
    if gunzipped is None and _looks_like_headerless_dicom(head):
        return "dicom"
    raise ChestlensInputError(where, NOT_RECOGNISED)


def _is_bmp(head: bytes) -> bool:
    return len(head) >= 18 and head[:2] == b"BM" and struct.unpack_from("<I", head, 14)[0] in _BMP_DIB_SIZES


def _nifti_kind(head: bytes) -> str | None:
    """``"single"`` for a .nii header, ``"pair"`` for a .hdr of an .hdr/.img pair, else None."""
    if len(head) >= 348:
        for endian in "<>":
            size = struct.unpack_from(f"{endian}i", head, 0)[0]
            if size == 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
                return "single" if head[345:346] == b"+" else "pair"
            if size == 540 and head[4:8] in (b"n+2\x00", b"ni2\x00"):
                return "single" if head[5:6] == b"+" else "pair"
    return None


def _looks_like_headerless_dicom(head: bytes) -> bool:
    """A data set that starts directly with a (0002,xxxx) or (0008,xxxx) element, either endianness."""
    if len(head) < 8:
        return False
    for endian in "<>":
        group = struct.unpack_from(f"{endian}H", head, 0)[0]
        if group not in (0x0002, 0x0008):
            continue
        if head[4:6] in _DICOM_VRS:
            return True
        implicit_length = struct.unpack_from(f"{endian}I", head, 4)[0]
        if implicit_length < _MAX_IMPLICIT_FIRST_LENGTH:
            return True
    return False


def _gunzip_head_file(path: Path) -> bytes | None:
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read(SNIFF_BYTES)
    except (OSError, EOFError, zlib.error):
        return None


def _gunzip_head_bytes(data: bytes) -> bytes | None:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as handle:
            return handle.read(SNIFF_BYTES)
    except (OSError, EOFError, zlib.error):
        return None
