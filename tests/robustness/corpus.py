"""A corpus of bad and unusual inputs, built at test time from real files (issue 19, "Keep it true").

Every kind has a name, a builder and the outcome a reader must give it:

* ``ok``: read (warnings allowed);
* ``warn``: read, with a warning matching ``reason`` in ``meta.warnings``;
* ``refused``: not read; the one-line reason matches ``reason``.

The sources are real: pydicom's chest radiograph ``RG1_UNCR.dcm`` (CR, MONOCHROME1, 2,140 x 1,760), its
chest CT slice ``CT_small.dcm`` and ``MR_small.dcm`` and other pip samples (SR, RT, DICOMDIR, JPEG
2000), a real PNG and JPEG radiograph from ``$CHESTLENS_DATA`` (NIH ChestX-ray14, Kermany) and real
COVID-CT-MD slices for the series cases. Without the shared data the pictures come from RG1's pixels
and the series from CT_small with moved slice positions, so the corpus always builds.

Each kind is written into its own folder ``<root>/<name>/`` (so that no two kinds form a DICOM series
together) and :attr:`Kind.build` returns the path a user would give: a file, or a folder for the series
kinds. :attr:`Kind.upload` says how the web service gets it: ``"file"`` (one part), ``"zip"`` (one zip
part, a series job), ``"parts"`` (every file of the folder as one part each, a series job) or
``"none"`` (a file-system case with no upload: symlinks, folders).
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from chestlens.data.root import data_root
from chestlens.io.samples import sample_path

Outcome = Literal["ok", "warn", "refused"]
Upload = Literal["file", "zip", "parts", "none"]

#: COVID-CT-MD's COVID-19 patient P001 (JPEG Lossless CT slices), relative to the data root.
COVID_SERIES = Path("covid-ct-md") / "Sample data" / "COVID-19 subjects" / "P001"
#: A real chest radiograph PNG (NIH ChestX-ray14) and JPEG (Kermany), relative to the data root.
NIH_PNG = Path("nih-chestxray14-darkcovidnet") / "X-Ray Image DataSet"
KERMANY_JPEG = Path("kermany-chest-xray") / "chest_xray"
#: Slices of the series kinds: the gapped series drops two inside slices of these.
SERIES_SLICES = 8
#: The zip bomb by content: this many zero bytes deflate to about 0.25 MB.
ZIP_BOMB_BYTES = 256 * 2**20
#: More members than the service's ``max_series_files`` (2,000).
ZIP_MANY_MEMBERS = 2_001
#: A non-UTF-8 file name (Latin-1 "résumé-ÿ.dcm"): it cannot be decoded as UTF-8.
NON_UTF8_NAME = b"r\xe9sum\xe9-\xff.dcm"


@dataclass(frozen=True)
class Sources:
    """The real files the corpus is built from (see the module docstring)."""

    rg1: Path
    ct: Path
    mr: Path
    radiograph_png: bytes
    radiograph_jpeg: bytes
    ct_slices: tuple[Path, ...]


@dataclass(frozen=True)
class Kind:
    """One kind of bad or unusual input."""

    name: str
    outcome: Outcome
    reason: str  # regex: the warning (warn) or the refusal reason (refused); "" for ok
    build: Callable[[Path, Sources], Path]
    upload: Upload = "file"


def load_sources() -> Sources:
    """The corpus' sources: pip DICOM samples, plus the shared data when it is there."""
    rg1 = sample_path("RG1_UNCR.dcm")
    root = data_root()
    png = _first(root, NIH_PNG, "*.png")
    jpeg = _first(root, KERMANY_JPEG, "*.jpeg")
    covid = root / COVID_SERIES if root is not None else None
    slices = _consecutive_slices(covid) if covid is not None and covid.is_dir() else ()
    return Sources(
        rg1=rg1,
        ct=sample_path("CT_small.dcm"),
        mr=sample_path("MR_small.dcm"),
        radiograph_png=png.read_bytes() if png else _encoded(_rg1_picture(rg1), "PNG"),
        radiograph_jpeg=jpeg.read_bytes() if jpeg else _encoded(_rg1_picture(rg1), "JPEG"),
        ct_slices=slices,
    )


