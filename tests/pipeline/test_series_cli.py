"""``chestlens evaluate-series`` on the real COVID-CT-MD series (148 DICOM slices with slice labels)."""

from __future__ import annotations

import json

import pytest

from chestlens import RESEARCH_USE_DISCLAIMER
from chestlens.cli import main
from chestlens.evaluate.ct_series import SeriesSliceReport
from chestlens.pipeline.measure import MIN_LESION_ML
from chestlens.pipeline.schema import ScreeningResult


def _run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as caught:
        main(list(args))
    captured = capsys.readouterr()
    return caught.value.code, captured.out, captured.err


@pytest.mark.slow
def test_series_report_matches_the_result_and_the_labels(source_dir, tiny_segmenter_bundle, tmp_path, capsys):
    series = source_dir("covid-ct-md") / "Sample data" / "COVID-19 subjects" / "P001"
    bundle, _ = tiny_segmenter_bundle()
    out = tmp_path / "out"
    args = ["evaluate-series", str(series), "--lesions", str(bundle), "--out", str(out), "--n-boot", "50"]
    args += ["--runtime", "torch"]
    code, stdout, stderr = _run(capsys, *args, "--device", "cpu")
    assert code in (0, None), stderr
    assert RESEARCH_USE_DISCLAIMER in stdout
    result = ScreeningResult.model_validate_json((out / "result.json").read_text())
    lesions = result.lesions
    assert len(lesions.slice_scores) == 148 and lesions.series_score == max(lesions.slice_scores)
    assert set(lesions.volume_ml_by_label) == {"ground_glass_opacity", "consolidation"}
    for lesion in lesions.lesions:  # 3-D instances over the series, none under the minimum size
        assert lesion.slices is not None and lesion.slices[0] <= lesion.slice_index <= lesion.slices[1]
        assert lesion.volume_ml is not None and lesion.volume_ml >= MIN_LESION_ML
    report = SeriesSliceReport.model_validate(json.loads((out / "slice-report.json").read_text()))
    assert report.n_slices == 148 and report.n_labelled_positive == 80  # P001's slice labels
    assert report.n_predicted_positive == sum(s > 0 for s in lesions.slice_scores)
    assert sum(report.confusion.values()) == 148
    assert (out / "slice-profile.png").stat().st_size > 0 and (out / "series_strip.png").is_file()


def test_a_single_image_is_refused_with_a_reason(
    pip_dicom, tiny_segmenter_bundle, tmp_path, capsys, monkeypatch
):
    bundle, _ = tiny_segmenter_bundle()
    monkeypatch.chdir(tmp_path)
    code, _, stderr = _run(
        capsys,
        "evaluate-series",
        str(pip_dicom("CT_small.dcm")),
        "--lesions",
        str(bundle),
        "--runtime",
        "torch",
    )
    assert code == 2 and "CT_small.dcm" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "chestlens-series").exists()
