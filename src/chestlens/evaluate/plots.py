"""Figures of an evaluation (matplotlib, Agg canvas, never a display): ROC, PR, confusion and reliability
for classifiers; the per-image Dice distribution and the worst cases' contours for segmenters.

Figures are built with :class:`matplotlib.figure.Figure` and an explicit Agg canvas (no pyplot global
state, safe in servers and threads) and written as PNG atomically (:func:`save_png`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sklearn.metrics import precision_recall_curve, roc_curve

from chestlens.atomic import write_bytes_atomic
from chestlens.evaluate.bootstrap import estimate_text
from chestlens.evaluate.results import CalibrationSummary, ClassificationReport, MetricSet

FIGURE_NAMES = ("roc", "pr", "confusion_matrix", "reliability")
#: Contour colours of segmentation overlays, per class: truth and prediction never share a colour.
TRUTH_COLOURS = ("lime", "cyan", "yellow", "white")
PREDICTION_COLOURS = ("red", "magenta", "orange", "deepskyblue")


def _figure(
    width: float, height: float, ncols: int = 1, nrows: int = 1, **kwargs: object
) -> tuple[Figure, np.ndarray]:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(nrows, ncols, squeeze=False, **kwargs)


def roc_figure(y_true: np.ndarray, probs: np.ndarray, metrics: MetricSet, labels: Sequence[str]) -> Figure:
    """One-vs-rest ROC curve per class ``(N,)``/``(N, C)`` and their macro average.

    The macro curve averages the per-class TPRs interpolated on the union of their FPRs; its legend shows
    the macro AUC of ``metrics`` (the mean of the per-class AUCs).
    """
    figure, axes = _figure(5.5, 5.0)
    ax = axes[0, 0]
    curves = []
    for c, label in enumerate(labels):
        positive = np.asarray(y_true) == c
        if metrics.per_class[c].auc.value is None:
            continue
        fpr, tpr, _ = roc_curve(positive, probs[:, c])
        curves.append((fpr, tpr))
        ax.plot(fpr, tpr, lw=1.5, label=f"{label}: AUC {estimate_text(metrics.per_class[c].auc)}")
    if len(curves) > 1:
        grid = np.unique(np.concatenate([fpr for fpr, _ in curves]))
        mean_tpr = np.mean([np.interp(grid, fpr, tpr) for fpr, tpr in curves], axis=0)
        ax.plot(grid, mean_tpr, "k--", lw=2, label=f"macro: AUC {estimate_text(metrics.macro_auc)}")
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls=":")
    ax.set(
        xlabel="1 - specificity (FPR)", ylabel="sensitivity (TPR)", title="ROC, one-vs-rest", aspect="equal"
    )
    ax.set(xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    return figure


def pr_figure(y_true: np.ndarray, probs: np.ndarray, metrics: MetricSet, labels: Sequence[str]) -> Figure:
    """Precision-recall curve per class (one-vs-rest), with the class prevalence as a dotted baseline."""
    figure, axes = _figure(5.5, 5.0)
    ax = axes[0, 0]
    for c, label in enumerate(labels):
        positive = np.asarray(y_true) == c
        if not positive.any():
            continue
        precision, recall, _ = precision_recall_curve(positive, probs[:, c])
        (line,) = ax.step(recall, precision, where="post", lw=1.5)
        line.set_label(f"{label}: AP {estimate_text(metrics.per_class[c].average_precision)}")
        ax.axhline(positive.mean(), color=line.get_color(), lw=0.8, ls=":")
    ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title="Precision-recall, one-vs-rest")
    ax.set(xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower left", fontsize=8)
    return figure


def confusion_figure(metrics: MetricSet, labels: Sequence[str]) -> Figure:
    """Confusion matrix in counts and row-normalised (rows: true class, columns: decided class)."""
    size = 2.5 + 0.6 * len(labels)
    figure, axes = _figure(2 * size + 1, size, ncols=2)
    counts = np.asarray(metrics.confusion_matrix, dtype=float)
    normalised = np.array(
        [[np.nan if v is None else v for v in row] for row in metrics.confusion_matrix_normalized]
    )
    for ax, matrix, title, fmt in (
        (axes[0, 0], counts, "counts", "{:.0f}"),
        (axes[0, 1], normalised, "normalised by true class", "{:.2f}"),
    ):
        ax.imshow(matrix / max(np.nanmax(matrix), 1e-12), cmap="Blues", vmin=0, vmax=1)
        for (i, j), value in np.ndenumerate(matrix):
            text = "-" if np.isnan(value) else fmt.format(value)
            shade = "white" if np.nan_to_num(value) > 0.6 * np.nanmax(matrix) else "black"
            ax.text(j, i, text, ha="center", va="center", color=shade, fontsize=9)
        ticks = np.arange(len(labels))
        ax.set_xticks(ticks, labels, rotation=30, ha="right")
        ax.set_yticks(ticks, labels)
        ax.set(xlabel="decided class", ylabel="true class", title=f"Confusion matrix ({title})")
    return figure


def reliability_figure(calibration: CalibrationSummary) -> Figure:
    """Reliability diagram (accuracy vs mean confidence per bin) above the histogram of confidences."""
    figure, axes = _figure(5.0, 6.0, nrows=2, height_ratios=(3, 1), sharex=True)
    top, bottom = axes[0, 0], axes[1, 0]
    width = 1.0 / calibration.n_bins
    lower = np.array([b.lower for b in calibration.bins])
    filled = [b for b in calibration.bins if b.count]
    top.bar(
        [b.lower for b in filled],
        [b.accuracy for b in filled],
        width=width,
        align="edge",
        edgecolor="k",
        label="accuracy",
    )
    top.plot(
        [b.mean_confidence for b in filled],
        [b.mean_confidence for b in filled],
        "r.",
        label="mean confidence",
    )
    top.plot([0, 1], [0, 1], color="0.5", ls="--", lw=1, label="perfect calibration")
    top.set(
        ylabel="accuracy of the top class",
        ylim=(0, 1),
        title=f"Reliability, ECE {estimate_text(calibration.ece)}",
    )
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(
        lower, [b.count for b in calibration.bins], width=width, align="edge", color="0.6", edgecolor="k"
    )
    bottom.set(xlabel="confidence (largest probability)", ylabel="images", xlim=(0, 1))
    return figure


def slice_profile_figure(scores: Sequence[float], labels: Sequence[bool], title: str) -> Figure:
    """Slice lesion scores along a CT series (inferior to superior) over its labelled slices (shaded)."""
    figure, axes = _figure(8, 3)
    ax = axes[0, 0]
    index = np.arange(len(scores))
    ax.fill_between(index, 0, np.asarray(labels, float), step="mid", alpha=0.25, label="labelled infected")
    ax.plot(index, scores, lw=1.2, label="slice lesion score")
    ax.set(xlabel="slice (inferior to superior)", ylabel="score", ylim=(0, 1.02), title=title)
    ax.legend(loc="upper right", fontsize=8)
    return figure


def save_png(figure: Figure, path: Path, *, dpi: int = 120) -> Path:
    """Render ``figure`` as PNG to ``path`` atomically; returns the path."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return write_bytes_atomic(path, buffer.getvalue())


