"""CT windowing presets and the generic window function."""

from __future__ import annotations

import numpy as np
import pytest

from chestlens.io import WINDOWS, apply_window, lung_window, mediastinum_window

pytestmark = pytest.mark.inference


def test_presets_are_the_documented_values():
    assert WINDOWS["lung"] == (-600.0, 1500.0)
    assert WINDOWS["mediastinum"] == (40.0, 400.0)


def test_apply_window_maps_edges_and_centre():
    hu = np.array([-2000.0, -1350.0, -600.0, 150.0, 3000.0])
    out = apply_window(hu, -600, 1500)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)


def test_named_windows_match_apply_window():
    hu = np.linspace(-1200, 1200, 49, dtype=np.float32).reshape(7, 7)
    np.testing.assert_array_equal(lung_window(hu), apply_window(hu, -600, 1500))
    np.testing.assert_array_equal(mediastinum_window(hu), apply_window(hu, 40, 400))
    assert mediastinum_window(np.array([40.0]))[0] == pytest.approx(0.5)


def test_width_must_be_positive():
    with pytest.raises(ValueError, match="width"):
        apply_window(np.zeros(3), 0, 0)
