"""Bundles resolve from a folder path or a bundled name; unknown names give a clear error."""

from __future__ import annotations

import pytest

import chestlens
from chestlens import ChestlensInputError
from chestlens.models import BundleSpec, PreprocessSpec, create_model, save_bundle
from chestlens.models.catalog import bundled_names, resolve_bundle


def test_folder_path_resolves(tmp_path):
    spec = BundleSpec(
        name="t",
        version="1",
        kind="classifier",
        task="xray3",
        architecture="efficientnet_lite0",
        labels=["COVID-19", "pneumonia", "normal"],
        preprocess=PreprocessSpec(input_size=32, mean=[0.5], std=[0.5]),
    )
    path = save_bundle(spec, create_model("efficientnet_lite0", 3, weights=None).state_dict(), tmp_path / "b")
    assert resolve_bundle(str(path)) == path
    assert chestlens.load(str(path)).spec.name == "t"


def test_unknown_name_lists_the_bundled_models():
    with pytest.raises(ChestlensInputError, match="not a bundle folder nor a bundled model name"):
        resolve_bundle("no-such-model")


def test_bundled_names_are_loadable_as_str_or_path():
    from pathlib import Path

    for name in bundled_names():
        assert chestlens.load(name).spec.name == name
        assert resolve_bundle(Path(name)) == resolve_bundle(name)  # the CLI passes Paths


def test_models_command_lists_given_bundles(tmp_path):
    import json

    from typer.testing import CliRunner

    from chestlens.cli import app

    spec = BundleSpec(
        name="listed",
        version="2",
        kind="classifier",
        task="xray3",
        architecture="efficientnet_lite0",
        labels=["COVID-19", "pneumonia", "normal"],
        preprocess=PreprocessSpec(input_size=32, mean=[0.5], std=[0.5]),
        metrics={"test": {"macro_auc": [0.9, 0.8, 0.95], "n_images": 10}},
    )
    path = save_bundle(spec, create_model("efficientnet_lite0", 3, weights=None).state_dict(), tmp_path / "b")
    result = CliRunner().invoke(app, ["models", str(path), "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["listed"]["test_macro_auc"] == [0.9, 0.8, 0.95]
