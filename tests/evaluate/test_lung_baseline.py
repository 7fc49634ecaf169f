"""The trivial lesion baseline (lesion = lung fields) scored by ``chestlens evaluate --lung-baseline``."""

from __future__ import annotations

import json

import pytest

from chestlens.cli import main


@pytest.mark.slow
def test_lung_field_baseline_on_the_real_x_ray_lesion_masks(
    source_dir, tiny_segmenter_bundle, tmp_path, capsys
):
    folder = source_dir("covid19-cxr-segmentations-generalblockchain")
    bundle, _ = tiny_segmenter_bundle(task="lesions-xray")
    args = ["evaluate", str(bundle), "--data", str(folder), "--n-boot", "20", "--json"]
    with pytest.raises(SystemExit) as caught:
        main([*args, "--lung-baseline", "lungs-segmenter", "--out", str(tmp_path / "baseline")])
    assert caught.value.code in (0, None)
    baseline = json.loads(capsys.readouterr().out)["summary"]["per_class"]
    # lung fields cover most ground-glass opacity, and predict no consolidation at all
    assert baseline["ground_glass_opacity"]["sensitivity"][0] > 0.5
    assert baseline["consolidation"]["sensitivity"][0] == 0.0
    with pytest.raises(SystemExit):
        main([*args, "--out", str(tmp_path / "model")])
    model = json.loads(capsys.readouterr().out)["summary"]["per_class"]
    assert model["ground_glass_opacity"]["dice"] != baseline["ground_glass_opacity"]["dice"]
