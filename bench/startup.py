"""Start-up cost of screening one image from the command line, as a new user meets it.

    python bench/startup.py [--repeats 5] [--python PATH] [--json OUT.json]

Times, with ``--python`` (default: this interpreter; point it at a plain ``pip install chestlens`` venv
to measure the install without PyTorch): the wall time of ``chestlens predict RG1_UNCR.dcm --json`` in
a fresh process (import, model loading, screening, output), and of ``import chestlens.pipeline.screener``
alone, each the median of ``--repeats`` runs after one warm-up run (file cache). Prints a table; nothing is
asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def wall_ms(command: list[str], repeats: int) -> float:
    """Median wall time (ms) of ``command`` over ``repeats`` runs after one warm-up run."""
    subprocess.run(command, capture_output=True, check=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--python", default=sys.executable, help="interpreter of the install to measure")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    python = args.python
    sample = subprocess.run(
        [python, "-c", "from chestlens.io.samples import sample_path; print(sample_path('RG1_UNCR.dcm'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    has_torch = subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0
    report = {
        "python": python,
        "torch_installed": has_torch,
        "repeats": args.repeats,
        "predict_one_image_ms": wall_ms(
            [python, "-m", "chestlens.cli", "predict", sample, "--json"], args.repeats
        ),
        "import_screener_ms": wall_ms([python, "-c", "import chestlens.pipeline.screener"], args.repeats),
    }
    print("| install | `chestlens predict RG1_UNCR.dcm --json` | `import chestlens.pipeline.screener` |")
    print("|---|---:|---:|")
    install = "with PyTorch" if has_torch else "without PyTorch"
    print(f"| {install} | {report['predict_one_image_ms']:.0f} ms | {report['import_screener_ms']:.0f} ms |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
