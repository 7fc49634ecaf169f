"""Every shipped MODEL_CARD.md is what the card renderer makes of its bundle.json and its test report.

``shipped_reports/NAME.json`` is the test ``report.json`` the card was rendered from: the xray3 screener's
from ``chestlens evaluate`` of its own test split (``runs/old-split``), the segmenters' re-measured on the
test split their bundle.json records (same split seed and counts, shipped weights). A bundle fitted on
every image (``fit_all``) has no test split: its card is rendered from the bundle alone, led by its
recipe's cross-validation. A change to a template or a formatter that alters a shipped card fails here;
re-render the card on purpose instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chestlens.evaluate.kinds import model_card_text
from chestlens.evaluate.model_card import MODEL_CARD
from chestlens.models.catalog import BUNDLED_DIR, bundled_names
from chestlens.models.spec import read_spec

REPORTS = Path(__file__).parent / "shipped_reports"


def _fitted_on_all_data(name: str) -> bool:
    """A bundle fitted on every image (``train segment --set fit_all=true``) has no test split."""
    return read_spec(BUNDLED_DIR / name).training.fitted_on_all_data


def test_every_shipped_bundle_with_a_test_split_has_its_test_report():
    with_test = [name for name in bundled_names() if not _fitted_on_all_data(name)]
    assert sorted(p.stem for p in REPORTS.glob("*.json")) == with_test


@pytest.mark.parametrize("name", bundled_names())
def test_shipped_model_card_is_rerendered_byte_for_byte(name):
    bundle = BUNDLED_DIR / name
    report = None if _fitted_on_all_data(name) else REPORTS / f"{name}.json"
    text = model_card_text(bundle, report)
    assert text.encode("utf-8") == (bundle / MODEL_CARD).read_bytes()
