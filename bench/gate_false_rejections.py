"""False rejections of the input quality gate on the shared data, and its verdict on known negatives.

    python bench/gate_false_rejections.py [--root DATA] [--json OUT.json] [--threads 1]

Every input is judged by the production path: a :class:`~chestlens.pipeline.screener.Screener` with no
classifier and no lesion segmenter reads it (as ``chestlens predict`` does), runs the gate's DICOM tag and
pixel checks, downsamples a radiograph or picture to the working image, runs the bundled
``lungs-segmenter`` graph (ONNX Runtime) on it, then the lung-field and view checks; the verdict is the
screener's. The lung-field statistics reported are those of the probability map that the screener's own
lung-segmenter call returned (:class:`LungTap` keeps it; there is no second lung inference). Inputs that
the tag or pixel checks reject never reach the lung stage and have no statistics. The inputs:

* every image of every X-ray source under the data root (``--root``, else ``$CHESTLENS_DATA``, else
  ``../shared/data``), each passed to the screener by its path. A rejected frontal image is a false
  rejection; images the source lists as lateral (view ``L``) are not frontal, so rejecting them is right
  and accepting them is reported as a miss;
* every slice of every COVID-CT-MD series, each file read on its own (one CT slice in HU), and each series
  as one volume;
* CT slices distributed as JPEG pictures (Inf-Net), reported apart: pictures carry no Hounsfield units,
  so the gate judges them as radiographs, and its ``ct_picture`` check must reject them (they are that
  check's own training pictures: its out-of-fold figures are in ``ct_picture_model.json``);
* the negatives of the gate's calibration: non-chest DICOM files shipped by pydicom and pydicom-data, as
  DICOM and as 8-bit grey PNG without tags, and scikit-image's pictures (when scikit-image is installed).

It prints a table per source, every false rejection with its reason, the rejected CT slices, the
negatives that were accepted, the range of each lung-field statistic over the frontal radiographs with
the negatives closest to it (the calibration margins: ``*`` marks a negative that fails that statistic
alone at the current thresholds), and with ``--json`` writes all of it and every verdict to a file.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from chestlens.data.records import Sample
from chestlens.data.registry import load_samples
from chestlens.data.root import data_root
from chestlens.io import read_image, scan_series
from chestlens.io.samples import sample_path
from chestlens.pipeline import gate
from chestlens.pipeline.gate import NON_FRONTAL_VIEWS, lung_field_stats
from chestlens.pipeline.screener import Screener, Source
from chestlens.runtime import GraphRunner

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
#: Each lung-field statistic, the side its threshold bounds (``low``: values below fail) and the threshold.
BOUNDS: dict[str, tuple[tuple[str, float], ...]] = {
    "area": (("low", gate.LUNG_AREA_RANGE[0]), ("high", gate.LUNG_AREA_RANGE[1])),
    "confidence": (("low", gate.MIN_LUNG_CONFIDENCE),),
    "outline": (("high", gate.MAX_OUTLINE_COMPLEXITY),),
    "extent": (("low", gate.MIN_LUNG_EXTENT),),
    "solidity": (("low", gate.MIN_LUNG_SOLIDITY),),
    "centre_row": (("high", gate.MAX_LUNG_CENTRE_ROW),),
}
#: Negatives listed per statistic and side, nearest to the frontal range first.
CLOSEST = 4


@dataclass
class Record:
    """The screener's gate verdict on one input."""

    group: str  # source name, "covid_ct_md slices", "negatives"...
    name: str
    expected: str  # "accept" or "reject"
    accepted: bool
    reason: str
    failed: list[str] = field(default_factory=list)  # names of the failed checks, in order
    stats: dict[str, float] | None = None  # lung-field statistics (inputs that reached the lung stage)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def wrong(self) -> bool:
        return self.accepted != (self.expected == "accept")


class LungTap:
    """The screener's own lung segmenter, keeping the probabilities its last call returned.

    Stands in for the segmenter inside the screener's lung stage: every call goes to the same graph, so
    the statistics computed from :attr:`last` are those of the map the lung-field check judged.
    """

    def __init__(self, graph: GraphRunner) -> None:
        self.graph, self.spec, self.path, self.runtime = graph, graph.spec, graph.path, graph.runtime
        self.last: np.ndarray | None = None

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.graph.run(feeds)
        self.last = outputs["probabilities"]
        return outputs


