"""``chestlens train segment``: data, patient-level split, training, bundle, test report.

Steps (outputs under ``cfg.out``, laid out as in :mod:`chestlens.train.run`):

1. read the samples of the configured sources (default: every source with masks for the target,
   :func:`chestlens.data.tasks.sources_for`) whose masks hold a layer of the target;
2. load the split CSV (``cfg.splits``, or ``splits.csv`` of an earlier run of this folder) or make one with
   the same machinery as classification: patients linked across ids, sources and near-duplicate pixels,
   stratified by source, seeded;
3. decode every image and its label map once at the input size (:mod:`chestlens.data.seg_tensors`);
4. train on the shared engine (:func:`chestlens.train.engine.train_model`) with the configured loss and
   mask-synchronised augmentation; keep the best epoch by validation mean Dice;
5. write the bundle (``kind="segmenter"``; fp16 weights when that changes nothing measurable on
   validation), then evaluate it once on the TEST split and record the numbers, labelled as such, in the
   bundle and its model card.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chestlens.data.records import Sample
from chestlens.data.registry import load_samples
from chestlens.data.seg_tensors import segmented_images
from chestlens.data.splits import SPLITS, SplitTable
from chestlens.data.tasks import SegmentationTarget, get_segmentation_target, sources_for
from chestlens.data.tensors import LabelledImages
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.seg_eval import (
    evaluate_label_maps,
    foreground_labels,
    predict_label_maps,
    seg_metrics_summary,
)
from chestlens.evaluate.segmentation import labels_from_logits, score_image
from chestlens.models.device import resolve_device
from chestlens.models.inference import iter_logits
from chestlens.models.segmentation import create_segmenter, get_encoder, output_channels
from chestlens.models.spec import BundleSpec
from chestlens.preprocess.spec import PreprocessSpec
from chestlens.train import distributed
from chestlens.train.config import SegmentConfig, TrainConfig
from chestlens.train.dataset import SegmentationDataset
from chestlens.train.engine import shuffled_loader, train_model
from chestlens.train.fp16 import fp16_check, use_stored_weights
from chestlens.train.run import (
    BUNDLE_DIR,
    check_not_empty,
    finish_run,
    split_table,
    start_run,
    training_summary,
)
from chestlens.train.seg_losses import make_loss

log = logging.getLogger(__name__)

#: Share of validation pixels allowed to change their label when the weights are rounded to fp16.
FP16_PIXEL_TOLERANCE = 1e-4


def mean_dice(preds: np.ndarray, targets: np.ndarray, labels: Sequence[str]) -> float:
    """Mean over images and foreground classes of the per-image Dice with the empty-mask policy of
    :mod:`chestlens.evaluate.segmentation` (both empty: 1, prediction on an empty target: 0), so false
    positives on empty images count. Label maps ``(N, S, S)``; NaN for no image."""
    dice = [s.dice for p, t in zip(preds, targets, strict=True) for s in score_image(p, t, labels)]
    return float(np.mean(dice)) if dice else float("nan")


class SegmentationTask:
    """Engine task of a segmenter: augmented cached images and label maps, a loss with the ignore label,
    validation mean Dice (:func:`mean_dice`)."""

    score_key = "val_mean_dice"
    score_label = "validation mean Dice (all images)"

    def __init__(
        self,
        cfg: SegmentConfig,
        spec: PreprocessSpec,
        labels: list[str],
        train: LabelledImages,
        val: LabelledImages,
    ) -> None:
        self.cfg, self.spec, self.labels, self.train, self.val = cfg, spec, labels, train, val
        self.n_train = len(train)
        self.criterion = make_loss(cfg.loss)

    def batches(self, epoch: int, generator: torch.Generator) -> torch.utils.data.DataLoader:
        return shuffled_loader(
            SegmentationDataset(self.train, self.spec, self.cfg.augment), self.cfg, generator
        )

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.criterion(output, target)

    def validate(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """``val_loss``: the training loss per validation batch, averaged weighted by batch size; nothing
        without validation images (a fit on all data)."""
        if not len(self.val):
            return {}
        total, start, maps = 0.0, 0, []
        batches = iter_logits(
            model, self.val.images, self.spec, batch_size=self.cfg.batch_size, device=device
        )
        for logits in batches:
            targets = self.val.targets[start : start + len(logits)]
            total += float(self.criterion(logits, targets)) * len(logits)
            maps.append(labels_from_logits(logits.numpy()))
            start += len(logits)
        preds = np.concatenate(maps)
        return {
            "val_loss": total / len(self.val),
            "val_mean_dice": mean_dice(preds, self.val.targets.numpy(), self.labels),
        }


def _decide(probs: np.ndarray) -> np.ndarray:
    """Label maps ``(N, S, S)`` from probabilities ``(N, C, S, S)`` (the rule of ``labels_from_logits``)."""
    return (probs[:, 0] >= 0.5).astype(np.uint8) if probs.shape[1] == 1 else probs.argmax(1).astype(np.uint8)


def fp16_segmenter_check(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    spec: BundleSpec,
    val: LabelledImages,
    device: torch.device,
) -> dict[str, Any]:
    """fp16 storage is lossless when validation mean Dice moves by less than 0.001 and at most
    :data:`FP16_PIXEL_TOLERANCE` of the pixels change their label."""
    labels = foreground_labels(spec)

    def probabilities() -> np.ndarray:
        logits = torch.cat(
            list(iter_logits(model, val.images, spec.preprocess, batch_size=16, device=device))
        )
        return (logits.sigmoid() if logits.shape[1] == 1 else logits.softmax(1)).numpy()

    targets = val.targets.numpy()
    return fp16_check(
        model,
        state,
        probabilities,
        lambda probs: mean_dice(_decide(probs), targets, labels),
        _decide,
        "mean_dice",
        FP16_PIXEL_TOLERANCE,
    )


def _evaluate(
    spec: BundleSpec,
    model: torch.nn.Module,
    data: LabelledImages,
    out_dir: Path,
    split: str,
    device: torch.device,
) -> dict[str, Any]:
    preds = predict_label_maps(model, spec.preprocess, data.images, device=device)
    title = f"{spec.name} {spec.version}: {split} split"
    report, _files = evaluate_label_maps(spec, data, preds, out_dir, title=title, data_info={"split": split})
    return seg_metrics_summary(report)


def masked_samples(cfg: TrainConfig, root: Path) -> tuple[SegmentationTarget, list[Sample]]:
    """The segmentation target named by ``cfg.target`` and the samples of the configured sources (default:
    every source with masks for it) that hold a layer of the target."""
    target = get_segmentation_target(cfg.target)
    sources = cfg.sources or list(sources_for(target.name))
    samples = [s for s in load_samples(root, sources) if target.mapping(s)]
    if not samples:
        raise ChestlensInputError(root, f"no samples with {target.name} masks in sources {sources}")
    return target, samples


def decoded_splits(
    cfg: TrainConfig,
    out: Path,
    table: SplitTable,
    samples: list[Sample],
    target: str,
    spec: PreprocessSpec,
    *,
    fit_all: bool = False,
) -> dict[str, LabelledImages]:
    """Every split's images and ``target`` label maps decoded once at ``spec``'s input size; refuses an
    empty split. With ``fit_all``, ``train`` holds every image of the table and the others none."""
    log.info("decoding images and %s label maps at %d px", target, spec.input_size)
    if fit_all:
        everything = segmented_images([i for s in SPLITS for i in table.labelled(samples, s)], target, spec)
        none = everything.subset([])
        return {"train": everything, "val": none, "test": none}
    data = {split: segmented_images(table.labelled(samples, split), target, spec) for split in SPLITS}
    check_not_empty(cfg, out, {split: len(images) for split, images in data.items()})
    return data


def fit_all_statement(data: LabelledImages, epochs: int) -> dict[str, Any]:
    """``training.split`` of a fit on all data: what was trained on and that nothing was held out."""
    return {
        "fit_all": True,
        "n_images": len(data),
        "n_patients": len(set(data.patient_ids)),
        "statement": f"trained on all {len(data)} images ({len(set(data.patient_ids))} patient groups) of "
        f"the split table's train, validation and test rows alike, for exactly {epochs} epochs (the last "
        "epoch kept): nothing is held out, so this bundle has no validation or test figures of its own; "
        "its recipe's cross-validation is its estimate",
    }


def segmenter_spec(cfg: SegmentConfig, target: SegmentationTarget) -> BundleSpec:
    """The bundle spec of ``cfg``'s recipe for ``target``: grey input at ``cfg.input_size``, normalised with
    the encoder's mean and standard deviation (averaged over its RGB channels), CT in HU windowed with
    ``cfg.ct_window``."""
    encoder = get_encoder(cfg.encoder)
    spec = PreprocessSpec(
        input_size=cfg.input_size,
        in_chans=1,
        mean=[float(np.mean(encoder.mean))],
        std=[float(np.mean(encoder.std))],
        ct_window=cfg.ct_window,
        tta=cfg.tta,
    )
    return BundleSpec(
        name=cfg.name,
        version=cfg.version,
        kind="segmenter",
        task=target.name,
        architecture=cfg.arch,
        architecture_kwargs={"encoder": cfg.encoder, "mode": target.mode},
        labels=target.labels,
        preprocess=spec,
    )


def new_segmenter(cfg: SegmentConfig, target: SegmentationTarget) -> torch.nn.Module:
    """An untrained segmenter of ``cfg``'s architecture and encoder, one grey input channel."""
    return create_segmenter(
        cfg.arch,
        cfg.encoder,
        output_channels(target.mode, target.labels),
        in_chans=1,
        encoder_weights=cfg.encoder_weights,
    )


