"""What every ``chestlens train`` command does around the engine: start the run (seed, output folder, data
root), load or make the patient-level split, summarise the data and the run for the bundle, and finish
(validation and test reports, bundle, model card). The run folder's layout::

    OUT/splits.csv (+ .json)   the split (made here unless ``cfg.splits`` names one)
    OUT/checkpoint.pt          the engine's checkpoint (``--resume``)
    OUT/bundle/                the model bundle and its MODEL_CARD.md
    OUT/validation-report/     report on the validation split
    OUT/test-report/           report on the test split (evaluated once, after the bundle is fixed)
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chestlens.data.hashing import default_cache_path
from chestlens.data.make_split import build_splits
from chestlens.data.records import Sample
from chestlens.data.root import DATA_ENV, data_root
from chestlens.data.splits import SPLITS, SplitTable, load_splits, save_splits
from chestlens.data.summary import summarize
from chestlens.errors import ChestlensInputError
from chestlens.evaluate.kinds import write_model_card
from chestlens.evaluate.page import REPORT_JSON
from chestlens.models.bundle import save_bundle
from chestlens.models.spec import BundleSpec, DataSummary, TrainingSummary
from chestlens.train.config import TrainConfig
from chestlens.train.engine import TrainOutcome

log = logging.getLogger(__name__)

SPLIT_FILE = "splits.csv"
BUNDLE_DIR = "bundle"
VALIDATION_REPORT_DIR = "validation-report"
TEST_REPORT_DIR = "test-report"


def start_run(cfg: TrainConfig) -> tuple[float, Path, Path]:
    """Seed torch with ``cfg.seed``; returns the start time (``time.perf_counter()``), the output folder
    (created) and the data root (``cfg.data_root`` or ``$CHESTLENS_DATA``, an error when neither is a
    folder)."""
    started = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    root = data_root(cfg.data_root)
    if root is None or not root.is_dir():
        raise ChestlensInputError(root, f"no data root: pass data_root=... or set {DATA_ENV}")
    return started, out, root


def split_table(cfg: TrainConfig, labelling: str, root: Path, samples: list[Sample], out: Path) -> SplitTable:
    """The split of this run: ``cfg.splits``, else ``OUT/splits.csv`` of an earlier run, else a new one.

    A new split (:func:`chestlens.data.make_split.build_splits` for the task or segmentation target
    ``labelling``, seeded by ``cfg.split_seed``) links patients across every source under ``root`` and
    is saved as ``OUT/splits.csv``, keeping only the rows of ``samples`` (the images the run uses).
    """
    given = Path(cfg.splits) if cfg.splits else out / SPLIT_FILE
    if given.is_file():
        log.info("using split %s", given)
        return load_splits(given, samples)
    table = build_splits(
        root,
        labelling,
        sorted({s.source for s in samples}),
        seed=cfg.split_seed,
        fractions=cfg.split_fractions,
        cache=default_cache_path(),
    ).table
    used = {s.uid for s in samples}  # the run may leave some images out (views, a per-source cap)
    table = dataclasses.replace(table, rows=tuple(r for r in table.rows if r.uid in used))
    save_splits(table, out / SPLIT_FILE)
    return table


def check_not_empty(cfg: TrainConfig, out: Path, sizes: dict[str, int]) -> None:
    """Refuse to train when the train or validation split holds no sample."""
    for split in ("train", "val"):
        if sizes[split] == 0:
            raise ChestlensInputError(cfg.splits or out / SPLIT_FILE, f"the {split} split is empty")


def data_summary(table: SplitTable, samples: list[Sample]) -> DataSummary:
    """Images per source, label and split, patient groups per split, exclusions and confounder warnings."""
    counts = Counter((r.source, r.label, r.split) for r in table.rows)
    per: dict[str, dict[str, dict[str, int]]] = {}
    for (source, label, split), n in sorted(counts.items()):
        per.setdefault(source, {}).setdefault(label, dict.fromkeys(SPLITS, 0))[split] = n
    return DataSummary(
        images_per_source_class_split=per,
        patients_per_split={s: len({r.group for r in table.rows if r.split == s}) for s in SPLITS},
        split_seed=table.meta.seed,
        excluded_per_source=table.meta.excluded,
        confounder_warnings=summarize(samples, table=table).warnings,
    )


def training_summary(
    cfg: TrainConfig,
    table: SplitTable,
    samples: list[Sample],
    outcome: TrainOutcome,
    started: float,
    device: torch.device,
) -> TrainingSummary:
    """The bundle's ``training`` field: resolved config, data, history, timing (``started``:
    ``time.perf_counter()`` at the start of the run) and hardware."""
    return TrainingSummary(
        config=cfg.model_dump(mode="json"),
        data=data_summary(table, samples),
        history=outcome.history,
        best_epoch=outcome.best_epoch,
        stopped_early=outcome.stopped_early,
        train_seconds=round(time.perf_counter() - started, 1),
        device=str(device),
        threads=torch.get_num_threads(),
    )


def finish_run(
    spec: BundleSpec,
    state: dict[str, torch.Tensor],
    out: Path,
    evaluate: Callable[[str, str, Path], dict[str, Any]],
    *,
    fp16: dict[str, Any] | None,
    has_test: bool,
    reproduce: str | None,
    graph_images: np.ndarray | None = None,
    has_validation: bool = True,
) -> Path:
    """Evaluate on validation, then once on test, write the bundle (fp16 weights when ``fp16`` found them
    lossless) and, with a test split, its model card. Returns the bundle folder.

    Args:
        evaluate: ``(split, name, report folder) -> headline numbers`` for split ``"val"`` (named
            ``"validation"``) and ``"test"``; writes that split's report.
        fp16: the fp16 check (:func:`chestlens.train.fp16.fp16_check`), or None when not tried.
        has_validation: False for a fit on all data: no validation report, no test, no card here (the
            card is written once the recipe's cross-validation is attached).
        reproduce: the command line that reproduces this run, for the model card.
        graph_images: validation images ``(N, 1, S, S)`` in ``[0, 1]`` on which the bundle's ONNX graph
            is verified before it is written (:func:`chestlens.export.bundle_graph.add_graph`); None
            writes no graph (``graph: false``). A graph that cannot be exported or verified is logged
            and left out: the bundle still runs with ``--runtime torch``.
    """
    spec.training.fp16_check = fp16
    if reproduce:
        spec.training.reproduce = reproduce  # read by the model card
    if has_validation:
        validation = evaluate("val", "validation", out / VALIDATION_REPORT_DIR)
        test = evaluate("test", "test", out / TEST_REPORT_DIR) if has_test else None
        spec.metrics.update({"validation": validation, "test": test})
    else:
        test = None
    bundle = save_bundle(spec, state, out / BUNDLE_DIR, fp16=bool(fp16 and fp16["lossless"]))
    if graph_images is not None:
        _write_graph(bundle, graph_images)
    if test is not None:
        write_model_card(bundle, out / TEST_REPORT_DIR / REPORT_JSON)
    return bundle


#: Validation images the bundle's graph is verified on.
GRAPH_CHECK_IMAGES = 16


def _write_graph(bundle: Path, images: np.ndarray) -> None:
    """Add the verified ONNX graph to ``bundle``; on failure log why and leave the bundle without it."""
    from chestlens.export.bundle_graph import add_graph
    from chestlens.export.verify import VerificationSet

    units = [image[None].astype(np.float32) for image in images[:GRAPH_CHECK_IMAGES]]
    check = VerificationSet(units, None, f"{len(units)} validation images at the input size")
    try:
        record = add_graph(bundle, check)
    except ChestlensInputError as error:
        log.warning("no ONNX graph in %s (screen it with --runtime torch): %s", bundle, error.reason)
        return
    log.info("ONNX graph written: max |p_onnx - p_torch| %.2e", record.max_abs_diff_probabilities)
