"""What a classifier's headline output does and does not mean, in one line, from the bundle's own figures.

Pooled test AUCs across sources reward a model that recognises the hospital an image came from (the
shortcut the within-source evaluation measures). The one-line statement here is built from the bundle's
within-source test AUC of its first thresholded label (``metrics.test.within_source``, written by
training and ``chestlens evaluate``), so a better model updates it. It is shown by ``chestlens
models``, in every screening result (``classification.meaning``: CLI table, JSON, page, SR) and in the
README's quick start.
"""

from __future__ import annotations

from chestlens.models.kinds import kind_of
from chestlens.models.spec import BundleSpec

CHANCE = 0.5


def headline_label(spec: BundleSpec) -> str | None:
    """The label a classifier bundle flags first: its first operating point, else its first label."""
    if not kind_of(spec).image_labels:
        return None
    return spec.operating_points[0].label if spec.operating_points else spec.labels[0]


def output_meaning(spec: BundleSpec) -> str | None:
    """The statement for ``spec``, or None when the bundle has no within-source figure for its label."""
    label = headline_label(spec)
    entries = (spec.metrics.get("test") or {}).get("within_source") or []
    entry = next((e for e in entries if e.get("question") == f"{label} vs rest"), None)
    pooled = (entry or {}).get("pooled") or {}
    if label is None or pooled.get("value") is None:
        return None
    value, low, high = pooled["value"], pooled.get("low"), pooled.get("high")
    where = ", ".join(s["stratum"] for s in entry.get("strata", [])) or "one source"
    interval = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
    if low is None or low <= CHANCE:
        verdict = f"not shown to tell {label} from the other findings better than chance"
    else:
        verdict = f"better than chance at telling {label} from the other findings"
    return (
        f"What the {label} output means: inside one source ({where}) its test AUC is {value:.2f}"
        f"{interval}, {verdict}; higher AUCs pooled across sources also reflect which source an image came "
        "from. A flag is a prompt for a clinician's read, never a diagnosis."
    )
