"""Seeded CPU runs are reproducible, and a run killed with SIGKILL mid-epoch resumes to the same result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from chestlens.train.checkpoint import load_checkpoint_state

pytestmark = pytest.mark.slow  # four training subprocesses; a fast resume test is in test_segment_cli
SCRIPT = Path(__file__).with_name("tiny_run.py")


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(out), *extra], capture_output=True, text=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    result = _run(out)
    assert result.returncode == 0, result.stderr
    return out


def _assert_same_weights(a: Path, b: Path, atol: float) -> None:
    left, right = load_file(str(a)), load_file(str(b))
    assert left.keys() == right.keys()
    for key in left:
        torch.testing.assert_close(left[key], right[key], rtol=0, atol=atol, msg=key)


def test_seeded_runs_are_reproducible(uninterrupted, tmp_path):
    result = _run(tmp_path)
    assert result.returncode == 0, result.stderr
    _assert_same_weights(uninterrupted / "final.safetensors", tmp_path / "final.safetensors", atol=0)
    history = load_checkpoint_state(uninterrupted)["history"]
    assert [h["val_macro_auc"] for h in history] == [
        h["val_macro_auc"] for h in load_checkpoint_state(tmp_path)["history"]
    ]


def test_kill_mid_epoch_then_resume_matches(uninterrupted, tmp_path):
    # 48 samples per epoch: the 48 + 20th fetch is in the middle of epoch 2.
    killed = _run(tmp_path, "--kill-after", "68")
    assert killed.returncode == -9, killed.stderr
    assert load_checkpoint_state(tmp_path)["epoch"] == 1
    resumed = _run(tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint_state(tmp_path)["epoch"] == 2
    _assert_same_weights(uninterrupted / "final.safetensors", tmp_path / "final.safetensors", atol=1e-6)
    _assert_same_weights(uninterrupted / "best.safetensors", tmp_path / "best.safetensors", atol=1e-6)
