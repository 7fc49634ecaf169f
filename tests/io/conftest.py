"""Fixtures for the image input tests: the real CT-MD series (read once) and synthetic file builders."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from chestlens.io import MedicalImage, SeriesInfo, read_series, scan_series

COVID_SERIES = Path("Sample data") / "COVID-19 subjects" / "P001"


@pytest.fixture(scope="session")
def covid_dir(source_dir) -> Path:
    """The real COVID-CT-MD P001 series folder (148 JPEG Lossless slices)."""
    return source_dir("covid-ct-md") / COVID_SERIES


@pytest.fixture(scope="session")
def covid_scan(covid_dir: Path) -> list[SeriesInfo]:
    return scan_series(covid_dir)


@pytest.fixture(scope="session")
def covid_volume(covid_dir: Path) -> MedicalImage:
    """The whole series in HU, read once per session (about 4 s on 2 cores)."""
    return read_series(covid_dir)


@pytest.fixture
def make_dicom(tmp_path: Path) -> Callable[..., Path]:
    """Factory for small synthetic CT DICOM files (16-bit, rescale intercept -1024).

    Keyword arguments override header values; ``pixels`` (int16 array) sets the image.
    """

    def make(name: str = "synthetic.dcm", *, pixels: np.ndarray | None = None, **header: object) -> Path:
        pixels = np.full((16, 16), 1024, dtype=np.int16) if pixels is None else pixels
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.PatientName = "Anonymous^Test"
        ds.PatientID = "TEST-0"
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.2"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, 0]
        ds.PixelSpacing = [0.5, 0.5]
        ds.SliceThickness = 1
        ds.RescaleSlope = 1
        ds.RescaleIntercept = -1024
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = pixels.shape
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        for keyword, value in header.items():
            setattr(ds, keyword, value)
        ds.PixelData = pixels.astype(np.int16).tobytes()
        path = tmp_path / name
        ds.save_as(path, enforce_file_format=True)
        return path

    return make


def png_bytes_claiming(width: int, height: int) -> bytes:
    """A valid tiny PNG (8-bit grey) whose header claims ``width x height``: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def claimed_png(tmp_path: Path) -> Callable[[int, int], Path]:
    """Factory: ``<w>x<h>.png``, a file of about 70 bytes claiming ``w x h`` pixels."""

    def make(width: int, height: int) -> Path:
        path = tmp_path / f"{width}x{height}.png"
        path.write_bytes(png_bytes_claiming(width, height))
        return path

    return make


@pytest.fixture
def bomb_png(tmp_path: Path) -> Path:
    """``bomb.png``: 40000 x 40000 pixels claimed by a file of about 70 bytes."""
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes_claiming(40000, 40000))
    return path
