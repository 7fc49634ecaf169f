"""results.csv: one value per column (probabilities, decisions, lung and lesion measures), CT columns."""

from __future__ import annotations

import csv
import io

import pytest

from chestlens.pipeline.batch import CSV_COLUMNS, csv_text, record
from chestlens.pipeline.screener import Screener


@pytest.fixture(scope="module")
def results(pip_dicom):
    screener = Screener()
    return {name: screener.screen(pip_dicom(name)).result for name in ("RG1_UNCR.dcm", "CT_small.dcm")}


def _rows(lines: list[dict]) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(csv_text(lines))))


@pytest.mark.inference
def test_radiograph_probabilities_and_decisions_have_their_own_columns(results):
    result = results["RG1_UNCR.dcm"]
    [row] = _rows([record("rg1", result)])
    for label, p in result.classification.probabilities.items():
        assert float(row[f"p_{label}"]) == pytest.approx(p, abs=1e-4)
    for decision in result.classification.decisions:
        assert row[f"decision_{decision.label}"] == ("positive" if decision.positive else "negative")
    assert ";" not in "".join(row.values())  # nothing packed into one cell


@pytest.mark.inference
def test_ct_series_columns_and_column_order(results):
    slice_result = results["CT_small.dcm"]
    lesions = slice_result.lesions.model_copy(
        update={
            "volume_ml_by_label": {"ggo": 17.1, "consolidation": 0.0},
            "lung_fraction_total": 0.0038,
            "series_score": 0.7783,
            "series_verdict": "no lesions found",
            "series_threshold": 0.0038,
        }
    )
    series = slice_result.model_copy(
        update={"lungs": slice_result.lungs.model_copy(update={"volume_ml": 4510.2}), "lesions": lesions}
    )
    lines = [record("rg1", results["RG1_UNCR.dcm"]), record("series", series)]
    header = next(csv.reader(io.StringIO(csv_text(lines))))
    assert header[: len(CSV_COLUMNS)] == CSV_COLUMNS and header[-1] == "total_ms"
    rows = _rows(lines)
    assert rows[0]["lung_volume_ml"] == "" and rows[1]["p_COVID-19"] == ""
    ct = rows[1]
    assert ct["lung_volume_ml"] == "4510" and ct["lesion_ggo_ml"] == "17.1"
    assert ct["lung_involved"] == "0.0038" and ct["series_score"] == "0.7783"
    assert ct["series_verdict"] == "no lesions found" and ct["series_threshold"] == "0.0038"
    assert rows[0]["series_verdict"] == ""
