"""Pictures larger than the screener needs are shrunk while they are read, in every mode."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from chestlens.io import read_image
from chestlens.io.raster import READ_MAX_SIDE

pytestmark = pytest.mark.inference

RNG = np.random.default_rng(0)
WIDE = (RNG.random((300, 5000)) * 255).astype(np.uint8)


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


MODES = [("L", "PNG"), ("RGB", "PNG"), ("RGBA", "PNG"), ("P", "PNG"), ("1", "PNG"), ("F", "TIFF")]


@pytest.mark.parametrize(("mode", "fmt"), [*MODES, ("LA", "TIFF")])
def test_every_mode_is_box_averaged_to_the_limit(mode, fmt):
    data = _encoded(Image.fromarray(WIDE).convert(mode), fmt)
    full = read_image(data, name=f"wide.{fmt.lower()}")
    small = read_image(data, name=f"wide.{fmt.lower()}", max_side=1000)
    assert full.pixels.shape == (300, 5000) and full.meta.warnings == ()
    assert small.pixels.shape == (60, 1000) and small.meta.rows == 60 and small.meta.cols == 1000
    assert small.meta.warnings == ("shrunk while reading from 5000 x 300 to 1000 x 60 pixels (limit 1000)",)
    assert small.pixels.mean() == pytest.approx(full.pixels.mean(), abs=0.02)


def test_sixteen_bit_grey_keeps_its_values():
    values = (RNG.random((300, 5000)) * 65535).astype(np.uint16)
    small = read_image(_encoded(Image.fromarray(values), "PNG"), name="wide.png", max_side=1000)
    expected = values.reshape(60, 5, 1000, 5).mean(axis=(1, 3)) / 65535
    assert small.meta.bits_stored == 16
    assert np.abs(small.pixels - expected).max() < 1e-4


def test_jpeg_is_decoded_at_a_reduced_scale():
    data = _encoded(Image.fromarray(WIDE).convert("RGB"), "JPEG")
    small = read_image(data, name="wide.jpg", max_side=1000)
    assert max(small.pixels.shape) <= 1000
    assert small.meta.warnings[0].startswith("shrunk while reading from 5000 x 300")


def test_the_screener_reads_a_huge_picture_shrunk(tmp_path):
    from chestlens.pipeline.screener import Screener

    path = tmp_path / "huge.png"
    Image.fromarray(np.zeros((9000, 9000), np.uint8)).save(path)  # 80 KB on disk, 81 MP decoded
    result = Screener().screen(path).result
    assert result.input.rows == result.input.cols == 9000 // 3
    assert any(w.startswith("shrunk while reading from 9000 x 9000") for w in result.input.warnings)
    assert READ_MAX_SIDE >= 4096  # real radiographs (up to about 4300 px) are at most halved
