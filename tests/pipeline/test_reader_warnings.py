"""The reader's warnings reach every result, and a series with missing slices gets no volumes."""

from __future__ import annotations

import csv
import io
import shutil

import pydicom
import pytest

from chestlens.pipeline.batch import csv_text, record
from chestlens.pipeline.screener import Screener

pytestmark = [pytest.mark.shared_data, pytest.mark.inference]


@pytest.fixture(scope="module")
def gapped_series(source_dir, tmp_path_factory):
    """30 consecutive slices of COVID-CT-MD P001 with 4 removed from the middle (a gap of 5 spacings)."""
    folder = source_dir("covid-ct-md") / "Sample data" / "COVID-19 subjects" / "P001"
    by_z = sorted(
        folder.glob("*.dcm"),
        key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]),
    )
    kept = by_z[60:75] + by_z[79:94]
    out = tmp_path_factory.mktemp("gapped")
    for path in kept:
        shutil.copy2(path, out / path.name)
    return out


def test_gap_is_reported_and_no_volume_is_measured_across_it(gapped_series):
    screening = Screener().screen(gapped_series)
    result = screening.result
    assert result.gate.accepted, result.gate.reason
    [gap] = [w for w in result.input.warnings if w.startswith("missing slice(s)")]
    assert "about 4 slice(s) missing" in gap
    assert result.lungs.volume_ml is None and result.lungs.area_fraction > 0
    assert result.lesions is None or result.lesions.volume_ml_by_label == {}
    assert result.lesions is None or all(lesion.volume_ml is None for lesion in result.lesions.lesions)
    assert any("no lung or lesion volumes" in note for note in result.notes)
    [row] = csv.DictReader(io.StringIO(csv_text([record("gapped", result)])))
    assert row["reader_warnings"].startswith("missing slice(s)") and not row.get("lung_volume_ml")
