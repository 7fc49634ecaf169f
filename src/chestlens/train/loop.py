"""Classifier training on the shared engine (:mod:`chestlens.train.engine`): class-weighted cross-entropy
with optional label smoothing, optional class- or source-balanced sampling, an optional adversarial
source head (gradient reversal) or a frozen backbone, and early stopping on the validation within-source
AUC (or macro AUC). Reproducibility and exact resume are the engine's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from chestlens.data.tensors import LabelledImages
from chestlens.evaluate.within_source import (
    headline_questions,
    question_data,
    strata_of,
    within_source_value,
)
from chestlens.models.device import resolve_device
from chestlens.models.inference import predict_logits
from chestlens.models.registry import get_model_config
from chestlens.preprocess.spec import PreprocessSpec
from chestlens.train.config import ClassifyConfig
from chestlens.train.dataset import AugmentedDataset, build_augmentation
from chestlens.train.engine import TrainOutcome, shuffled_loader, train_model


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


def within_source_score(
    targets: np.ndarray, probs: np.ndarray, sources: tuple[str, ...], views: tuple[str | None, ...]
) -> float:
    """Mean within-source AUC of the headline questions (NaN where no source holds both sides)."""
    strata = strata_of(sources, views or None)
    values = []
    for positive, negative in headline_questions(probs.shape[1]):
        keep, is_pos, score = question_data(targets, probs, positive, negative)
        values.append(within_source_value(is_pos, score, strata[keep]))
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def source_balanced_weights(targets: torch.Tensor, sources: tuple[str, ...]) -> torch.Tensor:
    """Sampling weights ``(N,)``: every class equally likely, and inside a class every source equally."""
    cells: dict[tuple[int, str], int] = {}
    for target, source in zip(targets.tolist(), sources, strict=True):
        cells[(target, source)] = cells.get((target, source), 0) + 1
    sources_per_class: dict[int, int] = {}
    for target, _ in cells:
        sources_per_class[target] = sources_per_class.get(target, 0) + 1
    return torch.tensor(
        [1.0 / (sources_per_class[t] * cells[(t, s)]) for t, s in zip(targets.tolist(), sources, strict=True)]
    )


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the gradient times ``-weight`` backward (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:  # type: ignore[override]
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return -ctx.weight * grad, None


class SourceAdversarialNet(torch.nn.Module):
    """A timm classifier with a source head behind gradient reversal, for training only.

    ``forward`` returns ``(N, C + n_sources)``: the class logits, then the source logits. Only
    :attr:`classifier` goes into the bundle (:meth:`classifier_state`).
    """

    def __init__(self, classifier: torch.nn.Module, n_sources: int, weight: float) -> None:
        super().__init__()
        self.classifier = classifier
        features = classifier.num_features
        self.source_head = torch.nn.Sequential(
            torch.nn.Linear(features, 128), torch.nn.ReLU(), torch.nn.Linear(128, n_sources)
        )
        self.weight = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.classifier.forward_head(self.classifier.forward_features(x), pre_logits=True)
        logits = self.classifier.get_classifier()(pooled)
        return torch.cat([logits, self.source_head(_ReverseGradient.apply(pooled, self.weight))], dim=1)

    @staticmethod
    def classifier_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The classifier's own entries of this module's state dict."""
        prefix = "classifier."
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


class _WithSource(torch.utils.data.Dataset):
    """Items ``(x, [class, source index])`` of an augmented dataset, for the adversarial source head."""

    def __init__(self, base: torch.utils.data.Dataset, source_index: torch.Tensor) -> None:
        self.base, self.source_index = base, source_index

    def __len__(self) -> int:
        return len(self.source_index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.base[index]
        return x, torch.stack([y, self.source_index[index]])


class ClassificationTask:
    """Engine task of a classifier: augmented cached images, cross-entropy, validation within-source AUC
    (or macro AUC, :attr:`ClassifyConfig.selection`)."""

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
        self.n_classes = len(labels)
        self.score_key = "val_within_source_auc" if cfg.selection == "within_source" else "val_macro_auc"
        self.score_label = (
            "validation within-source AUC" if cfg.selection == "within_source" else "validation macro AUC"
        )
        self.source_names = sorted(set(train.sources))
        self.source_index = torch.tensor([self.source_names.index(s) for s in train.sources])
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
        elif self.cfg.balance == "source_balanced":
            weights = source_balanced_weights(self.train.targets, self.train.sources)
        if self.cfg.source_adversary > 0:
            dataset = _WithSource(dataset, self.source_index)
        return shuffled_loader(dataset, self.cfg, generator, weights)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim == 1:
            return self.criterion(output, target)
        classes = self.n_classes
        source_loss = torch.nn.functional.cross_entropy(output[:, classes:], target[:, 1])
        return self.criterion(output[:, :classes], target[:, 0]) + source_loss

    def validate(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        net = model.classifier if isinstance(model, SourceAdversarialNet) else model
        logits = predict_logits(net, self.val.images, self.spec, device=device)
        targets, probs = self.val.targets.numpy(), logits.softmax(1).numpy()
        record = {
            "val_loss": float(torch.nn.functional.cross_entropy(logits, self.val.targets)),
            "val_macro_auc": macro_auc(targets, probs),
        }
        if self.cfg.selection == "within_source":
            within = within_source_score(targets, probs, self.val.sources, self.val.views)
            record["val_within_source_auc"] = within if np.isfinite(within) else record["val_macro_auc"]
        return record


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
    if cfg.source_adversary <= 0:
        return train_model(model, cfg, task, out_dir, resume=resume, progress=progress)
    net = SourceAdversarialNet(model, len(task.source_names), cfg.source_adversary)
    outcome = train_model(net, cfg, task, out_dir, resume=resume, progress=progress)
    outcome.best_state = SourceAdversarialNet.classifier_state(outcome.best_state)
    return outcome
