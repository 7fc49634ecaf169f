"""PNG / JPEG / TIFF / BMP: bit depths, modes, alpha, EXIF orientation, lying extensions, real files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chestlens.errors import ChestlensInputError
from chestlens.io import read_image

pytestmark = pytest.mark.inference


def _save(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def test_8bit_grey_png(tmp_path):
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    image = read_image(_save(Image.fromarray(values), tmp_path / "grey.png"))
    np.testing.assert_allclose(image.pixels, values / 255.0, atol=1e-7)
    assert (image.meta.format, image.meta.source_mode, image.meta.bits_stored) == ("png", "L", 8)
    assert image.meta.pixel_unit == "unit" and not image.meta.is_colour


def test_16bit_png_scaled_by_65535(tmp_path):
    values = np.linspace(0, 65535, 64 * 32).astype(np.uint16).reshape(64, 32)
    image = read_image(_save(Image.fromarray(values), tmp_path / "deep.png"))
    assert image.meta.source_mode == "I;16" and image.meta.bits_stored == 16
    np.testing.assert_allclose(image.pixels, values / 65535.0, atol=1e-6)
    assert image.meta.value_range == (0.0, 65535.0)


def test_16bit_tiff_and_float_tiff(tmp_path):
    values = (np.arange(600, dtype=np.uint16) * 100).reshape(20, 30)
    deep = read_image(_save(Image.fromarray(values), tmp_path / "deep.tif"))
    assert deep.meta.format == "tiff"
    np.testing.assert_allclose(deep.pixels, values / 65535.0, atol=1e-6)
    floats = np.linspace(-5, 5, 600, dtype=np.float32).reshape(20, 30)
    wide = read_image(_save(Image.fromarray(floats), tmp_path / "float.tiff"))
    assert wide.meta.source_mode == "F"
    assert wide.pixels.min() == 0.0 and wide.pixels.max() == 1.0  # min-max, no nominal range


def test_palette_png(tmp_path):
    indices = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    grey_palette = Image.fromarray(indices, mode="L").convert("P")
    image = read_image(_save(grey_palette, tmp_path / "palette_grey.png"))
    np.testing.assert_allclose(image.pixels, indices / 255.0, atol=1e-7)
    assert not image.meta.is_colour
    colour = Image.fromarray(indices, mode="L").convert("P")
    colour.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255] + [0] * 756)
    read = read_image(_save(colour, tmp_path / "palette_colour.png"))
    assert read.meta.source_mode == "P" and read.meta.is_colour
    np.testing.assert_allclose(read.pixels, [[0.299, 0.587], [0.114, 1.0]], atol=1e-6)


def test_rgba_is_composited_on_black(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., :3] = 255
    rgba[:2, :, 3] = 255  # top half opaque white, bottom half transparent white
    image = read_image(_save(Image.fromarray(rgba, mode="RGBA"), tmp_path / "alpha.png"))
    np.testing.assert_allclose(image.pixels[:2], 1.0, atol=1e-6)
    np.testing.assert_allclose(image.pixels[2:], 0.0, atol=1e-6)
    assert not image.meta.is_colour


def test_grey_stored_as_rgb_is_not_colour_but_a_photo_is(tmp_path):
    grey = np.repeat(np.arange(64, dtype=np.uint8).reshape(8, 8)[..., None] * 4, 3, axis=2)
    as_rgb = read_image(_save(Image.fromarray(grey), tmp_path / "grey_rgb.jpg", quality=90))
    assert not as_rgb.meta.is_colour
    photo = np.zeros((8, 8, 3), dtype=np.uint8)
    photo[..., 0] = 200
    assert read_image(_save(Image.fromarray(photo), tmp_path / "red.png")).meta.is_colour


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40), dtype=np.uint8)  # 20 rows x 40 cols
    pixels[:, :20] = 255  # left half bright
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = _save(Image.fromarray(pixels), tmp_path / "rotated.jpg", exif=exif, quality=95)
    image = read_image(path)
    assert image.pixels.shape == (40, 20)  # rows and cols swapped
    # rotating clockwise moves the left edge to the top
    assert image.pixels[:18].mean() > 0.9
    assert image.pixels[22:].mean() < 0.1


def test_other_modes(tmp_path):
    one_bit = Image.fromarray(np.eye(8, dtype=bool))
    assert read_image(_save(one_bit, tmp_path / "bits.png")).pixels.sum() == 8
    la = Image.fromarray(np.full((4, 4, 2), 255, dtype=np.uint8), mode="LA")
    np.testing.assert_allclose(read_image(_save(la, tmp_path / "la.png")).pixels, 1.0)
    cmyk = Image.new("CMYK", (8, 8), (0, 0, 0, 0))  # no ink = white
    assert read_image(_save(cmyk, tmp_path / "cmyk.jpg")).pixels.mean() > 0.95
    bmp = read_image(_save(Image.new("L", (5, 3), 51), tmp_path / "small.bmp"))
    assert bmp.meta.format == "bmp" and bmp.pixels.shape == (3, 5)
    np.testing.assert_allclose(bmp.pixels, 0.2, atol=1e-6)


def test_multi_page_tiff_reads_the_first_page_and_warns(tmp_path):
    pages = [Image.new("L", (4, 4), 10), Image.new("L", (4, 4), 200)]
    path = tmp_path / "pages.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    image = read_image(path)
    np.testing.assert_allclose(image.pixels, 10 / 255, atol=1e-6)
    assert any("2 frames" in warning for warning in image.meta.warnings)


def test_real_png_data_in_jpg_files(source_dir):
    images = source_dir("covid-chestxray-dataset") / "images"
    path = images / "000001.jpg"
    assert path.read_bytes()[:4] == b"\x89PNG"
    image = read_image(path)
    assert image.meta.format == "png"
    with Image.open(path) as reference:
        assert image.pixels.shape == (reference.height, reference.width)
    assert 0.0 <= image.pixels.min() < image.pixels.max() <= 1.0


def test_real_rgba_png_and_grey_jpeg(source_dir):
    rgba = read_image(source_dir("covid-chestxray-dataset") / "images" / "16745_4_1.png")
    assert rgba.meta.source_mode == "RGBA"
    assert rgba.pixels.ndim == 2 and rgba.pixels.std() > 0.05
    kermany = source_dir("kermany-chest-xray") / "chest_xray"
    jpeg = read_image(next(iter(sorted(kermany.rglob("*.jpeg")))))
    assert jpeg.meta.format == "jpeg" and jpeg.pixels.ndim == 2


def test_bytes_input(tmp_path):
    buffer = io.BytesIO()
    Image.new("L", (6, 4), 255).save(buffer, format="PNG")
    image = read_image(buffer.getvalue(), name="upload.png")
    assert image.pixels.shape == (4, 6) and image.meta.source_path == "upload.png"


def test_pixel_limit_is_checked_before_decoding(tmp_path, bomb_png, claimed_png):
    path = _save(Image.new("L", (100, 100)), tmp_path / "ok.png")
    with pytest.raises(ChestlensInputError, match="exceeds the limit of 5,000 pixels"):
        read_image(path, max_pixels=5000)
    # above chestlens' default limit but below Pillow's hard limit: chestlens refuses it, no PIL warning
    with pytest.raises(ChestlensInputError, match=r"12000x12000\.png: .*exceeds the limit of 100,000,000"):
        read_image(claimed_png(12000, 12000))
    with pytest.raises(ChestlensInputError, match=r"bomb\.png: .*decompression bomb"):
        read_image(bomb_png)
    with pytest.raises(ChestlensInputError, match="decompression bomb"):
        read_image(bomb_png.read_bytes(), name="bomb.png", max_pixels=10**12)


def test_truncated_png(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(buffer, "PNG")
    cut = tmp_path / "cut.png"
    cut.write_bytes(buffer.getvalue()[:300])
    with pytest.raises(ChestlensInputError, match=r"cut\.png: PNG image data is truncated or corrupt"):
        read_image(cut)
