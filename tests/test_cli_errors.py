"""One-line errors from the real CLI entry point: bad ``--device``, no internal placeholder in messages,
``-q`` silences progress but never failures."""

from __future__ import annotations

import pytest
import torch

from chestlens.cli import EXIT_BAD_INPUT, main
from chestlens.data.root import DATA_ENV
from chestlens.errors import ChestlensInputError


def _run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as caught:
        main(list(args))
    captured = capsys.readouterr()
    return caught.value.code, captured.out, captured.err


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "<in-memory input>" not in stderr
    return lines[0]


@pytest.mark.parametrize("command", ["predict", "demo", "evaluate-series", "serve"])
def test_unknown_device_is_one_line(command, pip_dicom, capsys):
    target = [str(pip_dicom("RG1_UNCR.dcm"))] if command in ("predict", "evaluate-series") else []
    code, _, stderr = _run(capsys, command, *target, "--device", "gpu")
    assert code == EXIT_BAD_INPUT
    expected = "chestlens: error: --device gpu: unknown device; use auto, cpu, cuda or cuda:N"
    assert _one_line(stderr) == expected


def test_cuda_without_a_gpu_is_one_line(pip_dicom, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, stderr = _run(capsys, "predict", str(pip_dicom("RG1_UNCR.dcm")), "--device", "cuda")
    assert code == EXIT_BAD_INPUT
    assert "--device cuda: no CUDA GPU here" in _one_line(stderr)


def test_error_without_a_path_has_no_placeholder():
    assert str(ChestlensInputError(None, "no data root")) == "no data root"
    assert str(ChestlensInputError("a.dcm", "file is empty")) == "a.dcm: file is empty"


@pytest.mark.parametrize("command", [["data", "sources"], ["train", "classify"]])
def test_no_data_root_is_one_line_without_placeholder(command, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # no ../shared/data here either
    code, _, stderr = _run(capsys, *command)
    assert code == EXIT_BAD_INPUT
    assert "no data root" in _one_line(stderr)


def test_quiet_predict_still_reports_failures(tmp_path, capsys):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code, stdout, stderr = _run(capsys, "predict", str(tmp_path), "-q", "--device", "cpu", "--cam", "none")
    assert code == 2 and stdout == ""
    assert _one_line(stderr).startswith(f"chestlens: error: {tmp_path / 'broken.jpg'}: cannot read JPEG")
