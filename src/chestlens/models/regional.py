"""COVID-CT-Mask-Net style image classification from a lesion detector's ranked regions.

COVID-CT-Mask-Net (Ter-Sarkisov 2020; code ``AlexTS1980/COVID-CT-Mask-Net``) turns a Mask R-CNN trained
to segment GGO and consolidation into an image classifier (COVID-19 / common pneumonia / control):

* the detector runs in inference mode with ``box_score_thresh = -0.01`` and ``box_detections_per_img =
  k`` (``roi_batch_size``, 256 in its configs) and RoI NMS 0.75, so every image yields exactly ``k``
  regions ranked by decreasing score (fewer are padded by repeating kept regions, order preserved);
* each region is 5 numbers, its class score and its 4 encoded box-regression deltas ("ranked boxes");
* the classification module S flattens the ``k x 5`` matrix and applies FC -> ReLU -> FC -> ReLU -> FC to
  3 logits, so every rank position has its own weights (not permutation invariant);
* S is trained with BCE-with-logits on one-hot labels, one image per forward; the detector is copied
  from the segmentation model and frozen except the BatchNorm affine weights (``heads_bn``).

Here the same inputs are read by a set network instead (:class:`RegionalClassifier`): every region is
described by its box normalised to the image (``x0/W, y0/H, x1/W, y1/H``), its score, its detector class
(one-hot) and its RoI feature (the box-head vector of
:func:`chestlens.models.detection.detections_with_features`), encoded by a per-region MLP, and pooled
by score-weighted attention (weight ``proportional to score * exp(a(region))``) plus a max over regions.
The regions may also come from a semantic segmenter's connected components
(:mod:`chestlens.models.segmenter_regions`: box, mean class probability as the score, class, and
per-region probability and intensity statistics as the feature), which needs no trained detector.
A learned "no region" token is always present, so an image without detections is well defined. Padding
uses a mask instead of repeated regions: padded slots get exactly zero weight, so the logits do not
depend on how far an image is padded or on the order of its regions (rank information is kept through
the score). ``k`` is the largest number of regions an input may hold; take the detector's top ``k``
(COVID-CT-Mask-Net's negative score threshold, i.e. keeping weak regions too, is a good default).

Heads: 2 classes for slice-level "infection present" (COVID-CT-MD slice labels), 3 for COVID-19 /
pneumonia / normal (the ``ct3`` task on COVIDx-CT style data).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from chestlens.errors import ChestlensInputError
from chestlens.models.kinds import require_kind
from chestlens.models.spec import BundleSpec
from chestlens.models.study import REGIONAL_FEATURES
from chestlens.preprocess.spec import PreprocessSpec

if TYPE_CHECKING:
    from chestlens.models.bundle import Bundle

_MIN_SCORE = 1e-6  # scores are clamped here before the log in the attention weights
#: The bundle kinds a regional classifier reads regions from.
REGION_SOURCES = ("detector", "segmenter")


class RegionInputs(NamedTuple):
    """The top regions of a batch of images, zero-padded to a common length ``L <= k``.

    Attributes:
        boxes: ``(B, L, 4)`` float, ``(x0 / W, y0 / H, x1 / W, y1 / H)`` in ``[0, 1]`` (pixel-corner
            coordinates divided by the image's width ``W`` and height ``H``).
        scores: ``(B, L)`` float detector scores in ``[0, 1]``, decreasing along ``L``.
        labels: ``(B, L)`` int64 detector classes ``1..C`` (0 on padding).
        features: ``(B, L, D)`` float RoI features.
        mask: ``(B, L)`` bool, True for real regions, False for padding.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    features: torch.Tensor
    mask: torch.Tensor


def region_inputs(
    detections: Sequence[Mapping[str, torch.Tensor]],
    image_sizes: Sequence[tuple[int, int]],
    *,
    k: int,
    feature_dim: int | None = None,
) -> RegionInputs:
    """Batch the top-``k`` regions of each image's detections into :class:`RegionInputs`.

    Args:
        detections: per image, ``boxes`` (N, 4) in pixels of that image, ``scores`` (N,), ``labels`` (N,)
            and ``features`` (N, D), as :func:`~chestlens.models.detection.detections_with_features` gives
            (other keys are ignored). Regions are ranked by decreasing score here (stable).
        image_sizes: per image, ``(H, W)`` of the image the boxes refer to.
        k: regions kept per image; the batch is padded to ``L = k``.
        feature_dim: ``D``; needed only when no image has a detection to read it from.
    """
    if len(detections) != len(image_sizes):
        raise ChestlensInputError(
            None, f"{len(detections)} detection lists for {len(image_sizes)} image sizes"
        )
    if k < 1:
        raise ChestlensInputError(None, f"k must be positive, got {k}")
    dims = {int(d["features"].shape[-1]) for d in detections if len(d["features"])}
    if feature_dim is not None:
        dims.add(feature_dim)
    if len(dims) != 1:
        raise ChestlensInputError(None, f"cannot tell the feature dimension (found {sorted(dims)})")
    (dim,) = dims
    batch = len(detections)
    boxes, scores = torch.zeros(batch, k, 4), torch.zeros(batch, k)
    labels, features = torch.zeros(batch, k, dtype=torch.int64), torch.zeros(batch, k, dim)
    mask = torch.zeros(batch, k, dtype=torch.bool)
    for i, (detection, (height, width)) in enumerate(zip(detections, image_sizes, strict=True)):
        order = torch.argsort(detection["scores"], descending=True, stable=True)[:k]
        n = len(order)
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        boxes[i, :n] = detection["boxes"][order].float() / scale
        scores[i, :n] = detection["scores"][order].float()
        labels[i, :n] = detection["labels"][order]
        features[i, :n] = detection["features"][order].float()
        mask[i, :n] = True
    return RegionInputs(boxes, scores, labels, features, mask)


class RegionalClassifier(nn.Module):
    """Image classifier over a detector's ranked regions (module docstring).

    Args:
        num_classes: image classes (logits), e.g. 2 (no infection / infection) or 3 (COVID-19 /
            pneumonia / normal).
        k: largest number of regions per image (inputs may be shorter, never longer).
        feature_dim: ``D`` of the RoI features (the detector's ``representation_size``).
        num_region_classes: detector classes without background (2 for GGO and consolidation).
        hidden: width of the region encoder and of the pooled representation.
        dropout: dropout before the classifier head.

    ``forward(boxes, scores, labels, features, mask)`` (a :class:`RegionInputs`, e.g. ``model(*inputs)``)
    returns ``(B, num_classes)`` logits.
    """

    def __init__(
        self,
        num_classes: int,
        k: int,
        feature_dim: int,
        *,
        num_region_classes: int = 2,
        hidden: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if num_classes < 2 or k < 1 or feature_dim < 1 or num_region_classes < 1:
            raise ChestlensInputError(
                None,
                f"RegionalClassifier needs num_classes >= 2, k, feature_dim, num_region_classes >= 1; got "
                f"{num_classes}, {k}, {feature_dim}, {num_region_classes}",
            )
        self.k = k
        self.num_region_classes = num_region_classes
        self.features_in = nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, hidden))
        self.geometry_in = nn.Linear(4 + 1 + num_region_classes, hidden)
        self.region = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.attention = nn.Linear(hidden, 1)
        self.no_region = nn.Parameter(torch.zeros(hidden))
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(
        self,
        boxes: torch.Tensor,
        scores: torch.Tensor,
        labels: torch.Tensor,
        features: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        batch, length = mask.shape
        if length > self.k:
            raise ChestlensInputError(
                None, f"{length} regions per image; this classifier reads at most {self.k}"
            )
        if bool(((labels < 0) | (labels > self.num_region_classes)).any()):
            raise ChestlensInputError(
                None, f"region labels must be 0 (padding) or 1..{self.num_region_classes} (detector classes)"
            )
        one_hot = F.one_hot(labels, self.num_region_classes + 1)[..., 1:]
        geometry = torch.cat([boxes, scores.unsqueeze(-1), one_hot.to(boxes.dtype)], dim=-1)
        regions = self.region(self.features_in(features) + self.geometry_in(geometry))  # (B, L, hidden)
        tokens = torch.cat([self.no_region.expand(batch, 1, -1), regions], dim=1)  # (B, 1 + L, hidden)
        valid = torch.cat([mask.new_ones(batch, 1), mask.bool()], dim=1)
        weight_scores = torch.cat([scores.new_ones(batch, 1), scores.clamp_min(_MIN_SCORE)], dim=1)
        logits = self.attention(tokens).squeeze(-1) + weight_scores.log()
        weights = logits.masked_fill(~valid, float("-inf")).softmax(dim=1)
        attended = (weights.unsqueeze(-1) * tokens).sum(dim=1)
        strongest = tokens.masked_fill(~valid.unsqueeze(-1), float("-inf")).amax(dim=1)
        return self.head(torch.cat([attended, strongest], dim=-1))


class RegionalModel(nn.Module):
    """A ``kind="regional"`` bundle's network: the frozen lesion detector and the regional classifier.

    ``forward(images)`` takes unit images ``(N, in_chans, S, S)`` in ``[0, 1]`` (CT windowed by the
    bundle's ``PreprocessSpec``, stretched to its ``input_size``) and returns ``(N, C)`` logits: the
    detector's top ``k`` regions of each image (score threshold 0, so weak regions count, as
    COVID-CT-Mask-Net keeps them) read by the :class:`RegionalClassifier`.
    """

    def __init__(self, detector: nn.Module, head: RegionalClassifier) -> None:
        super().__init__()
        self.detector, self.head = detector, head
        self.detector.roi_heads.score_thresh = 0.0
        self.detector.roi_heads.detections_per_img = head.k

    @property
    def feature_dim(self) -> int:
        """``D``: the width of the detector's region features."""
        return int(self.detector.roi_heads.box_head.fc7.out_features)

    @torch.no_grad()
    def regions(self, images: torch.Tensor) -> RegionInputs:
        """The top regions of ``(N, C, S, S)`` unit images, one image at a time (CPU memory)."""
        from chestlens.models.detection import detections_with_features

        self.detector.eval()
        detections = [detections_with_features(self.detector, [image], k=self.head.k)[0] for image in images]
        sizes = [(int(images.shape[-2]), int(images.shape[-1]))] * len(images)
        return region_inputs(detections, sizes, k=self.head.k, feature_dim=self.feature_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(*self.regions(images))


def build_regional(spec: BundleSpec) -> nn.Module:
    """Randomly initialised network of a ``kind="regional"`` bundle spec: a :class:`RegionalModel` over a
    detector, or a :class:`~chestlens.models.segmenter_regions.SegmenterRegionalModel` over a segmenter.

    ``architecture_kwargs``: the region source, ``detector`` or ``segmenter`` (its ``architecture``,
    ``architecture_kwargs`` and ``labels``, as in its own bundle), and the classifier's ``k``,
    ``feature_dim``, ``hidden`` and ``dropout``; ``labels`` are the image classes.
    """
    kwargs = dict(spec.architecture_kwargs)
    sources = [kind for kind in REGION_SOURCES if kind in kwargs]
    if len(sources) != 1:
        raise ChestlensInputError(
            None, f"a regional bundle reads one region source ({' or '.join(REGION_SOURCES)}), got {sources}"
        )
    (source,) = sources
    try:
        source_kwargs = dict(kwargs.pop(source))
        source_spec = spec.model_copy(
            update={
                "kind": source,
                "architecture": source_kwargs["architecture"],
                "architecture_kwargs": source_kwargs["architecture_kwargs"],
                "labels": source_kwargs["labels"],
            }
        )
        head = RegionalClassifier(
            len(spec.labels),
            num_region_classes=len(source_kwargs["labels"]) - 1,
            **kwargs,
        )
    except (KeyError, TypeError) as error:
        raise ChestlensInputError(None, f"bad regional architecture_kwargs: {error}") from error
    if source == "segmenter":
        from chestlens.models.segmentation import build_segmenter

        return regional_over(source_spec, build_segmenter(source_spec), head)
    from chestlens.models.detection import build_detector

    return regional_over(source_spec, build_detector(source_spec), head)


def regional_over(source: BundleSpec, network: nn.Module, head: RegionalClassifier) -> nn.Module:
    """The regional network of ``head`` over ``network``, the detector or segmenter of spec ``source``:
    a :class:`RegionalModel`, or a :class:`~chestlens.models.segmenter_regions.SegmenterRegionalModel`
    that runs the segmenter with ``source.preprocess``."""
    if source.kind == "segmenter":
        from chestlens.models.segmenter_regions import SegmenterRegionalModel

        return SegmenterRegionalModel(network, head, source.preprocess)
    return RegionalModel(network, head)


def regional_spec_kwargs(
    source: BundleSpec, *, k: int, feature_dim: int, hidden: int, dropout: float
) -> dict[str, Any]:
    """The ``architecture_kwargs`` of a regional bundle over ``source``, a detector or segmenter bundle's
    spec (see :func:`build_regional`)."""
    if source.kind not in REGION_SOURCES:
        raise ChestlensInputError(
            None, f"regions come from a {' or '.join(REGION_SOURCES)} bundle, not a {source.kind}"
        )
    return {
        source.kind: {
            "architecture": source.architecture,
            "architecture_kwargs": source.architecture_kwargs,
            "labels": source.labels,
        },
        "k": k,
        "feature_dim": feature_dim,
        "hidden": hidden,
        "dropout": dropout,
    }


def ct_slice_units(pixels: Sequence[np.ndarray], preprocess: PreprocessSpec) -> torch.Tensor:
    """HU slices ``(rows, cols)`` as a regional or detector bundle reads them: windowed by ``preprocess``
    and stretched to its ``input_size``: ``(N, 1, S, S)`` float in ``[0, 1]``."""
    from chestlens.data.transforms import resize_unit
    from chestlens.preprocess.units import window_hu

    size = preprocess.input_size
    if not pixels:
        return torch.zeros(0, 1, size, size)
    return torch.cat(
        [resize_unit(torch.from_numpy(window_hu(hu, preprocess))[None], size)[None] for hu in pixels]
    )


class RegionalSeriesReader:
    """A regional bundle run over the slices of CT series: slice probabilities and series features.

    ``threshold`` is the bundle's operating point for its positive (last) label (0.5 without one).
    """

    #: HU slices per forward pass (bounds the unit tensor; a detector runs one slice at a time inside).
    chunk = 16

    def __init__(self, bundle: Bundle) -> None:
        from chestlens.models.kinds import kind_of

        require_kind(bundle.spec, "regional", bundle.path)
        self.spec, self.path = bundle.spec, bundle.path
        self.model = bundle.build_model()
        self._probabilities = kind_of(bundle.spec).probabilities
        positive = bundle.spec.labels[-1]
        self.threshold = next((p.threshold for p in bundle.spec.operating_points if p.label == positive), 0.5)

    @classmethod
    def load(cls, path: str | Path) -> RegionalSeriesReader:
        from chestlens.models.bundle import load_bundle

        return cls(load_bundle(path))

    def slice_probabilities(self, pixels: Sequence[np.ndarray]) -> np.ndarray:
        """``(N,)`` probability of the positive label for each HU slice ``(rows, cols)``."""
        out = []
        with torch.no_grad():
            for start in range(0, len(pixels), self.chunk):
                units = ct_slice_units(pixels[start : start + self.chunk], self.spec.preprocess)
                out.append(self._probabilities(self.model(units), self.spec)[:, -1].numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def series_features(self, pixels: Sequence[np.ndarray]) -> dict[str, float]:
        """The :data:`~chestlens.models.study.REGIONAL_FEATURES` of one series' HU slices: the share of its
        slices above :attr:`threshold` and the mean slice probability (0 for no slice)."""
        probability = self.slice_probabilities(pixels)
        if not len(probability):
            return dict.fromkeys(REGIONAL_FEATURES, 0.0)
        return {
            "regional_infected_share": float((probability > self.threshold).mean()),
            "regional_mean_probability": float(probability.mean()),
        }
