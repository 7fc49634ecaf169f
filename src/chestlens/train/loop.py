"""The classifier training loop: AdamW, cosine schedule with warm-up, early stopping on validation
macro AUC, gradient clipping, optional mixed precision and channels-last, atomic checkpoints and exact
resume.

Reproducibility: every epoch starts by seeding torch with ``(seed, epoch)``, and the sampler's generator
likewise, so the data order, augmentation and dropout of epoch *e* do not depend on what ran before.
A run killed at any point resumes from the last completed epoch and reproduces the uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from chestlens.data.tensors import LabelledImages
from chestlens.models.bundle import PreprocessSpec
from chestlens.models.inference import predict_logits
from chestlens.train.checkpoint import load_checkpoint_state, save_checkpoint
from chestlens.train.config import ClassifyConfig
from chestlens.train.dataset import AugmentedDataset, build_augmentation
from chestlens.train.monitor import TrainingMonitor

log = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    """Result of :func:`train_classifier`: the best weights (by validation macro AUC) and the history."""

    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_auc: float
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


def _cosine_with_warmup(total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _loader(train: LabelledImages, cfg: ClassifyConfig, spec: PreprocessSpec, epoch: int):
    dataset = AugmentedDataset(train, spec, build_augmentation(cfg.augment, spec.input_size))
    generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    if cfg.balance == "sampler":
        per_class = torch.bincount(train.targets).float().clamp(min=1)
        weights = (1.0 / per_class)[train.targets]
        sampler = torch.utils.data.WeightedRandomSampler(weights, len(train), generator=generator)
    else:
        sampler = torch.utils.data.RandomSampler(dataset, generator=generator)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.num_workers,
        drop_last=len(train) > cfg.batch_size,
        persistent_workers=False,
    )


def _set_trainable(model: torch.nn.Module, head_only: bool) -> list[torch.nn.Parameter]:
    if head_only:
        for param in model.parameters():
            param.requires_grad_(False)
        for param in model.get_classifier().parameters():
            param.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


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
    device = resolve_device(cfg.device)
    use_amp = cfg.amp == "on" or (cfg.amp == "auto" and device.type == "cuda")
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)
    params = _set_trainable(model, cfg.freeze_backbone)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(train) // cfg.batch_size if len(train) > cfg.batch_size else 1)
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        _cosine_with_warmup(cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch)),
    )
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and device.type == "cuda")
    weight = class_weights(train.targets, len(labels)) if cfg.balance == "weighted_loss" else None
    criterion = torch.nn.CrossEntropyLoss(
        weight=None if weight is None else weight.to(device), label_smoothing=cfg.label_smoothing
    )

    state: dict[str, Any] = {
        "epoch": 0,
        "history": [],
        "best_auc": -1.0,
        "best_epoch": 0,
        "bad_epochs": 0,
        "best_state": None,
    }
    saved = load_checkpoint_state(out_dir) if resume else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = {k: saved[k] for k in state}
        log.info("resuming from epoch %d of %d", state["epoch"], cfg.epochs)

    monitor = TrainingMonitor(out_dir)
    val_targets = val.targets.numpy()
    for epoch in range(state["epoch"], cfg.epochs):
        if state["bad_epochs"] >= cfg.patience:
            break
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        started = time.perf_counter()
        model.train()
        losses = []
        batches = _loader(train, cfg, spec, epoch)
        for step, (x, y) in enumerate(
            monitor.progress(batches, epoch, cfg.epochs, steps_per_epoch, progress)
        ):
            if step >= steps_per_epoch:
                break
            if epoch == 0 and step == 0:
                monitor.sample_images(x, epoch)
            x = x.to(device, memory_format=memory_format)
            y = y.to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            losses.append(float(loss.detach()))
        logits = predict_logits(model, val.images, spec, device=device)
        val_loss = float(torch.nn.functional.cross_entropy(logits, val.targets))
        auc = macro_auc(val_targets, logits.softmax(1).numpy())
        record = {
            "epoch": epoch + 1,
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            "val_loss": val_loss,
            "val_macro_auc": auc,
            "lr": float(scheduler.get_last_lr()[0]),
            "seconds": time.perf_counter() - started,
        }
        state["history"].append(record)
        if auc > state["best_auc"]:
            state.update(best_auc=auc, best_epoch=epoch + 1, bad_epochs=0)
            state["best_state"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        save_checkpoint(
            {
                **state,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
            },
            out_dir,
        )
        monitor.epoch_end(record, state["history"])
        log.info("epoch %d: %s", epoch + 1, {k: round(v, 4) for k, v in record.items()})
    monitor.close()
    stopped_early = state["bad_epochs"] >= cfg.patience and state["epoch"] < cfg.epochs
    return TrainOutcome(
        best_state=state["best_state"] or {k: v.cpu() for k, v in model.state_dict().items()},
        best_epoch=state["best_epoch"],
        best_val_auc=state["best_auc"],
        history=state["history"],
        stopped_early=stopped_early,
    )
