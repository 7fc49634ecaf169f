"""Bundle kinds: one registered object per kind of model a bundle can hold.

A bundle's ``kind`` (``bundle.json``) names one :class:`BundleKind` in :data:`KINDS`, and everything
that depends on the kind asks that object instead of comparing strings: how to build the network
(weights are loaded by :meth:`chestlens.models.bundle.Bundle.build_model`), how the network's raw
output becomes probabilities, whether it has an inference graph (``model.onnx``) and what the graph
returns, and which role it plays in screening. Looking a kind up by name gives a one-line error
listing the known kinds (:class:`chestlens.registry.Registry`).

How a kind is *evaluated* and how its model card is rendered is the evaluation layer's half of the same
entry (:mod:`chestlens.evaluate.kinds`, keyed by the same names; the layers forbid this module from
importing it). A test checks that every kind here has both halves and passes the shared test base.

This module imports no PyTorch: the builders import it when they run, so ``bundle.json`` can be
inspected (``chestlens info``, the ONNX runtime) in an install without it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from chestlens.errors import ChestlensInputError
from chestlens.models.spec import BundleSpec
from chestlens.registry import Registry

if TYPE_CHECKING:
    import torch

#: What a bundle does in the screening pipeline (:class:`chestlens.pipeline.screener.Screener`).
Role = Literal["classifier", "lungs", "lesions", "study"]
#: The roles in the order the screener runs them (``study``: a CT series classified from its lesions).
ROLES: tuple[Role, ...] = ("classifier", "lungs", "lesions", "study")


@dataclass(frozen=True, slots=True)
class BundleKind:
    """Everything kind-specific about a bundle below the evaluation layer.

    Attributes:
        name: the ``kind`` value in ``bundle.json``.
        description: one line for ``chestlens models`` and messages.
        build: a randomly initialised network for a spec of this kind (PyTorch imported on call).
        probabilities: ``(raw output, spec) -> probabilities`` of the network's forward output, e.g.
            ``softmax(logits / T)`` of a classifier's ``(N, C)`` logits; None when the raw output is not
            a tensor of class scores (a detector returns instance lists).
        graph: ``(network, spec) -> module`` of the inference graph exported as ``model.onnx``
            (:mod:`chestlens.models.graphs`); None: this kind has no graph and cannot screen through
            ONNX Runtime.
        graph_outputs: names and meaning (shapes) of the graph's outputs, in order.
        image_labels: one probability per label per image, judged against one label per image
            (AUC, operating points); False for per-pixel or per-instance outputs.
        role: the screening role of a spec of this kind, or None when screening does not use it.
        image_input: True when the network reads an image (``preprocess`` applies); False for a kind
            that reads features of a whole series.
    """

    name: str
    description: str
    build: Callable[[BundleSpec], torch.nn.Module]
    probabilities: Callable[[torch.Tensor, BundleSpec], torch.Tensor] | None
    graph: Callable[[torch.nn.Module, BundleSpec], torch.nn.Module] | None
    graph_outputs: dict[str, str] = field(default_factory=dict)
    image_labels: bool = False
    role: Callable[[BundleSpec], Role | None] = lambda _spec: None
    image_input: bool = True


def _build_classifier(spec: BundleSpec) -> torch.nn.Module:
    from chestlens.models.factory import create_model

    return create_model(
        spec.architecture,
        num_classes=len(spec.labels),
        in_chans=spec.preprocess.in_chans,
        weights=None,
        **spec.architecture_kwargs,
    )


def _build_segmenter(spec: BundleSpec) -> torch.nn.Module:
    from chestlens.models.segmentation import build_segmenter

    return build_segmenter(spec)


def _build_detector(spec: BundleSpec) -> torch.nn.Module:
    from chestlens.models.detection import build_detector

    return build_detector(spec)


def _build_regional(spec: BundleSpec) -> torch.nn.Module:
    from chestlens.models.regional import build_regional

    return build_regional(spec)


def _build_study(spec: BundleSpec) -> torch.nn.Module:
    from chestlens.models.study import build_study

    return build_study(spec)


def _softmax_with_temperature(logits: torch.Tensor, spec: BundleSpec) -> torch.Tensor:
    return (logits / spec.temperature).softmax(dim=1)


def _segmenter_probabilities(logits: torch.Tensor, spec: BundleSpec) -> torch.Tensor:
    return logits.sigmoid() if segmenter_is_binary(spec) else logits.softmax(dim=1)


def segmenter_is_binary(spec: BundleSpec) -> bool:
    """True for a one-channel (sigmoid) segmenter, False for a softmax one over its labels."""
    return spec.architecture_kwargs.get("mode") == "binary"


def _classifier_graph(network: torch.nn.Module, spec: BundleSpec) -> torch.nn.Module:
    from chestlens.models.graphs import ClassifierGraph

    return ClassifierGraph(network, spec.preprocess, spec.temperature)


def _segmenter_graph(network: torch.nn.Module, spec: BundleSpec) -> torch.nn.Module:
    from chestlens.models.graphs import SegmenterGraph

    return SegmenterGraph(network, spec.preprocess, segmenter_is_binary(spec))


KINDS: Registry[BundleKind] = Registry(
    "bundle kind",
    [
        BundleKind(
            name="classifier",
            description="image classifier: calibrated class probabilities and class-activation maps",
            build=_build_classifier,
            probabilities=_softmax_with_temperature,
            graph=_classifier_graph,
            graph_outputs={
                "logits": "(N, C) raw class scores",
                "probabilities": "(N, C) softmax(logits / temperature)",
                "cam": "(N, C, S, S) class-activation maps, min-max scaled to [0, 1] per map",
            },
            image_labels=True,
            role=lambda _spec: "classifier",
        ),
        BundleKind(
            name="segmenter",
            description="semantic segmenter: per-class probability maps (lungs or lesions)",
            build=_build_segmenter,
            probabilities=_segmenter_probabilities,
            graph=_segmenter_graph,
            graph_outputs={
                "probabilities": "(N, K, S, S) per-class probabilities (sigmoid if K == 1, else softmax; "
                "channel 0 background)",
            },
            role=lambda spec: "lungs" if spec.task == "lungs" else "lesions",
        ),
        BundleKind(
            name="detector",
            description="instance detector (Mask R-CNN): lesion boxes, masks and scores",
            build=_build_detector,
            probabilities=None,
            graph=None,
        ),
        BundleKind(
            name="regional",
            description="image classifier over a lesion detector's ranked regions (COVID-CT-Mask-Net style)",
            build=_build_regional,
            probabilities=_softmax_with_temperature,
            graph=None,
            image_labels=True,
        ),
        BundleKind(
            name="study",
            description="CT series classifier from lesion features (multinomial logistic regression; numpy "
            "at screening time)",
            build=_build_study,
            probabilities=_softmax_with_temperature,
            graph=None,
            role=lambda _spec: "study",
            image_input=False,
        ),
    ],
)


def kind_of(spec: BundleSpec) -> BundleKind:
    """The registered kind of ``spec`` (a one-line error for a kind this version does not know)."""
    return KINDS.get(spec.kind)


def require_kind(spec: BundleSpec, kind: str, where: str | Path | None) -> None:
    """Refuse, in one line naming ``where``, a bundle that is not of ``kind``."""
    KINDS.get(kind)  # an unknown expected kind is a programming error caught by the tests
    if spec.kind != kind:
        raise ChestlensInputError(where, f"needs a {kind} bundle, got a {spec.kind}")


def require_graph(spec: BundleSpec, where: str | Path | None) -> BundleKind:
    """The kind of ``spec``, refused in one line when it has no inference graph."""
    kind = kind_of(spec)
    if kind.graph is None:
        raise ChestlensInputError(where, f"a {spec.kind} bundle has no inference graph (model.onnx)")
    return kind


def role_of(spec: BundleSpec) -> Role | None:
    """What ``spec``'s model does in screening (classifier, lungs, lesions), or None."""
    return kind_of(spec).role(spec)
