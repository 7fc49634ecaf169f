"""Every chestlens benchmark in one run: a Markdown table on stdout, the JSON report, the README block.

    python bench/run_all.py [--quick] [--json bench/results/latest.json] [--readme docs/user-guide.md]
                            [--scaling 100,1000,10000] [--repeats 10] [--skip scaling,serve]
                            [--reuse EARLIER.json] [--serve-args ARGS] [--browser-args ARGS]

Sections (each with the machine description and its anchor measured in the same run):

* ``training``: data loading + augmentation vs training step, images/s per recipe, and a naive per-image
  seed-style loop (``train_throughput.py``);
* ``latency``: screening latency per stage on a 2 MP PNG and a 3.6 MP DICOM, with torchxrayvision's
  DenseNet-121 as the anchor, and full-screener batch throughput (``pipeline_latency.py``);
* ``batch`` and ``limit``: classifier throughput with eager PyTorch, torch.compile and ONNX Runtime,
  model FLOPs and the measured peak matmul throughput (``batch_throughput.py``);
* ``scaling``: time and peak memory at growing image counts (``scaling.py``);
* ``serve`` and ``browser``: ``serve_load.py`` (the web service under load) and ``browser_latency.py``
  (in-browser ONNX) when those scripts exist; each is called as ``main(argv)`` with
  ``--json PATH`` (``--quick`` in quick mode, and ``--serve-args`` / ``--browser-args``) and its JSON
  goes into the report as is. A missing script is reported as not available; a failing section is
  reported with its error, and the others still run.

``--skip`` with ``--reuse`` re-measures some sections and keeps the others of an earlier report (each
reused section names its report and date). ``--quick`` uses tiny counts and skips torch.compile: a
smoke test of the code paths (CI runs it), not a measurement. Nothing is asserted about speed.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import shlex
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import batch_throughput  # noqa: E402
import pipeline_latency  # noqa: E402
import readme  # noqa: E402
import scaling  # noqa: E402
import train_throughput  # noqa: E402

OPTIONAL = {"serve": "serve_load", "browser": "browser_latency"}


def machine() -> dict[str, Any]:
    """CPU, cores, threads, torch, GPU (name or None) and the load average."""
    info = pipeline_latency.machine()
    info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info


def latency(quick: bool, repeats: int) -> dict[str, Any]:
    """Per-stage latency and screener batch throughput (the functions of ``pipeline_latency.py``)."""
    from chestlens.io.samples import sample_path
    from chestlens.pipeline.screener import Screener

    repeats = 2 if quick else repeats
    with tempfile.TemporaryDirectory() as tmp:
        inputs = {
            "RG1 PNG 2.1 MP": pipeline_latency.two_megapixel_png(Path(tmp)),
            "RG1 DICOM 3.6 MP": sample_path("RG1_UNCR.dcm"),
        }
        n = 4 if quick else 48
        report: dict[str, Any] = {
            "repeats": repeats,
            "stages": list(pipeline_latency.STAGES),
            "latency": {},
            "anchor": {k: pipeline_latency.time_anchor(p, repeats) for k, p in inputs.items()},
            "throughput": {},
        }
        for runtime in pipeline_latency.RUNTIMES:
            screener = Screener(runtime=runtime, device="cpu")
            plain = Screener(runtime=runtime, device="cpu", cam=None)
            for name, path in inputs.items():
                key = f"{runtime}: {name}"
                report["latency"][key] = pipeline_latency.time_screener(screener, path, repeats)
                report["throughput"][key] = {
                    "with heatmap": pipeline_latency.throughput(screener, path, n, 8),
                    "no heatmap": pipeline_latency.throughput(plain, path, n, 8),
                }
        return report


def optional(module_name: str, quick: bool, extra: str = "") -> dict[str, Any]:
    """Run ``bench/<module_name>.py``'s ``main(argv)`` (``argv``: ``--json``, ``--quick`` when quick, and
    the ``extra`` options) if it exists and return the JSON it wrote."""
    if not (BENCH / f"{module_name}.py").is_file():
        return {"status": f"not available (bench/{module_name}.py is not in this checkout)"}
    module = importlib.import_module(module_name)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        module.main(["--json", str(out), *(["--quick"] if quick else []), *shlex.split(extra)])
        return json.loads(out.read_text())


def _guarded(name: str, section: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    try:
        return section()
    except (Exception, SystemExit) as error:  # one broken section must not lose the others
        traceback.print_exc()
        return {"error": f"{type(error).__name__}: {error}"}


def _origin(path: Path, previous: dict[str, Any]) -> str:
    """Where a reused section was measured: the report file, its date, threads and load average."""
    host = previous["machine"]
    return (
        f"{path} ({previous['date']}; {host['torch_threads']} threads, "
        f"load average at start {host['load_average_1min']:.2f})"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    skip = set(filter(None, args.skip.split(",")))
    counts = [int(c) for c in (args.scaling or ("16,32" if args.quick else "100,1000,10000")).split(",")]
    sections: dict[str, Callable[[], dict[str, Any]]] = {
        "training": lambda: train_throughput.run(args.quick),
        "latency": lambda: latency(args.quick, args.repeats),
        "batch": lambda: batch_throughput.run(args.quick),
        "scaling": lambda: scaling.run(counts),
        "serve": lambda: optional(OPTIONAL["serve"], args.quick, args.serve_args),
        "browser": lambda: optional(OPTIONAL["browser"], args.quick, args.browser_args),
    }
    report: dict[str, Any] = {
        "command": "python bench/run_all.py " + shlex.join(args.argv),
        "mode": "quick" if args.quick else "full",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
    }
    previous = json.loads(args.reuse.read_text()) if args.reuse else {}
    for name, section in sections.items():
        if name not in skip:
            report[name] = _guarded(name, section)
        elif name in previous:
            report[name] = {**previous[name], "reused_from": _origin(args.reuse, previous)}
        else:
            report[name] = {"status": "skipped (--skip)"}
    batch = report["batch"]
    report["limit"] = batch if "flops_per_image" in batch else {"status": "see batch"}
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts, no torch.compile (smoke test)")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument(
        "--readme", type=Path, help="rewrite the bench block of this file (docs/user-guide.md)"
    )
    parser.add_argument("--scaling", help="image counts of the scaling curve (default 100,1000,10000)")
    parser.add_argument("--repeats", type=int, default=10, help="latency repeats per input")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip")
    parser.add_argument("--reuse", type=Path, help="an earlier report: skipped sections are taken from it")
    parser.add_argument("--serve-args", default="", help="more options for serve_load.py")
    parser.add_argument("--browser-args", default="", help="more options for browser_latency.py")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    report = run(args)
    table = readme.render(report)
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.readme:
        readme.update_readme(args.readme, table)
    return report


if __name__ == "__main__":
    main()
