"""In-browser screening latency (onnxruntime-web, wasm) against Python ONNX Runtime and PyTorch eager.

    python bench/browser_latency.py [--web DIR] [--repeats 20] [--quick] [--json out.json]

The offline screener (``chestlens export web``; ``--web`` or the default build folder, built into a
temporary folder when absent) is served with COOP/COEP headers (``mount_offline``) and opened in headless
Debian Chromium with 1 and then 2 wasm threads, each in a fresh profile:

* time to interactive, first visit: navigation start to models loaded (``window.chestlens.readyMs``),
  everything fetched from the server; second visit: the same after a reload, served by the service worker;
* per-image latency: median of ``--repeats`` classifier runs (``session.run``: resize, normalise,
  network, softmax, CAM) on an already decoded image, after the first screening;
* download size: the model files and the onnxruntime-web files (the wasm binary dominates).

The same classifier graph runs in Python ONNX Runtime (1 and 2 intra-op threads) and in PyTorch eager
(``torch.set_num_threads`` 1 and 2) on the same decoded image, in the same run. Inputs: the real chest
radiograph ``RG1_UNCR.dcm`` (pydicom-data, 1955 x 1841) and the same image saved as a 512 px 8-bit PNG.
Prints a Markdown table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from chestlens.export.browser import INSTALLED, READY, ServerThread, open_browser, screen_file, wait_for
from chestlens.export.offline import default_web_dir, mount_offline
from chestlens.export.verify import ms_per_image, ort_session, unit_image
from chestlens.io import read_image
from chestlens.io.samples import sample_path
from chestlens.models.bundle import load_bundle
from chestlens.models.graphs import build_graph

THREADS = (1, 2)


def inputs(folder: Path) -> dict[str, Path]:
    """The DICOM radiograph and a 512 px 8-bit PNG of it."""
    dicom = sample_path("RG1_UNCR.dcm")
    picture = Image.fromarray((read_image(dicom).pixels * 255).round().astype(np.uint8))
    picture.thumbnail((512, 512), Image.Resampling.LANCZOS)
    png = folder / "RG1_512.png"
    picture.save(png)
    return {f"PNG {picture.width}x{picture.height}": png, "DICOM 1841x1955": dicom}


def web_folder(given: Path | None, scratch: Path) -> Path:
    """The web build to measure: ``given``, else the default build, else a fresh one in ``scratch``."""
    from chestlens.export.web import build_web
    from chestlens.pipeline.browser_gate import browser_gate_rules

    folder = given or default_web_dir()
    if (folder / "models.json").is_file():
        return folder
    return build_web(scratch / "web", gate_rules=browser_gate_rules()).folder


def download_sizes(folder: Path) -> dict[str, int]:
    """Bytes of the models, of onnxruntime-web and of the whole build."""
    index = json.loads((folder / "models.json").read_text())
    models = sum((folder / m["onnx"]).stat().st_size for m in index["models"].values())
    runtime = sum(p.stat().st_size for p in (folder / "vendor").glob("ort*"))
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return {"models_bytes": models, "onnxruntime_web_bytes": runtime, "total_bytes": total}


def browser_runs(folder: Path, images: dict[str, Path], repeats: int, scratch: Path) -> dict[str, Any]:
    """Per thread count: time to interactive (first and second visit) and per-image latency."""
    from fastapi import FastAPI
    from playwright.sync_api import sync_playwright

    app = FastAPI()
    mount_offline(app, folder)
    out: dict[str, Any] = {}
    with sync_playwright() as playwright, ServerThread(app) as server:
        for threads in THREADS:
            context = open_browser(playwright.chromium, scratch / f"profile-{threads}")
            try:
                page = context.new_page()
                page.goto(f"{server.url}/offline/?threads={threads}")
                wait_for(page, READY, 180_000)
                first = page.evaluate("window.chestlens.readyMs")
                wait_for(page, INSTALLED, 180_000)
                page.reload()
                wait_for(page, READY, 180_000)
                row: dict[str, Any] = {
                    "threads_used": page.evaluate("window.chestlens.threads"),
                    "cross_origin_isolated": page.evaluate("self.crossOriginIsolated"),
                    "tti_first_visit_ms": first,
                    "tti_second_visit_ms": page.evaluate("window.chestlens.readyMs"),
                    "ms_per_image": {},
                }
                for name, path in images.items():
                    screen_file(page, path)
                    row["ms_per_image"][name] = page.evaluate(f"window.chestlens.benchmark({repeats})")
                out[str(threads)] = row
            finally:
                context.close()
    return out


def python_runs(folder: Path, images: dict[str, Path], repeats: int) -> dict[str, Any]:
    """Python ONNX Runtime and PyTorch eager on the same graph and decoded images."""
    index = json.loads((folder / "models.json").read_text())
    onnx = folder / index["models"]["classifier"]["onnx"]
    bundle = load_bundle(json.loads((folder / index["models"]["classifier"]["sidecar"]).read_text())["name"])
    graph = build_graph(bundle)
    units = {name: unit_image(path, bundle.spec) for name, path in images.items()}
    before = torch.get_num_threads()
    out: dict[str, Any] = {"onnxruntime": {}, "pytorch_eager": {}}
    try:
        for threads in THREADS:
            session = ort_session(onnx, threads)
            out["onnxruntime"][str(threads)] = {
                n: ms_per_image(session, {"image": u}, repeats) for n, u in units.items()
            }
            torch.set_num_threads(threads)
            out["pytorch_eager"][str(threads)] = {n: torch_ms(graph, u, repeats) for n, u in units.items()}
    finally:
        torch.set_num_threads(before)
    return out


def torch_ms(graph: torch.nn.Module, unit: np.ndarray, repeats: int) -> float:
    """Median milliseconds of the graph module in PyTorch eager (after two warm-up runs)."""
    x = torch.from_numpy(unit)
    times = []
    with torch.no_grad():
        for i in range(repeats + 2):
            start = time.perf_counter()
            graph(x)
            if i >= 2:
                times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def table(report: dict[str, Any]) -> str:
    """Markdown: one row per runtime and thread count, one column per image, plus TTI and sizes."""
    names = list(report["images"])
    lines = [
        "| runtime | threads | " + " | ".join(f"ms/image {n}" for n in names) + " | TTI 1st / 2nd visit ms |",
        "|---|---|" + "---|" * len(names) + "---|",
    ]
    for threads, row in report["browser"].items():
        cells = " | ".join(f"{row['ms_per_image'][n]:.1f}" for n in names)
        tti = f"{row['tti_first_visit_ms']:.0f} / {row['tti_second_visit_ms']:.0f}"
        used = f"{threads} (used {row['threads_used']})"
        lines.append(f"| browser (onnxruntime-web wasm) | {used} | {cells} | {tti} |")
    for runtime, label in (("onnxruntime", "Python ONNX Runtime"), ("pytorch_eager", "PyTorch eager")):
        for threads, row in report[runtime].items():
            lines.append(f"| {label} | {threads} | " + " | ".join(f"{row[n]:.1f}" for n in names) + " | |")
    sizes = report["download"]
    lines.append("")
    lines.append(
        f"Download: models {sizes['models_bytes'] / 1e6:.1f} MB, onnxruntime-web "
        f"{sizes['onnxruntime_web_bytes'] / 1e6:.1f} MB, whole build {sizes['total_bytes'] / 1e6:.1f} MB."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--web", type=Path, default=None, help="web build folder (chestlens export web)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="3 repeats: a smoke test, not a measurement")
    parser.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        folder = web_folder(args.web, scratch)
        images = inputs(scratch)
        report: dict[str, Any] = {
            "web_build": str(folder),
            "build": json.loads((folder / "models.json").read_text())["build"],
            "repeats": repeats,
            "images": list(images),
            "download": download_sizes(folder),
            "browser": browser_runs(folder, images, repeats, scratch),
        }
        report |= python_runs(folder, images, repeats)
    report["table"] = table(report)  # ready-made Markdown for bench/run_all.py's README block
    print(report["table"])
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
