"""Training speed per recipe: data loading + augmentation vs the model's training step, and the anchor.

    python bench/train_throughput.py [--quick] [--json OUT.json]

For each shipped recipe (``configs/*.yaml``), on this machine's default device:

* loader: images/s out of the training ``DataLoader`` (the recipe's augmentation and normalisation on
  cached images at the input size, ``num_workers`` of the recipe), i.e. what the engine is fed;
* step: images/s of the training step alone (forward, loss, backward, gradient clipping, AdamW) on a
  ready batch, with channels-last, and AMP where the engine uses it (CUDA);
* the loader is the bottleneck when its rate is below the step's.

The anchor is a naive per-image loop as the seed scripts trained: open the file with PIL, resize, one
image per forward/backward/step (EfficientNet-Lite0 at the default recipe's size), on real radiographs
from the shared data (or the pip-shipped RG1 radiograph without it). Nothing is asserted.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from common import json_main, shared_radiographs

from chestlens.data.tasks import SEGMENTATION_TARGETS
from chestlens.data.tensors import LabelledImages
from chestlens.models.device import resolve_device
from chestlens.models.factory import create_model
from chestlens.models.segmentation import create_segmenter, output_channels
from chestlens.preprocess.spec import PreprocessSpec
from chestlens.train.config import ClassifyConfig, SegmentConfig, TrainConfig, load_config
from chestlens.train.dataset import AugmentedDataset, SegmentationDataset, build_augmentation
from chestlens.train.engine import optimiser_step
from chestlens.train.loop import _set_trainable
from chestlens.train.seg_losses import make_loss

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPES = {
    "xray3 EfficientNet-Lite0 (default)": ("classify", "xray3_efficientnet_lite0.yaml"),
    "xray3 ResNet-50 (seed recipe)": ("classify", "xray3_resnet50_seed.yaml"),
    "xray3 VGG16 frozen backbone (seed recipe)": ("classify", "xray3_vgg16_seed.yaml"),
    "lungs U-Net EfficientNet-Lite0": ("segment", "lungs_unet_efficientnet_lite0.yaml"),
}


def _recipe(kind: str, file: str) -> tuple[TrainConfig, torch.nn.Module, torch.nn.Module]:
    """Config, freshly initialised model (trainable parts as the recipe says) and loss."""
    if kind == "classify":
        cfg = load_config(ClassifyConfig, CONFIGS / file)
        model = create_model(cfg.model, 3, in_chans=1, weights=None, drop_rate=cfg.drop_rate)
        _set_trainable(model, cfg.model, cfg.freeze_backbone)
        return cfg, model, torch.nn.CrossEntropyLoss()
    cfg = load_config(SegmentConfig, CONFIGS / file)
    target = SEGMENTATION_TARGETS[cfg.target]
    channels = output_channels(target.mode, target.labels)
    model = create_segmenter(cfg.arch, cfg.encoder, channels, in_chans=1, encoder_weights=None)
    return cfg, model, make_loss(cfg.loss)


def _cached(kind: str, n: int, size: int) -> LabelledImages:
    """Random cached images (and label maps for segmentation) at the input size."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, size, size, generator=g)
    if kind == "classify":
        y = torch.randint(0, 3, (n,), generator=g)
    else:
        y = (torch.rand(n, size, size, generator=g) > 0.5).long()
    ids = tuple(f"i{i}" for i in range(n))
    return LabelledImages(x, y, ids, ("bench",) * n, ids)


def loader_rate(kind: str, cfg: TrainConfig, images: int) -> float:
    """Images/s out of the recipe's training DataLoader."""
    spec = PreprocessSpec(input_size=cfg.input_size, mean=[0.5], std=[0.5])
    data = _cached(kind, images, cfg.input_size)
    if kind == "classify":
        dataset = AugmentedDataset(data, spec, build_augmentation(cfg.augment, cfg.input_size))
    else:
        dataset = SegmentationDataset(data, spec, cfg.augment)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=min(cfg.batch_size, images), num_workers=cfg.num_workers, shuffle=True
    )
    start = time.perf_counter()
    seen = sum(len(x) for x, _ in loader)
    return seen / (time.perf_counter() - start)


def step_rate(kind: str, cfg: TrainConfig, model, loss_fn, batch: int, steps: int) -> float:
    """Images/s of the engine's training step on a ready batch (one warm-up step not counted)."""
    device = resolve_device("auto")
    use_amp = device.type == "cuda" and cfg.amp != "off"
    model.to(device=device, memory_format=torch.channels_last).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    data = _cached(kind, batch, cfg.input_size)
    x = data.images.to(device, memory_format=torch.channels_last)
    y = data.targets.to(device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            loss = loss_fn(model(x), y)
        optimiser_step(loss, optimizer, scaler, params, cfg.grad_clip)

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def naive_anchor(images: int, size: int = 192) -> float:
    """Images/s of the seed-style loop: PIL decode + resize, batch of one, forward/backward/step."""
    from PIL import Image

    files = shared_radiographs(images)
    model = create_model("efficientnet_lite0", 3, in_chans=1, weights=None).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for i in range(images):
        picture = Image.open(files[i % len(files)]).convert("L").resize((size, size))
        x = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0)[None, None]
        loss = torch.nn.functional.cross_entropy(model((x - 0.5) / 0.5), torch.tensor([i % 3]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return images / (time.perf_counter() - start)


def run(quick: bool = False) -> dict[str, object]:
    """Loader and step rates per recipe (images/s) and the naive anchor."""
    recipes = {}
    for name, (kind, file) in RECIPES.items():
        cfg, model, loss_fn = _recipe(kind, file)
        batch = 2 if quick else min(cfg.batch_size, 16)
        loader = loader_rate(kind, cfg, 8 if quick else 128)
        step = step_rate(kind, cfg, model, loss_fn, batch, 1 if quick else 4)
        recipes[name] = {
            "config": f"configs/{file}",
            "input_size": cfg.input_size,
            "batch": batch,
            "loader_img_per_s": loader,
            "train_step_img_per_s": step,
            "loader_is_bottleneck": loader < step,
        }
    return {
        "device": str(resolve_device("auto")),
        "recipes": recipes,
        "anchor_naive_per_image_loop_img_per_s": naive_anchor(2 if quick else 24),
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    def configure(parser):
        parser.add_argument("--quick", action="store_true", help="tiny counts (a smoke test)")

    return json_main(__doc__.splitlines()[0], argv, configure, lambda args: run(args.quick))


if __name__ == "__main__":
    main()
