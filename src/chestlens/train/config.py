"""Training configuration: a YAML file plus ``key=value`` overrides, validated with pydantic.

The resolved configuration is stored in the bundle (``training.config``) so a run can be reproduced
from the bundle alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from chestlens.data.tasks import SEGMENTATION_TARGETS
from chestlens.errors import ChestlensInputError
from chestlens.preprocess.labels import SegMode
from chestlens.preprocess.spec import TtaName
from chestlens.strict import StrictModel


class AugmentConfig(StrictModel):
    """Training-time augmentation (torchvision transforms v2); none is applied at evaluation."""

    rotation_deg: float = Field(15.0, ge=0)
    scale: tuple[float, float] = (0.85, 1.0)  # RandomResizedCrop area fraction
    ratio: tuple[float, float] = (0.9, 1.1)  # RandomResizedCrop aspect ratio
    brightness: float = Field(0.2, ge=0)
    contrast: float = Field(0.2, ge=0)
    hflip: bool = False  # off by default: chest anatomy is not left-right symmetric
    # Elastic deformation after crop and rotation, on the input grid: RMS displacement per axis (pixels;
    # 0 = off), SD of the Gaussian that smooths the displacement field (pixels), probability per image.
    elastic_px: float = Field(0.0, ge=0)
    elastic_sigma_px: float = Field(24.0, gt=0)
    elastic_p: float = Field(0.5, ge=0, le=1)

    def elastic(self) -> tuple[float, float, float] | None:
        """``(rms_px, sigma_px, p)`` of the elastic step, or None when it is off."""
        if self.elastic_px == 0 or self.elastic_p == 0:
            return None
        return (self.elastic_px, self.elastic_sigma_px, self.elastic_p)


class TrainConfig(StrictModel):
    """What every training command shares: data, split, optimisation and run settings.

    Sizes in pixels, learning rate per sample batch, epochs counted from 1 in logs. The task commands
    extend it (:class:`ClassifyConfig`, :class:`SegmentConfig`) and may change defaults.
    """

    name: str
    version: str = "0.1.0"
    data_root: str | None = None  # default: $CHESTLENS_DATA
    sources: list[str] | None = None  # default: every source usable for the task
    splits: str | None = None  # split CSV; made with seed/fractions below when absent
    split_seed: int = 0
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    input_size: int = Field(224, gt=0)
    batch_size: int = Field(32, gt=0)
    epochs: int = Field(20, gt=0)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)
    patience: int = Field(5, ge=1)  # early stopping on the validation score
    grad_clip: float = Field(1.0, gt=0)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    amp: Literal["auto", "on", "off"] = "auto"  # mixed precision: on CUDA only when auto
    channels_last: bool = True
    num_workers: int = Field(0, ge=0)
    device: str = "auto"
    seed: int = 0
    out: str
    max_steps_per_epoch: int | None = None  # for smoke tests only
    fp16_bundle: bool = True  # store fp16 weights when that changes nothing measurable on validation
    graph: bool = True  # write the verified ONNX graph (model.onnx) into the bundle: the default runtime


class ClassifyConfig(TrainConfig):
    """Everything ``chestlens train classify`` needs.

    Early stopping and model selection use ``selection``: ``"within_source"`` (default) is the mean of
    the validation within-source AUCs of the task's headline questions (first class vs rest, and the
    last two classes against each other; :mod:`chestlens.evaluate.within_source`), falling back to macro
    AUC when no validation source holds both sides; ``"macro_auc"`` is the pooled macro AUC, which
    also counts pairs across sources.

    Recipes that make the model read the lungs (see :mod:`chestlens.data.lung_roi`): ``lung_roi``,
    ``lung_margin`` and ``equalise`` become the bundle's preprocessing (lung masks from the ``lungs``
    segmenter bundle); ``balance="source_balanced"`` samples every class equally and, inside a class,
    every source equally; ``source_adversary`` > 0 adds a source classifier on the pooled features behind
    a gradient-reversal layer of that weight, so the features carry as little source as they can.
    ``leave_out`` trains without those sources and tests on them alone (leave-one-source-out).
    """

    name: str = "xray3-screener"
    task: str = "xray3"
    model: str = "efficientnet_lite0"
    weights: str | None = "default"  # "default" offline ImageNet, None = scratch, or path / URL
    freeze_backbone: bool = False  # train the classifier head only (VGG16 seed recipe)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    drop_rate: float = Field(0.2, ge=0, lt=1)
    balance: Literal["weighted_loss", "sampler", "source_balanced", "none"] = "weighted_loss"
    target_sensitivity: float = Field(0.95, gt=0, le=1)  # operating point for the first label
    selection: Literal["within_source", "macro_auc"] = "within_source"
    lung_roi: Literal["none", "crop", "mask"] = "none"
    lung_margin: float = Field(0.08, ge=0.0, le=0.5)
    equalise: Literal["none", "clahe"] = "none"
    lungs: str = "lungs-segmenter"  # lung segmenter bundle for lung_roi (name or folder)
    source_adversary: float = Field(0.0, ge=0.0)
    leave_out: list[str] = Field(default_factory=list)
    exclude_views: list[str] = Field(default_factory=lambda: ["L", "LL", "Lateral"])
    max_per_source: int | None = Field(None, gt=0)  # whole patients up to about this many images each
    recipe_grid: str | None = None  # recipes.json of bench/xray_recipe_grid.py this recipe was chosen from
    out: str = "runs/xray3"


class SegmentConfig(TrainConfig):
    """Everything ``chestlens train segment`` needs; early stopping on validation mean Dice.

    The mode follows the target (:data:`chestlens.data.tasks.SEGMENTATION_TARGETS`): binary (one
    sigmoid channel) for ``lungs`` and ``pneumothorax``, multiclass (softmax, background first) for the
    lesion targets. ``loss="auto"`` resolves to ``bce_dice`` (binary) or ``dice_ce`` (multiclass).

    ``fit_all``: the final fit of a recipe chosen by cross-validation (``train segment --folds K``): every
    image of the split table (its train, validation and test rows alike) is trained on for exactly
    ``epochs`` epochs (set it from the folds' best epochs), the last epoch is kept, and nothing is held
    out, so the bundle has no validation or test figures: its recipe's CV is its estimate.
    """

    name: str = "lungs-segmenter"
    target: str = "lungs"  # a key of chestlens.data.tasks.SEGMENTATION_TARGETS
    arch: str = "unet"  # chestlens.models.segmentation.list_architectures()
    encoder: str = "efficientnet_lite0"  # chestlens.models.segmentation.list_encoders()
    encoder_weights: str | None = "default"  # "default" offline ImageNet, None = scratch, or a checkpoint
    loss: Literal["auto", "bce_dice", "dice_ce", "focal", "dice_focal"] = (
        "auto"  # auto: bce_dice or dice_ce by mode
    )
    input_size: int = Field(256, gt=0, multiple_of=32)  # the encoder's output stride
    batch_size: int = Field(8, gt=0)
    epochs: int = Field(40, gt=0)
    patience: int = Field(8, ge=1)
    out: str = "runs/lungs"
    fit_all: bool = False
    # CT input in Hounsfield units is windowed with (centre, width) HU before the network reads it; match it
    # to the training pictures when they are not HU (bench/ct_window_match.py measures the match)
    ct_window: tuple[float, float] = (-600.0, 1500.0)
    # test-time augmentation (the bundle's preprocess.tta: hflip, vflip, scale_up, scale_down): validation,
    # the CV's out-of-fold scores and the bundle all average the network over them; "--folds K --resume
    # --set tta=[hflip]" re-scores finished folds with them, which measures their out-of-fold effect
    # without training again
    tta: tuple[TtaName, ...] = ()

    @property
    def mode(self) -> SegMode:
        """``"binary"`` or ``"multiclass"``, from the target."""
        return SEGMENTATION_TARGETS[self.target].mode

    @field_validator("target")
    @classmethod
    def _known_target(cls, name: str) -> str:
        if name not in SEGMENTATION_TARGETS:
            raise ValueError(
                f"unknown segmentation target {name!r}; known: {', '.join(SEGMENTATION_TARGETS)}"
            )
        return name

    @model_validator(mode="after")
    def _resolve_loss(self) -> SegmentConfig:
        native = "bce_dice" if self.mode == "binary" else "dice_ce"
        self.loss = native if self.loss == "auto" else self.loss
        if self.loss not in (native, "focal", "dice_focal"):
            raise ValueError(f"loss {self.loss} does not fit the {self.mode} target {self.target}")
        return self


Config = TypeVar("Config", bound=TrainConfig)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def load_config(schema: type[Config], path: Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (optional), apply ``key=value`` overrides (values parsed as YAML) and validate
    it as ``schema`` (e.g. :class:`ClassifyConfig`).

    Example override: ``augment.rotation_deg=10``, ``sources=[kermany,nih]``, ``weights=null``.
    """
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as error:
            raise ChestlensInputError(path, f"cannot read config: {error}") from error
        if loaded is not None and not isinstance(loaded, dict):
            raise ChestlensInputError(path, "config must be a YAML mapping")
        tree = loaded or {}
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ChestlensInputError(None, f"override {item!r} is not key=value")
        _set_dotted(tree, key.strip(), yaml.safe_load(raw))
    try:
        return schema.model_validate(tree)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ChestlensInputError(path, f"invalid config at {where}: {first['msg']}") from error
