"""Cluster batch screening on Ray Data: ``chestlens predict --engine ray``.

The driver lists the inputs (a folder, a CSV manifest, a DICOM tree: :func:`chestlens.pipeline.inputs.
expand_inputs`), drops those already in the output folder's ``results.jsonl`` (the resume keys of
:mod:`chestlens.pipeline.batch`), and cuts the rest into chunks of ``batch_size`` inputs. A Ray Data
pipeline streams the chunks to a pool of actors, each holding one :class:`~chestlens.pipeline.screener.
Screener` (the models are loaded once per actor); an actor screens a chunk exactly as the serial
``iter_screen`` screens a batch, so the results are the serial results. The driver appends each
finished chunk to ``results.jsonl`` (flushed and fsynced) as it arrives, so a crash loses only the
chunks in flight and a re-run skips every finished input; ``results.csv`` and ``results.parquet`` are
written from the JSONL at the end.

The same code runs on a laptop (a local Ray instance) and on a cluster (``address="auto"`` or
``ray://head:10001``); on a cluster the inputs and the output folder must be on storage every node
sees (NFS, a mounted bucket). See ``docs/scale-out.md``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chestlens.atomic import write_bytes_atomic
from chestlens.pipeline.batch import ResultLog, csv_columns, csv_row, record

RESULTS_PARQUET = "results.parquet"


@dataclass(frozen=True, slots=True)
class ScreenerOptions:
    """How each actor builds its :class:`~chestlens.pipeline.screener.Screener` (picklable).

    ``models``: bundle names or folders (``--models``), or empty for the bundled defaults.
    """

    models: tuple[str, ...] = ()
    runtime: str = "onnx"
    device: str = "auto"
    cam: str | None = "cam"
    compile: bool = False

    def build(self):
        """The screener these options describe."""
        from chestlens.models.catalog import default_models
        from chestlens.pipeline.screener import Screener

        kwargs: dict[str, Any] = {
            "runtime": self.runtime,
            "device": self.device,
            "cam": self.cam,
            "compile": self.compile,
        }
        return Screener.from_models(self.models or default_models(), **kwargs)


@dataclass(frozen=True, slots=True)
class RayPlan:
    """Where and how wide to run.

    ``address``: None starts a local Ray instance (or uses the one this process already joined);
    ``"auto"`` joins the cluster this machine belongs to; ``"ray://host:10001"`` a remote one.
    ``actors``: screener actors (model copies); ``cpus_per_actor`` / ``gpus_per_actor``: what each
    reserves (torch in an actor uses that many threads).
    """

    address: str | None = None
    actors: int = 2
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    runtime_env: dict[str, Any] = field(default_factory=dict)


class ScreenActor:
    """A Ray Data actor: one screener, one chunk of inputs per call.

    A call's batch holds one row per chunk, with ``paths`` and ``keys`` (lists of strings); it returns one
    row per input: ``key`` and ``line`` (the JSONL record of :func:`chestlens.pipeline.batch.record`,
    serialised).
    """

    def __init__(self, options: ScreenerOptions, batch_size: int) -> None:
        self.screener = options.build()
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keys: list[str] = []
        lines: list[str] = []
        for paths, chunk_keys in zip(batch["paths"], batch["keys"], strict=True):
            outcomes = self.screener.iter_screen([str(p) for p in paths], batch_size=self.batch_size)
            for key, outcome in zip(chunk_keys, outcomes, strict=True):
                keys.append(str(key))
                lines.append(json.dumps(record(str(key), getattr(outcome, "result", outcome))))
        return {"key": np.asarray(keys, dtype=object), "line": np.asarray(lines, dtype=object)}


def chunks(paths: Sequence[Path], keys: Sequence[str], batch_size: int) -> list[dict[str, list[str]]]:
    """Rows of the Ray dataset: consecutive chunks of ``batch_size`` inputs (paths and resume keys),
    the batches the serial path would make of the same list."""
    return [
        {"paths": [str(p) for p in paths[i : i + batch_size]], "keys": list(keys[i : i + batch_size])}
        for i in range(0, len(paths), batch_size)
    ]


def _connect(plan: RayPlan) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(
            address=plan.address,
            include_dashboard=False,
            runtime_env=plan.runtime_env or None,
            log_to_driver=False,
        )


def screen_on_ray(
    paths: Sequence[Path],
    keys: Sequence[str],
    log: ResultLog,
    options: ScreenerOptions,
    plan: RayPlan,
    *,
    batch_size: int = 8,
    on_chunk=None,
) -> int:
    """Screen ``paths`` (resume keys ``keys``, same order) on Ray and append every result to ``log``.

    Args:
        paths: inputs still to do (the caller drops those already in ``log``).
        on_chunk: called with the number of inputs of each chunk once it is durable (progress bars).

    Returns:
        the number of records appended.
    """
    import ray.data

    if not paths:
        return 0
    _connect(plan)
    rows = chunks(paths, keys, batch_size)
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        ScreenActor,
        fn_constructor_kwargs={"options": options, "batch_size": batch_size},
        batch_size=1,
        concurrency=max(1, min(plan.actors, len(rows))),
        num_cpus=plan.cpus_per_actor,
        num_gpus=plan.gpus_per_actor,
    )
    written = 0
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        lines = [json.loads(line) for line in batch["line"]]
        log.append(lines)
        written += len(lines)
        if on_chunk is not None:
            on_chunk(len(lines))
    return written


def in_input_order(lines: list[dict], keys: Sequence[str]) -> list[dict]:
    """The records of ``keys`` (one each, the first if a key repeats), in the order of ``keys``."""
    by_key: dict[str, dict] = {}
    for line in lines:
        by_key.setdefault(line["key"], line)
    return [by_key[key] for key in keys if key in by_key]


def write_parquet(lines: list[dict], path: Path) -> Path:
    """``results.parquet``: the CSV columns, the resume ``key`` and the full record as JSON (atomic)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [csv_row(line) for line in lines]
    columns: dict[str, list[str]] = {"key": [line["key"] for line in lines]}
    columns.update({name: [row.get(name, "") for row in rows] for name in csv_columns(rows)})
    columns["record_json"] = [json.dumps(line, separators=(",", ":")) for line in lines]
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return write_bytes_atomic(path, buffer.getvalue())
