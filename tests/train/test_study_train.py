"""``chestlens train study`` and ``chestlens evaluate STUDY --data ROOT`` (issue 17) on synthetic lesion
features: leave-one-patient-out with one patient per class is 0 by construction and says so; with two per
class it works; the bundle's card carries the LOPO table, the features and the three-patient sentence;
the evaluation reports per-series predictions, accuracy and the confusion matrix and warns for training
patients. The screening of real series is replaced by the synthetic features (it is tested in
tests/pipeline/test_study_screening.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bundle_kinds import synthetic_study_series
from chestlens.cli import main
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.kinds import EvaluationRequest, evaluate_bundle
from chestlens.evaluate.study_eval import THREE_PATIENTS
from chestlens.models.spec import read_spec
from chestlens.models.study import STUDY_FEATURES, StudyRunner
from chestlens.train.study import STUDY_LABELS, StudyConfig, fit_logistic, train_study

LESION = {"name": "lesions-ct-segmenter", "version": "0.1.0", "weights_sha256": "", "source": "x"}


def _run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as caught:
        main(list(args))
    captured = capsys.readouterr()
    return caught.value.code, captured.out, captured.err


def test_one_patient_per_class_gives_lopo_zero_by_construction_and_says_so(tmp_path):
    series = synthetic_study_series(per_class=1)
    bundle = train_study(StudyConfig(out=str(tmp_path)), series, LESION)
    spec = read_spec(bundle)
    assert spec.kind == "study" and spec.labels == STUDY_LABELS == ["COVID-19", "CAP", "normal"]
    assert spec.architecture_kwargs["features"] == list(STUDY_FEATURES)
    lopo = spec.metrics["lopo"]
    assert lopo["accuracy"] == 0.0 and "0 by construction" in lopo["why"]
    assert [row["seen"] for row in lopo["rows"]] == [
        ["COVID-19", "normal"],
        ["CAP", "normal"],
        ["COVID-19", "CAP"],
    ]
    assert not any(row["truth_seen_in_training"] for row in lopo["rows"])
    card = (bundle / "MODEL_CARD.md").read_text()
    assert THREE_PATIENTS == "Three patients prove the path, not the accuracy." and THREE_PATIENTS in card
    assert "0 by construction" in card and "| CAP-0 | CAP |" in card and "burden_pct" in card
    # the fit on all series separates them, and numpy screening gives back the training classes
    runner = StudyRunner.load(bundle)
    x = np.asarray([[item.features[name] for name in STUDY_FEATURES] for item in series])
    assert [STUDY_LABELS[k] for k in runner.probabilities(x).argmax(1)] == [item.label for item in series]
    assert spec.metrics["training_accuracy"] == 1.0


def test_lopo_predicts_a_class_it_has_seen(tmp_path):
    bundle = train_study(StudyConfig(out=str(tmp_path), C=10.0), synthetic_study_series(per_class=3), LESION)
    lopo = read_spec(bundle).metrics["lopo"]
    assert lopo["accuracy"] == 1.0 and lopo["why"] == ""
    assert lopo["confusion"] == [[3, 0, 0], [0, 3, 0], [0, 0, 3]]


def test_the_fit_is_regularised_and_finite_for_an_absent_class():
    x = np.asarray([[0.0, 1.0], [1.0, 0.0]])
    fit = fit_logistic(x, np.asarray([0, 1]), 3, c=1.0)
    p = fit.probabilities(x)
    assert np.all(np.isfinite(fit.weight)) and p.argmax(1).tolist() == [0, 1]
    assert np.all(p[:, 2] > 0) and np.all(p[:, 2] < 0.5)  # class 2 never seen: finite and low
    strong = fit_logistic(x, np.asarray([0, 1]), 3, c=100.0)
    assert strong.probabilities(x)[[0, 1], [0, 1]].min() > p[[0, 1], [0, 1]].min()  # less penalty, surer


def test_train_study_cli_prints_features_and_the_lopo_table(tmp_path, capsys, monkeypatch):
    import chestlens.pipeline.study_data as study_data

    calls = []

    def fake(root, lesion_bundle, patients=(), regional=None):
        calls.append((str(root), lesion_bundle, tuple(patients), regional))
        return synthetic_study_series(per_class=1)

    monkeypatch.setattr(study_data, "screen_study_series", fake)
    config = tmp_path / "study.yaml"
    config.write_text(f"data_root: {tmp_path}\npatients: [COVID-19-0]\nC: 0.5\nout: {tmp_path / 'run'}\n")
    code, out, err = _run(capsys, "train", "study", "--config", str(config))
    assert code in (0, None), err
    assert calls == [(str(tmp_path), "lesions-ct-segmenter", ("COVID-19-0",), None)]
    assert "| COVID-19-0 | COVID-19 | " in out and "LOPO accuracy 0.000" in out and "burden_pct" in out
    spec = read_spec(tmp_path / "run" / "bundle")
    assert spec.training.config["C"] == 0.5
    assert spec.training.reproduce == f"chestlens train study --config {config}"
    assert spec.architecture_kwargs["lesion_bundle"]["source"] == "lesions-ct-segmenter"
    assert (tmp_path / "run" / "lopo.md").is_file()


def test_evaluate_reports_predictions_accuracy_confusion_and_training_patients(tmp_path, capsys, monkeypatch):
    series = synthetic_study_series(per_class=1)
    bundle = train_study(StudyConfig(out=str(tmp_path / "run")), series, LESION)
    held_out = synthetic_study_series(seed=1, per_class=1)
    held_out[0] = held_out[0].model_copy(update={"patient": "new-patient"})
    request = EvaluationRequest(
        tmp_path / "eval", data=tmp_path, series_features=lambda root, lesions, regional: held_out
    )
    summary, files = evaluate_bundle(bundle, request)
    assert summary["n_images"] == 3 and summary["accuracy"] == 1.0
    assert summary["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert [p["trained_on"] for p in summary["predictions"]] == [False, True, True]
    assert len(summary["warnings"]) == 2 and "not a held-out prediction" in summary["warnings"][0]
    report = json.loads(files["json"].read_text())
    assert report["predictions"][0]["patient"] == "new-patient" and files["md"].is_file()

    with pytest.raises(ChestlensInputError, match="evaluated on --data ROOT"):
        evaluate_bundle(bundle, EvaluationRequest(tmp_path / "e2", splits=tmp_path / "s.csv"))

    import chestlens.pipeline.study_data as study_data

    monkeypatch.setattr(
        study_data, "screen_study_series", lambda root, lesion_bundle, regional=None: held_out
    )
    code, out, err = _run(
        capsys, "evaluate", str(bundle), "--data", str(tmp_path), "--out", str(tmp_path / "e3")
    )
    assert code in (0, None), err
    assert "accuracy: 1.000" in out and "confusion (rows true" in out and "warning: CAP-0 was in" in out


def test_a_study_with_regional_features_embeds_its_regional_classifier(tmp_path, tiny_bundle, capsys):
    import shutil

    from bundle_kinds import train_synthetic_study
    from chestlens.models.regional import RegionalSeriesReader
    from chestlens.models.study import REGIONAL_DIR, REGIONAL_FEATURES

    regional = tiny_bundle("regional over a segmenter", folder="regional")
    bundle = train_synthetic_study(tmp_path / "study", regional=str(regional))
    spec = read_spec(bundle)
    assert spec.architecture_kwargs["features"] == [*STUDY_FEATURES, *REGIONAL_FEATURES]
    assert read_spec(bundle / REGIONAL_DIR).weights_sha256 == read_spec(regional).weights_sha256
    runner = StudyRunner.load(bundle)
    assert isinstance(runner.regional, RegionalSeriesReader)
    features = runner.regional.series_features([np.full((48, 40), -700.0, np.float32)] * 3)
    assert set(features) == set(REGIONAL_FEATURES)
    assert features["regional_infected_share"] in (0.0, 1 / 3, 2 / 3, 1.0)
    assert 0.0 <= features["regional_mean_probability"] <= 1.0
    card = (bundle / "MODEL_CARD.md").read_text()
    assert "Regional features" in card and "tiny-regional-segmenter" in card and "not held out" in card
    assert not (bundle / "regional.partial").exists()
    shutil.rmtree(bundle / REGIONAL_DIR)
    with pytest.raises(ChestlensInputError, match="has no regional/ bundle"):
        StudyRunner.load(bundle)
    # a study bundle without regional features loads no regional classifier
    assert StudyRunner.load(train_synthetic_study(tmp_path / "plain")).regional is None


def test_regional_features_need_a_regional_bundle():
    from chestlens.models.study import REGIONAL_FEATURES

    with pytest.raises(ValueError, match="need a regional bundle"):
        StudyConfig(features=(*STUDY_FEATURES, REGIONAL_FEATURES[0]))
    cfg = StudyConfig(regional="somewhere", features=("burden_pct", REGIONAL_FEATURES[1]))
    assert cfg.features == ("burden_pct", REGIONAL_FEATURES[1], REGIONAL_FEATURES[0])
