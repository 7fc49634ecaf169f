"""``chestlens evaluate`` works for every bundle kind: detectors (COCO AP on lesion masks) and regional
slice classifiers (slice labels of COVID-CT-MD) as well as classifiers and segmenters."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from chestlens.cli import app
from chestlens.errors import ChestlensInputError

pytestmark = [pytest.mark.shared_data, pytest.mark.usefixtures("one_thread")]

runner = CliRunner()


def evaluate(*args: str):
    return runner.invoke(app, ["evaluate", *args, "--n-boot", "20"])


def test_a_detector_bundle_is_evaluated_by_coco_ap_on_the_masks(tiny_bundle, source_dir, tmp_path):
    bundle = tiny_bundle("detector")
    result = evaluate(
        str(bundle), "--data", str(source_dir("infnet-covid-semiseg")), "-o", str(tmp_path / "det")
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "det" / "report.json").read_text())
    assert report["n_images"] >= 50 and report["n_patients"] >= 50
    assert [c["label"] for c in report["per_class"]] == ["ggo", "consolidation"]
    assert sum(c["n_gt"] for c in report["per_class"]) > 0
    assert 0.0 <= report["segm"]["ap50"]["value"] <= 1.0
    assert "mask AP@0.5" in result.output and "report.md" in result.output
    assert (tmp_path / "det" / "report.md").read_text().startswith("# tiny-detector 0.0.1: data split")


@pytest.mark.slow  # 446 slices through the detector, about 45 s
def test_a_regional_bundle_is_evaluated_on_the_slice_labels_of_each_patient(
    tiny_bundle, source_dir, tmp_path
):
    bundle = tiny_bundle("regional")
    ct_md = source_dir("covid-ct-md")
    result = evaluate(str(bundle), "--data", str(ct_md), "--json", "-o", str(tmp_path / "reg"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)["summary"]
    assert summary["n_images"] == 148 + 131 + 167
    assert set(summary["per_patient"]) == {"covid_ct_md:P001", "covid_ct_md:cap002", "covid_ct_md:normal002"}
    assert summary["per_patient"]["covid_ct_md:normal002"]["auc"]["value"] is None  # no infected slice
    assert 0.0 <= summary["pooled"]["auc"]["value"] <= 1.0
    # a bundle that names no training patients: every patient is flagged as possibly seen in training
    assert len(summary["warnings"]) == 3
    report = (tmp_path / "reg" / "report.md").read_text()
    assert "covid_ct_md:cap002: slice predictions vs slice labels" in report
    refused = evaluate(str(bundle), "--splits", str(tmp_path / "splits.csv"))
    assert isinstance(refused.exception, ChestlensInputError)  # one line, exit 2 (chestlens.cli.main)
    assert "a regional bundle is evaluated on --data ROOT" in str(refused.exception)