def _first(root: Path | None, folder: Path, pattern: str) -> Path | None:
    if root is None or not (root / folder).is_dir():
        return None
    return next(iter(sorted((root / folder).rglob(pattern))), None)


def _consecutive_slices(folder: Path) -> tuple[Path, ...]:
    """:data:`SERIES_SLICES` neighbouring slices from the middle of a series, by patient position (the
    file names of COVID-CT-MD do not follow the slice order)."""
    z = {
        path: float(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient[2])
        for path in folder.glob("*.dcm")
    }
    ordered = sorted(z, key=z.__getitem__)
    start = (len(ordered) - SERIES_SLICES) // 2
    return tuple(ordered[start : start + SERIES_SLICES])


def build_corpus(root: Path, sources: Sources) -> dict[str, Path]:
    """Write every kind of :data:`KINDS` under ``root``; returns ``{name: the path to give}``."""
    paths = {}
    for kind in KINDS:
        folder = root / kind.name
        folder.mkdir(parents=True)
        paths[kind.name] = kind.build(folder, sources)
    return paths


# ----------------------------------------------------------------------------------------- helpers
def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _dicom_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _edited(source: Path, **header: object) -> Dataset:
    """``source`` read, with ``header`` keywords set (value validation off: the values may be bad)."""
    ds = pydicom.dcmread(source)
    with pydicom.config.disable_value_validation():
        for keyword, value in header.items():
            setattr(ds, keyword, value)
    return ds


def _rg1_picture(rg1: Path) -> Image.Image:
    """RG1_UNCR.dcm as an 8-bit grey picture, lungs dark (every other row and column)."""
    values = pydicom.dcmread(rg1).pixel_array[::2, ::2].astype(np.float64)
    unit = 1.0 - (values - values.min()) / (values.max() - values.min())  # MONOCHROME1
    return Image.fromarray(np.round(unit * 255).astype(np.uint8))


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _radiograph(sources: Sources) -> Image.Image:
    """The real PNG radiograph as 8-bit grey."""
    return Image.open(io.BytesIO(sources.radiograph_png)).convert("L")


def _rg1_values(sources: Sources) -> np.ndarray:
    """RG1_UNCR.dcm's stored values, every 4th row and column, float32."""
    return pydicom.dcmread(sources.rg1).pixel_array[::4, ::4].astype(np.float32)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header(width: int, height: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))


def _black_png(side: int) -> bytes:
    """A complete 8-bit grey PNG of ``side x side`` black pixels, compressed row by row (no big array)."""
    packer = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return _png_header(side, side) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def _claimed_png(side: int) -> bytes:
    """A PNG whose header claims ``side x side`` pixels, with 64 bytes of image data."""
    return (
        _png_header(side, side) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b"")
    )


