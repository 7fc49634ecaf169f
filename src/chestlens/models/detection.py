"""Registry and factory of lesion instance detectors: torchvision Mask R-CNN on light FPN backbones.

Every entry is a torchvision ``MaskRCNN`` (the ``maskrcnn_resnet50_fpn`` recipe: a torchvision classifier
turned into an FPN backbone by ``_resnet_fpn_extractor`` / ``_mobilenet_extractor``, RPN, RoI box and
mask heads), or the same detector on a timm encoder (``family="timm"``: the encoder's stride 4-32 features
into torchvision's ``FeaturePyramidNetwork``). Nothing is ever downloaded: the backbone is random or
initialised from a LOCAL classifier checkpoint (torchvision layout; timm ResNets share those keys) or,
for timm encoders, from the encoder's offline ImageNet source (EfficientNet-Lite0:
``backbone_weights="default"``); the FPN and heads are always random.

Grey input (``in_chans=1``, the default) is handled explicitly by a one-channel network, as for the
classifiers and segmenters (:mod:`chestlens.models.registry`): the first convolution takes one channel
(a checkpoint's RGB filters are summed by timm's ``adapt_input_conv``) and ``GeneralizedRCNNTransform``
normalises with one mean/std (the backbone's pretrained values averaged over RGB, e.g. ImageNet's
0.449 / 0.226 for torchvision backbones, 0.5 / 0.5 for EfficientNet-Lite0). Images are never
replicated to three channels. :class:`MaskRCNNDetector` refuses images with another channel count.

Model I/O (torchvision's, unchanged): input a list of ``(in_chans, H, W)`` float tensors in ``[0, 1]``
(CT windowed first), any sizes; the model resizes internally so that the short side is ``min_size``
(long side at most ``max_size``) and maps outputs back. Training mode takes targets
(:func:`chestlens.data.instances.detection_target`) and returns a dict of losses; eval mode returns
one dict per image: ``boxes`` float (N, 4) ``(x0, y0, x1, y1)`` in input pixels, ``labels`` int64 (N,)
in ``1..num_classes-1``, ``scores`` (N,) sorted in decreasing order, ``masks`` float (N, 1, H, W)
probabilities. :func:`detections_with_features` adds the RoI features of the kept detections.

Anchors are smaller than torchvision's COCO defaults (32-512 px): CT lesions on 512 px slices are about
3-170 px across (COVID-CT-Mask-Net uses 2-32 px anchors on every level for the same reason).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import timm
import torch
import torchvision
from timm.layers import freeze_batch_norm_2d
from timm.models import adapt_input_conv
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _mobilenet_extractor, _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FeaturePyramidNetwork, FrozenBatchNorm2d, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from chestlens.data.annotations import Instance
from chestlens.data.instances import instances_from_detections
from chestlens.errors import ChestlensInputError
from chestlens.models.catalog import is_bundle
from chestlens.models.pretrained import StateDict, load_checkpoint
from chestlens.models.registry import IMAGENET_MEAN, IMAGENET_STD
from chestlens.models.segmentation import get_encoder, load_encoder_weights, trained_encoder
from chestlens.registry import Registry

if TYPE_CHECKING:
    from chestlens.models.spec import BundleSpec

BACKGROUND = "background"
FPN_CHANNELS = 256  # torchvision's FPN width
_RESNET_LEVELS = ("0", "1", "2", "3")  # strides 4, 8, 16, 32 (+ "pool", stride 64, for the RPN only)
_TIMM_OUT_INDICES = (1, 2, 3, 4)  # timm features_only stages of strides 4, 8, 16, 32 (same levels)
DEFAULT_WEIGHTS = "default"  # backbone_weights: the timm encoder's offline ImageNet source
_MOBILENET_LEVELS = ("0", "1")  # strides 16, 32 (+ "pool")


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """One detector architecture.

    Attributes:
        name: registry name (``BundleSpec.architecture`` of a ``kind="detector"`` bundle).
        family: ``"resnet"`` (FPN on layer1-4), ``"mobilenet"`` (FPN on the last two stages) or ``"timm"``
            (FPN on a timm encoder's stride 4-32 features).
        backbone: the torchvision classifier the backbone is cut from (``torchvision.models.<backbone>``),
            or for ``"timm"`` the encoder name of :mod:`chestlens.models.segmentation`.
        first_conv: dotted path of its first convolution (adapted to ``in_chans``).
        head_prefix: state-dict prefix of its classifier head (dropped from backbone checkpoints).
        trainable_max: number of backbone stages (``trainable_layers`` ranges over ``0..trainable_max``);
            for ``"timm"`` the stages are :attr:`stage_prefixes`, frozen from the input side.
        anchor_sizes: anchor sides in pixels of the resized image, one tuple per FPN output.
        representation_size: width of the box head (the region feature dimension).
        mask_layers: channels of the mask head's 3x3 convolutions.
        description: one line for docs and ``--help``.
    """

    name: str
    family: Literal["resnet", "mobilenet", "timm"]
    backbone: str
    first_conv: str
    head_prefix: str
    trainable_max: int
    anchor_sizes: tuple[tuple[int, ...], ...]
    representation_size: int
    mask_layers: tuple[int, ...]
    description: str
    stage_prefixes: tuple[tuple[str, ...], ...] = ()

    @property
    def featmap_names(self) -> list[str]:
        """FPN outputs the RoI heads pool from."""
        return list(_MOBILENET_LEVELS if self.family == "mobilenet" else _RESNET_LEVELS)


_RESNET_ANCHORS = ((8,), (16,), (32,), (64,), (128,))
ASPECT_RATIOS = (0.5, 1.0, 2.0)


def _resnet(
    backbone: str, representation_size: int, mask_layers: tuple[int, ...], description: str
) -> DetectorConfig:
    return DetectorConfig(
        name=f"maskrcnn_{backbone}_fpn",
        family="resnet",
        backbone=backbone,
        first_conv="conv1",
        head_prefix="fc.",
        trainable_max=5,
        anchor_sizes=_RESNET_ANCHORS,
        representation_size=representation_size,
        mask_layers=mask_layers,
        description=description,
    )


DETECTORS: Registry[DetectorConfig] = Registry(
    "detector",
    (
        _resnet("resnet18", 256, (128, 128), "Mask R-CNN, ResNet-18-FPN, light heads: the CPU default"),
        _resnet(
            "resnet34", 256, (128, 128), "Mask R-CNN, ResNet-34-FPN, light heads (box 256-d, mask 2x128)"
        ),
        _resnet(
            "resnet50",
            1024,
            (256, 256, 256, 256),
            "Mask R-CNN, ResNet-50-FPN, torchvision's heads (box 1024-d, mask 4x256); 2.3 s/img at 512 px",
        ),
        DetectorConfig(
            name="maskrcnn_mobilenet_v3_fpn",
            family="mobilenet",
            backbone="mobilenet_v3_large",
            first_conv="features.0.0",
            head_prefix="classifier.",
            trainable_max=6,
            anchor_sizes=((8, 16, 32, 64, 128),) * 3,
            representation_size=256,
            mask_layers=(128, 128),
            description="Mask R-CNN, MobileNetV3-Large-FPN (strides 16-64): fastest, coarse on small lesions",
        ),
        DetectorConfig(
            name="maskrcnn_efficientnet_lite0_fpn",
            family="timm",
            backbone="efficientnet_lite0",
            first_conv="conv_stem",
            head_prefix="classifier.",
            trainable_max=5,
            anchor_sizes=_RESNET_ANCHORS,
            representation_size=256,
            mask_layers=(128, 128),
            description="Mask R-CNN, EfficientNet-Lite0-FPN with offline ImageNet weights, light heads",
            stage_prefixes=(
                ("conv_stem.", "bn1.", "blocks.0."),
                ("blocks.1.",),
                ("blocks.2.",),
                ("blocks.3.", "blocks.4."),
                ("blocks.5.", "blocks.6."),
            ),
        ),
    ),
)


class TimmFPNBackbone(nn.Module):
    """A timm ``features_only`` encoder (strides 4, 8, 16, 32) under torchvision's FPN.

    Input ``(B, in_chans, H, W)``; output the ordered dict torchvision's RPN and RoI heads take: FPN levels
    ``"0"``-``"3"`` (strides 4-32) and ``"pool"`` (stride 64), each with :attr:`out_channels` channels.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.body = encoder
        self.fpn = FeaturePyramidNetwork(
            encoder.feature_info.channels(), FPN_CHANNELS, extra_blocks=LastLevelMaxPool()
        )
        self.out_channels = FPN_CHANNELS

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))


