"""DistributedDataParallel on CPU (gloo): the sharded sampler, a 2-process run against a 1-process run with
the same global batch and seed, and a worker killed mid-epoch that torchrun restarts and that resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from chestlens.cli import app
from chestlens.train.distributed import Placement, ShardedBatchSampler

SCRIPT = Path(__file__).with_name("ddp_run.py")


@pytest.mark.parametrize("weighted", [False, True])
def test_shards_of_a_global_batch_are_the_one_process_batch(weighted):
    def sampler():
        generator = torch.Generator().manual_seed(3)
        if weighted:  # class balancing: the weighted draw with replacement
            weights = torch.tensor([1.0, 3.0] * 25)
            return torch.utils.data.WeightedRandomSampler(weights, 50, generator=generator)
        return torch.utils.data.RandomSampler(range(50), generator=generator)

    single = list(torch.utils.data.BatchSampler(sampler(), 16, drop_last=True))
    shards = [list(ShardedBatchSampler(sampler(), 16, True, Placement(rank, 2))) for rank in (0, 1)]
    assert [a + b for a, b in zip(*shards, strict=True)] == single
    assert len(ShardedBatchSampler(sampler(), 16, True, Placement(0, 2))) == len(single) == 3
    assert all(len(part) == 8 for shard in shards for part in shard)


def test_nproc_per_node_restarts_the_command_under_torchrun(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    seen = {}

    def fake_run(argv, check, env):
        seen["argv"] = argv
        assert env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1"  # restarts need a fresh store
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(subprocess, "run", fake_run)
    args = ["train", "classify", "--set", f"out={tmp_path}", "--nproc-per-node", "2", "--resume", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    argv = seen["argv"]
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    assert argv[1:5] == launcher
    command = ["train", "classify", "--set", f"out={tmp_path}", "--resume", "--quiet"]
    assert argv[5:] == ["-m", "chestlens.cli", *command]

    result = CliRunner().invoke(app, [*args, "--max-restarts", "3"])
    assert result.exit_code == 0, result.output
    assert seen["argv"][1:6] == [*launcher, "--max-restarts=3"]
    assert seen["argv"][6:] == ["-m", "chestlens.cli", *command]  # the workers get no launcher options

    result = CliRunner().invoke(app, ["train", "segment", "--max-restarts", "1"])
    assert result.exit_code == 2
    assert "--nproc-per-node" in result.output


def _run(out: Path, *launcher: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    command = [sys.executable, *launcher, str(SCRIPT), str(out), *extra]
    env = {**os.environ, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}  # as --nproc-per-node sets it
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_two_gloo_processes_match_one_and_a_killed_worker_resumes(tmp_path):
    """Resumed by hand (``--resume``) and by torchrun's elastic restart (``--max-restarts``)."""
    one = _run(tmp_path / "one")
    assert one.returncode == 0, one.stderr[-3000:]
    torchrun = ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2")
    # 48 samples, 3 steps of 8 per process per epoch: rank 1's 40th fetch is in step 2 of epoch 2, which
    # it reaches only after rank 0 joined step 1, i.e. after rank 0 wrote the epoch-1 checkpoint.
    killed = _run(tmp_path / "two", *torchrun, extra=("--kill-rank", "1", "--kill-after", "40"))
    assert killed.returncode != 0
    resumed = _run(tmp_path / "two", *torchrun, extra=("--resume",))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((tmp_path / "two" / "resumed-from.json").read_text()) == 1  # rank 0's checkpoint

    # torchrun --max-restarts: the same kill, and the restarted group resumes by itself and finishes
    elastic = (*torchrun[:-1], "--max-restarts=1", torchrun[-1])
    restarted = _run(tmp_path / "elastic", *elastic, extra=("--kill-rank", "1", "--kill-after", "40"))
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert json.loads((tmp_path / "elastic" / "resumed-from.json").read_text()) == 1

    # the loss curve of 2 processes x 8 samples equals that of 1 process x 16 (float summation order)
    runs = ("one", "two", "elastic")
    curves = [json.loads((tmp_path / run / "history.json").read_text()) for run in runs]
    for curve in curves[1:]:
        assert [h["epoch"] for h in curve] == [1, 2]
        for single, double in zip(curves[0], curve, strict=True):
            for key in ("train_loss", "val_loss"):
                assert double[key] == pytest.approx(single[key], rel=1e-2), key