def _nifti_header_claiming(shape: tuple[int, ...]) -> bytes:
    """A NIfTI-1 single-file header (352 bytes, no voxels) claiming ``shape`` int16 voxels."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    header["magic"] = b"n+1"
    header["vox_offset"] = 352
    return header.binaryblock + b"\x00" * 4


def _ct_hu(sources: Sources) -> np.ndarray:
    """One real CT slice in HU: the first COVID-CT-MD slice, else CT_small."""
    source = sources.ct_slices[0] if sources.ct_slices else sources.ct
    ds = pydicom.dcmread(source)
    return ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _ct_nifti(sources: Sources) -> bytes:
    """Two real CT slices (HU, float32) as a gzipped NIfTI, with a NaN patch and an infinite patch."""
    hu = _ct_hu(sources)
    volume = np.repeat(hu.T[..., None], 2, axis=2).astype(np.float32)
    volume[40:60, 40:60, 0] = np.nan
    volume[80:90, 80:90, 1] = np.inf
    return gzip.compress(nib.Nifti1Image(volume, np.diag([0.7, 0.7, 5.0, 1.0])).to_bytes())


def _series_slices(sources: Sources) -> list[Dataset]:
    """:data:`SERIES_SLICES` consecutive real CT slices, or CT_small at moved positions without the data."""
    if sources.ct_slices:
        return [pydicom.dcmread(path) for path in sources.ct_slices]
    series = generate_uid()
    slices = []
    for index in range(SERIES_SLICES):
        ds = pydicom.dcmread(sources.ct)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series, generate_uid()
        ds.ImagePositionPatient = [0.0, 0.0, 5.0 * index]
        ds.InstanceNumber = index + 1
        slices.append(ds)
    return slices


def _save_slices(folder: Path, slices: list[Dataset], prefix: str = "IM") -> None:
    for index, ds in enumerate(slices):
        ds.save_as(folder / f"{prefix}{index:04d}.dcm", enforce_file_format=True)


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _set_zip_flag(data: bytes, flag: int) -> bytes:
    """Set a general-purpose flag bit in every local and central header (e.g. 0x1: encrypted)."""
    out = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = out.find(signature)
        while start != -1:
            (flags,) = struct.unpack_from("<H", out, start + offset)
            struct.pack_into("<H", out, start + offset, flags | flag)
            start = out.find(signature, start + 4)
    return bytes(out)


def _zip_bomb() -> bytes:
    """One member of :data:`ZIP_BOMB_BYTES` zeros, deflated: a zip of about 0.25 MB."""
    buffer = io.BytesIO()
    chunk = b"\x00" * 2**20
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("IM0001.dcm", "w", force_zip64=True) as member,
    ):
        for _ in range(ZIP_BOMB_BYTES // len(chunk)):
            member.write(chunk)
    return buffer.getvalue()


def _claimed_zip_size(data: bytes, size: int) -> bytes:
    """The zip with its first member's uncompressed size in the central directory set to ``size``."""
    directory = data.index(b"PK\x01\x02")
    return data[: directory + 24] + struct.pack("<I", size) + data[directory + 28 :]


def _symlink_member_zip(target: str) -> bytes:
    """A zip whose one member is a symbolic link to ``target`` (as ``zip --symlinks`` stores it)."""
    info = zipfile.ZipInfo("link.dcm")
    info.create_system = 3  # Unix
    info.external_attr = (0o120777 << 16) | 0x20
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, target)
    return buffer.getvalue()


def _corrupt_j2k(_sources: Sources) -> bytes:
    """MR_small_jp2klossless.dcm with the image size (SIZ) marker segment of its codestream garbled."""
    ds = pydicom.dcmread(sample_path("MR_small_jp2klossless.dcm"))
    frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    siz = frame.index(b"\xff\x51")
    frame[siz + 2 : siz + 40] = b"\xff" * 38
    ds.PixelData = encapsulate([bytes(frame)])
    return _dicom_bytes(ds)


def _presentation_state(sources: Sources) -> bytes:
    """A Grayscale Softcopy Presentation State (no pixel data) referencing CT_small."""
    ct = pydicom.dcmread(sources.ct)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.11.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "PR"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = ct.StudyInstanceUID, generate_uid()
    ds.ContentLabel = "GSPS"
    reference = Dataset()
    reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID = ct.SOPClassUID, ct.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = ct.SeriesInstanceUID
    series.ReferencedImageSequence = Sequence([reference])
    ds.ReferencedSeriesSequence = Sequence([series])
    return _dicom_bytes(ds)


def _raw_dataset(sources: Sources) -> bytes:
    """CT_small written as a bare data set: no preamble, no ``DICM``, no file meta (implicit VR)."""
    ds = pydicom.dcmread(sources.ct)
    del ds.file_meta
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    return buffer.getvalue()


