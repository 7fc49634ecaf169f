"""One self-contained HTML page of screening results (overlays embedded), as ``chestlens demo`` writes it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from chestlens import RESEARCH_USE_DISCLAIMER, __version__
from chestlens.atomic import write_text_atomic
from chestlens.evaluate.page import figure_data
from chestlens.pipeline.schema import ScreeningResult
from chestlens.rendering import render


def results_page(results: Sequence[ScreeningResult], overlays: Sequence[Sequence[Path]], title: str) -> str:
    """HTML: disclaimer, then per input its findings table and overlay pictures, then the models used
    (template ``results_page.html``)."""
    models: dict[str, str] = {}
    for result in results:
        for part in (result.classification, result.lungs, result.lesions):
            model = getattr(part, "model", None)
            if model is not None:
                models[model.name] = f"{model.version} (sha256 {model.weights_sha256[:12]})"
    entries = [
        (result, Path(result.input.source).name, figure_data({p.name: p for p in pictures}))
        for result, pictures in zip(results, overlays, strict=True)
    ]
    return render(
        "results_page.html",
        title=title,
        disclaimer=RESEARCH_USE_DISCLAIMER,
        entries=entries,
        models={**models, "chestlens": __version__},
    )


def write_results_page(
    results: Sequence[ScreeningResult], overlays: Sequence[Sequence[Path]], path: Path, title: str
) -> Path:
    """Write :func:`results_page` atomically."""
    return write_text_atomic(path, results_page(results, overlays, title))
