"""The shortcut audit: masked views are what they claim, and the audit runs on real images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import chestlens
from chestlens.data.registry import load_samples
from chestlens.data.tasks import get_task
from chestlens.evaluate.shortcut_audit import VARIANTS, audit_classifier, audit_markdown, masked_variants


def test_masked_views_replace_exactly_the_dilated_lungs_or_the_rest():
    images = torch.rand(2, 1, 64, 64)
    masks = np.zeros((2, 64, 64), dtype=bool)
    masks[:, 20:40, 10:30] = True
    views = masked_variants(images, masks)
    assert list(views) == list(VARIANTS)
    assert torch.equal(views["full image"], images)
    fill = images.mean(dim=(1, 2, 3))
    # 3% of 64 px = a 2-pixel dilation: (18..41, 8..31) replaced, far corners kept
    assert torch.allclose(views["lungs masked out"][:, 0, 30, 20], fill)
    assert torch.allclose(views["lungs masked out"][:, 0, 18, 20], fill)
    assert torch.equal(views["lungs masked out"][:, 0, 0, 63], images[:, 0, 0, 63])
    assert torch.equal(views["lungs only"][:, 0, 30, 20], images[:, 0, 30, 20])
    assert torch.allclose(views["lungs only"][:, 0, 0, 63], fill)


@pytest.mark.slow
def test_audit_of_the_bundled_screener_on_real_images(shared_data):
    task = get_task("xray3")
    picked, seen = [], {}
    for sample in sorted(load_samples(shared_data, ["hannover", "kermany"]), key=lambda s: s.uid):
        label = task.mapping(sample)
        if label is not None and seen.get(label, 0) < 4:
            seen[label] = seen.get(label, 0) + 1
            picked.append((sample, label, sample.patient_id))
    result = audit_classifier(
        chestlens.load("xray3-screener"), chestlens.load("lungs-segmenter"), picked, n_boot=10
    )
    assert set(result["variants"]) == set(VARIANTS) and result["n_images"] == 12
    for view in result["variants"].values():
        assert 0.0 <= view["macro_auc"]["value"] <= 1.0
    assert 0.0 <= result["cam_in_lungs"]["mean"] <= 1.0
    text = "\n".join(audit_markdown(result))
    assert "## Shortcut audit" in text and "lungs masked out" in text