def _inverted_voi_lut(sources: Sources) -> bytes:
    """RG1_UNCR.dcm (MONOCHROME1) with a VOI LUT Sequence whose table runs from white to black over the
    stored values' range (one entry per value)."""
    ds = pydicom.dcmread(sources.rg1)
    values = ds.pixel_array
    low, high = int(values.min()), int(values.max())
    lut = Dataset()
    lut.LUTDescriptor = [high - low + 1, low, 16]
    lut.LUTData = np.linspace(65535, 0, high - low + 1).astype(np.uint16).tolist()
    lut["LUTData"].VR = "US"
    ds.VOILUTSequence = Sequence([lut])
    for keyword in ("WindowCenter", "WindowWidth"):
        if keyword in ds:
            delattr(ds, keyword)
    return _dicom_bytes(ds)


def _float_dicom_nan_columns(sources: Sources) -> bytes:
    """RG1_UNCR.dcm stored as 32-bit Float Pixel Data with ten NaN columns."""
    values = _rg1_values(sources)
    values[:, 100:110] = np.nan
    ds = pydicom.dcmread(sources.rg1)
    del ds.PixelData, ds.PixelRepresentation
    ds.Rows, ds.Columns = values.shape
    ds.BitsAllocated = ds.BitsStored = 32
    ds.HighBit = 31
    ds.FloatPixelData = values.tobytes()
    return _dicom_bytes(ds)


def _float_tiff(sources: Sources, fill: float, columns: slice) -> bytes:
    values = _rg1_values(sources)
    values[:, columns] = fill
    return _encoded(Image.fromarray(values, mode="F"), "TIFF")


def _multi_page_tiff(sources: Sources) -> bytes:
    page = _radiograph(sources)
    return _encoded(page, "TIFF", save_all=True, append_images=[page.rotate(90), page.rotate(180)])


def _rgba_png(sources: Sources) -> bytes:
    grey = _radiograph(sources)
    alpha = Image.linear_gradient("L").resize(grey.size)
    return _encoded(Image.merge("RGBA", (grey, grey, grey, alpha)), "PNG")


def _sixteen_bit_png(sources: Sources) -> bytes:
    values = pydicom.dcmread(sources.rg1).pixel_array[::2, ::2]
    return _encoded(Image.fromarray(values.astype(np.uint16)), "PNG")


def _mixed_series(folder: Path, sources: Sources) -> Path:
    """Four slices of one series and two of another (CT_small at two positions) in one folder."""
    _save_slices(folder, _series_slices(sources)[:4], "A")
    other = generate_uid()
    for index in range(2):
        ds = pydicom.dcmread(sources.ct)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = other, generate_uid()
        ds.ImagePositionPatient = [0.0, 0.0, 5.0 * index]
        ds.save_as(folder / f"B{index:04d}.dcm", enforce_file_format=True)
    return folder


def _gapped_series(folder: Path, sources: Sources) -> Path:
    """:data:`SERIES_SLICES` consecutive slices without the 4th and 5th: a gap of three spacings."""
    slices = _series_slices(sources)
    _save_slices(folder, slices[:3] + slices[5:])
    return folder


def _non_utf8_name(folder: Path, sources: Sources) -> Path:
    return _write(folder / os.fsdecode(NON_UTF8_NAME), sources.ct.read_bytes())  # surrogate escapes


def _symlink_outside(folder: Path, _sources: Sources) -> Path:
    outside = folder / "outside"
    outside.mkdir()
    (outside / "notes.txt").write_text("Not an image; outside the corpus folder.\n" * 5)
    link = folder / "linked.dcm"
    link.symlink_to(outside / "notes.txt")
    return link


def _symlink_loop(folder: Path, _sources: Sources) -> Path:
    (folder / "a.dcm").symlink_to(folder / "b.dcm")
    (folder / "b.dcm").symlink_to(folder / "a.dcm")
    return folder / "a.dcm"


def _folder_named_png(folder: Path, _sources: Sources) -> Path:
    fake = folder / "chest.png"
    fake.mkdir()
    (fake / "readme.txt").write_text("a folder, not a picture\n")
    return fake


def _nested_zip(sources: Sources) -> bytes:
    inner = _zip({"IM0001.dcm": sources.ct.read_bytes()})
    return _zip({"series.zip": inner, "deeper/again.zip": _zip({"inner.zip": inner})})


