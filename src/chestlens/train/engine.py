"""The task-independent training engine shared by every ``chestlens train`` command.

What it does, whatever the model: device placement (CUDA when available), optional mixed precision and
channels-last, AdamW over the trainable parameters, a per-step cosine schedule with linear warm-up,
gradient clipping, early stopping on a validation score (higher is better), progress bars, TensorBoard
and the training-curve PNG (:class:`~chestlens.train.monitor.TrainingMonitor`), and an atomic checkpoint
after every epoch from which a killed run resumes exactly.

What differs between tasks is a :class:`TrainTask`: the epoch's batches, the loss of a batch and the
validation. A task without validation images (a final fit on all data for an epoch count chosen by
cross-validation) returns no score: the engine then keeps the last epoch and never stops early.

Reproducibility: every epoch starts by seeding torch with :func:`epoch_seed` ``(seed, epoch)`` and hands
the task a generator seeded likewise for its sampler, so the data order, augmentation and dropout of
epoch *e* do not depend on what ran before. A run killed at any point resumes from the last completed
epoch and reproduces the uninterrupted run.

Distributed data parallel (``torchrun``, :mod:`chestlens.train.distributed`): the same loop on every
process, ``cfg.batch_size`` being the global batch; only rank 0 validates, logs and writes checkpoints.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from chestlens.models.device import resolve_device
from chestlens.train import distributed
from chestlens.train.checkpoint import load_checkpoint_state, save_checkpoint
from chestlens.train.config import TrainConfig
from chestlens.train.monitor import TrainingMonitor

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]


class TrainTask(Protocol):
    """What a training task supplies to :func:`train_model`.

    Attributes:
        n_train: training samples per epoch (sets the number of optimiser steps).
        score_key: key of the validation score in :meth:`validate`'s record (higher is better; NaN
            never counts as an improvement).
        score_label: the score's name on the training curve.
    """

    n_train: int
    score_key: str
    score_label: str

    def batches(self, epoch: int, generator: torch.Generator) -> Iterable[Batch]:
        """The epoch's ``(input, target)`` batches on CPU; shuffle with ``generator`` only."""
        ...

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar training loss of the model's ``output`` for ``target`` (both on the training device)."""
        ...

    def validate(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """Validation numbers, ``val_loss`` and :attr:`score_key` included (model in any mode); an empty
        record when the task has no validation images (the last epoch is kept)."""
        ...


@dataclass
class TrainOutcome:
    """Result of :func:`train_model`: the best weights (by the validation score) and the history."""

    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


def epoch_seed(seed: int, epoch: int) -> int:
    """The torch seed of epoch ``epoch`` (0-based) of a run seeded ``seed``."""
    return seed * 100_003 + epoch


def steps_per_epoch(n_train: int, cfg: TrainConfig) -> int:
    """Full batches per epoch (one when the set is no larger than a batch), capped by
    ``cfg.max_steps_per_epoch``."""
    steps = max(1, n_train // cfg.batch_size if n_train > cfg.batch_size else 1)
    return min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else steps


def shuffled_loader(
    dataset: torch.utils.data.Dataset,
    cfg: TrainConfig,
    generator: torch.Generator,
    weights: torch.Tensor | None = None,
) -> torch.utils.data.DataLoader:
    """Batches of ``dataset`` in a random order drawn from ``generator``; the last partial batch is
    dropped when there is more than one batch. Under DDP each process gets its slice of every global
    batch of ``cfg.batch_size`` (:class:`~chestlens.train.distributed.ShardedBatchSampler`).

    Args:
        weights: per-sample weights ``(N,)`` for sampling with replacement (class balancing), or None
            for a plain permutation.
    """
    size = len(dataset)  # type: ignore[arg-type]
    if weights is not None:
        sampler: torch.utils.data.Sampler = torch.utils.data.WeightedRandomSampler(
            weights, size, generator=generator
        )
    else:
        sampler = torch.utils.data.RandomSampler(dataset, generator=generator)
    where = distributed.placement()
    if where.world_size > 1:
        distributed.local_batch_size(cfg.batch_size)  # refuse a global batch the processes cannot share
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=distributed.ShardedBatchSampler(
                sampler, cfg.batch_size, drop_last=size > cfg.batch_size, where=where
            ),
            num_workers=cfg.num_workers,
            persistent_workers=False,
        )
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.num_workers,
        drop_last=size > cfg.batch_size,
        persistent_workers=False,
    )