class Judge:
    """Gate verdicts of the production path: a screener with no classifier and no lesion segmenter."""

    def __init__(self, threads: int) -> None:
        self.screener = Screener(classifier=None, lesions=[], cam=None, threads=threads, read_workers=1)
        if self.screener.lungs is None:
            raise SystemExit("the screener loaded no lung segmenter")
        self.tap = LungTap(self.screener.lungs)
        self.screener.find_lungs.segmenter = self.tap  # type: ignore[assignment]

    def __call__(self, source: Source, name: str | None = None) -> tuple[bool, str, list[str], dict | None]:
        """``(accepted, reason, failed checks, lung-field statistics or None)`` for one input."""
        self.tap.last = None
        verdict = self.screener.screen(source, name=name).result.gate
        failed = [c.name for c in verdict.checks if not c.passed]
        if self.tap.last is None:
            return verdict.accepted, verdict.reason, failed, None
        (probability,) = self.tap.last[:, 0]  # screen() runs one image: one map
        stats = lung_field_stats(probability)
        lung_check = next(c for c in verdict.checks if c.name == "lung_fields")
        assert gate.check_lung_fields(probability) == lung_check, "not the map the screener judged"
        return verdict.accepted, verdict.reason, failed, asdict(stats)


def is_lateral(view: str | None) -> bool:
    return view is not None and bool(NON_FRONTAL_VIEWS.intersection(view.upper().split()))


def xray_records(samples: list[Sample], judge: Judge) -> Iterator[Record]:
    for sample in samples:
        accepted, reason, failed, stats = judge(sample.path)
        expected = "reject" if is_lateral(sample.view) else "accept"
        extra = {"view": str(sample.view)}
        yield Record(sample.source, sample.uid, expected, accepted, reason, failed, stats, extra)


def ct_records(series: Sample, judge: Judge) -> Iterator[Record]:
    """Each slice file on its own (numbered from the most inferior), then the whole series."""
    info = scan_series(series.path)[0]
    positions = info.positions_mm or (None,) * len(info.files)
    for index, (path, z) in enumerate(zip(info.files, positions, strict=True)):
        accepted, reason, failed, _ = judge(path)
        where = {"slice": f"{index + 1}/{len(info.files)}", "z_mm": "" if z is None else f"{z:.1f}"}
        name = f"{series.uid}/{path.name}"
        yield Record(f"{CT_MD} slices", name, "accept", accepted, reason, failed, extra=where)
    accepted, reason, failed, _ = judge(series.path)
    yield Record(f"{CT_MD} series", series.uid, "accept", accepted, reason, failed)


