"""``chestlens train regional`` over a lesion segmenter's connected components (issue 17): other bundle
kinds, and a binary segmenter, are refused as region sources in one line; the validation threshold is a
probability even when nothing separates the classes. The training run itself, over a detector and over a
segmenter, is tests/train/test_detect_train.py::test_train_regional_writes_a_regional_bundle_with_its_card."""

from __future__ import annotations

import numpy as np
import pytest

from chestlens.errors import ChestlensInputError
from chestlens.train.regional import RegionalConfig, frozen_regions


def _config(segmenter, data_root, out) -> RegionalConfig:
    return RegionalConfig(
        segmenter=str(segmenter),
        data_root=str(data_root),
        patients=("covid_ct_md:P001",),
        k=8,
        epochs=5,
        hidden=16,
        n_boot=10,
        out=str(out),
    )


def test_only_a_detector_or_a_multiclass_segmenter_gives_regions(tiny_bundle, tmp_path):
    classifier = tiny_bundle("classifier")
    with pytest.raises(ChestlensInputError, match="regions come from a detector or segmenter bundle, not a "):
        frozen_regions([], str(classifier), _config(classifier, tmp_path, tmp_path))
    binary = tiny_bundle(
        "segmenter",
        folder="lungs",
        labels=["lungs"],
        architecture_kwargs={"encoder": "efficientnet_lite0", "mode": "binary"},
    )
    with pytest.raises(ChestlensInputError, match="multiclass"):
        frozen_regions([], str(binary), _config(binary, tmp_path, tmp_path))


def test_the_youden_threshold_is_a_probability_even_when_nothing_separates():
    from chestlens.train.regional import youden_threshold

    labels = np.array([0, 1, 0, 1])
    assert youden_threshold(labels, np.array([0.1, 0.9, 0.2, 0.8])) == pytest.approx(0.8)
    assert youden_threshold(labels, np.full(4, 0.5)) == 1.0  # scikit-learn's first threshold is infinite