def _cosine_with_warmup(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def optimiser_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    params: list[torch.nn.Parameter],
    grad_clip: float,
) -> None:
    """Backward pass (loss scaled when the scaler is enabled), gradient norm clipped to ``grad_clip``,
    one optimiser step."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(optimizer)
    scaler.update()


def _initial_state(saved: dict[str, Any] | None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "epoch": 0,
        "history": [],
        "best_score": -1.0,
        "best_epoch": 0,
        "bad_epochs": 0,
        "best_state": None,
    }
    if saved is None:
        return state
    if "best_score" not in saved:  # checkpoints written before the engine named it "best_auc"
        saved["best_score"] = saved["best_auc"]
    return {k: saved[k] for k in state}


def train_model(
    model: torch.nn.Module,
    cfg: TrainConfig,
    task: TrainTask,
    out_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
) -> TrainOutcome:
    """Train ``model`` in place on ``task`` and return the best weights by the validation score.

    Only parameters with ``requires_grad`` are optimised (freeze others before the call).

    Args:
        model: the network, already initialised from pretrained weights if wanted.
        out_dir: checkpoint, TensorBoard logs and the training-curve PNG go here.
        resume: continue from ``out_dir/checkpoint.pt`` if present (always, after torchrun restarted a
            failed worker group).
        progress: show a progress bar per epoch.
    """
    where = distributed.placement()
    resume = resume or distributed.restarted()
    device = resolve_device(cfg.device)
    use_amp = cfg.amp == "on" or (cfg.amp == "auto" and device.type == "cuda")
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)
    params = [p for p in model.parameters() if p.requires_grad]
    net = distributed.wrap_model(model, device)  # the model itself on one process
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = steps_per_epoch(task.n_train, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _cosine_with_warmup(cfg.epochs * steps, round(cfg.warmup_epochs * steps))
    )
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and device.type == "cuda")

    saved = load_checkpoint_state(out_dir) if resume else None
    state = _initial_state(saved)
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        log.info("resuming from epoch %d of %d", state["epoch"], cfg.epochs)

    monitor = TrainingMonitor(out_dir, task.score_key, task.score_label, enabled=where.is_main)
    for epoch in range(state["epoch"], cfg.epochs):
        if state["bad_epochs"] >= cfg.patience:
            break
        torch.manual_seed(epoch_seed(cfg.seed, epoch))
        started = time.perf_counter()
        net.train()
        losses = []
        batches = task.batches(epoch, torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch)))
        for step, (x, y) in enumerate(monitor.progress(batches, epoch, cfg.epochs, steps, progress)):
            if step >= steps:
                break
            if epoch == 0 and step == 0:
                monitor.sample_images(x, epoch)
            x = x.to(device, memory_format=memory_format)
            y = y.to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                loss = task.loss(net(x), y)
            optimiser_step(loss, optimizer, scaler, params, cfg.grad_clip)
            scheduler.step()
            losses.append(float(loss.detach()))
        validation = distributed.broadcast_from_main(task.validate(model, device) if where.is_main else None)
        record = {
            "epoch": epoch + 1,
            "train_loss": distributed.mean_over_processes(float(np.sum(losses)), len(losses)),
            **validation,
            "lr": float(scheduler.get_last_lr()[0]),
            "seconds": time.perf_counter() - started,
        }
        state["history"].append(record)
        score = validation.get(task.score_key)
        if score is None:  # no validation: the last epoch is the one kept
            state.update(best_epoch=epoch + 1, bad_epochs=0)
            state["best_state"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        elif score > state["best_score"]:
            state.update(best_score=score, best_epoch=epoch + 1, bad_epochs=0)
            state["best_state"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        if where.is_main:
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
        best_score=state["best_score"],
        history=state["history"],
        stopped_early=stopped_early,
    )
