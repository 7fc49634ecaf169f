"""The series threshold belongs to the lesion bundle: chosen on labelled slices, stored, applied."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from chestlens.cli import main
from chestlens.errors import ChestlensInputError
from chestlens.models.catalog import resolve_bundle
from chestlens.models.spec import read_spec
from chestlens.pipeline.screener import Screener
from chestlens.pipeline.series_calibration import series_calibration, store_series_threshold


def _calibration(weights_sha256: str = "abc"):
    """Two series: one with infected slices (shares 0.02, 0.03 where infected), one clean."""
    fractions = [[0.0, 0.02, 0.03, 0.001], [0.0, 0.002, 0.0]]
    labels = [[False, True, True, False], [False, False, False]]
    return series_calibration("les 1", weights_sha256, fractions, labels, totals=[0.025, 0.0005])


def test_the_threshold_is_chosen_on_the_pooled_slices_and_judges_each_series():
    calibration = _calibration()
    assert calibration.threshold == 0.02  # the smallest share that keeps every infected slice, no clean one
    assert calibration.slice_sensitivity == 1.0 and calibration.slice_specificity == 1.0
    assert (calibration.n_series, calibration.n_slices, calibration.n_infected) == (2, 7, 2)
    assert [s.verdict for s in calibration.series] == ["lesions found", "no lesions found"]
    assert [s.n_infected for s in calibration.series] == [2, 0]


def test_slices_and_labels_must_pair_up():
    with pytest.raises(ChestlensInputError, match="series 2: 3 slices but 2 slice labels"):
        series_calibration(
            "les 1", "abc", [[0.1], [0.0, 0.1, 0.2]], [[True], [False, True]], totals=[0.1, 0.1]
        )


def test_the_threshold_is_stored_for_the_weights_it_was_chosen_for(tiny_segmenter_bundle, tiny_bundle):
    bundle, _ = tiny_segmenter_bundle()
    spec = read_spec(bundle)
    assert spec.series_threshold is None
    store_series_threshold(bundle, _calibration(spec.weights_sha256))
    stored = read_spec(bundle)
    assert stored.series_threshold == 0.02
    assert stored.metrics["series_calibration"]["n_slices"] == 7
    assert stored.weights_sha256 == spec.weights_sha256  # bundle.json only: the weights are untouched
    with pytest.raises(ChestlensInputError, match="not those the threshold was chosen for"):
        store_series_threshold(bundle, _calibration("other weights"))
    classifier = tiny_bundle("classifier")
    with pytest.raises(ChestlensInputError, match="classifier bundle has no series threshold"):
        store_series_threshold(classifier, _calibration(read_spec(classifier).weights_sha256))


def test_a_series_gets_a_verdict_only_from_its_bundles_threshold(ct_small_series, tiny_segmenter_bundle):
    def lesions(bundle):
        screener = Screener(
            classifier=None, lungs=None, lesions=[str(bundle)], runtime="torch", device="cpu", cam=None
        )
        return screener.screen(ct_small_series).result.lesions

    plain, _ = tiny_segmenter_bundle("plain", task="lesions-ct")
    summary = lesions(plain)
    assert summary.lung_fraction_total is not None
    assert summary.series_threshold is None and summary.series_verdict is None
    for threshold in (1e-9, 0.999):
        calibrated, _ = tiny_segmenter_bundle(f"t{threshold}", task="lesions-ct", series_threshold=threshold)
        summary = lesions(calibrated)
        found = summary.lung_fraction_total >= threshold
        assert summary.series_threshold == threshold
        assert summary.series_verdict == ("lesions found" if found else "no lesions found")


@pytest.mark.inference
def test_the_shipped_lesion_bundle_carries_its_calibration():
    spec = read_spec("lesions-ct-segmenter")
    calibration = spec.metrics["series_calibration"]
    assert spec.series_threshold == calibration["threshold"]
    assert calibration["weights_sha256"] == spec.weights_sha256
    assert (calibration["n_series"], calibration["n_slices"], calibration["n_infected"]) == (3, 446, 110)


def test_write_needs_a_bundle_folder(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["calibrate-series", "somewhere", "--lesions", "lesions-ct-segmenter", "--write"])
    assert exited.value.code != 0
    err = capsys.readouterr().err
    assert "--write needs a bundle folder" in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.shared_data
def test_the_cli_chooses_and_stores_the_threshold_on_labelled_series(source_dir, tmp_path, capsys):
    root = source_dir("covid-ct-md") / "Sample data"
    series = [root / "COVID-19 subjects" / "P001", root / "Normal subjects" / "normal002"]
    bundle = tmp_path / "lesions"
    shutil.copytree(resolve_bundle("lesions-ct-segmenter"), bundle)
    spec = json.loads((bundle / "bundle.json").read_text())
    spec.pop("series_threshold"), spec["metrics"].pop("series_calibration")
    (bundle / "bundle.json").write_text(json.dumps(spec))
    with pytest.raises(SystemExit) as exited:
        main(["calibrate-series", *map(str, series), "--lesions", str(bundle), "--write"])
    assert exited.value.code in (0, None)
    out = capsys.readouterr().out
    stored = read_spec(bundle)
    assert stored.metrics["series_calibration"]["n_slices"] == 148 + 167
    assert f"series threshold {100 * stored.series_threshold:.3g}% of the lungs" in out
    assert "P001: 80 of 148 slices infected" in out and "normal002: 0 of 167 slices infected" in out
    verdicts = [s["verdict"] for s in stored.metrics["series_calibration"]["series"]]
    assert verdicts == ["lesions found", "no lesions found"]
    assert np.isfinite(stored.series_threshold) and "Research use only" in out