get_detector_config = DETECTORS.get  # look up a detector by registry name
list_detectors = DETECTORS.names


class MaskRCNNDetector(MaskRCNN):
    """torchvision ``MaskRCNN`` that checks its inputs' channel count and remembers how it was built.

    Attributes:
        in_chans: channels every input image must have.
        bundle_kwargs: the ``architecture_kwargs`` that rebuild it with :func:`create_detector` (min/max
            size, ``frozen_bn`` and any extra MaskRCNN keyword), for a ``kind="detector"`` bundle.
    """

    def __init__(self, backbone: nn.Module, *, in_chans: int, bundle_kwargs: dict[str, Any], **kwargs: Any):
        super().__init__(backbone, num_classes=None, **kwargs)
        self.in_chans = in_chans
        self.bundle_kwargs = bundle_kwargs

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None):
        check_images(images, self.in_chans)
        return super().forward(images, targets)


def check_images(images: Sequence[torch.Tensor], in_chans: int) -> None:
    """Raise ChestlensInputError unless every image is a ``(in_chans, H, W)`` tensor."""
    for image in images:
        if image.ndim != 3 or image.shape[0] != in_chans:
            raise ChestlensInputError(
                None, f"detector input has shape {tuple(image.shape)}; expected ({in_chans}, H, W) images"
            )


