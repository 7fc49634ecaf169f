"""Format detection from bytes, never from the extension."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from chestlens.errors import ChestlensInputError
from chestlens.io import sniff_format

pytestmark = pytest.mark.inference


def _picture_bytes(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("pillow_format", "expected"), [("PNG", "png"), ("JPEG", "jpeg"), ("TIFF", "tiff"), ("BMP", "bmp")]
)
def test_picture_magic_numbers(pillow_format, expected, tmp_path):
    data = _picture_bytes(pillow_format)
    assert sniff_format(data) == expected
    lying = tmp_path / "picture.dcm"  # the extension lies on purpose
    lying.write_bytes(data)
    assert sniff_format(lying) == expected


def test_dicom_with_preamble_and_dual_tiff_header(pip_dicom):
    # RG1_UNCR.dcm carries a TIFF header in its preamble: DICM must win
    path = pip_dicom("RG1_UNCR.dcm")
    assert path.read_bytes()[:4] == b"II*\x00"
    assert sniff_format(path) == "dicom"


def test_dicom_without_preamble(pip_dicom):
    path = pip_dicom("OT-PAL-8-face.dcm")
    assert path.read_bytes()[128:132] != b"DICM"
    assert sniff_format(path) == "dicom"


def test_nifti_plain_and_gzip(tmp_path):
    image = nib.Nifti1Image(np.zeros((4, 4, 2), dtype=np.int16), np.eye(4))
    plain = image.to_bytes()
    assert sniff_format(plain) == "nifti"
    assert sniff_format(gzip.compress(plain)) == "nifti"
    odd_name = tmp_path / "volume.bin"
    odd_name.write_bytes(gzip.compress(plain))
    assert sniff_format(odd_name) == "nifti"


def test_folder_is_a_series(tmp_path):
    assert sniff_format(tmp_path) == "dicom-series"


def test_gzip_that_is_not_nifti_is_rejected():
    with pytest.raises(ChestlensInputError, match="not a recognised image format"):
        sniff_format(gzip.compress(b"hello world" * 100), name="notes.nii.gz")


def test_png_data_in_a_jpg_file_from_the_real_data(source_dir):
    images = source_dir("covid-chestxray-dataset") / "images"
    lying = [p for p in sorted(images.glob("*.jpg")) if p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"]
    assert len(lying) >= 10  # SOURCE.md: 16 upstream, e.g. 000001.jpg
    assert images / "000001.jpg" in lying
    assert {sniff_format(p) for p in lying} == {"png"}


def test_empty_and_text_and_missing(tmp_path: Path):
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n" * 20)
    with pytest.raises(ChestlensInputError, match=r"empty\.dcm: file is empty"):
        sniff_format(empty)
    with pytest.raises(ChestlensInputError, match=r"notes\.png: not a recognised image format"):
        sniff_format(text)
    with pytest.raises(ChestlensInputError, match="no such file or folder"):
        sniff_format(tmp_path / "absent.png")
    with pytest.raises(ChestlensInputError, match=r"upload\.png: file is empty"):
        sniff_format(b"", name="upload.png")
