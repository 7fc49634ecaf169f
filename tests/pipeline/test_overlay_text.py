"""Overlay captions: a TrueType font that renders the text as written, wrapped to the picture width."""

from __future__ import annotations

from PIL import ImageFont

from chestlens import RESEARCH_USE_DISCLAIMER
from chestlens.pipeline.overlay import FONT_SIZE, caption_font, wrap_to_width


def test_captions_use_a_scalable_font_with_real_glyphs():
    font = caption_font()
    assert isinstance(font, ImageFont.FreeTypeFont) and font.size == FONT_SIZE
    # PIL's old bitmap default dropped these: a dot between name and suffix, the space in "not a"
    assert font.getlength("RG1_UNCR.dcm") > font.getlength("RG1_UNCRdcm")
    assert font.getlength("not a diagnosis") > font.getlength("nota diagnosis")


def test_wrapping_keeps_every_word_and_fits_the_width():
    font = caption_font()
    lines = wrap_to_width(RESEARCH_USE_DISCLAIMER, font, 300)
    assert len(lines) > 1 and " ".join(lines) == " ".join(RESEARCH_USE_DISCLAIMER.split())
    assert all(font.getlength(line) <= 300 for line in lines)
    assert wrap_to_width("averyveryverylongword", font, 10) == ["averyveryverylongword"]
