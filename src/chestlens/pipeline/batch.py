"""Resumable batch screening: results appended to ``results.jsonl`` as they come, one line per input.

A re-run with the same output folder skips inputs already there (keyed by absolute path, size and
modification time, so an edited file is screened again). Each batch is flushed and fsynced, so a crash
loses at most the batch in flight; a torn last line from a crash is dropped on the next run.
``results.csv`` is rewritten (atomically) from the JSONL at the end.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from chestlens.atomic import write_text_atomic
from chestlens.pipeline.schema import FailedInput, ScreeningResult

RESULTS_JSONL = "results.jsonl"
RESULTS_CSV = "results.csv"


def input_key(path: Path) -> str:
    """Identity of an input for resuming: absolute path, size and mtime (ns)."""
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


@dataclass
class ResultLog:
    """The ``results.jsonl`` of an output folder: what is done, and appending new lines."""

    folder: Path

    @property
    def path(self) -> Path:
        return self.folder / RESULTS_JSONL

    def records(self) -> Iterator[dict]:
        """Complete records already written (a torn last line is ignored)."""
        if not self.path.is_file():
            return
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue

    def done_keys(self) -> set[str]:
        return {r["key"] for r in self.records() if "key" in r}

    def repair(self) -> None:
        """Drop a torn last line left by a crash, so appends start on a fresh line."""
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            write_text_atomic(self.path, data[: data.rfind(b"\n") + 1].decode("utf-8"))

    def append(self, lines: list[dict]) -> None:
        """Append records and make them durable (flush + fsync)."""
        if not lines:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            for record in lines:
                handle.write(json.dumps(record, separators=(",", ":")) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def record(key: str, outcome: ScreeningResult | FailedInput) -> dict:
    """One JSONL line: the resume key, ``status`` (screened / rejected / failed) and the result."""
    if isinstance(outcome, FailedInput):
        return {"key": key, "status": "failed", "failed": outcome.model_dump(mode="json")}
    status = "screened" if outcome.gate.accepted else "rejected"
    return {"key": key, "status": status, "result": outcome.model_dump(mode="json")}


#: Columns every CSV starts with; per-label columns follow, in the order the rows first name them.
CSV_COLUMNS = ["source", "status", "reason", "top_label"]


def _cell(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def csv_row(line: dict) -> dict[str, str]:
    """A flat CSV row of a JSONL record: one value per column, never several packed in one cell.

    Per label: ``p_<label>`` (calibrated probability) and ``decision_<label>`` (at its operating point);
    ``heatmap_in_lungs``; radiographs ``lung_area_mm2`` and ``lesion_<label>_mm2``; CT series
    ``lung_volume_ml``, ``lesion_<label>_ml``, ``lung_involved`` (share of the lungs, all lesion classes),
    ``series_score`` (the largest slice lesion score), ``series_verdict`` (``lesions found`` / ``no lesions
    found``) and ``series_threshold`` (the share of the lungs from which the verdict is ``lesions
    found``); CT series lesion features as ``feature_<name>`` (``lesions.features``) and, with a study
    bundle, ``study_top_label`` and ``study_p_<label>`` (the series classified from those features);
    ``reader_warnings`` (``input.warnings`` joined by `` | ``); ``total_ms``.
    """
    if line["status"] == "failed":
        return {"source": line["failed"]["source"], "status": "failed", "reason": line["failed"]["error"]}
    result = ScreeningResult.model_validate(line["result"])
    row = {"source": result.input.source, "status": line["status"], "reason": result.gate.reason}
    if result.classification is not None:
        c = result.classification
        row["top_label"] = c.top_label
        row.update({f"p_{label}": f"{p:.4f}" for label, p in c.probabilities.items()})
        row.update({f"decision_{d.label}": "positive" if d.positive else "negative" for d in c.decisions})
    if result.explanation is not None and result.explanation.energy_in_lungs is not None:
        row["heatmap_in_lungs"] = f"{result.explanation.energy_in_lungs:.4f}"
    lungs, lesions = result.lungs, result.lesions
    if lungs is not None and lungs.area_mm2 is not None:
        row["lung_area_mm2"] = f"{lungs.area_mm2:.0f}"
    if lungs is not None and lungs.volume_ml is not None:
        row["lung_volume_ml"] = f"{lungs.volume_ml:.0f}"
    if lesions is not None:
        row.update({f"lesion_{k}_mm2": f"{v:.0f}" for k, v in lesions.area_mm2_by_label.items()})
        row.update({f"lesion_{k}_ml": f"{v:.1f}" for k, v in lesions.volume_ml_by_label.items()})
        if lesions.lung_fraction_total is not None:
            row["lung_involved"] = f"{lesions.lung_fraction_total:.4f}"
        if lesions.features is not None:
            row.update({f"feature_{k}": _cell(v) for k, v in lesions.features.model_dump().items()})
        if lesions.series_score is not None:
            row["series_score"] = f"{lesions.series_score:.4f}"
        if lesions.series_verdict is not None and lesions.series_threshold is not None:
            row["series_verdict"] = lesions.series_verdict
            row["series_threshold"] = f"{lesions.series_threshold:.4f}"
    if (study := result.series_classification) is not None:
        row["study_top_label"] = study.top_label
        row.update({f"study_p_{label}": f"{p:.4f}" for label, p in study.probabilities.items()})
    if result.input.warnings:
        row["reader_warnings"] = " | ".join(result.input.warnings)
    row["total_ms"] = f"{result.timings_ms.get('total', 0):.1f}"
    return row


def csv_columns(rows: list[dict[str, str]]) -> list[str]:
    """:data:`CSV_COLUMNS`, then every other column of ``rows`` in first-seen order, ``total_ms`` last."""
    columns = dict.fromkeys(CSV_COLUMNS)
    for row in rows:
        columns.update(dict.fromkeys(k for k in row if k != "total_ms"))
    return [*columns, "total_ms"]


def csv_text(lines: list[dict]) -> str:
    """CSV of JSONL records (header plus one row each)."""
    rows = [csv_row(line) for line in lines]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=csv_columns(rows), restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
