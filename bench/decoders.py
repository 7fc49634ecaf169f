"""Image decoders compared on the formats screening reads: Pillow vs OpenCV, and JPEG draft mode.

    python bench/decoders.py [--repeats 20] [--json OUT.json]

Inputs are real: ``RG1_UNCR.dcm`` (pydicom-data) saved as a 2.1 MP 16-bit grey PNG, an 8-bit grey
PNG and a quality-95 grey JPEG of the same radiograph, plus the uncompressed DICOM itself (pydicom).
Each row is the median wall time of decoding the bytes to a grey float32 array in ``[0, 1]``;
"chestlens read_image" is the full reader (sniffing, checks, metadata). JPEG draft mode lets libjpeg
decode at 1/2, 1/4 or 1/8 scale directly; the row decodes at the largest scale that keeps the longer
side at least 512 px (the working image). Prints a table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from chestlens.io import read_image
from chestlens.io.samples import sample_path

WORKING_SIDE = 512


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def pillow_grey(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        raw = np.asarray(image)
    return raw.astype(np.float32) / (65535.0 if raw.dtype == np.uint16 else 255.0)


def opencv_grey(data: bytes) -> np.ndarray:
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return raw.astype(np.float32) / (65535.0 if raw.dtype == np.uint16 else 255.0)


def pillow_draft(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        scale = max(1, min(8, min(image.size) // WORKING_SIDE))
        image.draft("L", (image.width // scale, image.height // scale))
        raw = np.asarray(image)
    return raw.astype(np.float32) / 255.0


def opencv_reduced(data: bytes) -> np.ndarray:
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_2)
    return raw.astype(np.float32) / 255.0


def inputs(folder: Path) -> dict[str, Path]:
    pixels = read_image(sample_path("RG1_UNCR.dcm")).pixels
    picture = Image.fromarray((pixels * 65535).astype(np.uint16)).resize(
        (1412, 1500), Image.Resampling.LANCZOS
    )
    grey16 = np.asarray(picture)
    files = {"PNG 16-bit 2.1 MP": folder / "rg1_16.png", "PNG 8-bit 2.1 MP": folder / "rg1_8.png"}
    cv2.imwrite(str(files["PNG 16-bit 2.1 MP"]), grey16)
    cv2.imwrite(str(files["PNG 8-bit 2.1 MP"]), (grey16 >> 8).astype(np.uint8))
    files["JPEG q95 2.1 MP"] = folder / "rg1.jpg"
    Image.fromarray((grey16 >> 8).astype(np.uint8)).save(files["JPEG q95 2.1 MP"], quality=95)
    return files


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in inputs(Path(tmp)).items():
            data = path.read_bytes()
            rows = {
                "Pillow": median_ms(lambda d=data: pillow_grey(d), args.repeats),
                "OpenCV": median_ms(lambda d=data: opencv_grey(d), args.repeats),
                "chestlens read_image": median_ms(lambda p=path: read_image(p), args.repeats),
            }
            if name.startswith("JPEG"):
                rows["Pillow draft (>= 512 px)"] = median_ms(lambda d=data: pillow_draft(d), args.repeats)
                rows["OpenCV reduced 1/2"] = median_ms(lambda d=data: opencv_reduced(d), args.repeats)
            report[name] = rows
        dicom = sample_path("RG1_UNCR.dcm")
        report["DICOM 3.6 MP (uncompressed)"] = {
            "chestlens read_image": median_ms(lambda: read_image(dicom), args.repeats)
        }
    print("| input | decoder | median ms |\n|---|---|---|")
    for name, rows in report.items():
        for decoder, ms in rows.items():
            print(f"| {name} | {decoder} | {ms:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
