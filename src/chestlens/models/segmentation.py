"""Registry and factory of segmenters: U-Net, UNet++ and FPN (segmentation_models_pytorch) on timm encoders.

Every encoder is an smp *timm-universal* encoder (``tu-<timm name>``), so its weights are exactly the
feature part of the timm classifier of the same name (keys under ``encoder.model.``). smp and timm are
never asked for weights (``encoder_weights=None``); pretrained encoders are loaded here from local files
(:mod:`chestlens.models.pretrained`): the classifier head keys are dropped, the first convolution is adapted
to ``in_chans`` by timm's ``adapt_input_conv`` (grey: the RGB filters are summed), and every encoder key
must be present with the right shape (strict on the encoder).

Output convention (no activation inside the model): logits ``(B, classes, H, W)`` for input
``(B, in_chans, H, W)``.

* ``mode="binary"``: ``classes=1``, the foreground probability is ``sigmoid(logit)``;
* ``mode="multiclass"``: ``classes=C`` channels *including background at channel 0*, probabilities are
  ``softmax`` over the channel axis; classes are mutually exclusive per pixel.

``H`` and ``W`` must be multiples of 32 (the encoder's output stride); other sizes raise
:class:`~chestlens.errors.ChestlensInputError` on the forward call.

A fold ensemble (:class:`SegmenterEnsemble`, ``architecture_kwargs["members"] = K``) is ``K`` segmenters of
one recipe, e.g. the fold models of ``train segment --folds K --ensemble``, whose logits are averaged: the
same convention as test-time augmentation (:mod:`chestlens.models.tta`), so the bundle's graph, label rule and
every runtime treat it as one segmenter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import segmentation_models_pytorch as smp
import timm
import torch
from timm.models import adapt_input_conv

from chestlens.errors import ChestlensInputError
from chestlens.models.factory import DEFAULT
from chestlens.models.kinds import require_kind
from chestlens.models.pretrained import StateDict, resolve_weights
from chestlens.models.registry import IMAGENET_MEAN, IMAGENET_STD, get_model_config
from chestlens.preprocess.labels import BACKGROUND, SegMode
from chestlens.registry import Registry

if TYPE_CHECKING:
    from chestlens.models.spec import BundleSpec
    from chestlens.preprocess.spec import PreprocessSpec


class _InputSizeCheck:
    """Replaces smp's input check so that a wrong size gives a one-line ChestlensInputError."""

    encoder: torch.nn.Module

    def check_input_shape(self, x: torch.Tensor) -> None:
        stride = int(self.encoder.output_stride)
        h, w = x.shape[-2:]
        if h % stride or w % stride:
            up = (-(-h // stride) * stride, -(-w // stride) * stride)
            raise ChestlensInputError(
                None,
                f"segmenter input is {h}x{w} px; height and width must be multiples of {stride} "
                f"(resize or pad, e.g. to {up[0]}x{up[1]})",
            )


class Unet(_InputSizeCheck, smp.Unet):
    """smp U-Net with chestlens' input-size error."""


class UnetPlusPlus(_InputSizeCheck, smp.UnetPlusPlus):
    """smp UNet++ with chestlens' input-size error."""


class FPN(_InputSizeCheck, smp.FPN):
    """smp FPN with chestlens' input-size error."""


class SegmenterEnsemble(torch.nn.Module):
    """``K`` segmenters of one recipe as one: the mean of their logits ``(B, classes, H, W)``.

    Averaging logits keeps the output convention: a multiclass ensemble's softmax is the normalised
    geometric mean of its members' probabilities, a binary one's sigmoid of the mean logit. Weights are
    stored under ``members.<k>.``.
    """

    def __init__(self, members: list[torch.nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ChestlensInputError(
                None, f"a segmenter ensemble needs at least 2 members, got {len(members)}"
            )
        self.members = torch.nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.members[0](x)
        for member in self.members[1:]:
            logits = logits + member(x)
        return logits / len(self.members)


@dataclass(frozen=True, slots=True)
class SegmenterConfig:
    """One decoder architecture.

    Attributes:
        name: registry name used in bundles (``BundleSpec.architecture``) and on the command line.
        model_class: the smp model class it builds.
        description: one line for docs and ``--help``.
        options: keyword arguments of ``model_class`` that make this architecture (e.g. a narrower
            decoder); part of the name, so a bundle that names the architecture rebuilds the same network.
    """

    name: str
    model_class: type[smp.Unet] | type[smp.UnetPlusPlus] | type[smp.FPN]
    description: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EncoderConfig:
    """One encoder.

    Attributes:
        name: registry name (``architecture_kwargs["encoder"]`` of a bundle).
        timm_name: the timm architecture (smp encoder ``tu-<timm_name>``).
        mean, std: per-channel normalisation of its pretrained weights for inputs in ``[0, 1]``
            (RGB order; reduced to their channel mean for grey input).
        pretrained: LOCAL pretrained source for ``encoder_weights="default"``, or None.
    """

    name: str
    timm_name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pretrained: str | None


def _from_classifier(name: str) -> EncoderConfig:
    cfg = get_model_config(name)
    return EncoderConfig(name, cfg.timm_name, cfg.mean, cfg.std, cfg.pretrained)


ARCHITECTURES: Registry[SegmenterConfig] = Registry(
    "segmenter architecture",
    (
        SegmenterConfig("unet", Unet, "U-Net (smp Unet): one decoder path, skip connections per scale"),
        SegmenterConfig(
            "unet_light",
            Unet,
            "U-Net with a decoder of half the width (128-64-32-16-8 channels): about 2.5x faster to train "
            "on CPU at 256 px",
            {"decoder_channels": (128, 64, 32, 16, 8)},
        ),
        SegmenterConfig(
            "fpn",
            FPN,
            "FPN (smp FPN): a feature pyramid merged at 1/4 resolution, upsampled 4x; about 0.8x U-Net's "
            "training time on CPU",
        ),
        SegmenterConfig(
            "unetplusplus",
            UnetPlusPlus,
            "UNet++ (smp UnetPlusPlus): nested dense skip paths; on EfficientNet-Lite0 at 352 px a CPU "
            "training step takes about 1.05x U-Net's",
        ),
    ),
)

ENCODERS: Registry[EncoderConfig] = Registry(
    "segmenter encoder",
    (
        _from_classifier("efficientnet_lite0"),
        _from_classifier("efficientnet_lite2"),
        EncoderConfig("resnet18", "resnet18", IMAGENET_MEAN, IMAGENET_STD, None),
        EncoderConfig("resnet34", "resnet34", IMAGENET_MEAN, IMAGENET_STD, None),
        _from_classifier("resnet50"),
    ),
)


get_architecture = ARCHITECTURES.get  # a decoder architecture (``unet``, ``unet_light``, ``fpn``, ...)
get_encoder = ENCODERS.get  # an encoder (``efficientnet_lite0``, ``resnet18``, ...)
list_architectures = ARCHITECTURES.names
list_encoders = ENCODERS.names


def create_segmenter(
    arch: str,
    encoder: str,
    classes: int,
    *,
    in_chans: int = 1,
    encoder_weights: str | Path | None = DEFAULT,
) -> torch.nn.Module:
    """Create a segmenter (see the module docstring for the output convention).

    Args:
        arch: decoder architecture, see :func:`list_architectures`.
        encoder: encoder name, see :func:`list_encoders`.
        classes: output channels: 1 for binary (sigmoid), C >= 2 incl. background for multiclass (softmax).
        in_chans: input channels; 1 for grey radiographs/CT (first convolution adapted), 3 for RGB.
        encoder_weights: ``"default"`` = the encoder's offline ImageNet source (an error if it has none),
            ``None`` = random initialisation, or an offline source name / local checkpoint of the timm
            classifier of the same architecture (its head is dropped). The decoder is always random.

    Returns:
        a module mapping ``(B, in_chans, H, W)`` float tensors (H, W multiples of 32) to
        ``(B, classes, H, W)`` logits.
    """
    arch_cfg = get_architecture(arch)
    enc_cfg = get_encoder(encoder)
    if classes < 1:
        raise ChestlensInputError(None, f"a segmenter needs at least one output class, got {classes}")
    if encoder_weights == DEFAULT:
        if enc_cfg.pretrained is None:
            raise ChestlensInputError(
                None,
                f"no offline ImageNet weights ship for encoder {encoder}; pass encoder_weights=<checkpoint> "
                "or encoder_weights=None to train from scratch",
            )
        encoder_weights = enc_cfg.pretrained
    model = arch_cfg.model_class(
        encoder_name=f"tu-{enc_cfg.timm_name}",
        encoder_weights=None,  # never let smp/timm fetch weights
        in_channels=in_chans,
        classes=classes,
        **arch_cfg.options,
    )
    if encoder_weights is not None:
        load_encoder_weights(model.encoder.model, enc_cfg.timm_name, encoder_weights, in_chans)
    return model


def load_encoder_weights(
    features: torch.nn.Module, timm_name: str, weights: str | Path | StateDict, in_chans: int
) -> None:
    """Load a timm-keyed classifier checkpoint (or state dict) into a timm ``features_only`` model (strict
    on the encoder).

    Keys of the classifier that the feature model lacks (its head: e.g. ``conv_head``, ``bn2``,
    ``classifier`` or ``fc``) are dropped; any other missing or extra key is an error. The first
    convolution is adapted to ``in_chans`` with timm's ``adapt_input_conv``.
    """
    state = dict(weights) if isinstance(weights, dict) else dict(resolve_weights(weights))
    first = f"{timm.models.get_pretrained_cfg_value(timm_name, 'first_conv')}.weight"
    if first in state:
        state[first] = adapt_input_conv(in_chans, state[first])
    with torch.device("meta"):
        classifier_keys = set(timm.create_model(timm_name).state_dict())
    own = features.state_dict()
    # BatchNorm counters may be absent (e.g. torchvision checkpoints); torch then initialises them.
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    extra = sorted(set(state) - classifier_keys)
    if missing or extra:
        raise ChestlensInputError(
            _origin(weights),
            f"not a {timm_name} checkpoint: missing encoder keys {missing[:3]}, unexpected keys {extra[:3]}",
        )
    try:
        features.load_state_dict({k: state[k] for k in own if k in state}, strict=True)
    except RuntimeError as error:
        raise ChestlensInputError(
            _origin(weights), f"encoder weights do not fit {timm_name}: {error}"
        ) from error


def _origin(weights: str | Path | StateDict) -> str | None:
    return None if isinstance(weights, dict) else str(weights)


@dataclass(frozen=True, slots=True)
class TrainedEncoder:
    """The encoder of a trained segmenter bundle, reusable to initialise another model (e.g. a detector's
    backbone) that must then see the same input.

    Attributes:
        encoder: registry name (:func:`get_encoder`).
        state_dict: its weights under timm ``features_only`` keys (fp32).
        preprocess: the bundle's preprocessing (input size, channels, normalisation, CT window).
    """

    encoder: str
    state_dict: StateDict
    preprocess: PreprocessSpec


_SMP_TIMM_PREFIX = "encoder.model."  # where smp's ``tu-`` encoders keep the timm model


def trained_encoder(bundle: str | Path) -> TrainedEncoder:
    """The encoder of a segmenter bundle (a folder or a bundled name such as ``"lesions-ct-segmenter"``)."""
    from chestlens.models.bundle import load_bundle

    loaded = load_bundle(bundle)
    require_kind(loaded.spec, "segmenter", loaded.path)
    if "members" in loaded.spec.architecture_kwargs:
        raise ChestlensInputError(
            loaded.path,
            "a segmenter ensemble has one encoder per member: give one of its fold models' bundles",
        )
    state = {
        key.removeprefix(_SMP_TIMM_PREFIX): value
        for key, value in loaded.state_dict.items()
        if key.startswith(_SMP_TIMM_PREFIX)
    }
    return TrainedEncoder(
        encoder=loaded.spec.architecture_kwargs["encoder"],
        state_dict=state,
        preprocess=loaded.spec.preprocess,
    )


def output_channels(mode: SegMode, labels: list[str]) -> int:
    """Logit channels for a bundle's ``mode`` and ``labels``; checks the label convention.

    binary: ``labels == [foreground name]`` -> 1; multiclass: ``labels == ["background", c1, ..., cK]``
    -> K + 1.
    """
    if mode == "binary" and len(labels) == 1:
        return 1
    if mode == "multiclass" and len(labels) >= 2 and labels[0] == BACKGROUND:
        return len(labels)
    raise ChestlensInputError(
        None,
        f"segmenter labels {labels} do not fit mode {mode!r}: binary takes one foreground name, "
        f"multiclass takes {BACKGROUND!r} first and at least one class",
    )


def build_segmenter(spec: BundleSpec) -> torch.nn.Module:
    """Randomly initialised segmenter for a ``kind="segmenter"`` bundle spec (weights loaded by the caller).

    Reads ``architecture`` and ``architecture_kwargs = {"encoder": ..., "mode": "binary"|"multiclass"}``,
    plus ``"members": K`` (``K >= 2``) for a :class:`SegmenterEnsemble` of ``K`` such segmenters.
    """
    kwargs = spec.architecture_kwargs
    if set(kwargs) - {"members"} != {"encoder", "mode"}:
        raise ChestlensInputError(
            None, f"segmenter architecture_kwargs must be {{encoder, mode[, members]}}, got {sorted(kwargs)}"
        )
    members = kwargs.get("members")
    if members is not None and (not isinstance(members, int) or members < 2):
        raise ChestlensInputError(
            None, f"segmenter ensemble members must be an integer >= 2, got {members!r}"
        )

    def one() -> torch.nn.Module:
        return create_segmenter(
            spec.architecture,
            kwargs["encoder"],
            output_channels(kwargs["mode"], spec.labels),
            in_chans=spec.preprocess.in_chans,
            encoder_weights=None,
        )

    return one() if members is None else SegmenterEnsemble([one() for _ in range(members)])
