"""Gas below the diaphragm (stomach bubble, bowel) is not lung in a CT volume.

The three shared COVID-CT-MD series hold stomach and bowel gas, but the HU rule's 3-D step already keeps
it out of their masks (checked slice by slice). The gas that got in on a held-out CAP series was either
large or joined to a lung base, so the tests place synthetic gas pockets (-1000 HU) into the upper
abdomen of the real P001 series, below the lung bases: a large separate one (a distended stomach) and a
smaller one joined to the left lung base by a thin air channel (partial volume through the diaphragm).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from chestlens.io.series import read_series
from chestlens.pipeline.ct_lungs import body_mask_from_hu, lung_mask_from_hu

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]


@pytest.fixture(scope="module")
def p001(source_dir) -> tuple[np.ndarray, np.ndarray]:
    """P001's HU volume (ascending z, inferior first) and its lung mask as the HU rule finds it."""
    hu = read_series(source_dir("covid-ct-md") / "Sample data" / "COVID-19 subjects" / "P001").pixels
    return hu, lung_mask_from_hu(hu)


def _pocket(hu: np.ndarray, centre: tuple[int, int, int], radii: tuple[int, int, int]) -> np.ndarray:
    """An ellipsoid (voxel centre and semi-axes) inside the body, 10 pixels clear of its skin."""
    z, y, x = np.ogrid[: hu.shape[0], : hu.shape[1], : hu.shape[2]]
    ellipsoid = sum(((a - c) / r) ** 2 for a, c, r in zip((z, y, x), centre, radii, strict=True)) <= 1
    inside = np.stack([ndimage.binary_erosion(body_mask_from_hu(s), iterations=10) for s in hu])
    return ellipsoid & inside


def _assert_apart(lungs: np.ndarray, pocket: np.ndarray) -> None:
    """The pocket lies in the abdomen, not in or next to the lungs."""
    assert not (pocket & ndimage.binary_dilation(lungs, iterations=2)).any(), "the pocket touches the lungs"


def test_real_stomach_and_bowel_gas_stay_out_of_the_lungs(p001):
    hu, lungs = p001
    level = int(ndimage.center_of_mass(lungs)[0])  # about the hila
    gas = (hu[:level, 100:300] < -900) & ~lungs[:level, 100:300]  # anterior upper abdomen
    assert gas.sum() > 20_000, "P001 shows stomach and colon gas in its lower slices"
    labels, count = ndimage.label(lungs)
    assert count >= 1
    for box in ndimage.find_objects(labels):  # no lung component lies wholly below the hila
        assert box[0].start <= level < box[0].stop


def test_a_large_gas_pocket_below_the_lung_bases_is_not_lung(p001):
    hu, lungs = p001
    before = int(lungs.sum())
    pocket = _pocket(hu, (10, 160, 256), (10, 85, 170))  # ~0.65 L: a distended stomach
    _assert_apart(lungs, pocket)
    assert pocket.sum() > 0.1 * before  # larger than the share that the size rule alone drops
    gassy = np.where(pocket, -1000.0, hu).astype(hu.dtype)
    after = lung_mask_from_hu(gassy)
    assert not (after & pocket).any()
    assert abs(int(after.sum()) - before) <= 0.001 * before


def test_gas_joined_to_a_lung_base_by_a_thin_channel_is_cut_off(p001):
    hu, lungs = p001
    before = int(lungs.sum())
    pocket = _pocket(hu, (10, 170, 330), (8, 50, 60))  # ~0.1 L, under the left lung base
    _assert_apart(lungs, pocket)
    # a 3 x 3 pixel air channel from the pocket's edge sideways to the nearest lung voxel of slice 10
    ys, xs = np.nonzero(lungs[10])
    nearest = int(np.argmin((ys - 170) ** 2 + (xs - 330) ** 2))
    y1, x1 = int(ys[nearest]), int(xs[nearest])
    channel = np.zeros(hu.shape, dtype=bool)
    for t in np.linspace(0.0, 1.0, 400):
        y, x = round(170 + t * (y1 - 170)), round(330 + t * (x1 - 330))
        channel[10, y - 1 : y + 2, x - 1 : x + 2] = True
    gassy = np.where(pocket | channel, -1000.0, hu).astype(hu.dtype)
    joined = ndimage.label(lungs | pocket | channel)[0]
    assert joined[10, 170, 330] == joined[10, y1, x1], "the channel joins the pocket to the lung"
    after = lung_mask_from_hu(gassy)
    assert (after & pocket).sum() <= 0.01 * pocket.sum()
    assert abs(int(after.sum()) - before) <= 0.005 * before
