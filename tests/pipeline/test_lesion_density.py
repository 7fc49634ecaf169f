"""CT lesion voxels must be denser than well-aerated lung (-700 HU): what the segmenter calls ground glass
in aerated lung (next to vessels, the heart, dependent lung bases) is not a lesion."""

from __future__ import annotations

import numpy as np

from chestlens.pipeline.measure import AERATED_LUNG_MAX_HU, hu_on_grid, lesions_denser_than_lung


def test_lesion_voxels_reading_as_aerated_lung_are_cleared():
    label_map = np.zeros((2, 8, 8), np.uint8)
    label_map[0, 1:5, 1:5] = 1  # ground glass: 16 voxels
    label_map[1, 2:4, 2:4] = 2  # consolidation: 4 voxels
    hu = np.full((2, 8, 8), -860.0, np.float32)  # aerated lung everywhere
    hu[0, 1:3, 1:5] = -550.0  # the dense half of the ground glass
    hu[1] = 20.0  # solid
    kept, share = lesions_denser_than_lung(label_map, hu)
    assert (kept[0, 1:3, 1:5] == 1).all() and not kept[0, 3:5].any()
    assert (kept[1] == label_map[1]).all()
    assert share == 8 / 20
    hu[0, 3, 1] = AERATED_LUNG_MAX_HU  # the limit itself is aerated lung
    assert lesions_denser_than_lung(label_map, hu)[0][0, 3, 1] == 0


def test_no_lesions_clear_nothing():
    label_map = np.zeros((1, 4, 4), np.uint8)
    kept, share = lesions_denser_than_lung(label_map, np.full((1, 4, 4), -900.0))
    assert share == 0.0 and not kept.any()


def test_hu_on_the_grid_is_the_mean_of_the_pixels_under_each_grid_pixel():
    hu = np.full((3, 8, 8), -1000.0, np.float32)
    hu[:, :4, :4] = 0.0
    hu[1, 0, 0] = 400.0
    grid = hu_on_grid(hu, (2, 2))
    assert grid.shape == (3, 2, 2) and grid.dtype == np.float32
    assert grid[0, 0, 0] == 0.0 and grid[0, 1, 1] == -1000.0
    assert grid[1, 0, 0] == 400.0 / 16
