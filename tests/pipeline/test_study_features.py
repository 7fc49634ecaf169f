"""Series lesion features (issue 17: the CT study classifier's inputs) on a synthetic series whose answers
are known by construction: two box lungs either side of the body midline, ground glass at the lower
outer corner of the image-left lung, consolidation deep in the upper image-right lung."""

from __future__ import annotations

import numpy as np
import pytest

from chestlens.pipeline.study_features import body_midline, feature_vector, series_lesion_features

SPACING = (5.0, 1.0, 1.0)  # mm: one voxel is 0.005 mL
LABELS = ["ggo", "consolidation"]


def _series(with_consolidation: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    hu = np.full((10, 40, 40), -1000.0)
    hu[:, 2:38, 2:38] = 40.0  # the body, columns 2-37: midline 19.5
    lungs = np.zeros(hu.shape, bool)
    lungs[:, 10:30, 5:18] = True  # image-left lung: 20 x 13 voxels a slice
    lungs[:, 10:30, 22:35] = True  # image-right lung, the mirror image
    hu[lungs] = -850.0
    labels = np.zeros(hu.shape, np.uint8)
    labels[0:2, 10:14, 5:9] = 1  # GGO: 32 voxels, slices 0-1 (lower half), at the lung's corner
    if with_consolidation:
        labels[8, 18:22, 27:30] = 2  # consolidation: 12 voxels, slice 8 (upper half), 6-7 voxels deep
    return hu, lungs, labels


def test_features_of_a_synthetic_series():
    hu, lungs, labels = _series()
    features = series_lesion_features(hu, lungs, labels, SPACING, LABELS)
    assert features.midline_column == pytest.approx(19.5)
    assert features.lung_volume_ml == pytest.approx(5200 * 0.005)
    assert features.lesion_volume_ml == pytest.approx(44 * 0.005)
    assert features.burden_pct == pytest.approx(100 * 44 / 5200)
    assert features.ggo_share == pytest.approx(32 / 44)
    # the lung is 7 voxels deep at most, so its outer third is the two outer rings: 12 of the 16 GGO
    # voxels of each slice lie there, the consolidation none
    assert features.peripheral_share == pytest.approx(24 / 44)
    assert features.bilateral  # 0.16 mL image-left, 0.06 mL image-right: both >= 0.05 mL
    assert features.smaller_side_share == pytest.approx(12 / 44)
    assert features.lower_zone_share == pytest.approx(32 / 44)  # lungs span slices 0-9: lower is 0-4
    assert feature_vector(features, ["bilateral", "ggo_share"]).tolist() == [1.0, pytest.approx(32 / 44)]


def test_one_lung_only_and_no_lesions():
    hu, lungs, labels = _series(with_consolidation=False)
    features = series_lesion_features(hu, lungs, labels, SPACING, LABELS)
    assert not features.bilateral and features.smaller_side_share == 0.0
    assert features.ggo_share == 1.0 and features.lower_zone_share == 1.0
    clean = series_lesion_features(hu, lungs, np.zeros_like(labels), SPACING, LABELS)
    assert clean.lesion_volume_ml == 0.0 and clean.burden_pct == 0.0
    assert clean.ggo_share == clean.peripheral_share == clean.lower_zone_share == 0.0


def test_consolidation_outside_the_hu_lungs_counts_and_the_odd_middle_slice_counts_half():
    hu, lungs, labels = _series()
    lungs[8, 18:22, 27:29] = False  # the HU rule leaves most of the dense consolidation out of the lungs
    features = series_lesion_features(hu, lungs, labels, SPACING, LABELS)
    assert features.lesion_volume_ml == pytest.approx(44 * 0.005)  # it overlaps the lungs: all of it counts
    assert features.lung_volume_ml == pytest.approx(5200 * 0.005)
    hu, lungs, labels = _series(with_consolidation=False)
    lungs[9] = False  # lungs on slices 0-8: the middle slice 4 is half lower
    labels[:] = 0
    labels[4, 12:14, 8:10] = 1
    assert series_lesion_features(hu, lungs, labels, SPACING, LABELS).lower_zone_share == pytest.approx(0.5)


def test_the_midline_follows_the_body_not_the_grid():
    hu = np.full((2, 40, 40), -1000.0)
    hu[:, 5:30, 10:31] = 40.0  # body columns 10-30
    hu[:, 36:38, 0:40] = 100.0  # the table: a separate, smaller region
    assert body_midline(hu) == pytest.approx(20.0)
