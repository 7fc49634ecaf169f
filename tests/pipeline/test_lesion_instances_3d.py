"""CT series lesions are 3-D connected regions with a volume, and regions under the minimum size go."""

from __future__ import annotations

import numpy as np
import pytest

from chestlens.io.image import ImageMeta
from chestlens.pipeline.measure import MIN_LESION_ML, drop_small_lesions, lesion_instances_3d


def _meta(slice_mm: float | None = 2.0) -> ImageMeta:
    return ImageMeta(
        source_path=None,
        format="dicom-series",
        rows=64,
        cols=64,
        pixel_unit="HU",
        pixel_spacing_mm=(1.0, 1.0),
        slice_spacing_mm=slice_mm,
    )


def _series() -> tuple[np.ndarray, np.ndarray]:
    label_map = np.zeros((6, 64, 64), np.uint8)
    label_map[1:5, 10:20, 10:20] = 1  # one GGO region over 4 slices: 400 voxels of 2 mm3 = 0.8 mL
    label_map[2, 40:50, 40:45] = 2  # one consolidation region on one slice: 50 voxels = 0.1 mL
    label_map[5, 60:62, 60:62] = 1  # 4 voxels = 0.008 mL: under the minimum
    probabilities = np.zeros((6, 3, 64, 64), np.float32)
    for k in range(3):
        probabilities[:, k][label_map == k] = 0.8
    return label_map, probabilities


def test_regions_become_3d_instances_with_volume_and_slice_range():
    label_map, probabilities = _series()
    cleaned, dropped = drop_small_lesions(label_map, _meta())
    assert dropped == 1 and not cleaned[5].any() and (cleaned[1:5] == label_map[1:5]).all()
    ggo, consolidation = lesion_instances_3d(cleaned, probabilities, ["ggo", "consolidation"], _meta())
    assert (ggo.label, ggo.slices, ggo.volume_ml) == ("ggo", (1, 4), pytest.approx(0.8))
    assert ggo.slice_index in range(1, 5) and ggo.area_mm2 == pytest.approx(100.0)
    assert ggo.box == (10, 10, 20, 20) and ggo.score == pytest.approx(0.8)
    assert (consolidation.slices, consolidation.volume_ml) == ((2, 2), pytest.approx(0.1))
    assert MIN_LESION_ML > 0.008


def test_without_slice_spacing_the_floor_is_in_voxels():
    label_map, probabilities = _series()
    cleaned, dropped = drop_small_lesions(label_map, _meta(None))
    assert dropped == 1  # 4 voxels < 3 * 16
    [instance, _] = lesion_instances_3d(cleaned, probabilities, ["ggo", "consolidation"], _meta(None))
    assert instance.volume_ml is None and instance.slices == (1, 4)
