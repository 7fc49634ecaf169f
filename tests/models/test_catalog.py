"""Bundles resolve from a folder path or a bundled name; unknown names give a clear error."""

from __future__ import annotations

import json

import pytest

import chestlens
from chestlens import ChestlensInputError
from chestlens.models.catalog import (
    BUNDLED_DIR,
    DEFAULT_CLASSIFIER,
    DEFAULT_LUNGS,
    bundled_names,
    resolve_bundle,
)


def test_folder_path_resolves(tiny_classifier_bundle):
    path = tiny_classifier_bundle()
    assert resolve_bundle(str(path)) == path
    assert chestlens.load(str(path)).spec.name == "t"


def test_unknown_name_lists_the_bundled_models():
    with pytest.raises(ChestlensInputError, match="not a bundle folder nor a bundled model name"):
        resolve_bundle("no-such-model")


def test_bundled_names_are_loadable_as_str_or_path():
    from pathlib import Path

    names = bundled_names()
    # a missing or emptied bundles folder must fail here, not loop over nothing
    assert BUNDLED_DIR.is_dir(), f"no bundles folder at {BUNDLED_DIR}"
    assert {DEFAULT_CLASSIFIER, DEFAULT_LUNGS} <= set(names), names
    for name in names:
        assert chestlens.load(name).spec.name == name
        assert resolve_bundle(Path(name)) == resolve_bundle(name)  # the CLI passes Paths


def test_models_command_lists_given_bundles(tiny_classifier_bundle):
    import json

    from typer.testing import CliRunner

    from chestlens.cli import app

    path = tiny_classifier_bundle(
        name="listed", version="2", metrics={"test": {"macro_auc": [0.9, 0.8, 0.95], "n_images": 10}}
    )
    result = CliRunner().invoke(app, ["models", str(path), "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["listed"]["test_macro_auc"] == [0.9, 0.8, 0.95]


def test_models_name_shows_the_card_and_segmenters_their_dice():
    from typer.testing import CliRunner

    from chestlens.cli import app

    runner = CliRunner()
    screener = runner.invoke(app, ["models", "xray3-screener"], env={"COLUMNS": "200"})
    assert screener.exit_code == 0, screener.output
    text = " ".join(screener.output.split())
    assert "What the COVID-19 output means" in text and "macro AUC 0.974" in text
    card = (resolve_bundle("xray3-screener") / "MODEL_CARD.md").read_text()
    first_heading = next(line for line in card.splitlines() if line.startswith("# ")).lstrip("# ").strip()
    assert first_heading in text  # the card, rendered in the terminal
    lungs = runner.invoke(app, ["models", "lungs-segmenter", "--json"])
    [row] = json.loads(lungs.stdout)
    assert row["test_dice"] is None and row["meaning"] is None  # a final fit on all data: no test split
    assert row["cv_dice"]["lungs"]["value"] > 0.95 and row["cv_folds"] == 5
    listed = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    assert "CV Dice lungs 0.958" in " ".join(listed.output.split()) and "n/a" not in listed.output


def test_models_headline_is_the_cv_figure_and_a_study_bundle_reads_a_series(tiny_bundle):
    """A cross-validated segmenter leads with its out-of-fold Dice; a study bundle has no image input and
    leads with its leave-one-patient-out accuracy."""
    from typer.testing import CliRunner

    from chestlens.cli import app

    runner = CliRunner()
    lesions = runner.invoke(app, ["models", "lesions-ct-segmenter", "--json"])
    [row] = json.loads(lesions.stdout)
    assert row["cv_folds"] == 5 and row["cv_images"] == 83 and set(row["cv_dice"]) >= {"ggo", "consolidation"}
    lopo = {"accuracy": 0.5, "rows": [{}, {}], "correct": 1}
    study = tiny_bundle("study", metrics={"lopo": lopo})
    listed = runner.invoke(app, ["models", "lesions-ct-segmenter", str(study)], env={"COLUMNS": "250"})
    assert listed.exit_code == 0, listed.output
    text = " ".join(listed.output.split())
    assert "CV Dice ggo 0.617 [0.573, 0.658]" in text and "(5-fold, 83 images out of fold)" in text
    assert "CT series" in text and "leave-one-patient-out accuracy 0.500 on 2 series" in text
    assert "1 px" not in text


def test_a_regional_bundle_leads_with_its_test_slice_auc(tiny_bundle):
    from typer.testing import CliRunner

    from chestlens.cli import app

    auc = {"value": 0.91, "low": 0.8, "high": 0.97}
    test = {
        "regional classifier": {"auc": auc, "n_slices": 30},
        "segmenter alone": {"auc": auc, "n_slices": 30},
    }
    regional = tiny_bundle("regional over a segmenter", folder="regional", metrics={"test": test})
    listed = CliRunner().invoke(app, ["models", str(regional)], env={"COLUMNS": "250"})
    assert listed.exit_code == 0, listed.output
    assert "slice AUC 0.910 [0.800, 0.970] on 30 test slices" in " ".join(listed.output.split())
