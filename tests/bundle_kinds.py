"""Tiny, seeded bundles of every registered kind, for the shared kind tests and the ``tiny_bundle`` fixture.

:data:`TINY_KINDS` maps each kind of :data:`chestlens.models.kinds.KINDS` to a function that returns a
spec and a freshly built, randomly initialised network of that kind (small input, small heads), so a test
can save it as a bundle and compare the loaded copy with it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from chestlens.models.bundle import save_bundle
from chestlens.models.spec import BundleSpec
from chestlens.preprocess.spec import PreprocessSpec

#: Small Mask R-CNN settings: 64 px images, few proposals, few kept detections.
TINY_DETECTOR = {
    "min_size": 64,
    "max_size": 64,
    "rpn_pre_nms_top_n_test": 100,
    "rpn_post_nms_top_n_test": 30,
    "box_batch_size_per_image": 32,
    "box_detections_per_img": 12,
}
DETECTOR_LABELS = ["background", "ggo", "consolidation"]


def tiny_classifier() -> tuple[BundleSpec, torch.nn.Module]:
    from chestlens.models.factory import create_model

    spec = BundleSpec(
        name="tiny-classifier",
        version="0.0.1",
        kind="classifier",
        task="xray3",
        architecture="efficientnet_lite0",
        labels=["COVID-19", "pneumonia", "normal"],
        preprocess=PreprocessSpec(input_size=32, mean=[0.5], std=[0.5]),
    )
    return spec, create_model("efficientnet_lite0", 3, weights=None)


def tiny_segmenter() -> tuple[BundleSpec, torch.nn.Module]:
    from chestlens.models.segmentation import create_segmenter

    spec = BundleSpec(
        name="tiny-lesions",
        version="0.0.1",
        kind="segmenter",
        task="lesions-ct",
        architecture="unet",
        architecture_kwargs={"encoder": "efficientnet_lite0", "mode": "multiclass"},
        labels=["background", "ground_glass_opacity", "consolidation"],
        preprocess=PreprocessSpec(input_size=64, mean=[0.5], std=[0.5]),
    )
    return spec, create_segmenter("unet", "efficientnet_lite0", 3, encoder_weights=None)


def tiny_detector() -> tuple[BundleSpec, torch.nn.Module]:
    from chestlens.models.detection import create_detector

    model = create_detector(
        "maskrcnn_resnet18_fpn", len(DETECTOR_LABELS), backbone_weights=None, **TINY_DETECTOR
    )
    spec = BundleSpec(
        name="tiny-detector",
        version="0.0.1",
        kind="detector",
        task="lesions-ct",
        architecture="maskrcnn_resnet18_fpn",
        architecture_kwargs=model.bundle_kwargs,
        labels=DETECTOR_LABELS,
        preprocess=PreprocessSpec(input_size=64, mean=[0.0], std=[1.0]),
    )
    return spec, model


def _tiny_regional_spec(name: str, source: BundleSpec, feature_dim: int) -> BundleSpec:
    """The spec of a tiny regional bundle (k 8, hidden 16) over the ``source`` detector or segmenter."""
    from chestlens.models.regional import regional_spec_kwargs

    return BundleSpec(
        name=name,
        version="0.0.1",
        kind="regional",
        task="ct-slice-infection",
        architecture="regional_classifier",
        architecture_kwargs=regional_spec_kwargs(
            source, k=8, feature_dim=feature_dim, hidden=16, dropout=0.0
        ),
        labels=["no_infection", "infection"],
        preprocess=source.preprocess,
    )


def tiny_regional() -> tuple[BundleSpec, torch.nn.Module]:
    from chestlens.models.regional import RegionalClassifier, RegionalModel

    detector_spec, detector = tiny_detector()
    feature_dim = detector.roi_heads.box_head.fc7.out_features
    model = RegionalModel(detector, RegionalClassifier(2, 8, feature_dim, hidden=16, dropout=0.0))
    return _tiny_regional_spec("tiny-regional", detector_spec, feature_dim), model


def tiny_regional_over_segmenter() -> tuple[BundleSpec, torch.nn.Module]:
    """A regional bundle whose regions are the tiny lesion segmenter's connected components."""
    from chestlens.models.regional import RegionalClassifier
    from chestlens.models.segmenter_regions import SegmenterRegionalModel, region_feature_dim

    segmenter_spec, segmenter = tiny_segmenter()
    feature_dim = region_feature_dim(len(segmenter_spec.labels))
    head = RegionalClassifier(2, 8, feature_dim, hidden=16, dropout=0.0)
    spec = _tiny_regional_spec("tiny-regional-segmenter", segmenter_spec, feature_dim)
    return spec, SegmenterRegionalModel(segmenter, head, segmenter_spec.preprocess)


