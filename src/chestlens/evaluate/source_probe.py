"""Source probe: how much of the image's source can a linear model read from a classifier's features?

A screener that looks at the lungs should carry little about the hospital an image came from. The
probe fits a multinomial logistic regression (scikit-learn, standardised features) that predicts the
source from the classifier's pooled features (the input of its last linear layer) and scores it by
patient-grouped cross-validation, so no patient is both in a probe's training and test fold. Its
accuracy is compared with the majority-class rate (always guessing the commonest source): the excess
is how much source the features carry beyond the class mix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from chestlens.data.transforms import normalise
from chestlens.preprocess.spec import PreprocessSpec
from chestlens.strict import StrictModel

#: Cross-validation folds of the probe (fewer when a source has fewer patient groups).
PROBE_FOLDS = 5


class SourceProbe(StrictModel):
    """Result of :func:`source_probe` (accuracies in ``[0, 1]``)."""

    accuracy: float | None
    majority_rate: float
    excess: float | None  # accuracy - majority_rate
    n_images: int
    n_sources: int
    folds: int
    reason: str | None = None


@torch.no_grad()
def pooled_features(
    model: torch.nn.Module, images: torch.Tensor, spec: PreprocessSpec, *, batch_size: int = 64
) -> np.ndarray:
    """Pooled features ``(N, F)`` of a timm classifier for grey ``[0, 1]`` images ``(N, 1, H, W)``."""
    model.eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = normalise(images[start : start + batch_size].float(), spec)
        features = model.forward_features(x.contiguous(memory_format=torch.channels_last))
        out.append(model.forward_head(features, pre_logits=True).float().cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, 0), dtype=np.float32)


def source_probe(
    features: np.ndarray, sources: Sequence[str], groups: Sequence[str], *, seed: int = 0
) -> SourceProbe:
    """Grouped-CV accuracy of a linear probe predicting ``sources`` ``(N,)`` from ``features`` ``(N, F)``.

    Args:
        groups: patient group per image ``(N,)``; a group's images stay in one fold.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sources = np.asarray(sources)
    names, counts = np.unique(sources, return_counts=True)
    majority = float(counts.max() / counts.sum()) if counts.size else 0.0
    folds = int(min(PROBE_FOLDS, counts.min())) if counts.size else 0
    base = {"majority_rate": majority, "n_images": int(sources.size), "n_sources": int(names.size)}
    if names.size < 2 or folds < 2:
        reason = "needs two sources with at least two images each"
        return SourceProbe(accuracy=None, excess=None, folds=folds, reason=reason, **base)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    split = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    predicted = cross_val_predict(probe, features, sources, groups=np.asarray(groups), cv=split)
    accuracy = float((predicted == sources).mean())
    return SourceProbe(accuracy=accuracy, excess=accuracy - majority, folds=folds, **base)