def _many_members_zip(_sources: Sources) -> bytes:
    return _zip({f"IM{index:05d}.dcm": b"" for index in range(ZIP_MANY_MEMBERS)}, zipfile.ZIP_STORED)


def _file(name: str, make: Callable[[Sources], bytes]) -> Callable[[Path, Sources], Path]:
    """A builder that writes ``make(sources)`` to ``<folder>/<name>``."""
    return lambda folder, sources: _write(folder / name, make(sources))


def _cut(source: Callable[[Sources], bytes], size: Callable[[bytes], int]) -> Callable[[Sources], bytes]:
    """The bytes of ``source`` cut to ``size(bytes)``."""

    def make(sources: Sources) -> bytes:
        data = source(sources)
        return data[: size(data)]

    return make


def _sample(name: str) -> Callable[[Sources], bytes]:
    return lambda _sources: sample_path(name).read_bytes()


# ------------------------------------------------------------------------------------------- kinds
NAN = r"NaN or infinite"
TRUNCATED_DICOM = r"truncated DICOM: "
NOT_RECOGNISED = r"not a recognised image format"

KINDS: tuple[Kind, ...] = (
    # --- NaN and infinite values
    Kind(
        "dicom-rescale-slope-nan",
        "refused",
        rf"100% of the pixel values are {NAN}",
        _file("cr.dcm", lambda s: _dicom_bytes(_edited(s.rg1, RescaleSlope="NaN", RescaleIntercept="0"))),
    ),
    Kind("dicom-float-nan-columns", "warn", NAN, _file("float.dcm", _float_dicom_nan_columns)),
    Kind(
        "tiff-float-nan-columns",
        "warn",
        NAN,
        _file("float.tiff", lambda s: _float_tiff(s, np.nan, slice(100, 110))),
    ),
    Kind(
        "tiff-mostly-infinite",
        "refused",
        rf"% of the pixel values are {NAN}",
        _file("inf.tiff", lambda s: _float_tiff(s, np.inf, slice(0, 400))),
    ),
    Kind("nifti-ct-nan-inf-patches", "warn", NAN, _file("ct.nii.gz", _ct_nifti)),
    # --- decompression bombs by header
    Kind(
        "dicom-huge-rows-columns",
        "refused",
        r"60000 x 60000 pixels exceeds the limit",
        _file("huge.dcm", lambda s: _dicom_bytes(_edited(s.ct, Rows=60000, Columns=60000))),
    ),
    Kind(
        "dicom-100000-frames",
        "refused",
        r"100000 frames of 128 x 128 pixels exceed the limit",
        _file("frames.dcm", lambda s: _dicom_bytes(_edited(s.ct, NumberOfFrames=100000))),
    ),
    Kind(
        "nifti-header-4e8-voxels",
        "refused",
        r"decoding would take about 4\.5 GiB",
        _file("claim.nii", lambda _s: _nifti_header_claiming((1000, 1000, 400))),
    ),
    Kind(
        "png-ihdr-10000x10000-tiny-data",
        "refused",
        r"PNG image data is truncated or corrupt",
        _file("claim.png", lambda _s: _claimed_png(10000)),
    ),
    Kind(
        "png-ihdr-40000x40000",
        "refused",
        r"exceeds the limit|decompression bomb",
        _file("claim.png", lambda _s: _claimed_png(40000)),
    ),
    # --- decompression bomb by content: a complete 97 KB PNG of 10000 x 10000 pixels
    Kind("png-10000x10000-97kb", "ok", "", _file("black.png", lambda _s: _black_png(10000))),
    # --- truncations at several offsets
    Kind(
        "dicom-cut-at-100-bytes",
        "refused",
        rf"{TRUNCATED_DICOM}.*inside the 128-byte preamble",
        _file("cut.dcm", _cut(lambda s: s.rg1.read_bytes(), lambda _d: 100)),
    ),
    Kind(
        "dicom-cut-in-file-meta",
        "refused",
        rf"{TRUNCATED_DICOM}.*inside the file meta information",
        _file("cut.dcm", _cut(lambda s: s.ct.read_bytes(), lambda _d: 300)),
    ),
    Kind(
        "dicom-cut-at-1kb",
        "refused",
        TRUNCATED_DICOM,
        _file("cut.dcm", _cut(lambda s: s.ct.read_bytes(), lambda _d: 1024)),
    ),
    Kind(
        "dicom-cut-mid-pixel-data",
        "refused",
        rf"{TRUNCATED_DICOM}.*inside the pixel data",
        _file("cut.dcm", _cut(lambda s: s.rg1.read_bytes(), lambda d: len(d) // 2)),
    ),
    Kind(
        "png-cut-in-half",
        "refused",
        r"PNG image data is truncated or corrupt",
        _file("cut.png", _cut(lambda s: s.radiograph_png, lambda d: len(d) // 2)),
    ),
    Kind(
        "jpeg-cut-in-half",
        "refused",
        r"JPEG image data is truncated or corrupt",
        _file("cut.jpeg", _cut(lambda s: s.radiograph_jpeg, lambda d: len(d) // 2)),
    ),
    Kind(
        "tiff-cut-at-100-bytes",
        "refused",
        r"TIFF image data is truncated or corrupt",
        _file("cut.tiff", _cut(lambda s: _encoded(_radiograph(s), "TIFF"), lambda _d: 100)),
    ),
    Kind(
        "nifti-gz-cut-in-half",
        "refused",
        r"NIfTI",
        _file("cut.nii.gz", _cut(_ct_nifti, lambda d: len(d) // 2)),
    ),
    # --- DICOM objects that are not images
    Kind(
        "dicom-structured-report",
        "refused",
        r"DICOM has no pixel data \(SOP class Comprehensive SR",
        _file("sr.dcm", _sample("test-SR.dcm")),
    ),
    Kind(
        "dicom-rt-structure-set",
        "refused",
        r"DICOM has no pixel data \(SOP class RT Structure Set",
        _file("rtstruct.dcm", _sample("rtstruct.dcm")),
    ),
    Kind(
        "dicom-rt-plan",
        "refused",
        r"DICOM has no pixel data \(SOP class RT Plan",
        _file("rtplan.dcm", _sample("rtplan.dcm")),
    ),
    Kind(
        "dicom-presentation-state",
        "refused",
        r"DICOM has no pixel data \(SOP class Grayscale Softcopy Presentation State",
        _file("gsps.dcm", _presentation_state),
    ),
    Kind(
        "dicomdir",
        "refused",
        r"DICOM has no pixel data \(SOP class Media Storage Directory",
        _file("DICOMDIR", _sample("dicomdirtests/DICOMDIR")),
    ),
    # --- zips: no image to the CLI (the outcome here); series uploads to the service, whose answers are
    # --- listed in test_corpus_server.SERVER_EXPECTED
    Kind(
        "zip-path-traversal",
        "refused",
        NOT_RECOGNISED,
        _file(
            "series.zip",
            lambda s: _zip({"../../evil.dcm": s.ct.read_bytes(), "/abs/evil2.dcm": s.ct.read_bytes()}),
        ),
        "zip",
    ),
    Kind(
        "zip-symlink-member",
        "refused",
        NOT_RECOGNISED,
        _file("series.zip", lambda _s: _symlink_member_zip("/etc/passwd")),
        "zip",
    ),
    Kind(
        "zip-encrypted",
        "refused",
        NOT_RECOGNISED,
        _file("series.zip", lambda s: _set_zip_flag(_zip({"IM0001.dcm": s.ct.read_bytes()}), 0x1)),
        "zip",
    ),
    Kind("zip-nested", "refused", NOT_RECOGNISED, _file("series.zip", _nested_zip), "zip"),
    Kind(
        "zip-bomb-256mb-of-zeros", "refused", NOT_RECOGNISED, _file("bomb.zip", lambda _s: _zip_bomb()), "zip"
    ),
    Kind(
        "zip-bomb-by-header",
        "refused",
        NOT_RECOGNISED,
        _file("claim.zip", lambda s: _claimed_zip_size(_zip({"IM0001.dcm": s.ct.read_bytes()}), 0xFFFF0000)),
        "zip",
    ),
    Kind("zip-2001-members", "refused", NOT_RECOGNISED, _file("many.zip", _many_members_zip), "zip"),
    # --- series folders
    Kind("series-two-in-one-folder", "warn", r"folder holds 2 series", _mixed_series, "parts"),
    Kind("series-missing-slices", "warn", r"missing slice", _gapped_series, "parts"),
    # --- markup in tags, wrong names, odd files
    Kind(
        "dicom-script-in-tags",
        "ok",
        "",
        _file(
            "markup.dcm",
            lambda s: _dicom_bytes(
                _edited(
                    s.ct,
                    PatientName="<script>alert(1)</script>",
                    SeriesDescription='<img src=x onerror="alert(2)">',
                    InstitutionName="</td><b>x</b>",
                )
            ),
        ),
    ),
    Kind("dicom-named-png", "ok", "", _file("scan.png", lambda s: s.ct.read_bytes())),
    Kind("png-named-dcm", "ok", "", _file("scan.dcm", lambda s: s.radiograph_png)),
    Kind(
        "text-named-dcm",
        "refused",
        NOT_RECOGNISED,
        _file("notes.dcm", lambda _s: b"Patient notes, not an image.\n" * 20),
    ),
    Kind("empty-file", "refused", r"file is empty", _file("empty.dcm", lambda _s: b"")),
    Kind(
        "dicom-zero-length-pixel-data",
        "refused",
        TRUNCATED_DICOM,
        _file("nopixels.dcm", lambda s: _dicom_bytes(_edited(s.ct, PixelData=b""))),
    ),
    Kind("png-16-bit", "ok", "", _file("sixteen.png", _sixteen_bit_png)),
    Kind("png-rgba", "ok", "", _file("rgba.png", _rgba_png)),
    Kind(
        "png-palette",
        "ok",
        "",
        _file(
            "palette.png",
            lambda s: _encoded(_radiograph(s).convert("P", palette=Image.Palette.ADAPTIVE, colors=64), "PNG"),
        ),
    ),
    Kind(
        "tiff-multi-page",
        "warn",
        r"3 frames/pages in the file; only the first was read",
        _file("pages.tiff", _multi_page_tiff),
    ),
    Kind("png-1x1", "ok", "", _file("dot.png", lambda _s: _encoded(Image.new("L", (1, 1), 128), "PNG"))),
    Kind("dicom-monochrome1-inverted-voi-lut", "ok", "", _file("mono1.dcm", _inverted_voi_lut)),
    Kind(
        "dicom-jpeg2000-corrupt-codestream",
        "refused",
        r"cannot decode pixel data with transfer syntax JPEG 2000",
        _file("j2k.dcm", _corrupt_j2k),
    ),
    Kind("dicom-no-preamble", "ok", "", _file("raw.dcm", _raw_dataset)),
    Kind("non-utf8-file-name", "ok", "", _non_utf8_name),
    Kind("symlink-to-text-outside", "refused", NOT_RECOGNISED, _symlink_outside, "none"),
    Kind("symlink-loop", "refused", r"no such file or folder", _symlink_loop, "none"),
    Kind("folder-named-like-a-png", "refused", r"no DICOM images found", _folder_named_png, "none"),
)


def kinds_by_name() -> dict[str, Kind]:
    return {kind.name: kind for kind in KINDS}


def uploads(kind: Kind, path: Path) -> Iterator[tuple[str, bytes]]:
    """The parts a client sends for ``kind`` built at ``path``: ``(file name, bytes)``."""
    if kind.upload == "parts":
        for file in sorted(path.iterdir()):
            yield file.name, file.read_bytes()
    elif kind.upload in ("file", "zip"):
        yield os.fsencode(path.name).decode("latin-1"), path.read_bytes()