def tiny_study() -> tuple[BundleSpec, torch.nn.Module]:
    """A study bundle (CT series from lesion features) with random weights, mean and std."""
    from chestlens.models.study import STUDY_ARCHITECTURE, STUDY_FEATURES, build_study

    spec = BundleSpec(
        name="tiny-study",
        version="0.0.1",
        kind="study",
        task="ct3",
        architecture=STUDY_ARCHITECTURE,
        architecture_kwargs={"features": list(STUDY_FEATURES)},
        labels=["COVID-19", "CAP", "normal"],
        preprocess=PreprocessSpec(input_size=1, mean=[0.0], std=[1.0]),
    )
    model = build_study(spec)
    with torch.no_grad():
        for tensor in (model.weight, model.bias, model.mean):
            tensor.normal_()
        model.std.uniform_(0.5, 2.0)
    return spec, model


TINY_KINDS: dict[str, Callable[[], tuple[BundleSpec, torch.nn.Module]]] = {
    "classifier": tiny_classifier,
    "segmenter": tiny_segmenter,
    "detector": tiny_detector,
    "regional": tiny_regional,
    "study": tiny_study,
}


#: Other tiny bundles of a kind, by name: the kind's contract runs on them too.
TINY_VARIANTS = {"regional over a segmenter": tiny_regional_over_segmenter}


def make_tiny(kind: str, *, seed: int = 0) -> tuple[BundleSpec, torch.nn.Module]:
    """A seeded tiny spec and network of ``kind`` (or of a :data:`TINY_VARIANTS` name), in eval mode."""
    torch.manual_seed(seed)
    spec, model = {**TINY_KINDS, **TINY_VARIANTS}[kind]()
    return spec, model.eval()


def save_tiny(kind: str, folder: Path, *, fp16: bool = False, **fields: object) -> Path:
    """Save a tiny bundle of ``kind`` (``fields`` override spec fields) and return its folder."""
    spec, model = make_tiny(kind)
    return save_bundle(with_fields(spec, **fields), model.state_dict(), folder, fp16=fp16)


def with_fields(spec: BundleSpec, **fields: object) -> BundleSpec:
    """``spec`` with ``fields`` replaced, validated as a new spec."""
    return BundleSpec.model_validate({**spec.model_dump(), **fields})


def synthetic_study_series(seed: int = 0, per_class: int = 2, *, regional: bool = False) -> list:
    """``per_class`` series (one patient each) of every ``ct3`` class, with lesion features (and the
    regional ones, with ``regional``) that tell the classes apart (class centres 1, 0, -1 plus noise of
    SD 0.1), for study bundles fitted in tests."""
    import numpy as np

    from chestlens.evaluate.study_eval import StudySeries
    from chestlens.models.study import REGIONAL_FEATURES, STUDY_FEATURES

    names = (*STUDY_FEATURES, *REGIONAL_FEATURES) if regional else STUDY_FEATURES
    rng = np.random.default_rng(seed)
    rows = []
    for label, centre in {"COVID-19": 1.0, "CAP": 0.0, "normal": -1.0}.items():
        for k in range(per_class):
            values = {name: float(centre + 0.1 * rng.standard_normal()) for name in names}
            rows.append(
                StudySeries(
                    patient=f"{label}-{k}", series=f"/series/{label}-{k}", label=label, features=values
                )
            )
    return rows


def train_synthetic_study(out: Path, lesion_bundle: str = "lesions-ct-segmenter", **config: object) -> Path:
    """A study bundle fitted on :func:`synthetic_study_series`, recorded as measured by ``lesion_bundle``
    (``config``: :class:`StudyConfig` fields; with ``regional=FOLDER`` it embeds that regional bundle)."""
    from chestlens.models.spec import read_spec
    from chestlens.train.study import StudyConfig, train_study

    lesion = read_spec(lesion_bundle)
    ref = {"name": lesion.name, "version": lesion.version, "weights_sha256": lesion.weights_sha256}
    cfg = StudyConfig(out=str(out), name="test-study", **config)  # type: ignore[arg-type]
    regional = None
    if cfg.regional is not None:
        regional_spec = read_spec(cfg.regional)
        regional = {"name": regional_spec.name, "version": regional_spec.version, "trained_on": ["none"]}
    series = synthetic_study_series(regional=cfg.regional is not None)
    return train_study(cfg, series, {**ref, "source": lesion_bundle}, regional_bundle=regional)
