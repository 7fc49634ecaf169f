"""Every kind of bad input gives ChestlensInputError naming the file; the CLI exits 2 with one line."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate

from chestlens.cli import EXIT_BAD_INPUT, main
from chestlens.errors import ChestlensInputError
from chestlens.io import read_image

pytestmark = pytest.mark.inference


def _cut(source: Path, size: int, target: Path) -> Path:
    target.write_bytes(source.read_bytes()[:size])
    return target


def _compressed_with(tsyntax: str, pip_dicom, target: Path) -> Path:
    ds = pydicom.dcmread(pip_dicom("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = tsyntax
    ds.PixelData = encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    ds.save_as(target, enforce_file_format=True)
    return target


def _four_d(target: Path) -> Path:
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 2), dtype=np.int16), np.eye(4)), target)
    return target


#: name -> (builder(tmp_path, pip_dicom, make_dicom, bomb_png) -> path, expected reason regex)
BAD_INPUTS: dict[str, tuple[Callable[..., Path], str]] = {
    "empty file": (lambda t, p, m, b: _empty(t / "empty.png"), "file is empty"),
    "text renamed png": (lambda t, p, m, b: _text(t / "notes.png"), "not a recognised image format"),
    "truncated DICOM pixels": (lambda t, p, m, b: _cut(p("CT_small.dcm"), 20000, t / "cut.dcm"), "truncated"),
    "truncated DICOM header": (lambda t, p, m, b: _cut(p("CT_small.dcm"), 1000, t / "cut.dcm"), "truncated"),
    "truncated JPEG 2000 DICOM": (
        lambda t, p, m, b: _cut(p("MR_small_jp2klossless.dcm"), 3000, t / "cut.dcm"),
        "truncated",
    ),
    "pydicom MR_truncated": (lambda t, p, m, b: p("MR_truncated.dcm"), "truncated"),
    "unsupported transfer syntax": (
        lambda t, p, m, b: _compressed_with("1.2.840.10008.1.2.4.100", p, t / "mpeg2.dcm"),
        r"unsupported transfer syntax MPEG2 Main Profile / Main Level \(1\.2\.840\.10008\.1\.2\.4\.100\)",
    ),
    "private transfer syntax": (
        lambda t, p, m, b: _compressed_with("1.2.3.4.5.6", p, t / "private.dcm"),
        r"unsupported transfer syntax 1\.2\.3\.4\.5\.6",
    ),
    "12-bit JPEG extended decoder failure": (
        lambda t, p, m, b: p("JPEG-lossy.dcm"),
        r"cannot decode pixel data with transfer syntax JPEG Extended \(Process 2 and 4\)",
    ),
    "PNG decompression bomb": (lambda t, p, m, b: b, "decompression bomb"),
    "DICOM header over the pixel limit": (
        lambda t, p, m, b: m("huge.dcm", Rows=20000, Columns=20000),
        "20000 x 20000 pixels exceeds the limit",
    ),
    "4-D NIfTI": (lambda t, p, m, b: _four_d(t / "fmri.nii.gz"), "4-D NIfTI"),
    "structured report": (
        lambda t, p, m, b: p("test-SR.dcm"),
        r"DICOM has no pixel data \(SOP class Comprehensive SR Storage",
    ),
    "RT plan without preamble": (lambda t, p, m, b: p("ExplVR_LitEndNoMeta.dcm"), "DICOM has no pixel data"),
    "missing file": (lambda t, p, m, b: t / "absent.dcm", "no such file or folder"),
    "folder without DICOM": (
        lambda t, p, m, b: _text(t / "folder" / "readme.txt").parent,
        "no DICOM images found",
    ),
}


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _text(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("This is plain text, not an image.\n" * 10)
    return path


@pytest.fixture(params=sorted(BAD_INPUTS))
def bad_input(request, tmp_path, pip_dicom, make_dicom, bomb_png) -> tuple[Path, str]:
    build, reason = BAD_INPUTS[request.param]
    return build(tmp_path, pip_dicom, make_dicom, bomb_png), reason


def test_library_raises_one_error_type_naming_the_file(bad_input):
    path, reason = bad_input
    with pytest.raises(ChestlensInputError, match=reason) as caught:
        read_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    assert caught.value.path == str(path)


def test_cli_exits_2_with_one_line(bad_input, capsys):
    path, _ = bad_input
    with pytest.raises(SystemExit) as caught:
        main(["info", str(path)])
    assert caught.value.code == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"chestlens: error: {path}: ")
    assert "Traceback" not in captured.err + captured.out


def test_bytes_errors_use_the_given_name(pip_dicom):
    truncated = pip_dicom("CT_small.dcm").read_bytes()[:20000]
    with pytest.raises(
        ChestlensInputError,
        match=r"^upload\.dcm: truncated DICOM: the file ends at byte 20,000, inside the pixel data$",
    ):
        read_image(truncated, name="upload.dcm")
    with pytest.raises(ChestlensInputError, match=r"^file is empty$"):
        read_image(b"")
    buffer = io.BytesIO(b"GIF89a" + b"\x00" * 100)
    with pytest.raises(ChestlensInputError, match="not a recognised image format"):
        read_image(buffer.getvalue(), name="anim.gif")


def test_real_subprocess_has_no_traceback(tmp_path):
    text = _text(tmp_path / "scan.png")
    result = subprocess.run(
        [sys.executable, "-m", "chestlens.cli", "info", str(text)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr.strip() == f"chestlens: error: {text}: " + (
        "not a recognised image format (expected DICOM, PNG, JPEG, TIFF, BMP or NIfTI)"
    )
    assert "Traceback" not in result.stderr
