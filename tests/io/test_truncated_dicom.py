"""A DICOM file cut anywhere is reported as ``truncated DICOM: <where it ends>``, never as a TIFF problem.

pydicom's RG1_UNCR.dcm and CT_small.dcm are dual-personality files: their 128-byte preamble starts with
a TIFF header. Cut before the ``DICM`` magic at byte 128, they used to be sniffed as TIFF and reported as
"cannot read TIFF image header" (issue 19), with Pillow's "Corrupt EXIF data" warning on stderr too.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from PIL import Image

from chestlens.cli import EXIT_BAD_INPUT
from chestlens.errors import ChestlensInputError
from chestlens.io import read_image, sniff_format

pytestmark = pytest.mark.inference

#: (sample, bytes kept, expected reason): the preamble, the file meta, the data set, the pixel data.
CUTS = [
    ("RG1_UNCR.dcm", 100, r"the file ends at byte 100, inside the 128-byte preamble \(no DICM\)"),
    ("CT_small.dcm", 4, r"the file ends at byte 4, inside the 128-byte preamble"),
    ("CT_small.dcm", 130, r"the file ends at byte 130, inside the 128-byte preamble"),
    ("CT_small.dcm", 140, r"the file ends at byte 140, inside the file meta information"),
    ("MR_small.dcm", 300, r"the file ends at byte 300, inside the file meta information"),
    ("CT_small.dcm", 1024, r"the file ends at byte 1,024, inside a data element"),
    ("RG1_UNCR.dcm", 1024, r"no pixel data although it is an image \(SOP class Computed Radiography"),
    ("CT_small.dcm", 20000, r"the file ends at byte 20,000, inside the pixel data"),
]


def _cut(pip_dicom, sample: str, size: int, target: Path) -> Path:
    target.write_bytes(pip_dicom(sample).read_bytes()[:size])
    return target


@pytest.mark.parametrize(("sample", "size", "reason"), CUTS)
def test_cut_dicom_is_a_truncated_dicom(pip_dicom, tmp_path, sample, size, reason):
    path = _cut(pip_dicom, sample, size, tmp_path / "cut.dcm")
    assert sniff_format(path) == "dicom"
    with pytest.raises(ChestlensInputError, match=rf"^{path}: truncated DICOM: {reason}"):
        read_image(path)
    with pytest.raises(ChestlensInputError, match=rf"^upload\.dcm: truncated DICOM: {reason}"):
        read_image(path.read_bytes(), name="upload.dcm")


def test_info_prints_one_line_and_no_tiff_warning(pip_dicom, tmp_path):
    path = _cut(pip_dicom, "RG1_UNCR.dcm", 100, tmp_path / "cut.dcm")
    result = subprocess.run(
        [sys.executable, "-m", "chestlens.cli", "info", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr.splitlines() == [
        f"chestlens: error: {path}: truncated DICOM: the file ends at byte 100, inside the 128-byte preamble "
        "(no DICM)"
    ]


def test_the_name_only_decides_for_a_cut_preamble(pip_dicom, tmp_path):
    """Bytes decide the format; a DICOM name only turns a short preamble-like file into a truncated DICOM."""
    head = pip_dicom("RG1_UNCR.dcm").read_bytes()[:100]
    as_tiff = tmp_path / "cut.tiff"
    as_tiff.write_bytes(head)
    assert sniff_format(as_tiff) == "tiff"
    zeros = tmp_path / "zeros.dicom"
    zeros.write_bytes(b"\x00" * 128 + b"DI")
    with pytest.raises(ChestlensInputError, match="truncated DICOM: the file ends at byte 130"):
        read_image(zeros)
    tiny_png = io.BytesIO()
    Image.new("L", (1, 1)).save(tiny_png, format="PNG")
    assert len(tiny_png.getvalue()) < 128
    lying = tmp_path / "tiny.dcm"  # a whole 1 x 1 PNG named .dcm is still a PNG
    lying.write_bytes(tiny_png.getvalue())
    assert sniff_format(lying) == "png" and read_image(lying).pixels.shape == (1, 1)
    short_text = tmp_path / "notes.dcm"
    short_text.write_text("not an image\n")
    with pytest.raises(ChestlensInputError, match="not a recognised image format"):
        read_image(short_text)


def test_zero_length_pixel_data_is_a_truncated_dicom(pip_dicom, tmp_path):
    """It used to be "cannot decode pixel data ...: object of type 'NoneType' has no len()"."""
    ds = pydicom.dcmread(pip_dicom("CT_small.dcm"))
    ds.PixelData = b""
    path = tmp_path / "empty-pixels.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(
        ChestlensInputError, match=r"truncated DICOM: the pixel data element is empty \(0 bytes\)$"
    ):
        read_image(path)
