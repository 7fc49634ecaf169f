"""Per-slice lesion scores of a CT series: regions inside the lungs, large enough, mean probability."""

from __future__ import annotations

import numpy as np
import pytest

from chestlens.pipeline.measure import MIN_LESION_PIXELS, slice_lesion_scores


def test_slice_scores_count_lung_regions_of_sufficient_size_only():
    slices, size = 4, 32
    label_map = np.zeros((slices, size, size), np.uint8)
    probabilities = np.zeros((slices, 3, size, size))
    probabilities[:, 0] = 1.0
    lungs = np.zeros((slices, size, size), bool)
    lungs[:, 4:28, 4:28] = True
    label_map[1, 8:14, 8:14] = 1  # 36 px inside the lungs
    probabilities[1, 0, 8:14, 8:14], probabilities[1, 1, 8:14, 8:14] = 0.3, 0.7
    label_map[2, 0:4, 0:10] = 2  # outside the lungs
    probabilities[2, 0, 0:4, 0:10] = 0.0
    label_map[3, 10:13, 10:13] = 1  # 9 px: below the minimum size
    probabilities[3, 0, 10:13, 10:13] = 0.0
    assert 9 < MIN_LESION_PIXELS <= 36
    scores = slice_lesion_scores(label_map, probabilities, lungs)
    assert scores == pytest.approx([0.0, 0.7, 0.0, 0.0])


def test_lesions_join_the_lungs_for_involvement():
    from chestlens.pipeline.measure import lungs_with_lesions

    lungs = np.zeros((12, 12), bool)
    lungs[2:8, 2:8] = True
    label_map = np.zeros((12, 12), np.uint8)
    label_map[6:10, 6:10] = 2  # dense consolidation straddling the lung border
    region = lungs_with_lesions(lungs, label_map)
    assert region[9, 9]
    assert int(region.sum()) == 36 + 16 - 4  # lungs plus the consolidation (its 4 overlap pixels once)
