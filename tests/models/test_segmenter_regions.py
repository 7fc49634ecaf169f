"""Regions from a semantic lesion segmenter (issue 17: the regional classifier without a detector): each
connected component of each lesion class is one region with its box, mean class probability, class and
probability and intensity statistics; the regional model over a segmenter is built from its bundle spec
(the shared bundle contract runs on it in tests/models/test_bundle_kinds.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bundle_kinds import make_tiny
from chestlens.errors import ChestlensInputError
from chestlens.models.regional import build_regional
from chestlens.models.segmenter_regions import (
    MIN_REGION_PIXELS,
    REGION_STATS,
    SegmenterRegionalModel,
    region_feature_dim,
    segmentation_regions,
)
from chestlens.train.regional import RegionalConfig

SIZE = 32


def _probabilities(blobs: list[tuple[int, slice, slice, float]]) -> np.ndarray:
    """``(3, SIZE, SIZE)`` softmax-like maps: background 0.9 everywhere, each blob ``(class, rows, cols,
    p)`` sets its class to ``p`` and background to ``1 - p``."""
    maps = np.zeros((3, SIZE, SIZE))
    maps[0] = 0.9
    maps[1:] = 0.05
    for label, rows, cols, p in blobs:
        maps[:, rows, cols] = (1.0 - p) / 2.0
        maps[0, rows, cols] = 1.0 - p - maps[3 - label, rows, cols]
        maps[label, rows, cols] = p
    return maps


def test_each_component_of_each_class_is_one_region_with_its_statistics():
    unit = np.linspace(0.0, 1.0, SIZE * SIZE).reshape(SIZE, SIZE)
    ggo, consolidation = (slice(2, 7), slice(2, 9)), (slice(20, 24), slice(20, 24))
    probabilities = _probabilities(
        [(1, *ggo, 0.8), (2, *consolidation, 0.7), (1, slice(28, 29), slice(0, 2), 0.9)]  # a 2-pixel speck
    )
    regions = segmentation_regions(probabilities, unit)
    assert regions["labels"].tolist() == [1, 2]  # the speck is under MIN_REGION_PIXELS
    assert MIN_REGION_PIXELS > 2
    assert regions["boxes"].tolist() == [[2.0, 2.0, 9.0, 7.0], [20.0, 20.0, 24.0, 24.0]]
    assert regions["scores"].numpy() == pytest.approx([0.8, 0.7])
    features = regions["features"].numpy()
    assert features.shape == (2, region_feature_dim(3)) == (2, 3 + len(REGION_STATS))
    stats = dict(zip(REGION_STATS, features[0, 3:], strict=True))
    assert features[0, :3] == pytest.approx(probabilities[:, 2:7, 2:9].mean(axis=(1, 2)))
    assert stats["max_probability"] == pytest.approx(0.8)
    assert stats["area_fraction"] == pytest.approx(35 / SIZE**2)
    assert stats["box_fill"] == pytest.approx(1.0)
    assert stats["intensity_mean"] == pytest.approx(unit[ggo].mean(), rel=1e-6)
    assert stats["intensity_sd"] == pytest.approx(unit[ggo].std(), rel=1e-4)


def test_pixels_touching_at_a_corner_are_one_region_and_an_empty_map_has_none():
    probabilities = _probabilities([(1, slice(0, 3), slice(0, 3), 0.8), (1, slice(3, 6), slice(3, 6), 0.6)])
    regions = segmentation_regions(probabilities, np.zeros((SIZE, SIZE)))
    assert regions["boxes"].tolist() == [[0.0, 0.0, 6.0, 6.0]] and regions["scores"].item() == pytest.approx(
        0.7
    )
    assert regions["features"][0, 3 + REGION_STATS.index("box_fill")].item() == pytest.approx(18 / 36)
    empty = segmentation_regions(_probabilities([]), np.zeros((SIZE, SIZE)))
    assert empty["boxes"].shape == (0, 4) and empty["features"].shape == (0, region_feature_dim(3))
    with pytest.raises(ValueError, match="differ in size"):
        segmentation_regions(probabilities, np.zeros((SIZE, SIZE + 1)))


def test_the_regional_model_over_a_segmenter_reads_an_image_without_lesions():
    spec, model = make_tiny("regional over a segmenter")
    assert isinstance(model, SegmenterRegionalModel)
    assert isinstance(build_regional(spec), SegmenterRegionalModel)
    with torch.no_grad():
        model.segmenter.segmentation_head[0].bias.copy_(torch.tensor([50.0, 0.0, 0.0]))  # all background
        regions = model.regions(torch.rand(2, 1, 64, 64))
        assert not regions.mask.any()
        logits = model(torch.rand(2, 1, 64, 64))
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


def test_a_regional_spec_names_exactly_one_region_source():
    spec, _ = make_tiny("regional over a segmenter")
    both = dict(spec.architecture_kwargs, detector=spec.architecture_kwargs["segmenter"])
    with pytest.raises(ChestlensInputError, match="one region source"):
        build_regional(spec.model_copy(update={"architecture_kwargs": both}))
    with pytest.raises(ValueError, match="one region source"):
        RegionalConfig()
    with pytest.raises(ValueError, match="one region source"):
        RegionalConfig(detector="a", segmenter="b")
    assert RegionalConfig(segmenter="lesions-ct-segmenter").source == "lesions-ct-segmenter"
