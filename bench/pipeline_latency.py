"""Screening latency per stage and batch throughput, with torchxrayvision's DenseNet-121 as the anchor.

    python bench/pipeline_latency.py [--repeats 30] [--batch-images 64] [--json out.json]

Inputs are real: the chest radiograph ``RG1_UNCR.dcm`` shipped by pydicom-data (1955 x 1841, 3.6 MP,
uncompressed DICOM) and the same image downscaled to about 2 megapixels and saved as 16-bit PNG (the
issue's target size). Single-image latency is the median (and 90th percentile) of ``--repeats`` calls of
``Screener.screen`` after two warm-up calls, for each runtime (ONNX Runtime, the default, and PyTorch);
stages: read (decode), gate, prepare (the one working image), lungs (segmenter + lung-field check),
classify (+ the class-activation map from the same graph); "models" is lungs + classify. The anchor
runs torchxrayvision's DenseNet-121 (random weights; only speed matters) at 224 px on the same decoded
image with its own preprocessing (``XRayCenterCrop`` + ``XRayResizer``), timed from the file as well.

Prints the tables and the machine description; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from chestlens.io import read_image
from chestlens.io.samples import sample_path
from chestlens.pipeline.screener import Screener

STAGES = ("read", "gate", "prepare", "lungs", "classify", "models", "total")
RUNTIMES = ("onnx", "torch")


def machine() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "load_average_1min": os.getloadavg()[0],
    }


def two_megapixel_png(folder: Path) -> Path:
    """RG1 downscaled to about 2 MP (1500 x 1412), stored as 16-bit grey PNG."""
    image = read_image(sample_path("RG1_UNCR.dcm"))
    picture = Image.fromarray((image.pixels * 65535).astype(np.uint16))
    picture = picture.resize((1412, 1500), Image.Resampling.LANCZOS)
    path = folder / "rg1_2mp.png"
    picture.save(path)
    return path


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def time_screener(screener: Screener, path: Path, repeats: int) -> dict[str, dict[str, float]]:
    for _ in range(2):
        screener.screen(path)
    runs = [screener.screen(path).result.timings_ms for _ in range(repeats)]
    for r in runs:
        r["models"] = r.get("lungs", 0.0) + r.get("classify", 0.0)
    return {
        stage: {
            "median_ms": statistics.median(r.get(stage, 0.0) for r in runs),
            "p90_ms": percentile([r.get(stage, 0.0) for r in runs], 90),
        }
        for stage in STAGES
    }


def time_anchor(path: Path, repeats: int) -> dict[str, float]:
    """torchxrayvision DenseNet-121 at 224 px: read, xrv preprocessing, forward (batch 1)."""
    import torchvision
    import torchxrayvision as xrv

    model = xrv.models.DenseNet(weights=None).eval()
    transform = torchvision.transforms.Compose([xrv.datasets.XRayCenterCrop(), xrv.datasets.XRayResizer(224)])

    def once() -> float:
        start = time.perf_counter()
        pixels = read_image(path).pixels  # [0, 1], lungs dark
        x = transform((pixels * 2048.0 - 1024.0)[None])  # xrv expects [-1024, 1024]
        with torch.no_grad():
            model(torch.from_numpy(x)[None].float())
        return (time.perf_counter() - start) * 1000.0

    for _ in range(2):
        once()
    runs = [once() for _ in range(repeats)]
    return {"median_ms": statistics.median(runs), "p90_ms": percentile(runs, 90)}


def throughput(screener: Screener, path: Path, n: int, batch_size: int) -> float:
    start = time.perf_counter()
    count = sum(1 for _ in screener.iter_screen([path] * n, batch_size=batch_size))
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch-images", type=int, default=64)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    report: dict[str, object] = {"machine": machine()}
    latency: dict[str, dict] = {}
    anchor: dict[str, dict] = {}
    batch: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = {
            "RG1 DICOM 3.6 MP": sample_path("RG1_UNCR.dcm"),
            "RG1 PNG 2.1 MP": two_megapixel_png(Path(tmp)),
        }
        for runtime in RUNTIMES:
            screener = Screener(runtime=runtime, device="cpu")
            plain = Screener(runtime=runtime, device="cpu", cam=None)
            for name, path in inputs.items():
                latency[f"{runtime}: {name}"] = time_screener(screener, path, args.repeats)
                batch[f"{runtime}: {name}"] = {
                    "with heatmap, batch 8": throughput(screener, path, args.batch_images, 8),
                    "no heatmap, batch 8": throughput(plain, path, args.batch_images, 8),
                }
        for name, path in inputs.items():
            anchor[name] = time_anchor(path, args.repeats)
    report.update({"latency": latency, "anchor_xrv_densenet121_224": anchor, "throughput_img_per_s": batch})

    print("machine:", json.dumps(report["machine"]))
    print("\nSingle-image latency, ms (median / p90): gate + lungs + classify + heatmap, per runtime")
    print("| runtime: input | " + " | ".join(STAGES) + " | anchor xrv DenseNet-121 224 | anchor / ours |")
    print("|---|" + "---|" * (len(STAGES) + 2))
    for key, stages in latency.items():
        name = key.split(": ", 1)[1]
        cells = [f"{stages[s]['median_ms']:.1f} / {stages[s]['p90_ms']:.1f}" for s in STAGES]
        speedup = anchor[name]["median_ms"] / stages["total"]["median_ms"]
        print(
            f"| {key} | "
            + " | ".join(cells)
            + f" | {anchor[name]['median_ms']:.1f} / {anchor[name]['p90_ms']:.1f} | {speedup:.2f}x |"
        )
    print("\nBatch throughput, images/s (Screener.iter_screen, decode threads + batched models)")
    for name, rows in batch.items():
        print(f"| {name} | " + " | ".join(f"{k}: {v:.1f}" for k, v in rows.items()) + " |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
