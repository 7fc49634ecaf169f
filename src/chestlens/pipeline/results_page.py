"""One self-contained HTML page of screening results (overlays embedded), as ``chestlens demo`` writes it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from chestlens import RESEARCH_USE_DISCLAIMER, __version__
from chestlens.atomic import write_text_atomic
from chestlens.evaluate.page import CSS, escape, figures_html, key_values, label_cell, number_cell, table
from chestlens.pipeline.schema import ScreeningResult


def _rows(result: ScreeningResult) -> list[list[str]]:
    rows = [
        [
            label_cell("quality gate"),
            label_cell(("accepted: " if result.gate.accepted else "REJECTED: ") + result.gate.reason),
        ]
    ]
    if result.classification is not None:
        for label, p in result.classification.probabilities.items():
            rows.append([label_cell(f"P({label})"), number_cell(p)])
        for d in result.classification.decisions:
            verdict = "positive" if d.positive else "negative"
            rows.append(
                [
                    label_cell(f"decision {d.label}"),
                    label_cell(f"{verdict} (threshold {d.threshold:.3f}; {d.criterion})"),
                ]
            )
    if result.explanation is not None:
        rows.append(
            [
                label_cell(f"{result.explanation.method} inside the lungs"),
                number_cell(result.explanation.energy_in_lungs),
            ]
        )
    if result.lungs is not None:
        rows.append([label_cell("lung area (mm²)"), number_cell(result.lungs.area_mm2, "{:.0f}")])
        if result.lungs.volume_ml is not None:
            rows.append([label_cell("lung volume (mL)"), number_cell(result.lungs.volume_ml, "{:.0f}")])
    for note in result.notes:
        rows.append([label_cell("note"), label_cell(note)])
    return rows


def results_page(results: Sequence[ScreeningResult], overlays: Sequence[Sequence[Path]], title: str) -> str:
    """HTML: disclaimer, then per input its findings table and overlay pictures, then the models used."""
    sections = []
    models: dict[str, str] = {}
    for result, pictures in zip(results, overlays, strict=True):
        sections.append(f"<h2>{escape(Path(result.input.source).name)}</h2>")
        sections.append(table(("item", "value"), _rows(result)))
        sections.append(f'<div class="figs">{figures_html({p.name: p for p in pictures})}</div>')
        for part in (result.classification, result.lungs, result.lesions):
            model = getattr(part, "model", None)
            if model is not None:
                models[model.name] = f"{model.version} (sha256 {model.weights_sha256[:12]})"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f'<div class="disclaimer">{escape(RESEARCH_USE_DISCLAIMER)}</div>',
        f"<h1>{escape(title)}</h1>",
        *sections,
        "<h2>Models</h2>",
        key_values({**models, "chestlens": __version__}),
        f'<p class="disclaimer">{escape(RESEARCH_USE_DISCLAIMER)}</p>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_results_page(
    results: Sequence[ScreeningResult], overlays: Sequence[Sequence[Path]], path: Path, title: str
) -> Path:
    """Write :func:`results_page` atomically."""
    return write_text_atomic(path, results_page(results, overlays, title))