def png_bytes(pixels: np.ndarray) -> bytes:
    """8-bit PNG of a ``[0, 1]`` grey image (or a uint8 grey/RGB array) with no metadata."""
    array = pixels if pixels.dtype == np.uint8 else (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def negative_records(judge: Judge) -> Iterator[Record]:
    for name in NEGATIVE_DICOM:
        path = sample_path(name)
        yield Record("negatives", name, "reject", *judge(path))
        image = read_image(path)
        if image.meta.pixel_unit == "HU":
            continue
        frame = image.pixels if image.pixels.ndim == 2 else image.pixels[0]
        png_name = f"{name} as grey PNG"
        yield Record("negatives", png_name, "reject", *judge(png_bytes(frame), name=png_name))
    try:
        from skimage import data as pictures
    except ImportError:
        print("scikit-image is not installed: its pictures are skipped")
        return
    for name in NEGATIVE_PICTURES:
        array = getattr(pictures, name)()
        array = (array * 255).astype(np.uint8) if array.dtype == bool else array
        yield Record(
            "negatives", f"skimage.data.{name}", "reject", *judge(png_bytes(array), name=f"{name}.png")
        )


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


def out_of_bounds(stats: dict[str, float]) -> list[str]:
    """The statistics outside the current thresholds (``area`` once, whichever side)."""
    return [
        name
        for name, bounds in BOUNDS.items()
        if any(stats[name] < t if side == "low" else stats[name] > t for side, t in bounds)
    ]


def stat_ranges(records: list[Record], xray_sources: set[str]) -> dict[str, dict]:
    """Per lung-field statistic: the range over the frontal X-ray images, the threshold(s), and the
    negatives (with lung-field statistics) closest to that range on each bounded side, each with
    ``alone`` = it fails this statistic and no other."""
    frontal = [r.stats for r in records if r.stats and r.expected == "accept" and r.group in xray_sources]
    negatives = [r for r in records if r.stats and r.group == "negatives"]
    ranges: dict[str, dict] = {}
    for name, bounds in BOUNDS.items():
        chest = [s[name] for s in frontal]
        row: dict = {
            "frontal_min": min(chest, default=float("nan")),
            "frontal_max": max(chest, default=float("nan")),
            "negatives_min": min((r.stats[name] for r in negatives), default=float("nan")),  # type: ignore[index]
            "negatives_max": max((r.stats[name] for r in negatives), default=float("nan")),  # type: ignore[index]
        }
        for side, threshold in bounds:
            low = side == "low"
            ordered = sorted(negatives, key=lambda r: r.stats[name], reverse=low)  # type: ignore[index]
            beyond = row["frontal_min"] if low else row["frontal_max"]
            outside = [r for r in ordered if (r.stats[name] < beyond if low else r.stats[name] > beyond)]  # type: ignore[index]
            row[f"threshold_{side}"] = threshold
            row[f"closest_{side}"] = [
                {
                    "name": r.name,
                    "value": r.stats[name],  # type: ignore[index]
                    "alone": out_of_bounds(r.stats) == [name],  # type: ignore[arg-type]
                }
                for r in outside[:CLOSEST]
            ]
        ranges[name] = row
    return ranges


def print_ranges(ranges: dict[str, dict]) -> None:
    print(
        f"\n{'lung-field statistic':<22}{'frontal min':>13}{'frontal max':>13}  threshold, closest negatives"
    )
    for name, row in ranges.items():
        print(f"{name:<22}{row['frontal_min']:>13.4f}{row['frontal_max']:>13.4f}")
        for side in ("low", "high"):
            if f"threshold_{side}" not in row:
                continue
            closest = ", ".join(
                f"{c['name']} {c['value']:.4f}{'*' if c['alone'] else ''}" for c in row[f"closest_{side}"]
            )
            print(f"{'':<48}{side} {row[f'threshold_{side}']:g}: {closest or '-'}")


def json_text(summary: dict, records: list[Record]) -> str:
    """The summary, indented, then ``records``: every verdict, one line each (statistics to 6 digits)."""
    rows = []
    for r in records:
        row = asdict(r)
        row["stats"] = None if r.stats is None else {k: round(v, 6) for k, v in r.stats.items()}
        rows.append(json.dumps(row))
    head = json.dumps({**summary, "records": []}, indent=1)
    return head[: head.rindex("[]")] + "[\n  " + ",\n  ".join(rows) + "\n ]\n}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="data root (default: $CHESTLENS_DATA)")
    parser.add_argument("--json", type=Path, default=None, help="write the summary and every verdict here")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for the lung segmenter")
    args = parser.parse_args()

    root = data_root(args.root)
    if root is None or not root.is_dir():
        raise SystemExit("no data root: pass --root or set CHESTLENS_DATA")
    judge = Judge(args.threads)
    samples = load_samples(root)
    xray = [s for s in samples if s.modality == "xray"]
    xray_sources = {s.source for s in xray}
    started = time.perf_counter()
    records = list(xray_records(xray, judge))
    for series in (s for s in samples if s.source == CT_MD):
        records += ct_records(series, judge)
    for record in xray_records([s for s in samples if s.source == CT_PICTURES], judge):
        record.group, record.expected = f"{CT_PICTURES} (CT pictures)", "reject"
        records.append(record)
    records += negative_records(judge)
    seconds = time.perf_counter() - started

    print_table(records)
    on_xray = [r for r in records if r.group in xray_sources]
    false_rejections = [r for r in on_xray if r.wrong and not r.accepted]
    lateral_accepted = [r for r in on_xray if r.wrong and r.accepted]
    negatives = [r for r in records if r.group == "negatives"]
    negatives_accepted = [r for r in negatives if r.accepted]
    print_list("False rejections (frontal chest radiographs rejected)", false_rejections)
    print_list("Lateral views accepted", lateral_accepted)
    print_list("CT-MD slices rejected", [r for r in records if r.group.startswith(CT_MD) and not r.accepted])
    ct_pictures_accepted = [r for r in records if r.group.startswith(CT_PICTURES) and r.accepted]
    print_list("CT pictures accepted", ct_pictures_accepted)
    print_list("Negatives accepted", negatives_accepted)
    print_list("Negatives rejected before the lung stage", [r for r in negatives if r.stats is None])
    ranges = stat_ranges(records, xray_sources)
    print_ranges(ranges)
    print(f"\n{len(records)} inputs in {seconds:.0f} s")
    if args.json is not None:
        payload = {
            "command": " ".join(["python", *sys.argv]),
            "data_root": str(root),
            "path": "Screener(classifier=None, lesions=[], cam=None), onnx lungs-segmenter",
            "seconds": seconds,
            "inputs": len(records),
            "frontal_radiographs": sum(r.expected == "accept" for r in on_xray),
            "false_rejections": [r.name for r in false_rejections],
            "lateral_accepted": [r.name for r in lateral_accepted],
            "ct_pictures_accepted": [r.name for r in ct_pictures_accepted],
            "negatives_accepted": [r.name for r in negatives_accepted],
            "lung_field_ranges": ranges,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json_text(payload, records))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
