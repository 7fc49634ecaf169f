"""False rejections of the input quality gate on the shared data, and its verdict on known negatives.

    python bench/gate_false_rejections.py [--root DATA] [--json OUT.json] [--threads 1]

The whole gate (:func:`chestlens.pipeline.gate.run_gate`: DICOM tags, pixel checks and, for pictures and
radiographs, the lung fields of the bundled ``lungs-segmenter``) runs on:

* every image of every X-ray source under the data root (``--root``, else ``$CHESTLENS_DATA``, else
  ``../shared/data``), each read with :func:`chestlens.io.read_image`. A rejected frontal image is a false
  rejection; images the source lists as lateral (view ``L``) are not frontal, so rejecting them is right
  and accepting them is reported as a miss;
* every slice of every COVID-CT-MD series, each file read on its own (one CT slice in HU), and each series
  as one volume;
* CT slices distributed as JPEG pictures (Inf-Net), reported apart: pictures carry no Hounsfield units,
  so the gate judges them as radiographs and they are outside what it accepts;
* the negatives of the gate's calibration: non-chest DICOM files shipped by pydicom and pydicom-data, as
  DICOM and as 8-bit grey PNG without tags, and scikit-image's pictures (when scikit-image is installed).

It prints a table per source, every false rejection with its reason, the rejected CT slices, the
negatives that were accepted, and the range of each lung-field statistic (the calibration margins).
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import chestlens
from chestlens.data.records import Sample
from chestlens.data.registry import load_samples
from chestlens.data.root import data_root
from chestlens.data.transforms import preprocess
from chestlens.io import MedicalImage, read_image, scan_series
from chestlens.io.samples import sample_path
from chestlens.models.bundle import Bundle
from chestlens.pipeline.gate import NON_FRONTAL_VIEWS, LungFieldStats, lung_field_stats, run_gate

CT_MD = "covid_ct_md"
CT_PICTURES = "infnet"
#: Non-chest DICOM files shipped by pydicom / pydicom-data (see chestlens.io.samples).
NEGATIVE_DICOM = (
    "RG3_UNCR.dcm", "RG3_J2KI.dcm", "MR_small.dcm", "MR2_UNCR.dcm", "emri_small.dcm",
    "MR-SIEMENS-DICOM-WithOverlays.dcm", "US1_UNCR.dcm", "gdcm-US-ALOKA-16.dcm", "OBXXXX1A.dcm",
    "examples_ybr_color.dcm", "OT-PAL-8-face.dcm", "SC_rgb.dcm", "SC_rgb_jpeg.dcm", "JPEG2000.dcm",
    "693_UNCR.dcm",
)  # fmt: skip
#: scikit-image pictures (bundled with the package, no download).
NEGATIVE_PICTURES = (
    "astronaut", "camera", "chelsea", "coffee", "moon", "page", "text", "coins", "horse", "grass", "gravel",
    "brick", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "clock",
)  # fmt: skip
STAT_NAMES = ("area", "confidence", "outline", "extent", "solidity", "centre_row")


@dataclass
class Record:
    """The gate's verdict on one input."""

    group: str  # source name, "covid_ct_md slices", "negatives"...
    name: str
    expected: str  # "accept", "reject" or "out of scope"
    accepted: bool
    reason: str
    stats: dict[str, float] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def wrong(self) -> bool:
        return self.expected != "out of scope" and self.accepted != (self.expected == "accept")


class LungSegmenter:
    """The bundled lung segmenter: ``(S, S)`` lung probabilities of a 2-D picture or radiograph."""

    def __init__(self, bundle: Bundle) -> None:
        self.spec = bundle.spec.preprocess
        self.model = bundle.build_model()

    @torch.no_grad()
    def __call__(self, image: MedicalImage) -> np.ndarray | None:
        if image.meta.pixel_unit == "HU" or image.pixels.ndim != 2:
            return None
        return torch.sigmoid(self.model(preprocess(image, self.spec)[None]))[0, 0].numpy()


def judge(image: MedicalImage, lungs: LungSegmenter) -> tuple[bool, str, LungFieldStats | None]:
    probability = lungs(image)
    verdict = run_gate(image, probability)
    return verdict.accepted, verdict.reason, None if probability is None else lung_field_stats(probability)


def is_lateral(view: str | None) -> bool:
    return view is not None and bool(NON_FRONTAL_VIEWS.intersection(view.upper().split()))


def xray_records(samples: list[Sample], lungs: LungSegmenter) -> Iterator[Record]:
    for sample in samples:
        accepted, reason, stats = judge(read_image(sample.path), lungs)
        yield Record(
            group=sample.source,
            name=sample.uid,
            expected="reject" if is_lateral(sample.view) else "accept",
            accepted=accepted,
            reason=reason,
            stats=None if stats is None else asdict(stats),
            extra={"view": str(sample.view)},
        )


def ct_records(series: Sample, lungs: LungSegmenter) -> Iterator[Record]:
    """Each slice file on its own (numbered from the most inferior), then the whole series."""
    info = scan_series(series.path)[0]
    positions = info.positions_mm or (None,) * len(info.files)
    for index, (path, z) in enumerate(zip(info.files, positions, strict=True)):
        accepted, reason, _ = judge(read_image(path), lungs)
        where = {"slice": f"{index + 1}/{len(info.files)}", "z_mm": "" if z is None else f"{z:.1f}"}
        yield Record(f"{CT_MD} slices", f"{series.uid}/{path.name}", "accept", accepted, reason, extra=where)
    accepted, reason, _ = judge(read_image(series.path), lungs)
    yield Record(f"{CT_MD} series", series.uid, "accept", accepted, reason)


