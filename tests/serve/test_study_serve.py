"""``chestlens serve`` with a CT study bundle (issue 17): a zipped CT series gets a series_classification
(the same checks as ``chestlens predict`` in tests/pipeline/test_study_screening.py)."""

from __future__ import annotations

import io
import time
import zipfile

import pytest
from serve_helpers import p001_slices, serving

from bundle_kinds import train_synthetic_study
from chestlens.models.spec import read_spec
from chestlens.pipeline.schema import ScreeningResult
from chestlens.serve.settings import ServeSettings

pytestmark = pytest.mark.shared_data

LESIONS = "lesions-ct-segmenter"


def test_serve_runs_the_study_bundle_on_a_zipped_series(source_dir, tmp_path):
    study_bundle = train_synthetic_study(tmp_path / "study", LESIONS)
    p001_files = p001_slices(source_dir, 78, 8)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for k, path in enumerate(p001_files):
            archive.writestr(f"P001/slice-{k}.dcm", path.read_bytes())
    settings = ServeSettings(data_dir=tmp_path / "data", device="cpu", models=(LESIONS, str(study_bundle)))
    with serving(settings) as client:
        posted = client.post(
            "/api/v1/screenings", files={"file": ("upload", buffer.getvalue(), "application/zip")}
        )
        assert posted.status_code == 202, posted.text
        deadline = time.monotonic() + 180
        while (job := client.get(posted.headers["location"]).json())["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["status"] == "done", job
        stored = client.get(job["screening_url"]).json()
        listed = {model["name"]: model for model in client.get("/api/v1/models").json()}
    assert listed["test-study"]["kind"] == "study"
    assert "Three patients prove the path, not the accuracy." in listed["test-study"]["model_card"]
    result = ScreeningResult.model_validate(stored.get("result", stored))
    study = result.series_classification
    assert study is not None and study.model.kind == "study"
    assert study.model.weights_sha256 == read_spec(study_bundle).weights_sha256
    assert sum(study.probabilities.values()) == pytest.approx(1.0)
    assert result.lesions is not None and result.lesions.features is not None
