"""Classifier training on the shared engine (:mod:`chestlens.train.engine`): class-weighted cross-entropy
with optional label smoothing, optional class-balanced sampling or a frozen backbone, and early stopping
on validation macro AUC. Reproducibility and exact resume are the engine's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from chestlens.data.tensors import LabelledImages
from chestlens.models.bundle import PreprocessSpec
from chestlens.models.inference import predict_logits
from chestlens.models.registry import get_model_config
from chestlens.train.config import ClassifyConfig
from chestlens.train.dataset import AugmentedDataset, build_augmentation
from chestlens.train.engine import TrainOutcome, resolve_device, shuffled_loader, train_model


def macro_auc(targets: np.ndarray, probs: np.ndarray) -> float:
    """One-vs-rest ROC AUC averaged over the classes present in ``targets`` (NaN if fewer than two)."""
    present = [c for c in range(probs.shape[1]) if 0 < (targets == c).sum() < len(targets)]
    if len(present) < 2:
        return float("nan")
    return float(np.mean([roc_auc_score(targets == c, probs[:, c]) for c in present]))


def class_weights(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights ``N / (C * n_c)`` (1 for a class with no samples)."""
    counts = torch.bincount(targets, minlength=num_classes).float()
    weights = len(targets) / (num_classes * counts.clamp(min=1))
    return torch.where(counts > 0, weights, torch.ones_like(weights))


class ClassificationTask:
    """Engine task of a classifier: augmented cached images, cross-entropy, validation macro AUC."""

    score_key = "val_macro_auc"
    score_label = "validation macro AUC"

    def __init__(
        self,
        cfg: ClassifyConfig,
        spec: PreprocessSpec,
        labels: list[str],
        train: LabelledImages,
        val: LabelledImages,
        device: torch.device,
    ) -> None:
        self.cfg, self.spec, self.train, self.val = cfg, spec, train, val
        self.n_train = len(train)
        weight = class_weights(train.targets, len(labels)) if cfg.balance == "weighted_loss" else None
        self.criterion = torch.nn.CrossEntropyLoss(
            weight=None if weight is None else weight.to(device), label_smoothing=cfg.label_smoothing
        )

    def batches(self, epoch: int, generator: torch.Generator) -> torch.utils.data.DataLoader:
        dataset = AugmentedDataset(
            self.train, self.spec, build_augmentation(self.cfg.augment, self.spec.input_size)
        )
        weights = None
        if self.cfg.balance == "sampler":
            per_class = torch.bincount(self.train.targets).float().clamp(min=1)
            weights = (1.0 / per_class)[self.train.targets]
        return shuffled_loader(dataset, self.cfg, generator, weights)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.criterion(output, target)

    def validate(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        logits = predict_logits(model, self.val.images, self.spec, device=device)
        return {
            "val_loss": float(torch.nn.functional.cross_entropy(logits, self.val.targets)),
            "val_macro_auc": macro_auc(self.val.targets.numpy(), logits.softmax(1).numpy()),
        }


def _set_trainable(model: torch.nn.Module, model_name: str, head_only: bool) -> None:
    """Freeze everything but the classification head when ``head_only`` (the registry's head prefixes,
    or the final layer when the architecture keeps its own head)."""
    if not head_only:
        return
    head = get_model_config(model_name).head
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(head))
    for param in model.get_classifier().parameters():
        param.requires_grad_(True)


def train_classifier(
    model: torch.nn.Module,
    cfg: ClassifyConfig,
    spec: PreprocessSpec,
    labels: list[str],
    train: LabelledImages,
    val: LabelledImages,
    out_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
) -> TrainOutcome:
    """Train ``model`` in place and return the best weights by validation macro AUC.

    Args:
        model: a registry model (``create_model``), already initialised from pretrained weights if wanted.
        spec: the preprocessing the bundle will record (input size, normalisation).
        train, val: cached images; ``val`` is never augmented and never used for gradient steps.
        out_dir: checkpoints, TensorBoard logs and the training-curve PNG go here.
        resume: continue from ``out_dir/checkpoint.pt`` if present.
    """
    _set_trainable(model, cfg.model, cfg.freeze_backbone)
    task = ClassificationTask(cfg, spec, labels, train, val, resolve_device(cfg.device))
    return train_model(model, cfg, task, out_dir, resume=resume, progress=progress)
