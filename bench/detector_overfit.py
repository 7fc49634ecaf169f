"""Can the lesion detector fit a few training slices? A learning check, and its speed on this machine.

    python bench/detector_overfit.py [--config configs/lesions_ct_maskrcnn_efficientnet_lite0.yaml]
                                     [--slices 4] [--steps 60] [--lr 5e-4] [--json OUT.json]

Builds the detector exactly as ``chestlens train detect`` does from the config, takes the first
``--slices`` TRAINING slices of its split (decoded at the config's input size, no augmentation), trains
on that one batch for ``--steps`` AdamW steps, and reports the Mask R-CNN loss terms every 10 steps, the
seconds per step, and COCO mask and box AP@0.5 on those same slices. High AP here only shows that the
targets, the model and the loss fit together; it says nothing about unseen slices (use the test report).
Needs the config's data under ``$CHESTLENS_DATA``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from common import json_main

from chestlens.data.tensors import LabelledImages
from chestlens.evaluate.det_eval import detection_report
from chestlens.train.config import load_config
from chestlens.train.detect import (
    DetectConfig,
    PackedDetector,
    configured_detector,
    detection_preprocess,
    instance_classes,
    label_map_target,
)
from chestlens.train.run import split_table, start_run
from chestlens.train.segment import decoded_splits, masked_samples


def first_training_slices(cfg: DetectConfig, n: int) -> tuple[LabelledImages, list[str]]:
    """The first ``n`` training slices of ``cfg``'s split, unaugmented, and the instance classes."""
    with tempfile.TemporaryDirectory(prefix="detector-overfit-") as tmp:
        cfg = cfg.model_copy(update={"out": tmp})  # the split table is written there, then dropped
        _, out, root = start_run(cfg)
        target, samples = masked_samples(cfg, root)
        table = split_table(cfg, target.name, root, samples, out)
        train = decoded_splits(cfg, out, table, samples, target.name, detection_preprocess(cfg))["train"]
    subset = LabelledImages(
        train.images[:n], train.targets[:n], train.patient_ids[:n], train.sources[:n], train.uids[:n]
    )
    return subset, instance_classes(target.labels)


def run(config: Path, slices: int, steps: int, lr: float) -> dict[str, object]:
    cfg = load_config(DetectConfig, config, [])
    torch.manual_seed(cfg.seed)
    data, classes = first_training_slices(cfg, slices)
    detector = configured_detector(cfg, len(classes))
    model = PackedDetector(detector, classes, cfg.min_area_px).train()
    packed = torch.cat([data.images, data.targets[:, None].float()], dim=1)
    targets = [label_map_target(t.numpy(), classes, cfg.min_area_px) for t in data.targets]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr, weight_decay=1e-4)
    curve, started = [], time.perf_counter()
    for step in range(1, steps + 1):
        loss = model(packed)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 10 == 0 or step == steps:
            with torch.no_grad():
                terms = {k: round(float(v), 4) for k, v in detector(list(data.images), targets).items()}
            curve.append({"step": step, "loss": round(float(loss.detach()), 4), **terms})
    seconds = time.perf_counter() - started
    report = detection_report(detector, data, classes, min_area_px=cfg.min_area_px, n_boot=0)
    return {
        "config": str(config),
        "slices": slices,
        "steps": steps,
        "lr": lr,
        "torch_threads": torch.get_num_threads(),
        "seconds_per_step": seconds / steps,  # includes the loss-term passes every 10 steps
        "curve": curve,
        "mask_ap50_on_these_slices": report.segm.ap50.value,
        "box_ap50_on_these_slices": report.bbox.ap50.value,
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    def configure(parser):
        parser.add_argument(
            "--config", type=Path, default=Path("configs/lesions_ct_maskrcnn_efficientnet_lite0.yaml")
        )
        parser.add_argument("--slices", type=int, default=4)
        parser.add_argument("--steps", type=int, default=60)
        parser.add_argument("--lr", type=float, default=5e-4)

    return json_main(
        __doc__.splitlines()[0], argv, configure, lambda a: run(a.config, a.slices, a.steps, a.lr)
    )


if __name__ == "__main__":
    main()
