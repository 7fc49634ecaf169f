"""The segmenter recipe table and a bundle card's cross-validation section, from CV reports."""

from __future__ import annotations

import json
import shutil

import pytest

from chestlens.errors import ChestlensInputError
from chestlens.evaluate.kinds import model_card_text
from chestlens.models.catalog import BUNDLED_DIR
from chestlens.models.spec import BUNDLE_JSON
from chestlens.train.seg_crossval import card_cross_validation, recipe_table


def _estimate(value: float) -> dict:
    return {"value": value, "low": value - 0.01, "high": value + 0.01, "n_valid": 1000, "n_skipped": 0}


def _report(arch: str, dice: float, fingerprint: str = "f00d", target: str = "lungs") -> dict:
    row = {
        "oof_mean_dice": _estimate(dice),
        "fold_mean": dice,
        "fold_sd": 0.004,
        "p5_image_dice": dice - 0.05,
        "native": {"oof_mean_dice": _estimate(dice - 0.002), "p5_image_dice": dice - 0.06},
    }
    recipe = {"arch": arch, "encoder": "efficientnet_lite0", "input_size": 256, "loss": "bce_dice"}
    return {
        "target": target,
        "folds": 5,
        "n_images": 162,
        "n_patients": 85,
        "recipe": {**recipe, "epochs": 20, "patience": 6},
        "fold_assignment": {"fingerprint": fingerprint},
        "classes": {"lungs": row},
        "per_fold": [{"fold": k, "train_seconds": 600.0} for k in range(5)],
    }


def _lungs_section(shipped: dict) -> dict:
    """The CV section of a lungs card: ``shipped`` with the lighter decoder compared."""
    return card_cross_validation(
        shipped,
        reproduce="chestlens train segment --folds 5",
        epochs_note="up to 20 epochs",
        compared=[_report("unet_light", 0.958)],
        choice="Kept: the lighter decoder is not better.",
    )


def test_recipe_table_has_a_row_per_recipe_and_class_on_the_same_folds():
    lines = recipe_table([_report("unet", 0.961), _report("unet_light", 0.958)])
    text = "\n".join(lines)
    assert "fold fingerprint `f00d`" in text and "162 images of 85 patient groups" in text
    rows = [line for line in lines if line.startswith("| unet")]
    assert len(rows) == 2
    assert "0.961 [0.951, 0.971]" in rows[0] and "0.959 [0.949, 0.969]" in rows[0] and "50 min" in rows[0]
    assert rows[1].startswith("| unet_light, efficientnet_lite0, 256 px, bce_dice, 20 epochs (patience 6)")


def test_recipe_table_refuses_other_folds_or_targets():
    with pytest.raises(ChestlensInputError, match="other folds"):
        recipe_table([_report("unet", 0.96), _report("fpn", 0.95, fingerprint="beef")])
    with pytest.raises(ChestlensInputError, match="mixed"):
        recipe_table([_report("unet", 0.96), _report("unet", 0.5, target="lesions-ct")])


def test_card_shows_the_cv_with_native_figures_and_the_recipes_compared(tmp_path):
    """The lungs card with a CV section: the native column, the compared recipes and the choice."""
    bundle = tmp_path / "lungs-segmenter"
    shutil.copytree(BUNDLED_DIR / "lungs-segmenter", bundle)
    shipped = _report("unet", 0.961)
    section = _lungs_section(shipped)
    assert "instance_ap50" not in section and section["classes"]["lungs"]["native"]["value"] == 0.959
    spec = json.loads((bundle / BUNDLE_JSON).read_text())
    spec["metrics"]["cross_validation"] = section
    (bundle / BUNDLE_JSON).write_text(json.dumps(spec))
    card = model_card_text(bundle, None)  # the shipped lungs bundle is a final fit: no test report
    assert "## Cross-validation of this recipe (read this first)" in card and "## No test split" in card
    assert "| lungs | 0.961 [0.951, 0.971] | 0.961 ± 0.004 | 0.911 | 0.959 [0.949, 0.969] |" in card
    shipped_row = "| unet, efficientnet_lite0, 256 px, bce_dice, 20 epochs (patience 6) (this bundle's"
    assert shipped_row in card
    assert "| unet_light, efficientnet_lite0, 256 px, bce_dice, 20 epochs (patience 6) | 0.958" in card
    assert "Kept: the lighter decoder is not better." in card and "Lesion instances" not in card
    with pytest.raises(ChestlensInputError, match="other folds"):
        card_cross_validation(shipped, reproduce="x", epochs_note="y", compared=[_report("fpn", 0.9, "beef")])


def test_recipes_run_later_join_the_cards_table_on_the_same_folds_only():
    """``with_recipes``: a recipe cross-validated after the card was written joins its table after the rows
    it has, with the new choice text; other folds, other classes or a card without a table are refused."""
    from chestlens.train.seg_crossval import with_recipes

    section = _lungs_section(_report("unet", 0.961))
    later = _report("unet", 0.962)
    later["recipe"] = {**later["recipe"], "input_size": 512, "tta": ["hflip"]}
    grown = with_recipes(section, [later], "Kept: 512 px wins by 0.001, inside every interval.")
    assert [r["recipe"] for r in grown["recipes"]][:2] == [r["recipe"] for r in section["recipes"]]
    assert grown["recipes"][2]["recipe"].startswith("unet, efficientnet_lite0, 512 px")
    assert grown["recipes"][2]["recipe"].endswith(", test-time hflip") and not grown["recipes"][2]["shipped"]
    assert grown["choice"].startswith("Kept: 512 px") and section["choice"].startswith("Kept: the lighter")
    reworded = with_recipes(section, [], "Kept: a figure re-measured.")  # no new row: the text only
    assert reworded["recipes"] == section["recipes"] and reworded["choice"] == "Kept: a figure re-measured."
    with pytest.raises(ChestlensInputError, match="other folds"):
        with_recipes(section, [_report("fpn", 0.9, fingerprint="beef")], "z")
    lesions = _report("fpn", 0.9)
    lesions["classes"] = {"ggo": lesions["classes"]["lungs"]}
    with pytest.raises(ChestlensInputError, match="other classes"):
        with_recipes(section, [lesions], "z")
    with pytest.raises(ChestlensInputError, match="no recipe table"):
        with_recipes({k: v for k, v in section.items() if k != "recipes"}, [later], "z")
