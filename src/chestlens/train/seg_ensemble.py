"""The fold ensemble of a segmenter cross-validation: ``chestlens train segment --folds K --ensemble``.

The protocol ships a cross-validated recipe in one of two ways: its final fit on all data (``fit_all``) or
the ``K`` fold models themselves, each the best epoch of its fold by that fold's own validation patients,
averaged in logit space (:class:`~chestlens.models.segmentation.SegmenterEnsemble`). This module writes
the second as an ordinary segmenter bundle (``architecture_kwargs["members"] = K``; weights under
``members.<k>.``), so the CLI, server, PACS listener and ONNX export run it as they run one model, at
``K`` times the cost.

What the ensemble can be judged by: every image was in the training data of ``K - 1`` of its members, so
it has no out-of-fold figure of its own (that needs nested cross-validation). Its card leads with the
cross-validation, which estimates one member, and says so; an ensemble can only be compared with a
single model on data outside the cross-validation (``bench/fold_ensemble_check.py``: the COVID-CT-MD
patients for the CT lesion models). :func:`member_bundle` takes one member out as a bundle of its own for
such a comparison.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from chestlens.data.tensors import LabelledImages
from chestlens.errors import ChestlensInputError
from chestlens.models.bundle import load_bundle, save_bundle
from chestlens.models.segmentation import build_segmenter
from chestlens.models.spec import BundleSpec, DataSummary, TrainingSummary
from chestlens.train.config import SegmentConfig
from chestlens.train.fp16 import use_stored_weights
from chestlens.train.run import finish_run
from chestlens.train.segment import fp16_segmenter_check

log = logging.getLogger(__name__)

#: Where a member's weights sit in an ensemble's state dict.
MEMBER_PREFIX = "members.{}."


def ensemble_state(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One state dict of ``K`` members' weights (keys ``members.<k>.<key>``)."""
    return {
        MEMBER_PREFIX.format(k) + key: value for k, state in enumerate(states) for key, value in state.items()
    }


def ensemble_statement(data: LabelledImages, per_fold: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``training.split`` of a fold ensemble: what its members saw and why it has no held-out figure."""
    folds = len(per_fold)
    epochs = ", ".join(str(row["best_epoch"]) for row in per_fold)
    return {
        "fit_all": True,  # between them the members saw every image: no validation or test of its own
        "fold_ensemble": folds,
        "n_images": len(data),
        "n_patients": len(set(data.patient_ids)),
        "best_epochs": [row["best_epoch"] for row in per_fold],
        "what": f"the fold ensemble of its recipe's {folds}-fold cross-validation",
        "statement": f"the {folds} fold models (each trained on {folds - 1} of the {folds} folds, best "
        f"epochs {epochs} by each fold's own validation patients), their logits averaged; between them "
        f"they saw all {len(data)} images ({len(set(data.patient_ids))} patient groups), each image in "
        f"the training data of {folds - 1} members, so this bundle has no out-of-fold figure of its "
        "own: the cross-validation estimates one member",
    }


def write_fold_ensemble(
    cfg: SegmentConfig,
    spec: BundleSpec,
    states: Sequence[dict[str, torch.Tensor]],
    data: LabelledImages,
    per_fold: Sequence[dict[str, Any]],
    summary: DataSummary,
    device: torch.device,
    reproduce: str | None,
) -> Path:
    """Write ``cfg.out/bundle``: the ensemble of the fold models ``states`` of ``spec``'s recipe.

    Args:
        spec: the recipe's single-model bundle spec (:func:`chestlens.train.segment.segmenter_spec`).
        data: every image of the cross-validation; the fp16 rounding and the ONNX graph are checked on
            them (all are training images of some member: no performance figure comes from them).
        per_fold: the cross-validation report's ``per_fold`` rows (best epoch, training seconds).
        summary: the split table's data summary.
    """
    spec = spec.model_copy(deep=True)
    spec.architecture_kwargs["members"] = len(states)
    state = ensemble_state(states)
    model = build_segmenter(spec)
    model.load_state_dict(state)
    model.to(device)
    spec.training = TrainingSummary(
        config=cfg.model_dump(mode="json"),
        data=summary,
        train_seconds=round(sum(row["train_seconds"] for row in per_fold), 1),
        device=str(device),
        threads=torch.get_num_threads(),
        split=ensemble_statement(data, per_fold),
    )
    fp16 = fp16_segmenter_check(model, state, spec, data, device) if cfg.fp16_bundle else None
    use_stored_weights(model, state, fp16)
    log.info("writing the %d-member fold ensemble", len(states))
    return finish_run(
        spec,
        state,
        Path(cfg.out),
        lambda *_: {},
        fp16=fp16,
        has_test=False,
        reproduce=reproduce,
        graph_images=data.images.numpy() if cfg.graph else None,
        has_validation=False,
    )


def member_bundle(ensemble: str | Path, member: int, out: Path) -> Path:
    """Write member ``member`` of the ensemble bundle at ``ensemble`` as a single-model bundle at ``out``
    (no ONNX graph: run it with ``--runtime torch``), to compare the ensemble with its members."""
    loaded = load_bundle(ensemble)
    k = loaded.spec.architecture_kwargs.get("members")
    if not isinstance(k, int) or not 0 <= member < k:
        raise ChestlensInputError(loaded.path, f"no member {member}: the bundle has {k or 1} model(s)")
    spec = loaded.spec.model_copy(deep=True)  # its training record stays the ensemble's
    del spec.architecture_kwargs["members"]
    spec.graph = None
    spec.series_threshold = None  # chosen for the ensemble, not for one member
    prefix = MEMBER_PREFIX.format(member)
    state = {key.removeprefix(prefix): v for key, v in loaded.state_dict.items() if key.startswith(prefix)}
    return save_bundle(spec, state, out, fp16=loaded.spec.weights_dtype == "float16")
