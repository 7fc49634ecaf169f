"""``chestlens train detect``: a Mask R-CNN lesion instance detector from semantic lesion masks.

As COVID-CT-Mask-Net does, the instances are the connected components of each class of the lesion masks
(:mod:`chestlens.data.instances`); here they are recomputed after every augmentation, so a rotated or
cropped label map gives exactly its own instances. The run is laid out like the other training commands
(:mod:`chestlens.train.run`: split, checkpoint and ``--resume``, bundle, validation and test reports,
model card) and runs on the shared engine (:func:`chestlens.train.engine.train_model`) through
:class:`PackedDetector`, which takes the image and its label map as one tensor and returns the summed
Mask R-CNN training losses. Early stopping and the kept epoch follow the validation mask AP@0.5 (mean over
classes, COCO style: :mod:`chestlens.evaluate.detection`).

Preprocessing (the bundle's ``PreprocessSpec``): the image in ``[0, 1]`` (CT in Hounsfield units windowed
first), stretched to ``input_size`` square; ``mean = 0, std = 1`` because the detector normalises inside
(``GeneralizedRCNNTransform`` with its backbone's statistics). The detector's internal resize is set to the
same size, so it never rescales the input. Evaluation is on that grid.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import nn

from chestlens.data.instances import DEFAULT_MIN_AREA_PX, detection_target, label_map_instances
from chestlens.data.tasks import SEGMENTATION_TARGETS
from chestlens.data.tensors import LabelledImages
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.det_eval import detection_report, detection_summary, write_detection_report
from chestlens.models.catalog import is_bundle, resolve_bundle
from chestlens.models.detection import BACKGROUND, MaskRCNNDetector, create_detector
from chestlens.models.device import resolve_device
from chestlens.models.spec import BundleSpec, InstanceRule, read_spec
from chestlens.preprocess.spec import PreprocessSpec
from chestlens.train import distributed
from chestlens.train.config import TrainConfig
from chestlens.train.dataset import SegmentationDataset
from chestlens.train.engine import shuffled_loader, train_model
from chestlens.train.fp16 import SCORE_TOLERANCE, rounded_to_fp16, use_stored_weights
from chestlens.train.run import BUNDLE_DIR, finish_run, split_table, start_run, training_summary
from chestlens.train.segment import decoded_splits, masked_samples

log = logging.getLogger(__name__)

#: Bootstrap resamples (over patients) of the reported AP confidence intervals.
N_BOOT = 1000


class DetectConfig(TrainConfig):
    """Everything ``chestlens train detect`` needs; early stopping on validation mask AP@0.5."""

    name: str = "lesions-ct-detector"
    target: str = "lesions-ct"  # a multiclass lesion target of chestlens.data.tasks.SEGMENTATION_TARGETS
    arch: str = "maskrcnn_efficientnet_lite0_fpn"  # chestlens.models.detection.list_detectors()
    # offline ImageNet ("default", timm encoders), None, a checkpoint, or a segmenter bundle on this split
    backbone_weights: str | None = "default"
    trainable_layers: int | None = None  # backbone stages trained (default: the detector's)
    input_size: int = Field(352, gt=0, multiple_of=32)
    batch_size: int = Field(4, gt=0)
    epochs: int = Field(24, gt=0)
    lr: float = Field(3e-4, gt=0)
    patience: int = Field(6, ge=1)
    min_area_px: int = Field(DEFAULT_MIN_AREA_PX, ge=1)  # smallest instance on the input grid
    # RoIs sampled per image for the box and mask heads (torchvision: 512) and RPN proposals kept per
    # image in training (torchvision: 2000); fewer make a CPU step about 2x faster (RoIAlign backward).
    box_batch_size_per_image: int = Field(512, gt=0)
    rpn_post_nms_top_n_train: int = Field(2000, gt=0)
    detections_per_image: int = Field(50, gt=0)  # kept per image in evaluation (COCO max_dets too)
    out: str = "runs/lesions-ct-detector"

    @field_validator("target")
    @classmethod
    def _multiclass_target(cls, name: str) -> str:
        target = SEGMENTATION_TARGETS.get(name)
        if target is None or target.mode != "multiclass":
            known = [k for k, t in SEGMENTATION_TARGETS.items() if t.mode == "multiclass"]
            raise ValueError(f"detection needs a multiclass lesion target; known: {', '.join(known)}")
        return name


#: Training-config keys that fix which slices a run trains on (with the same data they give the same split).
_SPLIT_KEYS = ("target", "sources", "splits", "split_seed", "split_fractions")


def check_backbone_split(cfg: DetectConfig) -> None:
    """Refuse a backbone taken from a segmenter bundle that was trained on another split, or on all data.

    A segmenter's encoder has seen its training slices; if the detector's validation or test split held
    any of them, the detector's AP would be optimistic. Same target, sources, split file, seed and
    fractions (with the same data) give the same split; anything else is refused, and so is a segmenter
    fitted on every image (``fit_all``, like the shipped ``lesions-ct-segmenter`` 0.2).
    """
    if cfg.backbone_weights is None or not is_bundle(cfg.backbone_weights):
        return
    trained = read_spec(resolve_bundle(cfg.backbone_weights)).training.config
    if trained.get("fit_all"):
        raise ChestlensInputError(
            cfg.backbone_weights,
            "its encoder was fitted on every image (fit_all), so this run's validation and test slices were "
            "in its training; train a segmenter on this run's split (train segment without fit_all) and "
            "use its bundle, or backbone_weights: default",
        )
    ours = cfg.model_dump(mode="json")
    differ = [key for key in _SPLIT_KEYS if trained.get(key) != ours[key]]
    if differ:
        shown = ", ".join(f"{key}: {trained.get(key)!r} vs {ours[key]!r}" for key in differ)
        raise ChestlensInputError(
            cfg.backbone_weights,
            f"its encoder was trained on another split ({shown}); its training slices could be in this "
            "run's validation or test split. Use the segmenter's split settings or another backbone",
        )


def label_map_target(
    label_map: np.ndarray, classes: Sequence[str], min_area_px: int
) -> dict[str, torch.Tensor]:
    """Mask R-CNN's training target (boxes, labels, masks) for a ``(S, S)`` label map: its instances
    (:func:`~chestlens.data.instances.label_map_instances`) in
    :func:`~chestlens.data.instances.detection_target` form."""
    instances = label_map_instances(label_map, classes, min_area_px)
    return detection_target(instances, classes, shape=label_map.shape)


def detection_preprocess(cfg: DetectConfig) -> PreprocessSpec:
    """The detector bundle's preprocessing: grey ``[0, 1]`` at ``input_size``, no normalisation (the
    detector normalises inside, see the module docstring)."""
    return PreprocessSpec(input_size=cfg.input_size, in_chans=1, mean=[0.0], std=[1.0])


def instance_classes(labels: Sequence[str]) -> list[str]:
    """The instance classes of a multiclass target's labels (all but background)."""
    return [label for label in labels if label != BACKGROUND]


