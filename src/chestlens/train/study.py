"""``chestlens train study``: a series-level CT classifier (COVID-19 / CAP / normal) from lesion features.

The series come screened (:class:`~chestlens.evaluate.study_eval.StudySeries`: one per labelled CT
series, its patient, class and ``lesions.features``; the CLI screens them with the pipeline, a layer
above this one). Here:

1. leave one patient out: for each patient, a multinomial logistic regression is fitted on the other
   patients' series and predicts the left-out patient's series. With one patient per class the left-out
   class is never seen in training, so the LOPO accuracy is 0 by construction, and the table says so;
2. the model is fitted on every series and written as a ``study`` bundle (weights, intercepts and the
   feature mean and std in ``weights.safetensors``), the LOPO table and the features in ``metrics`` and
   in its card (``MODEL_CARD.md``).

With :attr:`StudyConfig.regional` (a regional slice classifier's bundle, e.g. from ``chestlens train
regional`` over the lesion segmenter's components), the features also hold that classifier's series
summary (:data:`~chestlens.models.study.REGIONAL_FEATURES`: the share of slices it calls infected and its
mean slice probability), and the study bundle embeds a copy of the regional bundle (its ``regional/``
folder), so screening reads the same classifier.

The fit (:func:`fit_logistic`) standardises each feature with the training series' mean and standard
deviation (1 where a feature is constant) and minimises ``C * sum of cross-entropies + 0.5 * (|W|^2 +
|b|^2)`` with L-BFGS; the intercepts are penalised too, so a class without training series gets a finite,
low score instead of minus infinity.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import Field, model_validator
from scipy.optimize import minimize

from chestlens.atomic import write_text_atomic
from chestlens.evaluate.model_card import MODEL_CARD
from chestlens.evaluate.study_eval import THREE_PATIENTS, StudySeries, confusion_matrix, render_study_card
from chestlens.models.spec import BundleSpec, TrainingSummary
from chestlens.models.study import (
    REGIONAL_DIR,
    REGIONAL_FEATURES,
    STUDY_ARCHITECTURE,
    STUDY_FEATURES,
    reads_regional,
    softmax,
)
from chestlens.preprocess.spec import PreprocessSpec
from chestlens.strict import StrictModel

log = logging.getLogger(__name__)

#: The study bundle's labels: the ``ct3`` task's classes, in its order.
STUDY_LABELS = ["COVID-19", "CAP", "normal"]


class StudyConfig(StrictModel):
    """Everything ``chestlens train study`` needs."""

    data_root: str | None = None  # default: $CHESTLENS_DATA
    patients: tuple[str, ...] = ()  # e.g. P001 or covid_ct_md:P001; empty: every labelled CT series
    lesion_bundle: str = "lesions-ct-segmenter"  # the CT lesion segmenter that measures the series
    features: tuple[str, ...] = STUDY_FEATURES
    # a regional bundle (folder) whose series features are added to ``features`` and which the study
    # bundle embeds; None: lesion features only
    regional: str | None = None
    C: float = Field(1.0, gt=0)  # inverse L2 strength
    out: str = "runs/ct-study"
    name: str = "ct-study-classifier"
    version: str = "0.1.0"

    @model_validator(mode="after")
    def _regional_features(self) -> StudyConfig:
        """A regional bundle adds its series features; naming them without one is an error."""
        if self.regional is None and reads_regional(self.features):
            raise ValueError(f"features {', '.join(REGIONAL_FEATURES)} need a regional bundle (regional=...)")
        if self.regional is not None:
            self.features = (*self.features, *(f for f in REGIONAL_FEATURES if f not in self.features))
        return self


class LogisticFit(StrictModel):
    """A fitted multinomial logistic regression: ``softmax(W (x - mean) / std + b)``."""

    weight: list[list[float]]  # (classes, features)
    bias: list[float]
    mean: list[float]
    std: list[float]

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, np.float64) - np.asarray(self.mean)) / np.asarray(self.std)
        return softmax(z @ np.asarray(self.weight).T + np.asarray(self.bias))


def fit_logistic(features: np.ndarray, targets: np.ndarray, n_classes: int, c: float) -> LogisticFit:
    """Fit ``(N, F)`` features to class indices ``(N,)`` (see the module docstring for the loss)."""
    x = np.asarray(features, np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    z = (x - mean) / std
    f = z.shape[1]
    onehot = np.eye(n_classes)[np.asarray(targets)]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: n_classes * f].reshape(n_classes, f), theta[n_classes * f :]
        logits = z @ w.T + b
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        value = -c * float((onehot * log_p).sum()) + 0.5 * float((theta**2).sum())
        residual = c * (np.exp(log_p) - onehot)
        grad = np.concatenate([(residual.T @ z).ravel(), residual.sum(axis=0)]) + theta
        return value, grad

    result = minimize(loss, np.zeros(n_classes * (f + 1)), jac=True, method="L-BFGS-B")
    w, b = result.x[: n_classes * f].reshape(n_classes, f), result.x[n_classes * f :]
    return LogisticFit(weight=w.tolist(), bias=b.tolist(), mean=mean.tolist(), std=std.tolist())


def _matrix(series: Sequence[StudySeries], names: Sequence[str]) -> np.ndarray:
    return np.asarray([[item.features[name] for name in names] for item in series], np.float64)


def leave_one_patient_out(
    series: Sequence[StudySeries], names: Sequence[str], labels: Sequence[str], c: float
) -> dict:
    """Each patient's series predicted by a model fitted on the other patients' series: the rows (patient,
    truth, prediction, probabilities, classes seen in training), accuracy, confusion matrix and why the
    accuracy is what it is."""
    patients = sorted({item.patient for item in series})
    rows = []
    for patient in patients:
        train = [item for item in series if item.patient != patient]
        test = [item for item in series if item.patient == patient]
        seen = [label for label in labels if any(item.label == label for item in train)]
        if not train:
            raise ValueError("leave-one-patient-out needs at least two patients")
        fit = fit_logistic(
            _matrix(train, names), np.asarray([labels.index(i.label) for i in train]), len(labels), c
        )
        for item, p in zip(test, fit.probabilities(_matrix(test, names)), strict=True):
            rows.append(
                {
                    "patient": patient,
                    "truth": item.label,
                    "predicted": labels[int(np.argmax(p))],
                    "probabilities": {k: round(float(v), 4) for k, v in zip(labels, p, strict=True)},
                    "seen": seen,
                    "truth_seen_in_training": item.label in seen,
                }
            )
    correct = sum(row["truth"] == row["predicted"] for row in rows)
    unseen = sum(not row["truth_seen_in_training"] for row in rows)
    why = ""
    if unseen == len(rows):
        why = (
            "Every left-out series is of a class that no other patient has, so its class is never seen in "
            "training and cannot be predicted: the LOPO accuracy is 0 by construction, not a measurement."
        )
    elif unseen:
        why = (
            f"{unseen} of {len(rows)} left-out series are of a class unseen in their fold's training series."
        )
    return {
        "rows": rows,
        "correct": correct,
        "accuracy": correct / len(rows) if rows else 0.0,
        "confusion": confusion_matrix(labels, [r["truth"] for r in rows], [r["predicted"] for r in rows]),
        "why": why,
    }


def lopo_markdown(lopo: dict, labels: Sequence[str]) -> list[str]:
    """The LOPO table as Markdown (what the CLI prints)."""
    lines = [
        "| left-out patient | true | predicted | seen in training | "
        + " | ".join(f"P({k})" for k in labels)
        + " |"
    ]
    lines.append("|---" * (4 + len(labels)) + "|")
    for row in lopo["rows"]:
        cells = " | ".join(f"{row['probabilities'][k]:.3f}" for k in labels)
        lines.append(
            f"| {row['patient']} | {row['truth']} | {row['predicted']} | {', '.join(row['seen'])} | {cells} |"
        )
    lines += [
        "",
        f"LOPO accuracy {lopo['accuracy']:.3f} ({lopo['correct']} of {len(lopo['rows'])}). {lopo['why']}",
    ]
    return lines


def train_study(
    cfg: StudyConfig,
    series: Sequence[StudySeries],
    lesion_bundle: dict,
    *,
    reproduce: str | None = None,
    regional_bundle: dict | None = None,
) -> Path:
    """LOPO, then the fit on every series, written as ``cfg.out/bundle`` with its card; returns the folder.

    ``lesion_bundle``: name, version and weights_sha256 of the segmenter that measured ``series`` (and
    ``source``, how it was named), recorded so screening can warn about another one.
    ``regional_bundle``: the same of ``cfg.regional`` (and the patients it trained on), whose folder is
    copied into the study bundle."""
    import torch

    from chestlens.models.bundle import save_bundle

    start = time.perf_counter()
    names, labels = list(cfg.features), list(STUDY_LABELS)
    if unknown := sorted({item.label for item in series} - set(labels)):
        raise ValueError(f"series labelled {unknown}: not ct3 classes {labels}")
    lopo = leave_one_patient_out(series, names, labels, cfg.C)
    x = _matrix(series, names)
    fit = fit_logistic(x, np.asarray([labels.index(item.label) for item in series]), len(labels), cfg.C)
    state = {
        key: torch.tensor(getattr(fit, key), dtype=torch.float32) for key in ("weight", "bias", "mean", "std")
    }
    patients_used = sorted({item.patient for item in series})
    spec = BundleSpec(
        name=cfg.name,
        version=cfg.version,
        kind="study",
        task="ct3",
        architecture=STUDY_ARCHITECTURE,
        architecture_kwargs={
            "features": names,
            "lesion_bundle": lesion_bundle,
            **({"regional_bundle": regional_bundle} if regional_bundle else {}),
        },
        labels=labels,
        preprocess=PreprocessSpec(input_size=1, mean=[0.0], std=[1.0]),  # unused: no image input
        training=TrainingSummary(
            config={**cfg.model_dump(mode="json"), "patients_used": patients_used},
            train_seconds=round(time.perf_counter() - start, 3),
            reproduce=reproduce,
        ),
        metrics={
            "lopo": lopo,
            "series": [item.model_dump() for item in series],
            "training_accuracy": float(
                np.mean(np.argmax(fit.probabilities(x), axis=1) == [labels.index(i.label) for i in series])
            ),
            "statement": THREE_PATIENTS,
        },
    )
    folder = save_bundle(spec, state, Path(cfg.out) / "bundle")
    if cfg.regional is not None:
        _embed(Path(cfg.regional), folder / REGIONAL_DIR)
    from chestlens.models.spec import read_spec

    saved = read_spec(folder)
    write_text_atomic(folder / MODEL_CARD, render_study_card(saved, reproduce=reproduce))
    write_text_atomic(Path(cfg.out) / "lopo.md", "\n".join(lopo_markdown(lopo, labels)) + "\n")
    log.info("study bundle written to %s", folder)
    return folder


def _embed(regional: Path, target: Path) -> None:
    """Copy the regional bundle folder to ``target`` (through a temporary folder, then a rename)."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(regional, partial)
    partial.rename(target)
