"""A tiny seeded classifier run, on one process or under torchrun (gloo, CPU); used by test_ddp.py.

Usage: python ddp_run.py OUT_DIR [--kill-rank R --kill-after N] [--resume]
       python -m torch.distributed.run --standalone --nproc-per-node 2 ddp_run.py OUT_DIR ...

``--kill-after N`` makes rank ``R`` SIGKILL itself on its N-th training sample (torchrun then stops the
other process, or restarts both with ``--max-restarts``; a restarted group does not kill itself again).
With ``--resume``, or after a restart, rank 0 first writes ``resumed-from.json`` (the checkpoint's epoch). At
the end rank 0 writes ``history.json`` (the epoch records).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from timm.utils.model import freeze_batch_norm_2d

from chestlens.models.factory import create_model
from chestlens.train import distributed
from chestlens.train.checkpoint import load_checkpoint_state
from chestlens.train.config import AugmentConfig, ClassifyConfig

sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
from tiny_run import SIZE, fit, kill_on_fetch

#: No augmentation, no dropout, frozen BatchNorm: what is left is the data order, the gradient average,
#: the schedule and the checkpoints, which DDP must keep equal to a 1-process run.
STILL = AugmentConfig(rotation_deg=0, scale=(1.0, 1.0), ratio=(1.0, 1.0), brightness=0, contrast=0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--kill-rank", type=int, default=1)
    parser.add_argument("--kill-after", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = ClassifyConfig(
        input_size=SIZE,
        batch_size=16,  # the global batch
        epochs=2,
        lr=2e-3,
        weights=None,
        warmup_epochs=0.5,
        drop_rate=0.0,
        balance="sampler",  # the class-balanced draw must survive sharding
        augment=STILL,
        device="cpu",
    )
    args.out.mkdir(parents=True, exist_ok=True)
    with distributed.session("cpu") as where:
        if where.is_main and (args.resume or distributed.restarted()):
            saved = load_checkpoint_state(args.out)
            (args.out / "resumed-from.json").write_text(json.dumps(saved["epoch"] if saved else 0))
        if args.kill_after and where.rank == args.kill_rank and not distributed.restarted():
            kill_on_fetch(args.kill_after)
        torch.manual_seed(0)
        # Frozen BatchNorm: on CPU each process would normalise its own slice of the batch (no
        # SyncBatchNorm with gloo), which is the one intended difference from a 1-process run.
        model = freeze_batch_norm_2d(create_model("efficientnet_lite0", 3, weights=None, drop_rate=0.0))
        outcome = fit(model, cfg, args.out, resume=args.resume, save=False)
    if where.is_main:
        (args.out / "history.json").write_text(json.dumps(outcome.history))


if __name__ == "__main__":
    main()
