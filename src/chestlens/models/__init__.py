"""Model architectures, offline pretrained weights and the chestlens bundle format."""

from chestlens.models.bundle import (
    Bundle,
    BundleSpec,
    OperatingPoint,
    PreprocessSpec,
    load_bundle,
    save_bundle,
)
from chestlens.models.factory import create_model
from chestlens.models.registry import MODELS, ModelConfig, get_model_config, list_models

__all__ = [
    "MODELS",
    "Bundle",
    "BundleSpec",
    "ModelConfig",
    "OperatingPoint",
    "PreprocessSpec",
    "create_model",
    "get_model_config",
    "list_models",
    "load_bundle",
    "save_bundle",
]
