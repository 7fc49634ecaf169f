"""One-line errors from the real CLI entry point: bad ``--device``, no internal placeholder in messages,
``-q`` silences progress but never failures, usage errors and refused paths on one line."""

from __future__ import annotations

import pytest

from chestlens import __version__
from chestlens.cli import EXIT_BAD_INPUT, main, os_error_text
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


DEVICE_COMMANDS = ["predict", "demo", "evaluate-series", "serve", "listen"]


@pytest.mark.parametrize("command", DEVICE_COMMANDS)
def test_unknown_device_is_one_line(command, pip_dicom, capsys):
    target = [str(pip_dicom("RG1_UNCR.dcm"))] if command in ("predict", "evaluate-series") else []
    code, _, stderr = _run(capsys, command, *target, "--device", "gpu")
    assert code == EXIT_BAD_INPUT
    expected = "chestlens: error: --device gpu: unknown device; use auto, cpu, cuda or cuda:N"
    assert _one_line(stderr) == expected


@pytest.mark.parametrize("command", DEVICE_COMMANDS)
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_one_line(command, device, pip_dicom, capsys, monkeypatch):
    torch = pytest.importorskip("torch", reason="the [train] extra: without PyTorch there is no CUDA to ask")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    target = [str(pip_dicom("RG1_UNCR.dcm"))] if command in ("predict", "evaluate-series") else []
    code, _, stderr = _run(capsys, command, *target, "--device", device)
    assert code == EXIT_BAD_INPUT
    expected = f"chestlens: error: --device {device}: no CUDA GPU here; use --device auto or cpu"
    assert _one_line(stderr) == expected


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


@pytest.mark.inference
def test_quiet_demo_prints_nothing_and_writes_its_page(tmp_path, capsys):
    code, stdout, stderr = _run(capsys, "demo", "-q", "--out", str(tmp_path / "demo"), "--device", "cpu")
    assert (code, stdout, stderr) == (0, "", "")
    assert (tmp_path / "demo" / "index.html").is_file() and (tmp_path / "demo" / "results.json").is_file()


@pytest.mark.inference
def test_quiet_demo_still_reports_a_missing_sample(tmp_path, capsys, monkeypatch):
    import chestlens.io.samples

    def missing(name: str):
        raise FileNotFoundError(f"sample file {name!r} not found; pip install pydicom-data")

    monkeypatch.setattr(chestlens.io.samples, "sample_path", missing)
    code, stdout, stderr = _run(capsys, "demo", "--quiet", "--out", str(tmp_path / "demo"))
    assert code == EXIT_BAD_INPUT and stdout == ""
    assert _one_line(stderr).startswith("chestlens: error: sample file 'RG1_UNCR.dcm' not found")


@pytest.mark.inference
def test_quiet_evaluate_series_still_reports_failures(pip_dicom, tmp_path, capsys):
    radiograph = str(pip_dicom("RG1_UNCR.dcm"))
    code, stdout, stderr = _run(capsys, "evaluate-series", radiograph, "-q", "--out", str(tmp_path / "s"))
    assert code == EXIT_BAD_INPUT and stdout == ""
    assert "not screened as a CT series with lesions" in _one_line(stderr)


def test_quiet_evaluate_still_reports_failures(capsys):
    code, stdout, stderr = _run(capsys, "evaluate", "xray3-screener", "-q")
    assert code == EXIT_BAD_INPUT and stdout == ""
    assert "give exactly one of --splits CSV (with --split) or --data ROOT" in _one_line(stderr)


def test_info_error_is_one_line(tmp_path, capsys):
    code, stdout, stderr = _run(capsys, "info", str(tmp_path / "missing.dcm"))
    assert code == EXIT_BAD_INPUT and stdout == ""
    assert _one_line(stderr) == f"chestlens: error: {tmp_path / 'missing.dcm'}: no such file or folder"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["predict", "x.dcm", "--cam", "foo"], "Invalid value for --cam: unknown heatmap 'foo'"),
        (["demo", "--bogus"], "No such option: --bogus"),
        (["predict"], "Missing argument 'paths'"),
        (["predict", "x.dcm", "--batch-size", "0"], "Invalid value for '--batch-size'"),
        (["listen", "--log-level", "loud"], "--log-level loud: use debug, info, warning, error"),
    ],
)
def test_usage_errors_are_one_line(args, expected, capsys):
    code, _, stderr = _run(capsys, *args)
    assert code == EXIT_BAD_INPUT
    line = _one_line(stderr)
    assert line.startswith("chestlens: error: ") and expected in line
    assert "╭" not in stderr and "Usage:" not in stderr


def test_a_group_without_a_command_prints_its_help(capsys):
    code, stdout, stderr = _run(capsys, "data")
    assert code == EXIT_BAD_INPUT and "Usage: chestlens data" in stdout and stderr == ""


def test_help_and_version_exit_0(capsys):
    assert _run(capsys, "--version")[:2] == (0, f"chestlens {__version__}\n")
    assert _run(capsys, "predict", "--help")[0] == 0


@pytest.mark.parametrize(
    "args",
    [
        ["predict", "{image}", "--out", "{file}"],
        ["predict", "{image}", "--overlays", "{file}"],
        ["predict", "{image}", "--dicom-out", "{file}"],
        ["demo", "--out", "{file}"],
        ["evaluate-series", "{image}", "--out", "{file}"],
    ],
)
def test_an_output_folder_that_is_a_file_is_one_line_before_any_screening(args, pip_dicom, tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("a file where a folder should go")
    image = str(pip_dicom("RG1_UNCR.dcm"))
    code, stdout, stderr = _run(capsys, *[a.format(image=image, file=blocker) for a in args])
    assert code == EXIT_BAD_INPUT and stdout == ""
    option = next(a for a in args if a.startswith("--"))
    assert _one_line(stderr) == (
        f"chestlens: error: {blocker}: a file, not a folder: {option} names a folder to write into"
    )


def test_system_errors_read_as_one_line():
    assert os_error_text(FileExistsError(17, "File exists", "out")) == (
        "out: a file is in the way of a folder (file exists)"
    )
    assert os_error_text(PermissionError(13, "Permission denied", "/srv/out")) == (
        "/srv/out: not allowed here (permission denied)"
    )
    assert os_error_text(OSError(28, "No space left on device")) == "no space left on device"