def create_detector(
    name: str,
    num_classes: int,
    *,
    in_chans: int = 1,
    min_size: int = 512,
    max_size: int = 512,
    backbone_weights: str | Path | None = None,
    trainable_layers: int | None = None,
    frozen_bn: bool | None = None,
    **kwargs: Any,
) -> MaskRCNNDetector:
    """Create a Mask R-CNN detector (see the module docstring for its inputs and outputs).

    Args:
        name: registry name, see :func:`list_detectors`.
        num_classes: classes *including background* (3 for background, GGO, consolidation).
        in_chans: 1 for grey CT/radiographs (one-channel network), 3 for RGB.
        min_size, max_size: the internal resize (short side, cap on the long side) in pixels.
        backbone_weights: None (random) or a LOCAL checkpoint of the torchvision classifier
            ``cfg.backbone`` (``.safetensors`` or a ``weights_only`` torch file); its head is dropped and
            every other backbone key must be present. For ``family="timm"``: ``"default"`` (the
            encoder's offline ImageNet source), an offline source name, a timm-keyed checkpoint, or a
            segmenter bundle (folder or bundled name) with the same encoder, whose trained encoder is
            reused (transfer from segmentation, e.g. ``"lesions-ct-segmenter"``).
        trainable_layers: backbone stages trained, counted from the top (torchvision's
            ``trainable_backbone_layers``); default 3 with ``backbone_weights``, all without (freezing
            random layers is refused).
        frozen_bn: ``FrozenBatchNorm2d`` in the backbone (torchvision's choice for a pretrained backbone,
            since batches of 1-2 images give useless batch statistics); default: True with
            ``backbone_weights``, False (trainable ``BatchNorm2d``) without.
        **kwargs: other ``torchvision.models.detection.MaskRCNN`` keywords, e.g. ``box_score_thresh``,
            ``box_detections_per_img``, ``box_batch_size_per_image``, ``rpn_post_nms_top_n_train``.
    """
    cfg = get_detector_config(name)
    if num_classes < 2:
        raise ChestlensInputError(
            None, f"a detector needs background and at least one class, got {num_classes}"
        )
    if in_chans not in (1, 3):
        raise ChestlensInputError(None, f"in_chans must be 1 or 3, got {in_chans}")
    pretrained = backbone_weights is not None
    frozen_bn = pretrained if frozen_bn is None else frozen_bn
    if trainable_layers is None:
        trainable_layers = 3 if pretrained else cfg.trainable_max
    if not 0 <= trainable_layers <= cfg.trainable_max:
        raise ChestlensInputError(None, f"trainable_layers must be in 0..{cfg.trainable_max} for {name}")
    if not pretrained and trainable_layers < cfg.trainable_max:
        raise ChestlensInputError(
            None, "trainable_layers < all freezes randomly initialised layers; pass backbone_weights"
        )
    if cfg.family == "timm":
        backbone = _timm_backbone(cfg, in_chans, backbone_weights, frozen_bn, trainable_layers)
    elif pretrained and is_bundle(backbone_weights):
        raise ChestlensInputError(
            str(backbone_weights),
            f"{name} takes a classifier checkpoint; segmenter encoders fit timm detectors",
        )
    elif backbone_weights == DEFAULT_WEIGHTS:
        raise ChestlensInputError(
            None, f"no offline ImageNet weights ship for {name}; pass a local backbone checkpoint or None"
        )
    else:
        classifier = _classifier(cfg, in_chans, FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d)
        if pretrained:
            _load_backbone(classifier, cfg, Path(backbone_weights).expanduser(), in_chans)
        if cfg.family == "resnet":
            backbone = _resnet_fpn_extractor(classifier, trainable_layers)
        else:
            backbone = _mobilenet_extractor(classifier, True, trainable_layers)
    bundle_kwargs = {"min_size": min_size, "max_size": max_size, "frozen_bn": frozen_bn, **kwargs}
    mean, std = _normalisation(cfg, in_chans)
    anchors = AnchorGenerator(cfg.anchor_sizes, (ASPECT_RATIOS,) * len(cfg.anchor_sizes))
    levels = cfg.featmap_names
    return MaskRCNNDetector(
        backbone,
        in_chans=in_chans,
        bundle_kwargs=bundle_kwargs,
        min_size=min_size,
        max_size=max_size,
        image_mean=list(mean),
        image_std=list(std),
        rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(FPN_CHANNELS * 7 * 7, cfg.representation_size),
        box_predictor=FastRCNNPredictor(cfg.representation_size, num_classes),
        mask_roi_pool=MultiScaleRoIAlign(levels, output_size=14, sampling_ratio=2),
        mask_head=MaskRCNNHeads(FPN_CHANNELS, list(cfg.mask_layers), 1),
        mask_predictor=MaskRCNNPredictor(cfg.mask_layers[-1], cfg.mask_layers[-1], num_classes),
        **kwargs,
    )


