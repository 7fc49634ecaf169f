"""CT lesions are lung lesions: regions that do not belong to the (grown) lung mask are removed before
they are measured, drawn or written to SEG/SR, and every region kept counts as lung."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from chestlens.io.image import ImageMeta
from chestlens.pipeline.measure import MIN_LUNG_OUTLINE_SHARE, lesions_in_lungs, lungs_with_lesions
from chestlens.pipeline.screener import Screener
from chestlens.preprocess.resize import resize_nearest


def _meta(spacing_mm: float | None = 1.0, size: int = 64) -> ImageMeta:
    return ImageMeta(
        source_path=None,
        format="dicom",
        rows=size,
        cols=size,
        pixel_unit="HU",
        pixel_spacing_mm=None if spacing_mm is None else (spacing_mm, spacing_mm),
    )


def test_regions_away_from_the_lungs_go_border_consolidation_stays():
    lungs = np.zeros((64, 64), bool)
    lungs[10:40, 10:30] = True
    label_map = np.zeros((64, 64), np.uint8)
    label_map[15:20, 15:20] = 1  # inside: kept
    label_map[20:25, 32:35] = 2  # 2 px outside the lung edge (within 5 mm): kept
    label_map[50:60, 50:60] = 2  # far away (chest wall, muscle): removed
    kept, removed = lesions_in_lungs(label_map, lungs, _meta(1.0))
    assert removed == 1
    assert (kept[15:20, 15:20] == 1).all() and (kept[20:25, 32:35] == 2).all()
    assert not kept[50:60, 50:60].any()
    tight, removed = lesions_in_lungs(label_map, lungs, _meta(1.0), margin_mm=1.0)
    assert removed == 2 and not tight[20:25, 32:35].any()  # the margin is in mm, not pixels
    coarse, _ = lesions_in_lungs(label_map, lungs, _meta(0.5))  # 5 mm = 10 pixels of 0.5 mm
    assert not coarse[50:60, 50:60].any() and coarse[20:25, 32:35].all()


def test_a_series_keeps_a_region_that_reaches_the_lungs_on_another_slice():
    lungs = np.zeros((3, 32, 32), bool)
    lungs[1, 5:15, 5:15] = True
    label_map = np.zeros((3, 32, 32), np.uint8)
    label_map[0:2, 8:12, 8:12] = 1  # one 3-D region: slice 0 has no lungs, slice 1 does
    label_map[2, 25:30, 25:30] = 1  # a slice without lungs: removed
    kept, removed = lesions_in_lungs(label_map, lungs, _meta(None, 32))
    assert removed == 1 and kept[0, 8:12, 8:12].all() and not kept[2].any()


def test_an_organ_that_only_abuts_the_lungs_goes_consolidation_at_their_border_stays():
    """COVID-CT-MD normal002 with a 512 px fit: the stomach under the left lung base, called consolidation
    (67 mL), came within 5 mm of the lungs at one voxel and was counted as a lung lesion."""
    lungs = np.zeros((2, 64, 64), bool)
    lungs[:, 5:20, 5:60] = True
    label_map = np.zeros((2, 64, 64), np.uint8)
    label_map[:, 26:60, 30:60] = 2  # the "stomach", 7 px below the lungs (the reach is 5 px)...
    label_map[:, 24:26, 30] = 2  # ... with one pixel of its outline in the reach
    label_map[:, 14:24, 5:15] = 2  # consolidation straddling the lung border
    kept, removed = lesions_in_lungs(label_map, lungs, _meta(1.0))
    assert removed == 1 and not kept[:, 40:60, 40:60].any() and (kept[:, 14:24, 5:15] == 2).all()
    everything, removed = lesions_in_lungs(label_map, lungs, _meta(1.0), min_outline_share=0.0)
    assert removed == 0 and (everything == label_map).all()  # touching the reach alone kept it
    assert MIN_LUNG_OUTLINE_SHARE > 0


def test_every_kept_lesion_voxel_counts_as_lung():
    """Lesion volume and involvement share are taken on the same voxels: a region kept because it starts
    within the margin (not touching the lung mask itself) is part of the lungs the share is taken on."""
    lungs = np.zeros((64, 64), bool)
    lungs[10:40, 10:30] = True
    label_map = np.zeros((64, 64), np.uint8)
    label_map[20:25, 32:35] = 2  # 2 px outside the lung edge: kept, yet never touching the mask
    kept, _ = lesions_in_lungs(label_map, lungs, _meta(1.0))
    lung_region = lungs_with_lesions(lungs, kept)
    assert kept.any() and not (kept.astype(bool) & lungs).any()
    assert ((kept > 0) & lung_region).sum() == (kept > 0).sum()


def test_empty_lungs_remove_every_region():
    label_map = np.ones((16, 16), np.uint8)
    kept, removed = lesions_in_lungs(label_map, np.zeros((16, 16), bool), _meta(1.0, 16))
    assert removed == 1 and not kept.any()


@pytest.mark.inference
def test_ct_slice_lesions_all_reach_the_lungs(pip_dicom):
    """``CT_small.dcm`` (the demo's CT slice): ``lesions-ct-segmenter`` 0.1.0 painted consolidation in the
    paraspinal muscle and GGO at the image border, reported with a lung fraction of 0 until regions away
    from the lungs were removed (0.2.0 paints none there; the removal itself is tested above). Whatever
    the shipped model paints, every kept region must reach the lungs."""
    screening = Screener().screen(pip_dicom("CT_small.dcm"))
    result = screening.result
    assert result.lesions is not None and result.lesions.ran
    lesion_map = screening.lesion_map
    lungs = resize_nearest(screening.lung_mask[None], lesion_map.shape)[0]
    reach = ndimage.binary_dilation(lungs, iterations=4)
    regions, count = ndimage.label(lesion_map > 0)
    for index in range(1, count + 1):
        assert (reach & (regions == index)).any(), "a lesion region outside the lungs was kept"
    for label, area in result.lesions.area_mm2_by_label.items():
        assert area == 0 or result.lesions.lung_fraction_by_label[label] > 0
