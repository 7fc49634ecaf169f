"""``chestlens predict`` and ``chestlens demo`` through the real CLI entry point."""

from __future__ import annotations

import html
import json
import shutil

import pytest
from PIL import Image

from chestlens import RESEARCH_USE_DISCLAIMER
from chestlens.cli import main
from chestlens.models.meaning import output_meaning
from chestlens.models.spec import read_spec
from chestlens.pipeline.schema import ScreeningResult

pytestmark = pytest.mark.inference


def _run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as caught:
        main(list(args))
    captured = capsys.readouterr()
    return caught.value.code, captured.out, captured.err


@pytest.fixture
def inputs(tmp_path, pip_dicom):
    folder = tmp_path / "in"
    (folder / "nested").mkdir(parents=True)
    shutil.copy(pip_dicom("RG1_UNCR.dcm"), folder / "chest.dcm")
    shutil.copy(pip_dicom("RG3_UNCR.dcm"), folder / "nested" / "leg.dcm")
    (folder / "nested" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_predict_folder_reports_failures_and_resumes(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["predict", str(inputs), "--out", str(out), "--overlays", str(out / "overlays"), "--device", "cpu"]
    code, stdout, stderr = _run(capsys, *args)
    assert code == 2  # one input could not be read
    assert "broken.jpg" in stderr and "Traceback" not in stderr
    assert "chest.dcm" in stdout and "leg.dcm" in stdout  # the table
    assert "1 screened, 1 rejected, 1 failed" in " ".join(stderr.split())
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(line["status"] for line in lines) == ["failed", "rejected", "screened"]
    screened = next(line for line in lines if line["status"] == "screened")
    result = ScreeningResult.model_validate(screened["result"])
    assert result.disclaimer == RESEARCH_USE_DISCLAIMER
    assert (out / "results.csv").read_text().count("\n") == 4
    overlays = sorted(p.name for p in (out / "overlays").iterdir())
    assert len(overlays) == 2 and all(name.endswith(".png") for name in overlays)
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temp files left

    code, _, stderr = _run(capsys, "predict", str(inputs), "--out", str(out), "--device", "cpu")
    assert code == 2  # the failed input stays failed
    assert "0 input(s) to screen, 3 already done" in " ".join(stderr.split())
    assert len((out / "results.jsonl").read_text().splitlines()) == 3


def test_predict_json_to_stdout_and_csv(pip_dicom, tmp_path, capsys):
    csv_path = tmp_path / "r.csv"
    code, stdout, _ = _run(
        capsys,
        "predict",
        str(pip_dicom("CT_small.dcm")),
        "--json",
        "-",
        "--csv",
        str(csv_path),
        "-q",
        "--cam",
        "none",
    )
    assert code == 0
    (result,) = [ScreeningResult.model_validate(item) for item in json.loads(stdout)]
    assert result.gate.image_type == "chest_ct"
    assert "CT_small.dcm" in csv_path.read_text()


def test_predict_missing_path_is_one_line(capsys, tmp_path):
    code, _, stderr = _run(capsys, "predict", str(tmp_path / "nope.dcm"))
    assert code == 2 and stderr.count("\n") == 1 and "nope.dcm" in stderr


def test_predict_folder_without_images_is_one_line(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    code, _, stderr = _run(capsys, "predict", str(tmp_path))
    assert code == 2 and stderr.count("\n") == 1 and "no image files found" in stderr


def test_demo_screens_the_pip_images(tmp_path, capsys):
    out_dir = tmp_path / "demo out"
    code, stdout, _ = _run(capsys, "demo", "--out", str(out_dir), "--device", "cpu")
    assert code == 0
    assert RESEARCH_USE_DISCLAIMER[:40] in " ".join(stdout.split())
    results = [ScreeningResult.model_validate(r) for r in json.loads((out_dir / "results.json").read_text())]
    chest, ct, leg = results
    assert chest.gate.accepted and chest.classification is not None and chest.explanation is not None
    meaning = output_meaning(read_spec("xray3-screener"))
    assert chest.classification.meaning == meaning and "inside one source" in meaning
    assert " ".join(meaning.split()) in " ".join(stdout.split())  # under the table
    assert ct.gate.accepted and ct.gate.image_type == "chest_ct"
    assert not leg.gate.accepted and leg.classification is None
    page = (out_dir / "index.html").read_text()
    assert RESEARCH_USE_DISCLAIMER in page and page.count("data:image/png;base64,") == 3
    assert html.escape(meaning) in page
    assert "REJECTED" in page
    with Image.open(out_dir / "RG1_UNCR.png") as overlay:
        assert overlay.mode == "RGB" and overlay.size[0] == 2 * 482  # image and heatmap panels, 512 px high
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "CT_small.png",
        "RG1_UNCR.png",
        "RG3_UNCR.png",
        "index.html",
        "results.json",
    ]


def test_predict_writes_dicom_sr_and_seg_for_dicom_input(pip_dicom, tmp_path, capsys):
    import pydicom

    source = pydicom.dcmread(pip_dicom("RG1_UNCR.dcm"), stop_before_pixels=True)
    out = tmp_path / "dicom"
    code, _, _ = _run(capsys, "predict", str(pip_dicom("RG1_UNCR.dcm")), "--dicom-out", str(out), "-q")
    assert code == 0
    (sr_path,) = out.glob("*_sr.dcm")
    (seg_path,) = out.glob("*_seg.dcm")
    sr, seg = pydicom.dcmread(sr_path), pydicom.dcmread(seg_path)
    assert sr.Modality == "SR" and seg.Modality == "SEG"
    for written in (sr, seg):
        assert written.StudyInstanceUID == source.StudyInstanceUID
        assert written.SeriesInstanceUID != source.SeriesInstanceUID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["lungs"]
    assert (seg.Rows, seg.Columns) == (source.Rows, source.Columns)
    assert not list(out.glob("*_sc.dcm"))  # the secondary capture only when asked for


def test_predict_writes_the_secondary_capture_when_asked(pip_dicom, capsys, tmp_path):
    import pydicom

    source = pip_dicom("RG1_UNCR.dcm")
    code, _, stderr = _run(capsys, "predict", str(source), "--secondary-capture", "-q")
    assert code == 2 and "--dicom-out" in stderr  # nowhere to write it

    out = tmp_path / "dicom"
    code, _, _ = _run(capsys, "predict", str(source), "--dicom-out", str(out), "--secondary-capture", "-q")

    assert code == 0
    (sc_path,) = out.glob("*_sc.dcm")
    sc = pydicom.dcmread(sc_path)
    assert sc.Modality == "OT" and sc.PhotometricInterpretation == "RGB"
    assert sc.StudyInstanceUID == pydicom.dcmread(source, stop_before_pixels=True).StudyInstanceUID


def test_predict_json_is_a_flag_like_every_command(pip_dicom, capsys):
    code, stdout, stderr = _run(
        capsys, "predict", str(pip_dicom("CT_small.dcm")), "--json", "--cam", "none", "--device", "cpu"
    )
    assert code == 0, stderr
    (result,) = [ScreeningResult.model_validate(item) for item in json.loads(stdout)]  # JSON only
    assert result.input.source.endswith("CT_small.dcm")
    assert "1 screened, 0 rejected, 0 failed" in " ".join(stderr.split())  # the counts stay on stderr


def test_dicom_outputs_that_cannot_be_written_fail_that_input_alone(pip_dicom, tmp_path, capsys):
    """A CT series gets its SR and a SEG over its slices; a series whose slices lack SOP Instance UIDs
    can be screened but not referenced: one line for it, exit 2, and the inputs after it still get theirs."""
    import pydicom

    def series(name: str, *, with_uids: bool):
        folder = tmp_path / name
        folder.mkdir()
        for number in range(3):
            ds = pydicom.dcmread(pip_dicom("CT_small.dcm"))
            ds.ImagePositionPatient = [*list(ds.ImagePositionPatient)[:2], float(number * 5)]
            ds.InstanceNumber = number + 1
            if with_uids:
                ds.SOPInstanceUID = pydicom.uid.generate_uid()
            else:
                del ds.SOPInstanceUID
            ds.save_as(folder / f"slice{number}.dcm", enforce_file_format=True)
        return folder

    broken, good = series("broken", with_uids=False), series("good", with_uids=True)
    out = tmp_path / "dicom"

    code, _, stderr = _run(capsys, "predict", str(broken), str(good), "--dicom-out", str(out), "-q")

    assert code == 2
    (line,) = [line for line in stderr.splitlines() if line.startswith("chestlens: error:")]
    assert f"{broken}: DICOM outputs not written:" in line and "Traceback" not in stderr
    assert len(list(out.glob("good*_sr.dcm"))) == 1
    (seg,) = out.glob("good*_seg.dcm")
    assert pydicom.dcmread(seg).NumberOfFrames >= 1 and not list(out.glob("broken*"))
