"""The bad-input corpus of ``tests/robustness`` through ``chestlens info`` and ``chestlens predict`` of one
or more source trees: tracebacks, exit codes, one-line errors and peak memory, side by side.

    python bench/corpus_before_after.py [--tree before=/path/to/old/src] [--tree after=src] [--json OUT]

Every kind of the corpus (51, built once into a temporary folder from the pip DICOM samples and, when
``$CHESTLENS_DATA`` is set, real radiographs and COVID-CT-MD slices) is given to ``chestlens info`` in its
own process, then the whole corpus folder to one ``chestlens predict --json -q --device cpu``. A tree is
run with ``PYTHONPATH=<tree>``, so an older commit's ``src`` (``git worktree add /tmp/old <commit>``) runs
with this environment's packages. Peak resident memory is each child's ``ru_maxrss``, read by a small
launcher process (a child forked straight from a large parent would count the parent's pages).
Prints a table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "robustness"))

from corpus import KINDS, build_corpus, load_sources  # noqa: E402  (the tests' corpus builder)

LAUNCHER = (
    "import pathlib, resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
    "pathlib.Path(sys.argv[1]).write_text(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
    "sys.exit(code)"
)


def run_measured(command: list[str], tree: Path, scratch: Path) -> tuple[int, str, str, float, float]:
    """``(exit code, stdout, stderr, peak MiB, seconds)`` of ``command`` run with ``PYTHONPATH=tree``."""
    peak = scratch / "peak"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(peak), *command],
        capture_output=True,
        text=True,
        errors="replace",
        env=env,
        timeout=900,
    )
    seconds = time.perf_counter() - started
    return done.returncode, done.stdout, done.stderr, int(peak.read_text()) / 1024, seconds


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("chestlens: error:")]


def measure(tree: Path, paths: dict[str, Path], corpus: Path, scratch: Path) -> dict[str, object]:
    """The info and predict figures of one source tree."""
    cli = [sys.executable, "-m", "chestlens.cli"]
    info = {"tracebacks": 0, "other_exit_codes": 0, "peak_mib": 0.0, "worst_kind": None}
    for kind in KINDS:
        code, stdout, stderr, peak, _ = run_measured([*cli, "info", str(paths[kind.name])], tree, scratch)
        info["tracebacks"] += "Traceback" in stdout + stderr
        info["other_exit_codes"] += code not in (0, 2)
        if peak > info["peak_mib"]:
            info["peak_mib"], info["worst_kind"] = round(peak, 1), kind.name
    command = [*cli, "predict", str(corpus), "--json", "-q", "--device", "cpu"]
    code, stdout, stderr, peak, seconds = run_measured(command, tree, scratch)
    try:
        entries = len(json.loads(stdout))
    except json.JSONDecodeError:
        entries = None
    predict = {
        "exit": code,
        "traceback": "Traceback" in stderr,
        "entries": entries,
        "one_line_errors": len(error_lines(stderr)),
        "peak_mib": round(peak, 1),
        "seconds": round(seconds, 1),
    }
    return {"info": info, "predict": predict}


def table(results: dict[str, dict]) -> list[str]:
    lines = [
        "| tree | info: tracebacks | info: other exit codes | info: worst peak MiB | predict: exit | "
        "predict: traceback | predict: JSON entries | predict: one-line errors | predict: peak MiB | s |",
        "|---|---:|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    for name, result in results.items():
        info, predict = result["info"], result["predict"]
        lines.append(
            f"| {name} | {info['tracebacks']} | {info['other_exit_codes']} | {info['peak_mib']} "
            f"({info['worst_kind']}) | {predict['exit']} | {predict['traceback']} | {predict['entries']} | "
            f"{predict['one_line_errors']} | {predict['peak_mib']} | {predict['seconds']} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tree", action="append", help="NAME=PATH of a source tree's src folder (default: after=src)"
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    trees = dict(item.split("=", 1) for item in (args.tree or [f"after={REPO / 'src'}"]))
    with tempfile.TemporaryDirectory(prefix="chestlens-corpus-") as work:
        corpus, scratch = Path(work) / "corpus", Path(work) / "scratch"
        scratch.mkdir()
        paths = build_corpus(corpus, load_sources())
        results = {name: measure(Path(path), paths, corpus, scratch) for name, path in trees.items()}
    print(f"{len(KINDS)} kinds; {os.cpu_count()} CPUs")
    print("\n".join(table(results)))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
