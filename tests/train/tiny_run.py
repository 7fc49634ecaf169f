"""A tiny, seeded training run used by the resume tests (run as a script in a subprocess).

Usage: python tiny_run.py OUT_DIR [--kill-after N] [--resume]
``--kill-after N`` sends SIGKILL to this process on the N-th training sample fetched (mid-epoch).
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import torch
from safetensors.torch import save_file

from chestlens.data.tensors import LabelledImages
from chestlens.models.factory import create_model
from chestlens.preprocess.spec import PreprocessSpec
from chestlens.train import dataset as dataset_module
from chestlens.train.config import ClassifyConfig
from chestlens.train.loop import train_classifier

SIZE = 32


def synthetic(n: int, seed: int) -> LabelledImages:
    """Three classes marked by a bright bar at a class-specific height."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.rand(n, 1, SIZE, SIZE, generator=g) * 0.5
    for c in range(3):
        x[y == c, :, 6 * c : 6 * c + 10, 6:26] += 0.5
    ids = tuple(f"p{i}" for i in range(n))
    return LabelledImages(x.clamp(0, 1), y, ids, ("synthetic",) * n, ids)


def kill_on_fetch(n: int) -> None:
    """SIGKILL this process on the ``n``-th training sample fetched."""
    original = dataset_module.AugmentedDataset.__getitem__
    calls = {"n": 0}

    def fetch_then_die(self, index):
        calls["n"] += 1
        if calls["n"] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, index)

    dataset_module.AugmentedDataset.__getitem__ = fetch_then_die


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--kill-after", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.kill_after:
        kill_on_fetch(args.kill_after)
    cfg = ClassifyConfig(input_size=SIZE, batch_size=16, epochs=2, lr=2e-3, weights=None, warmup_epochs=0.5)
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 3, weights=None)
    outcome = fit(model, cfg, args.out, resume=args.resume)
    save_file({k: v.contiguous() for k, v in outcome.best_state.items()}, str(args.out / "best.safetensors"))


def fit(model: torch.nn.Module, cfg: ClassifyConfig, out: Path, *, resume: bool, save: bool = True):
    """Train ``model`` on 48 synthetic training and 24 validation images into ``out``; with ``save``,
    write the last weights to ``out/final.safetensors``. Returns the engine's outcome."""
    spec = PreprocessSpec(input_size=SIZE, mean=[0.5], std=[0.5])
    labels = ["a", "b", "c"]
    train, val = synthetic(48, 1), synthetic(24, 2)
    outcome = train_classifier(model, cfg, spec, labels, train, val, out, resume=resume, progress=False)
    if save:
        final = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(final, str(out / "final.safetensors"))
    return outcome


if __name__ == "__main__":
    main()
