"""Smoke test of ``bench/run_all.py --quick``: every section runs and renders, the README block is
rewritten between its markers. Asserts nothing about speed."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def run_all():
    sys.path.insert(0, str(BENCH))
    yield importlib.import_module("run_all")
    sys.path.remove(str(BENCH))


@pytest.mark.slow
def test_quick_run_fills_every_section_and_the_readme_block(run_all, shared_data, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nbefore\n<!-- bench:start -->\nold table\n<!-- bench:end -->\nafter\n")
    out = tmp_path / "bench.json"
    # serve_load.py and browser_latency.py have their own smoke tests (a server, a browser): skipped here
    files = ["--json", str(out), "--readme", str(readme)]
    report = run_all.main(["--quick", "--scaling", "4,8", "--skip", "serve,browser", *files])

    assert json.loads(out.read_text())["mode"] == "quick"
    for section in ("training", "latency", "batch", "limit", "scaling"):
        assert "error" not in report[section], (section, report[section])
    assert set(report["training"]["recipes"]) == set(run_all.train_throughput.RECIPES)
    assert report["batch"]["flops_per_image"]["xray3-screener"] > 0
    assert report["batch"]["peak_matmul_flops_per_s"] > 0
    assert [p["images"] for p in report["scaling"]["points"]] == [4, 8]
    assert report["serve"] == report["browser"] == {"status": "skipped (--skip)"}

    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n<!-- bench:start -->\n")
    assert text.endswith("<!-- bench:end -->\nafter\n")
    assert "old table" not in text
    assert "**Training throughput**" in text and "**Scaling**" in text and "not measured" in text
    assert "**Server load test (bench/serve_load.py)**: skipped (--skip)." in text


def test_a_missing_script_is_reported_as_not_available(run_all):
    assert run_all.optional("no_such_bench", quick=True) == {
        "status": "not available (bench/no_such_bench.py is not in this checkout)"
    }


@pytest.mark.slow
def test_detector_overfit_check_reports_losses_and_ap(shared_data, tmp_path):
    """``bench/detector_overfit.py`` on one real training slice for two steps: the report's fields, no
    claim about learning (that needs the full default run)."""
    sys.path.insert(0, str(BENCH))
    try:
        overfit = importlib.import_module("detector_overfit")
    finally:
        sys.path.remove(str(BENCH))
    config = BENCH.parent / "configs" / "lesions_ct_maskrcnn_efficientnet_lite0.yaml"
    report = overfit.main(
        ["--config", str(config), "--slices", "1", "--steps", "2", "--json", str(tmp_path / "o.json")]
    )
    assert report["slices"] == 1 and [row["step"] for row in report["curve"]] == [2]
    assert set(report["curve"][0]) >= {"loss", "loss_classifier", "loss_mask", "loss_objectness"}
    assert report["seconds_per_step"] > 0
    assert 0.0 <= report["mask_ap50_on_these_slices"] <= 1.0
    assert json.loads((tmp_path / "o.json").read_text())["steps"] == 2
