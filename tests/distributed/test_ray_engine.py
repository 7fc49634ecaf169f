"""``chestlens predict --engine ray`` on a local Ray instance: the results equal the serial Screener's, and
a driver killed mid-way then re-run gives the complete, duplicate-free output.

Compared: every field of every record except ``result.timings_ms`` (measured durations, which differ
from run to run on any engine).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from chestlens.pipeline.batch import ResultLog, input_key, record  # noqa: E402
from chestlens.pipeline.inputs import expand_inputs  # noqa: E402
from chestlens.pipeline.ray_engine import RayPlan, ScreenerOptions, screen_on_ray  # noqa: E402

BATCH = 3
N_IMAGES = 8


@pytest.fixture(scope="module")
def manifest(shared_data, tmp_path_factory) -> Path:
    """A CSV manifest of 8 real radiographs: 4 Kermany JPEGs, 4 ieee8023 images."""
    root = shared_data.resolve()
    kermany = sorted((root / "kermany-chest-xray" / "chest_xray").rglob("*.jpeg"))[:4]
    ieee_images = root / "covid-chestxray-dataset" / "images"
    ieee = sorted(p for p in ieee_images.iterdir() if p.is_file())[:4]
    if len(kermany) + len(ieee) < N_IMAGES:
        pytest.fail("the shared data holds too few radiographs for the Ray test")
    path = tmp_path_factory.mktemp("manifest") / "inputs.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "note"])
        writer.writerows([str(p), "x"] for p in [*kermany, *ieee])
    return path


def _comparable(line: dict) -> dict:
    line = json.loads(json.dumps(line))
    line.get("result", {}).pop("timings_ms", None)
    return line


@pytest.fixture(scope="module")
def serial(manifest) -> dict[str, dict]:
    """The serial Screener's records (one torch thread, as in a 1-CPU Ray actor), by resume key."""
    import torch

    from chestlens.pipeline.screener import Screener

    torch.set_num_threads(1)
    paths = expand_inputs([manifest]).items
    assert len(paths) == N_IMAGES
    outcomes = Screener(device="cpu").iter_screen(paths, batch_size=BATCH)
    lines = [record(input_key(p), getattr(o, "result", o)) for p, o in zip(paths, outcomes, strict=True)]
    assert sum(line["status"] == "screened" for line in lines) >= 4  # real radiographs pass the gate
    return {line["key"]: _comparable(line) for line in lines}


@pytest.fixture(scope="module")
def local_ray():
    """A small local Ray instance; yields its address, which a driver in another process can join."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _by_key(log: ResultLog) -> dict[str, dict]:
    lines = list(log.records())
    keys = [line["key"] for line in lines]
    assert len(keys) == len(set(keys)), "duplicate records"
    return {line["key"]: _comparable(line) for line in lines}


@pytest.mark.slow
def test_ray_results_equal_serial(local_ray, manifest, serial, tmp_path):
    paths = expand_inputs([manifest]).items
    log = ResultLog(tmp_path)
    written = screen_on_ray(
        paths, [input_key(p) for p in paths], log, ScreenerOptions(device="cpu"), RayPlan(actors=2),
        batch_size=BATCH,
    )  # fmt: skip
    assert written == N_IMAGES
    assert _by_key(log) == serial


@pytest.mark.slow
def test_killed_driver_then_rerun_gives_complete_output(local_ray, manifest, serial, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for attempt in range(3):  # the kill races the driver: a run that finished first tests nothing, so retry
        out = tmp_path / f"out-{attempt}"
        command = [
            sys.executable, "-m", "chestlens.cli", "predict", str(manifest), "--engine", "ray",
            "--ray-address", local_ray, "--out", str(out), "--batch-size", "2", "--actors", "1",
            "--device", "cpu", "-q",
        ]  # fmt: skip
        driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        log = ResultLog(out)
        deadline = time.monotonic() + 240
        while sum(1 for _ in log.records()) < 2 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        partial = len(list(log.records()))
        if partial < N_IMAGES:
            break
    assert 2 <= partial < N_IMAGES, f"the driver should die mid-way, after {partial} records"

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _by_key(log) == serial
    with (out / "results.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == N_IMAGES
    import pyarrow.parquet as pq

    table = pq.read_table(out / "results.parquet")
    assert table.num_rows == N_IMAGES and len(set(table.column("key").to_pylist())) == N_IMAGES
