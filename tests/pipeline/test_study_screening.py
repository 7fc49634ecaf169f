"""The CT study classifier (issue 17) on the screening path: ``chestlens predict --models`` runs a study
bundle after the lesion stage on a CT series and puts its output in ``series_classification`` (``serve``:
tests/serve/test_study_serve.py); a single slice gets a note instead; a study bundle without a CT lesion
segmenter is refused in one line. The study bundle is fitted in the test on synthetic features; the series
is eight contiguous COVID-CT-MD P001 slices (lesions on some)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pydicom
import pytest

from bundle_kinds import train_synthetic_study
from chestlens.cli import main
from chestlens.models.spec import read_spec
from chestlens.models.study import STUDY_FEATURES
from chestlens.pipeline.schema import SCHEMA_VERSION, ScreeningResult
from chestlens.pipeline.stages import STUDY_NOTE
from chestlens.train.study import STUDY_LABELS

pytestmark = pytest.mark.shared_data  # the study bundle is fitted with PyTorch: not an inference-only test

LESIONS = "lesions-ct-segmenter"
FIRST, COUNT = 78, 8


@pytest.fixture(scope="module")
def study_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("study")
    return train_synthetic_study(out, LESIONS)


@pytest.fixture(scope="module")
def p001_files(source_dir) -> list[Path]:
    folder = source_dir("covid-ct-md") / "Sample data" / "COVID-19 subjects" / "P001"
    files = sorted(
        (p for p in folder.iterdir() if p.is_file()),
        key=lambda p: int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber),
    )
    return files[FIRST : FIRST + COUNT]


@pytest.fixture(scope="module")
def p001_series(p001_files, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("p001")
    for path in p001_files:
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def _run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as caught:
        main(list(args))
    captured = capsys.readouterr()
    return caught.value.code, captured.out, captured.err


def _check_series_classification(result: ScreeningResult, study_bundle: Path) -> None:
    assert result.schema_version == SCHEMA_VERSION == "1.5"
    assert result.lesions is not None and result.lesions.features is not None
    study = result.series_classification
    assert study is not None
    assert study.model.kind == "study" and study.model.name == "test-study"
    assert study.model.weights_sha256 == read_spec(study_bundle).weights_sha256
    assert list(study.probabilities) == STUDY_LABELS and sum(study.probabilities.values()) == pytest.approx(
        1.0
    )
    assert study.top_label == max(study.probabilities, key=study.probabilities.get)
    assert list(study.features) == list(STUDY_FEATURES)
    assert study.features["burden_pct"] == pytest.approx(result.lesions.features.burden_pct)
    assert study.lesion_model.name == LESIONS and study.note == STUDY_NOTE
    assert "research use only" in study.note


def test_predict_runs_the_study_bundle_on_a_series(study_bundle, p001_series, capsys, tmp_path):
    models = f"{LESIONS},{study_bundle}"
    table = tmp_path / "results.csv"
    args = ["predict", "--models", models, "--json", "--csv", str(table), str(p001_series)]
    code, stdout, stderr = _run(capsys, *args)
    assert code == 0, stderr
    payload = json.loads(stdout)
    result = ScreeningResult.model_validate(payload[0] if isinstance(payload, list) else payload)
    _check_series_classification(result, study_bundle)
    assert not any("trained on the lesions of" in note for note in result.notes)  # same lesion segmenter
    (row,) = csv.DictReader(io.StringIO(table.read_text()))
    assert row["study_top_label"] == result.series_classification.top_label  # type: ignore[union-attr]
    assert float(row["feature_burden_pct"]) == pytest.approx(result.lesions.features.burden_pct, abs=1e-4)
    assert not any(k.startswith("lesion_") and "volume" in k for k in row)  # not read as lesion classes


def test_a_single_slice_gets_a_note_and_no_study_output(study_bundle, p001_files):
    from chestlens.pipeline.screener import Screener

    screener = Screener.from_models([LESIONS, str(study_bundle)])
    result = screener.screen(p001_files[0]).result
    assert result.series_classification is None
    assert any("the study bundle reads CT series, this is a CT slice" in note for note in result.notes)


def test_a_study_bundle_without_a_ct_lesion_segmenter_is_one_line(study_bundle, p001_series, capsys):
    code, _, stderr = _run(capsys, "predict", "--models", str(study_bundle), str(p001_series))
    assert code != 0 and "Traceback" not in stderr
    text = " ".join(stderr.split())  # the console wraps long lines
    assert text.count("error:") == 1 and "it needs a CT lesion segmenter in --models" in text


def test_the_predict_table_shows_the_series_class():
    from chestlens.cli.predict_cmd import _lesions_cell

    row = {
        "lesion_ggo_ml": "34.0",
        "study_top_label": "covid19",
        "study_p_covid19": "0.7000",
        "study_p_cap": "0.2000",
        "study_p_normal": "0.1000",
    }
    cell = _lesions_cell(row)
    assert "ggo=34.0 mL" in cell
    assert "study classifier: covid19 (covid19=0.7000, cap=0.2000, normal=0.1000)" in cell


def test_a_study_bundle_with_regional_features_reads_them_from_the_series(p001_series, tiny_bundle, tmp_path):
    from chestlens.models.regional import RegionalSeriesReader
    from chestlens.models.study import REGIONAL_FEATURES
    from chestlens.pipeline.case import read_case
    from chestlens.pipeline.screener import Screener

    regional = tiny_bundle("regional over a segmenter", folder="regional")
    study = train_synthetic_study(tmp_path / "study", LESIONS, regional=str(regional))
    result = Screener.from_models([LESIONS, str(study)]).screen(p001_series).result
    classification = result.series_classification
    assert classification is not None and list(classification.features) == [
        *STUDY_FEATURES,
        *REGIONAL_FEATURES,
    ]
    # the same slices read by the same regional classifier outside the screener
    expected = RegionalSeriesReader.load(regional).series_features(list(read_case(p001_series).image.pixels))
    assert {k: classification.features[k] for k in REGIONAL_FEATURES} == pytest.approx(expected)
    assert classification.features["burden_pct"] == pytest.approx(result.lesions.features.burden_pct)
