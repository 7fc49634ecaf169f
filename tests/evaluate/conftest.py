"""Synthetic predictions for the evaluation tests: patients with 1-3 images each, softmax probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from scipy.special import softmax

LABELS = ["COVID-19", "pneumonia", "normal"]


@dataclass
class Predictions:
    y: np.ndarray  # (N,) int
    probs: np.ndarray  # (N, C)
    patients: np.ndarray  # (N,) str
    sources: np.ndarray  # (N,) str
    labels: list[str]


def make_predictions(
    n_patients: int = 120, *, signal: float = 1.5, seed: int = 0, sources: tuple[str, ...] = ("a", "b")
) -> Predictions:
    """Patients with one class, one source and 1-3 images; the true class's logit gets ``+signal``."""
    rng = np.random.default_rng(seed)
    per_patient = rng.integers(1, 4, n_patients)
    patient_class = rng.integers(0, len(LABELS), n_patients)
    patient_source = rng.choice(np.asarray(sources), n_patients)
    index = np.repeat(np.arange(n_patients), per_patient)
    y = patient_class[index]
    logits = rng.normal(size=(y.size, len(LABELS)))
    logits[np.arange(y.size), y] += signal
    return Predictions(
        y=y,
        probs=softmax(logits, axis=1),
        patients=np.char.add("p", index.astype(str)),
        sources=patient_source[index],
        labels=list(LABELS),
    )


@pytest.fixture(scope="module")
def predictions() -> Predictions:
    return make_predictions()


@pytest.fixture(scope="session")
def synthetic():
    """Factory: ``synthetic(n_patients, signal=, seed=, sources=)`` -> :class:`Predictions`."""
    return make_predictions
