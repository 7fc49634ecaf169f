"""``chestlens train segment`` configuration: mode and loss from the target, input size, YAML configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from chestlens.errors import ChestlensInputError
from chestlens.train.config import AugmentConfig, SegmentConfig, load_config
from chestlens.train.seg_crossval import recipe_label

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_mode_and_default_loss_follow_the_target():
    lungs = load_config(SegmentConfig, None, ["target=lungs"])
    lesions = load_config(SegmentConfig, None, ["target=lesions-ct"])
    assert (lungs.mode, lungs.loss) == ("binary", "bce_dice")
    assert (lesions.mode, lesions.loss) == ("multiclass", "dice_ce")
    assert load_config(SegmentConfig, None, ["target=pneumothorax", "loss=focal"]).loss == "focal"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("loss=dice_ce", "does not fit the binary target lungs"),
        ("input_size=100", "multiple of 32"),
        ("target=heart", "unknown segmentation target 'heart'"),
        ("epochs=0", "greater than 0"),
    ],
)
def test_invalid_settings_are_refused_with_the_key(override, message):
    with pytest.raises(ChestlensInputError, match=message):
        load_config(SegmentConfig, None, [override])


@pytest.mark.parametrize("name", ["lungs", "lesions_ct", "lesions_xray"])
def test_shipped_configs_are_valid(name):
    cfg = load_config(SegmentConfig, CONFIGS / f"{name}_unet_efficientnet_lite0.yaml")
    assert cfg.encoder == "efficientnet_lite0" and cfg.encoder_weights == "default"
    assert cfg.input_size % 32 == 0 and cfg.out.startswith("runs/")


def test_elastic_deformation_is_off_by_default_and_named_in_the_recipe_when_on():
    assert AugmentConfig().elastic() is None
    assert AugmentConfig(elastic_px=4.0, elastic_p=0.0).elastic() is None
    cfg = load_config(
        SegmentConfig, CONFIGS / "lesions_ct_unet_efficientnet_lite0.yaml", ["augment.elastic_px=4"]
    )
    assert cfg.augment.elastic() == (4.0, 24.0, 0.5)
    recipe = {
        "arch": "unet",
        "encoder": "efficientnet_lite0",
        "input_size": 352,
        "loss": "dice_ce",
        "epochs": 22,
    }
    plain = recipe_label({**recipe, "patience": 6, "augment": AugmentConfig().model_dump()})
    elastic = recipe_label({**recipe, "patience": 6, "augment": cfg.augment.model_dump()})
    assert "elastic" not in plain
    assert elastic.endswith(", elastic 4 px (smoothing 24 px, p 0.5)")
