"""Markdown tables of a ``bench/run_all.py`` report, and the user guide's bench block made from them.

    python bench/readme.py bench/results/latest.json [--readme docs/user-guide.md]

``render(report)`` is what ``run_all.py`` prints; ``update_readme`` replaces everything between the
``<!-- bench:start -->`` and ``<!-- bench:end -->`` lines of that file with it (atomically).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

START = "<!-- bench:start -->"
END = "<!-- bench:end -->"


def _num(value: Any, digits: int = 1) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _problem(section: dict[str, Any] | None) -> str | None:
    """One line when a section did not run (not available, skipped, failed), else None."""
    if section is None:
        return "not run"
    if "status" in section:
        return str(section["status"])
    if "error" in section:
        return f"failed: {section['error']}"
    return None


def _machine(report: dict[str, Any]) -> list[str]:
    m = report["machine"]
    gpu = m.get("gpu") or "no GPU"
    return [
        f"Machine: {m['cpu']}, {m['cores']} cores, {gpu}; torch {m['torch']}, {m['torch_threads']} threads; "
        f"load average at start {m['load_average_1min']:.2f}. Run: `{report['command']}` "
        f"({report['mode']} mode, {report['date']}).",
    ]


def _training(section: dict[str, Any]) -> list[str]:
    rows = [
        [
            name,
            f"{r['input_size']} px",
            str(r["batch"]),
            _num(r["loader_img_per_s"]),
            _num(r["train_step_img_per_s"]),
            "**yes**" if r["loader_is_bottleneck"] else "no",
        ]
        for name, r in section["recipes"].items()
    ]
    anchor = section["anchor_naive_per_image_loop_img_per_s"]
    name = "anchor: naive per-image loop (seed style), EfficientNet-Lite0"
    rows.append([name, "192 px", "1", "-", _num(anchor), "-"])
    header = ["recipe", "input", "batch", "loader img/s", "train step img/s", "loader bottleneck"]
    lines = [f"**Training throughput** on `{section['device']}` (images/s):", "", *_table(header, rows)]
    if section["device"] == "cpu":
        lines += ["", "Single-GPU training throughput with AMP and channels-last: **not measured** (no GPU)."]
    return lines


def _latency(section: dict[str, Any]) -> list[str]:
    stages = section["stages"]
    header = ["runtime: input", *stages, "anchor xrv DenseNet-121 224", "anchor / ours"]
    rows = []
    for key, values in section["latency"].items():
        anchor = section["anchor"][key.split(": ", 1)[-1]]["median_ms"]
        cells = [f"{values[s]['median_ms']:.0f} / {values[s]['p90_ms']:.0f}" for s in stages]
        rows.append([key, *cells, f"{anchor:.0f}", f"{anchor / values['total']['median_ms']:.2f}x"])
    title = f"**Screening latency per stage**, ms (median / p90 of {section['repeats']} runs, batch 1):"
    return [title, "", *_table(header, rows)]


def _batch(section: dict[str, Any], pipeline: dict[str, Any] | None) -> list[str]:
    rows = [[engine, _num(rate)] for engine, rate in section["img_per_s"].items()]
    if pipeline is not None and _problem(pipeline) is None:
        for name, rates in pipeline["throughput"].items():
            rows += [[f"full screener, {k} ({name})", _num(v)] for k, v in rates.items()]
    lines = [
        f"**Batch throughput**, images/s (classifier forward, batch {section['batch']}, "
        f"{section['input_size']} px; full screener: decode + gate + lungs + classify):",
        "",
        *_table(["engine", "images/s"], rows),
        "",
    ]
    if section.get("torch_compile_seconds") is not None:
        lines.append(f"torch.compile took {section['torch_compile_seconds']:.0f} s before its first batch.")
    diff = section["onnxruntime_max_abs_logit_difference"]
    lines.append(f"ONNX Runtime logits differ from eager by at most {diff:.1e}.")
    return lines


def _limit(section: dict[str, Any]) -> list[str]:
    peak = section["peak_matmul_flops_per_s"]
    rows = [[name, _num(flops / 1e9, 2)] for name, flops in section["flops_per_image"].items()]
    use = section["utilisation_of_peak"]
    return [
        f"**Physical limit**: measured float32 matmul peak {peak / 1e9:,.1f} GFLOP/s; forward FLOPs:",
        "",
        *_table(["model", "GFLOP per image"], rows),
        "",
        f"Eager classifier inference reaches {100 * use['xray3-screener eager']:.1f}% of that peak; "
        f"the anchor {100 * use['anchor eager']:.1f}%.",
    ]


def _scaling(section: dict[str, Any]) -> list[str]:
    rows = [
        [
            f"{p['images']:,}",
            _num(p["seconds"]),
            _num(p["img_per_s"], 2),
            _num(p["ms_per_image"], 0),
            _num(p["rss_before_mb"], 0),
            _num(p["peak_rss_mb"], 0),
        ]
        for p in section["points"]
    ]
    header = ["images", "seconds", "images/s", "ms per image", "RSS before, MB", "peak RSS, MB"]
    cores = f", {section['cpu_cores']} CPU core(s)" if "cpu_cores" in section else ""
    title = (
        f"**Scaling** (full screener with Grad-CAM, batch {section['batch_size']}, "
        f"{section['distinct_images']} shared radiographs repeated{cores}):"
    )
    first, last = section["points"][0], section["points"][-1]
    growth = (
        f"From {first['images']:,} to {last['images']:,} images, seconds per image change by "
        f"{100 * (last['ms_per_image'] / first['ms_per_image'] - 1):+.1f}% and peak RSS by "
        f"{100 * (last['peak_rss_mb'] / first['peak_rss_mb'] - 1):+.1f}%."
    )
    return [title, "", *_table(header, rows), "", growth]


def _flat(prefix: str, value: Any) -> list[tuple[str, Any]]:
    """``(dotted key, leaf)`` pairs of a nested JSON value (lists of scalars joined by commas)."""
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in _flat(f"{prefix} / {k}" if prefix else str(k), v)]
    if isinstance(value, list):
        if all(isinstance(v, int | float | str) for v in value):
            return [(prefix, ", ".join(str(v) for v in value))]
        return [pair for i, v in enumerate(value) for pair in _flat(f"{prefix} / {i}", v)]
    return [(prefix, value)]


def _generic(title: str, section: dict[str, Any]) -> list[str]:
    """A section written by another script: its own Markdown ``table`` when it has one, else its values
    flattened (at most 40 rows)."""
    if isinstance(section.get("table"), str):
        return [f"**{title}** (`{section.get('command', '')}`):", "", section["table"].strip()]
    rows = [[key, _num(value, 2)] for key, value in _flat("", section) if key != "command"]
    return [f"**{title}**:", "", *_table(["measure", "value"], rows[:40])]


SECTIONS = {
    "training": ("Training throughput", _training),
    "latency": ("Screening latency", _latency),
    "batch": ("Batch throughput", None),
    "limit": ("Physical limit", _limit),
    "scaling": ("Scaling", _scaling),
    "serve": ("Server load test (bench/serve_load.py)", None),
    "browser": ("Browser latency (bench/browser_latency.py)", None),
}


def render(report: dict[str, Any]) -> str:
    """The Markdown of every section of ``report`` (``run_all.py``'s JSON)."""
    lines = _machine(report)
    for key, (title, draw) in SECTIONS.items():
        section = report.get(key)
        lines.append("")
        problem = _problem(section)
        if section and "reused_from" in section:
            lines += [f"_{title}: measured in an earlier run, {section['reused_from']}._", ""]
        if problem is not None:
            lines.append(f"**{title}**: {problem}.")
        elif key == "batch":
            lines += _batch(section, report.get("latency"))
        elif draw is None:
            lines += _generic(title, section)
        else:
            lines += draw(section)
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, block: str) -> None:
    """Replace the lines between the bench markers of ``readme`` with ``block`` (atomic write)."""
    from chestlens.atomic import write_text_atomic

    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{readme}: no {START} ... {END} block")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    write_text_atomic(readme, f"{head}{START}\n{block}{END}{tail}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument(
        "--readme", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "user-guide.md"
    )
    args = parser.parse_args(argv)
    update_readme(args.readme, render(json.loads(args.report.read_text())))


if __name__ == "__main__":
    main()
