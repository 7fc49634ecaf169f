"""Progress bars with ETA, TensorBoard logs and the training-curve PNG (rank 0 only)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from chestlens.atomic import write_bytes_atomic

log = logging.getLogger(__name__)

CURVE_FILE = "training_curve.png"


class TrainingMonitor:
    """Writes TensorBoard scalars/images to ``out_dir/tensorboard`` (if tensorboard is installed) and
    redraws ``out_dir/training_curve.png`` after every epoch.

    Args:
        score_key: the validation score's key in the epoch records (e.g. ``"val_macro_auc"``).
        score_label: its axis label on the training curve.
    """

    def __init__(self, out_dir: Path, score_key: str, score_label: str, *, enabled: bool = True) -> None:
        self.out_dir = out_dir
        self.score_key = score_key
        self.score_label = score_label
        self.enabled = enabled
        self.writer: Any = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir=str(out_dir / "tensorboard"))
            except ImportError:
                log.warning(
                    "tensorboard is not installed (pip install 'chestlens[train]'); no TensorBoard logs"
                )

    def progress(
        self, batches: Iterable[Any], epoch: int, epochs: int, steps: int, show: bool
    ) -> Iterator[Any]:
        """Wrap the batch iterator in a tqdm bar (ETA per epoch)."""
        yield from tqdm(
            batches,
            total=steps,
            desc=f"epoch {epoch + 1}/{epochs}",
            disable=not (show and self.enabled),
            leave=False,
            dynamic_ncols=True,
        )

    def sample_images(self, x: torch.Tensor, epoch: int) -> None:
        """Log a grid of augmented training inputs (first channel, min-max scaled for display)."""
        if self.writer is None:
            return
        grid = x[:16, :1]
        lo, hi = grid.amin(dim=(1, 2, 3), keepdim=True), grid.amax(dim=(1, 2, 3), keepdim=True)
        self.writer.add_images("train/augmented_inputs", (grid - lo) / (hi - lo).clamp(min=1e-6), epoch)

    def epoch_end(self, record: dict[str, float], history: list[dict[str, float]]) -> None:
        if not self.enabled:
            return
        if self.writer is not None:
            step = int(record["epoch"])
            for key in ("train_loss", "val_loss", self.score_key, "lr"):
                if key in record:  # no validation figures in a fit on all data
                    self.writer.add_scalar(f"epoch/{key}", record[key], step)
            self.writer.flush()
        self._draw_curve(history)

    def _draw_curve(self, history: list[dict[str, float]]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [h["epoch"] for h in history]
        fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(9, 3.5), dpi=100)
        ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss")
        nan = float("nan")
        ax_loss.plot(epochs, [h.get("val_loss", nan) for h in history], marker="o", label="validation loss")
        ax_loss.set_xlabel("epoch")
        ax_loss.legend()
        ax_score.plot(epochs, [h.get(self.score_key, nan) for h in history], marker="o", color="tab:green")
        ax_score.set_xlabel("epoch")
        ax_score.set_ylabel(self.score_label)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        write_bytes_atomic(self.out_dir / CURVE_FILE, buffer.getvalue())

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