def save_figures(
    report: ClassificationReport, y_true: np.ndarray, probs: np.ndarray, out_dir: Path, *, dpi: int = 120
) -> dict[str, Path]:
    """Write the overall ROC, PR, confusion-matrix and reliability figures as PNG (atomically).

    Args:
        report: the result of ``evaluate_classifier`` on ``y_true`` ``(N,)`` and ``probs`` ``(N, C)``.
        out_dir: created if missing; files are ``<name>.png`` for ``name`` in :data:`FIGURE_NAMES`.

    Returns:
        ``{name: path}`` in :data:`FIGURE_NAMES` order.
    """
    y, p, overall = np.asarray(y_true), np.asarray(probs, dtype=np.float64), report.overall
    figures = {
        "roc": roc_figure(y, p, overall, report.labels),
        "pr": pr_figure(y, p, overall, report.labels),
        "confusion_matrix": confusion_figure(overall, report.labels),
        "reliability": reliability_figure(overall.calibration),
    }
    return {
        name: save_png(figure, Path(out_dir) / f"{name}.png", dpi=dpi) for name, figure in figures.items()
    }


def dice_histogram_figure(dice: Mapping[str, np.ndarray], n_images: int) -> Figure:
    """Histogram of the per-image Dice of each class (``{label: (n,)}``, images with a non-empty target),
    in bins of 0.05 on ``[0, 1]``; ``n_images`` (all images) is shown for the excluded empty targets."""
    figure, axes = _figure(6.0, 3.5)
    ax = axes[0, 0]
    bins = np.linspace(0.0, 1.0, 21)
    for label, values in dice.items():
        label_text = f"{label} ({len(values)} of {n_images})"
        ax.hist(values, bins=bins, histtype="stepfilled", alpha=0.4, edgecolor="k", label=label_text)
    ax.set(xlabel="Dice per image", ylabel="images", xlim=(0, 1), title="Per-image Dice (non-empty targets)")
    ax.legend(loc="upper left", fontsize=8)
    return figure


def worst_cases_figure(
    images: np.ndarray,
    truths: np.ndarray,
    preds: np.ndarray,
    labels: Sequence[str],
    titles: Sequence[str],
) -> Figure:
    """Images ``(K, S, S)`` in ``[0, 1]`` with the contours of each class (``labels[k - 1]`` = value ``k``)
    in the true label maps (solid, :data:`TRUTH_COLOURS`) and the predicted ones (dashed,
    :data:`PREDICTION_COLOURS`) ``(K, S, S)``; one panel per image titled ``titles``."""
    count = max(1, len(images))
    figure, axes = _figure(3.2 * count, 3.8, ncols=count)
    for ax, image, truth, pred, title in zip(axes[0], images, truths, preds, titles, strict=False):
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0)
        for k in range(1, len(labels) + 1):
            for mask, colours, style in (
                (truth, TRUTH_COLOURS, "solid"),
                (pred, PREDICTION_COLOURS, "dashed"),
            ):
                if (mask == k).any():
                    colour = colours[(k - 1) % len(colours)]
                    ax.contour(mask == k, levels=[0.5], colors=colour, linestyles=style, linewidths=1.2)
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    handles = [
        Line2D([], [], color=colours[(k - 1) % len(colours)], ls=style, label=f"{kind}: {label}")
        for k, label in enumerate(labels, start=1)
        for kind, colours, style in (("truth", TRUTH_COLOURS, "-"), ("prediction", PREDICTION_COLOURS, "--"))
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), fontsize=8)
    return figure