def png_bytes(pixels: np.ndarray) -> bytes:
    """8-bit PNG of a ``[0, 1]`` grey image (or a uint8 grey/RGB array) with no metadata."""
    array = pixels if pixels.dtype == np.uint8 else (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def negative_records(lungs: LungSegmenter) -> Iterator[Record]:
    for name in NEGATIVE_DICOM:
        image = read_image(sample_path(name))
        accepted, reason, stats = judge(image, lungs)
        yield Record("negatives", name, "reject", accepted, reason, None if stats is None else asdict(stats))
        if image.meta.pixel_unit == "HU":
            continue
        frame = image.pixels if image.pixels.ndim == 2 else image.pixels[0]
        as_png = read_image(png_bytes(frame), name=f"{name}.png")
        accepted, reason, stats = judge(as_png, lungs)
        yield Record("negatives", f"{name} as grey PNG", "reject", accepted, reason, asdict(stats))
    try:
        from skimage import data as pictures
    except ImportError:
        print("scikit-image is not installed: its pictures are skipped")
        return
    for name in NEGATIVE_PICTURES:
        array = getattr(pictures, name)()
        array = (array * 255).astype(np.uint8) if array.dtype == bool else array
        accepted, reason, stats = judge(read_image(png_bytes(array), name=f"{name}.png"), lungs)
        stats_dict = None if stats is None else asdict(stats)
        yield Record("negatives", f"skimage.data.{name}", "reject", accepted, reason, stats_dict)


def print_table(records: list[Record]) -> None:
    header = ("inputs", "should pass", "accepted", "rejected", "false rej.", "false acc.")
    print(f"{'source':<28}" + "".join(f"{h:>12}" for h in header))
    for group in dict.fromkeys(r.group for r in records):
        rows = [r for r in records if r.group == group]
        accepted = sum(r.accepted for r in rows)
        counts = (
            len(rows),
            sum(r.expected == "accept" for r in rows),
            accepted,
            len(rows) - accepted,
            sum(r.wrong and not r.accepted for r in rows),
            sum(r.wrong and r.accepted for r in rows),
        )
        print(f"{group:<28}" + "".join(f"{c:>12}" for c in counts))


def print_list(title: str, records: list[Record]) -> None:
    print(f"\n{title}: {len(records)}")
    for r in records:
        where = ", ".join(f"{k} {v}" for k, v in r.extra.items() if v)
        print(f"  {r.name}{f' ({where})' if where else ''}: {r.reason}")


def stat_ranges(records: list[Record], xray_sources: set[str]) -> dict[str, dict[str, float]]:
    """Per lung-field statistic: min/max over the frontal X-ray images and over the negatives."""
    frontal = [r.stats for r in records if r.stats and r.expected == "accept" and r.group in xray_sources]
    negative = [r.stats for r in records if r.stats and r.group == "negatives"]
    ranges = {}
    for name in STAT_NAMES:
        chest = [s[name] for s in frontal]
        ranges[name] = {
            "frontal_min": min(chest, default=float("nan")),
            "frontal_max": max(chest, default=float("nan")),
            "negatives_min": min((s[name] for s in negative), default=float("nan")),
            "negatives_max": max((s[name] for s in negative), default=float("nan")),
        }
    return ranges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="data root (default: $CHESTLENS_DATA)")
    parser.add_argument("--json", type=Path, default=None, help="write every verdict as JSON here")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the lung segmenter")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    root = data_root(args.root)
    if root is None or not root.is_dir():
        raise SystemExit("no data root: pass --root or set CHESTLENS_DATA")
    lungs = LungSegmenter(chestlens.load("lungs-segmenter"))
    samples = load_samples(root)
    xray = [s for s in samples if s.modality == "xray"]
    xray_sources = {s.source for s in xray}
    started = time.perf_counter()
    records = list(xray_records(xray, lungs))
    for series in (s for s in samples if s.source == CT_MD):
        records += ct_records(series, lungs)
    for record in xray_records([s for s in samples if s.source == CT_PICTURES], lungs):
        record.group, record.expected = f"{CT_PICTURES} (CT pictures)", "out of scope"
        records.append(record)
    records += negative_records(lungs)
    seconds = time.perf_counter() - started

    print_table(records)
    on_xray = [r for r in records if r.group in xray_sources]
    false_rejections = [r for r in on_xray if r.wrong and not r.accepted]
    print_list("False rejections (frontal chest radiographs rejected)", false_rejections)
    print_list(
        "Lateral views accepted (undetectable without DICOM tags)",
        [r for r in on_xray if r.wrong and r.accepted],
    )
    print_list("CT-MD slices rejected", [r for r in records if r.group.startswith(CT_MD) and not r.accepted])
    print_list("Negatives accepted", [r for r in records if r.group == "negatives" and r.accepted])
    ranges = stat_ranges(records, xray_sources)
    print(
        f"\n{'lung-field statistic':<22}"
        + "".join(f"{k.replace('_', ' '):>15}" for k in next(iter(ranges.values())))
    )
    for name, row in ranges.items():
        print(f"{name:<22}" + "".join(f"{value:>15.4f}" for value in row.values()))
    print(f"\n{len(records)} inputs in {seconds:.0f} s")
    if args.json is not None:
        payload = {
            "data_root": str(root),
            "seconds": seconds,
            "false_rejections": len(false_rejections),
            "lung_field_ranges": ranges,
            "records": [asdict(r) for r in records],
        }
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