def run_segmentation(
    cfg: SegmentConfig, *, resume: bool = False, progress: bool = True, reproduce: str | None = None
) -> Path:
    """Train, bundle and test one segmenter; returns the bundle folder.

    Args:
        reproduce: the command line that reproduces this run, for the model card.
    """
    started, out, root = start_run(cfg)
    target, samples = masked_samples(cfg, root)
    table = distributed.main_first(lambda: split_table(cfg, target.name, root, samples, out))
    bundle_spec = segmenter_spec(cfg, target)
    spec = bundle_spec.preprocess
    data = decoded_splits(cfg, out, table, samples, target.name, spec, fit_all=cfg.fit_all)
    model = new_segmenter(cfg, target)
    task = SegmentationTask(cfg, spec, foreground_labels(bundle_spec), data["train"], data["val"])
    outcome = train_model(model, cfg, task, out, resume=resume, progress=progress)
    if not distributed.placement().is_main:
        return out / BUNDLE_DIR  # under DDP rank 0 calibrates, evaluates and writes the bundle

    model.load_state_dict(outcome.best_state)
    device = resolve_device(cfg.device)
    bundle_spec.training = training_summary(cfg, table, samples, outcome, started, device)
    # a fit on all data checks fp16 rounding and the ONNX graph on training images (no performance figure)
    checked = data["train"] if cfg.fit_all else data["val"]
    if cfg.fit_all:
        bundle_spec.training.split = fit_all_statement(data["train"], cfg.epochs)
    fp16 = (
        fp16_segmenter_check(model, outcome.best_state, bundle_spec, checked, device)
        if cfg.fp16_bundle
        else None
    )
    use_stored_weights(model, outcome.best_state, fp16)

    def evaluate(split: str, name: str, out_dir: Path) -> dict[str, Any]:
        return _evaluate(bundle_spec, model, data[split], out_dir, name, device)

    has_test = len(data["test"]) > 0
    return finish_run(
        bundle_spec,
        outcome.best_state,
        out,
        evaluate,
        fp16=fp16,
        has_test=has_test,
        reproduce=reproduce,
        graph_images=checked.images.numpy() if cfg.graph else None,
        has_validation=not cfg.fit_all,
    )