def _avg(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _timm_backbone(
    cfg: DetectorConfig,
    in_chans: int,
    weights: str | Path | None,
    frozen_bn: bool,
    trainable_layers: int,
) -> TimmFPNBackbone:
    """The timm encoder of ``cfg.backbone`` (weights loaded, BatchNorm frozen if asked, the first
    ``trainable_max - trainable_layers`` stages frozen) under an FPN."""
    encoder_cfg = get_encoder(cfg.backbone)
    encoder = timm.create_model(
        encoder_cfg.timm_name, features_only=True, out_indices=_TIMM_OUT_INDICES, in_chans=in_chans
    )
    if weights is not None and is_bundle(weights):
        load_encoder_weights(
            encoder, encoder_cfg.timm_name, _segmenter_encoder(cfg, weights, in_chans), in_chans
        )
    elif weights is not None:
        source = encoder_cfg.pretrained if weights == DEFAULT_WEIGHTS else weights
        if source is None:
            raise ChestlensInputError(None, f"no offline ImageNet weights ship for {cfg.backbone}")
        load_encoder_weights(encoder, encoder_cfg.timm_name, source, in_chans)
    if frozen_bn:
        encoder = freeze_batch_norm_2d(encoder)
    frozen = tuple(p for stage in cfg.stage_prefixes[: cfg.trainable_max - trainable_layers] for p in stage)
    for key, parameter in encoder.named_parameters():
        parameter.requires_grad_(not key.startswith(frozen))
    return TimmFPNBackbone(encoder)


def _segmenter_encoder(cfg: DetectorConfig, bundle: str | Path, in_chans: int) -> StateDict:
    """The trained encoder of a segmenter bundle, checked to fit ``cfg`` (same encoder, same channels and
    the same input normalisation as the detector applies)."""
    trained = trained_encoder(bundle)
    where = str(bundle)
    if trained.encoder != cfg.backbone:
        raise ChestlensInputError(
            where, f"segmenter encoder is {trained.encoder}; {cfg.name} needs {cfg.backbone}"
        )
    if trained.preprocess.in_chans != in_chans:
        raise ChestlensInputError(
            where, f"segmenter takes {trained.preprocess.in_chans} channel(s), not {in_chans}"
        )
    mean, std = _normalisation(cfg, in_chans)
    if (tuple(trained.preprocess.mean), tuple(trained.preprocess.std)) != (mean, std):
        raise ChestlensInputError(
            where,
            f"segmenter normalises with mean {trained.preprocess.mean} / std {trained.preprocess.std}; "
            f"the detector's encoder with {list(mean)} / {list(std)}",
        )
    return trained.state_dict


def _normalisation(cfg: DetectorConfig, in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std ``GeneralizedRCNNTransform`` applies to ``[0, 1]`` input (one value each for grey)."""
    if cfg.family == "timm":
        mean, std = get_encoder(cfg.backbone).mean, get_encoder(cfg.backbone).std
    else:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    return ((_avg(mean),), (_avg(std),)) if in_chans == 1 else (tuple(mean), tuple(std))


def _classifier(cfg: DetectorConfig, in_chans: int, norm_layer: type[nn.Module]) -> nn.Module:
    """The torchvision classifier (random) with its first convolution taking ``in_chans`` channels."""
    model = getattr(torchvision.models, cfg.backbone)(weights=None, norm_layer=norm_layer)
    parent_path, _, leaf = cfg.first_conv.rpartition(".")
    parent = model.get_submodule(parent_path)
    conv = getattr(parent, leaf)
    if conv.in_channels != in_chans:
        new = nn.Conv2d(
            in_chans,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
        )
        setattr(parent, leaf, new)
    return model


def _load_backbone(model: nn.Module, cfg: DetectorConfig, path: Path, in_chans: int) -> None:
    """Load a local classifier checkpoint into ``model`` (head dropped, strict on everything else)."""
    state = {k: v for k, v in load_checkpoint(path).items() if not k.startswith(cfg.head_prefix)}
    first = f"{cfg.first_conv}.weight"
    if first in state and state[first].shape[1] != in_chans:
        state[first] = adapt_input_conv(in_chans, state[first])
    own = {k for k in model.state_dict() if not k.startswith(cfg.head_prefix)}
    missing = sorted(k for k in own - set(state) if not k.endswith("num_batches_tracked"))
    extra = sorted(k for k in set(state) - own if not k.endswith("num_batches_tracked"))
    if missing or extra:
        raise ChestlensInputError(
            path, f"not a {cfg.backbone} checkpoint: missing keys {missing[:3]}, unexpected keys {extra[:3]}"
        )
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as error:
        raise ChestlensInputError(path, f"weights do not fit {cfg.backbone}: {error}") from error


def detections_with_features(
    model: MaskRCNN, images: Sequence[torch.Tensor], *, k: int | None = None
) -> list[dict[str, torch.Tensor]]:
    """Eval-mode detections plus the region feature of every kept detection.

    The detections are exactly ``model(images)`` (same boxes, labels, scores, masks, same decreasing-score
    order), cut to the top ``k`` per image when ``k`` is given. ``features`` is ``(N, D)`` with row ``i``
    describing detection ``i``: the box head's output (``D = representation_size``) for the RoI-aligned
    (7x7, FPN level by box size) features of the *final, regressed* box, pooled on the resized image like
    the detector's own box head. (COVID-CT-Mask-Net takes the pooled features of the proposal a detection
    came from; pooling the reported box keeps features and boxes in step and needs no torchvision
    internals.)

    Args:
        model: a torchvision Mask R-CNN in eval mode (e.g. from :func:`create_detector`).
        images: ``(C, H, W)`` float tensors in ``[0, 1]``.
        k: keep at most this many top-scoring detections per image (None: all the model keeps).

    Returns:
        One dict per image: ``boxes`` (N, 4), ``labels`` (N,), ``scores`` (N,), ``masks`` (N, 1, H, W),
        ``features`` (N, D), N <= k.
    """
    if model.training:
        raise ChestlensInputError(None, "detections_with_features needs the detector in eval mode")
    if isinstance(model, MaskRCNNDetector):
        check_images(images, model.in_chans)
    original_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
    image_list, _ = model.transform(list(images))
    features = model.backbone(image_list.tensors)
    proposals, _ = model.rpn(image_list, features)
    detections, _ = model.roi_heads(features, proposals, image_list.image_sizes)
    if k is not None:
        detections = [{key: value[:k] for key, value in d.items()} for d in detections]
    boxes = [d["boxes"] for d in detections]
    pooled = model.roi_heads.box_roi_pool(features, boxes, image_list.image_sizes)
    region_features = model.roi_heads.box_head(pooled).split([len(b) for b in boxes])
    detections = model.transform.postprocess(detections, image_list.image_sizes, original_sizes)
    for detection, feature in zip(detections, region_features, strict=True):
        detection["features"] = feature
    return detections


def build_detector(spec: BundleSpec) -> MaskRCNNDetector:
    """Randomly initialised detector for a ``kind="detector"`` bundle spec (weights loaded by the caller).

    Reads ``architecture`` (a registry name), ``labels`` (``["background", c1, ..., cK]``: label id ``i``
    of the detections is ``labels[i]``), ``preprocess.in_chans`` and ``architecture_kwargs`` (the model's
    :attr:`MaskRCNNDetector.bundle_kwargs`: ``min_size``, ``max_size``, ``frozen_bn``, MaskRCNN keywords).
    """
    if len(spec.labels) < 2 or spec.labels[0] != BACKGROUND:
        raise ChestlensInputError(
            None, f"detector labels must be [{BACKGROUND!r}, class, ...], got {spec.labels}"
        )
    try:
        return create_detector(
            spec.architecture,
            len(spec.labels),
            in_chans=spec.preprocess.in_chans,
            **spec.architecture_kwargs,
        )
    except TypeError as error:
        raise ChestlensInputError(None, f"bad detector architecture_kwargs: {error}") from error


def predict_instances(
    detector: MaskRCNNDetector,
    images: torch.Tensor,
    classes: Sequence[str],
    device: torch.device | str = "cpu",
) -> list[list[Instance]]:
    """Eval-mode detections of ``(N, C, S, S)`` images in ``[0, 1]`` as instances of ``classes`` (label id
    ``k`` = ``classes[k - 1]``), one image at a time (CPU memory)."""
    detector.eval()
    out = []
    with torch.inference_mode():
        for image in images:
            detection = detector([image.to(device)])[0]
            out.append(instances_from_detections({k: v.cpu() for k, v in detection.items()}, classes))
    return out