class PackedDetector(nn.Module):
    """The detector as the shared engine trains it.

    Input ``(B, in_chans + 1, S, S)``: the image channels in ``[0, 1]`` then the label map (as floats);
    output: the sum of Mask R-CNN's training losses (classifier, box regression, mask, RPN objectness and
    box regression), a scalar. The instances are recomputed from the (augmented) label map.
    """

    def __init__(self, detector: MaskRCNNDetector, classes: Sequence[str], min_area_px: int) -> None:
        super().__init__()
        self.detector = detector
        self.classes = list(classes)
        self.min_area_px = min_area_px

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        images = packed[:, :-1].contiguous()
        label_maps = packed[:, -1].round().to(torch.uint8).cpu().numpy()
        targets = [
            {
                key: value.to(packed.device)
                for key, value in label_map_target(label_map, self.classes, self.min_area_px).items()
            }
            for label_map in label_maps
        ]
        losses = self.detector(list(images), targets)
        return torch.stack(list(losses.values())).sum()


class _PackedImages(torch.utils.data.Dataset):
    """Augmented ``(image, label map)`` pairs packed as one ``(in_chans + 1, S, S)`` tensor."""

    def __init__(self, data: SegmentationDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label_map = self.data[index]
        return torch.cat([image, label_map[None].float()]), torch.zeros(())


class DetectionTask:
    """Engine task of a detector: packed augmented images, the summed Mask R-CNN loss, validation AP."""

    score_key = "val_map50"
    score_label = "validation mask AP@0.5 (mean over classes)"

    def __init__(
        self,
        cfg: DetectConfig,
        spec: PreprocessSpec,
        classes: list[str],
        train: LabelledImages,
        val: LabelledImages,
    ) -> None:
        self.cfg, self.spec, self.classes, self.train, self.val = cfg, spec, classes, train, val
        self.n_train = len(train)

    def batches(self, epoch: int, generator: torch.Generator) -> torch.utils.data.DataLoader:
        dataset = _PackedImages(SegmentationDataset(self.train, self.spec, self.cfg.augment))
        return shuffled_loader(dataset, self.cfg, generator)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return output  # PackedDetector already returns the loss

    def validate(self, model: PackedDetector, device: torch.device) -> dict[str, float]:
        """``val_loss``: the training loss on the unaugmented validation images (BatchNorm frozen or
        absent, so computing it in training mode changes no state); ``val_map50``: mask AP@0.5."""
        model.train()
        with torch.no_grad():
            packed = torch.cat([self.val.images, self.val.targets[:, None].float()], dim=1)
            losses = [float(model(chunk.to(device))) for chunk in packed.split(self.cfg.batch_size)]
        report = detection_report(
            model.detector, self.val, self.classes, min_area_px=self.cfg.min_area_px, device=device, n_boot=0
        )
        map50 = report.segm.ap50.value if report.segm is not None else None
        return {
            "val_loss": float(np.mean(losses)),
            "val_map50": float("nan") if map50 is None else map50,
        }


def _fp16_check(
    detector: MaskRCNNDetector,
    state: dict[str, torch.Tensor],
    val: LabelledImages,
    classes: Sequence[str],
    cfg: DetectConfig,
    device: torch.device,
) -> dict[str, Any]:
    """fp16 storage is lossless when validation mask AP@0.5 and mAP each move by less than
    :data:`~chestlens.train.fp16.SCORE_TOLERANCE`; reloads ``state``."""

    def scores() -> tuple[float, float]:
        report = detection_report(
            detector, val, classes, min_area_px=cfg.min_area_px, device=device, n_boot=0
        )
        return report.segm.ap50.value or 0.0, report.segm.map.value or 0.0

    detector.load_state_dict(rounded_to_fp16(state))
    half = scores()
    detector.load_state_dict(state)
    full = scores()
    changes = [abs(a - b) for a, b in zip(half, full, strict=True)]
    return {
        "map50_change": changes[0],
        "map_change": changes[1],
        "lossless": max(changes) < SCORE_TOLERANCE,
    }


def configured_detector(cfg: DetectConfig, n_classes: int) -> MaskRCNNDetector:
    """The detector ``cfg`` trains (``n_classes`` lesion classes plus background; grey input, the
    internal resize at ``input_size``), its backbone initialised as ``cfg`` says."""
    return create_detector(
        cfg.arch,
        n_classes + 1,
        in_chans=1,
        min_size=cfg.input_size,
        max_size=cfg.input_size,
        backbone_weights=cfg.backbone_weights,
        trainable_layers=cfg.trainable_layers,
        box_detections_per_img=cfg.detections_per_image,
        box_batch_size_per_image=cfg.box_batch_size_per_image,
        rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
    )


def run_detection(
    cfg: DetectConfig, *, resume: bool = False, progress: bool = True, reproduce: str | None = None
) -> Path:
    """Train, bundle and test one Mask R-CNN lesion detector; returns the bundle folder."""
    check_backbone_split(cfg)
    started, out, root = start_run(cfg)
    target, samples = masked_samples(cfg, root)
    table = distributed.main_first(lambda: split_table(cfg, target.name, root, samples, out))
    spec = detection_preprocess(cfg)
    data = decoded_splits(cfg, out, table, samples, target.name, spec)
    classes = instance_classes(target.labels)
    detector = configured_detector(cfg, len(classes))
    bundle_spec = BundleSpec(
        name=cfg.name,
        version=cfg.version,
        kind="detector",
        task=target.name,
        architecture=cfg.arch,
        architecture_kwargs=detector.bundle_kwargs,
        labels=[BACKGROUND, *classes],
        preprocess=spec,
    )
    model = PackedDetector(detector, classes, cfg.min_area_px)
    task = DetectionTask(cfg, spec, classes, data["train"], data["val"])
    outcome = train_model(model, cfg, task, out, resume=resume, progress=progress)
    if not distributed.placement().is_main:
        return out / BUNDLE_DIR  # under DDP rank 0 evaluates and writes the bundle
    model.load_state_dict(outcome.best_state)
    device = resolve_device(cfg.device)
    bundle_spec.training = training_summary(cfg, table, samples, outcome, started, device)
    bundle_spec.training.instances = InstanceRule(
        rule="connected components (8-connectivity) of each class on the input grid",
        min_area_px=cfg.min_area_px,
    )

    state = {k: v.detach().clone() for k, v in detector.state_dict().items()}
    fp16 = _fp16_check(detector, state, data["val"], classes, cfg, device) if cfg.fp16_bundle else None
    use_stored_weights(detector, state, fp16)

    def evaluate(split: str, name: str, out_dir: Path) -> dict[str, Any]:
        report = detection_report(
            detector,
            data[split],
            classes,
            min_area_px=cfg.min_area_px,
            device=device,
            n_boot=N_BOOT,
            seed=cfg.seed,
        )
        write_detection_report(bundle_spec, report, out_dir, name)
        return detection_summary(report)

    return finish_run(
        bundle_spec,
        state,
        out,
        evaluate,
        fp16=fp16,
        has_test=len(data["test"]) > 0,
        reproduce=reproduce,
    )
