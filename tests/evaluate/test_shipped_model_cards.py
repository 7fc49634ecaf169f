"""Every shipped MODEL_CARD.md is what the card renderer makes of its bundle.json and its test report.

``shipped_reports/NAME.json`` is the test ``report.json`` the card was rendered from: the xray3 screener's
from ``chestlens evaluate`` of its own test split (``runs/old-split``), the segmenters' re-measured on the
test split their bundle.json records (same split seed and counts, shipped weights). A change to a
template or a formatter that alters a shipped card fails here; re-render the card on purpose instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chestlens.evaluate.kinds import model_card_text
from chestlens.evaluate.model_card import MODEL_CARD
from chestlens.models.catalog import BUNDLED_DIR, bundled_names

REPORTS = Path(__file__).parent / "shipped_reports"


def test_every_shipped_bundle_has_its_test_report():
    assert sorted(p.stem for p in REPORTS.glob("*.json")) == bundled_names()


@pytest.mark.parametrize("name", sorted(p.stem for p in REPORTS.glob("*.json")))
def test_shipped_model_card_is_rerendered_byte_for_byte(name):
    bundle = BUNDLED_DIR / name
    text = model_card_text(bundle, REPORTS / f"{name}.json")
    assert text.encode("utf-8") == (bundle / MODEL_CARD).read_bytes()
