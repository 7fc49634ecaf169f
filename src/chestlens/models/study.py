"""The ``study`` bundle kind: a CT series classified as a whole from its lesion features.

The model is a multinomial logistic regression on standardised features::

    z = (x - mean) / std          x: the features named in ``spec.architecture_kwargs["features"]``
    p = softmax(W z + b)          W: (classes, features), b: (classes,), classes = ``spec.labels``

``weights.safetensors`` holds ``weight``, ``bias``, ``mean`` and ``std``. Screening computes ``p`` with
numpy straight from that file (:class:`StudyRunner`, no PyTorch: the default runtime has none; through
``safetensors.numpy`` when it is installed, else the format's few lines are read here). The PyTorch
module (:class:`StudyNetwork`, built by the kind registry) exists for training and the shared bundle
tests, and gives the same numbers. A study bundle has no image graph (``model.onnx``).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from chestlens.errors import ChestlensInputError
from chestlens.models.kinds import require_kind
from chestlens.models.spec import WEIGHTS_FILE, BundleSpec, read_spec

if TYPE_CHECKING:
    import torch

#: The features a study bundle reads by default, in this order: fields of the screening result's
#: ``lesions.features`` (:func:`chestlens.pipeline.study_features.series_lesion_features`; bilateral as 0/1).
STUDY_FEATURES: tuple[str, ...] = (
    "burden_pct",
    "ggo_share",
    "peripheral_share",
    "bilateral",
    "smaller_side_share",
    "lower_zone_share",
)
#: Series features from the regional slice classifier a study bundle embeds (folder :data:`REGIONAL_DIR`
#: inside it; :meth:`chestlens.models.regional.RegionalSeriesReader.series_features`).
REGIONAL_FEATURES: tuple[str, ...] = ("regional_infected_share", "regional_mean_probability")
#: The sub-folder of a study bundle that holds its regional bundle, when its features name one.
REGIONAL_DIR = "regional"
#: The tensors of a study bundle's weights file.
STUDY_TENSORS = ("weight", "bias", "mean", "std")
STUDY_ARCHITECTURE = "multinomial_logistic_regression"


def study_features(spec: BundleSpec) -> list[str]:
    """The feature names a study bundle reads, in the order of its weight columns."""
    names = spec.architecture_kwargs.get("features")
    if not names:
        raise ChestlensInputError(None, f"study bundle {spec.name} names no features")
    return list(names)


def build_study(spec: BundleSpec) -> torch.nn.Module:
    """A zero-initialised :class:`StudyNetwork` for ``spec`` (PyTorch imported on call)."""
    return StudyNetwork.create(len(study_features(spec)), len(spec.labels))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, C)`` logits."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def study_probabilities(tensors: dict[str, np.ndarray], features: np.ndarray) -> np.ndarray:
    """``softmax(W z + b)`` for ``(N, F)`` features, ``z`` standardised with the stored mean and std."""
    z = (np.asarray(features, np.float64) - tensors["mean"]) / tensors["std"]
    return softmax(z @ tensors["weight"].T + tensors["bias"])


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The float tensors of a safetensors file as float64 numpy arrays, without PyTorch."""
    try:
        from safetensors.numpy import load_file
    except ImportError:  # the default (ONNX Runtime) install: read the format directly
        return _read_safetensors(path)
    return {k: np.asarray(v, np.float64) for k, v in load_file(str(path)).items()}


_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8"}


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """A safetensors file: 8-byte little-endian header size, a JSON header, then the raw tensors."""
    raw = Path(path).read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    body = raw[8 + size :]
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, stop = entry["data_offsets"]
        array = np.frombuffer(body[start:stop], dtype=_DTYPES[entry["dtype"]]).reshape(entry["shape"])
        out[name] = array.astype(np.float64)
    return out


def reads_regional(features: list[str] | tuple[str, ...]) -> bool:
    """Whether a study bundle with these features needs its embedded regional slice classifier."""
    return bool(set(features) & set(REGIONAL_FEATURES))


class StudyRunner:
    """A loaded study bundle for screening: its spec and its weights as numpy arrays (no PyTorch).

    A bundle whose features include :data:`REGIONAL_FEATURES` also loads the regional bundle it embeds
    (``regional``, a :class:`~chestlens.models.regional.RegionalSeriesReader`), which needs PyTorch."""

    def __init__(self, spec: BundleSpec, tensors: dict[str, np.ndarray], path: Path | None = None) -> None:
        missing = [name for name in STUDY_TENSORS if name not in tensors]
        if missing:
            raise ChestlensInputError(path, f"study weights lack {', '.join(missing)}")
        self.spec, self.tensors, self.path = spec, tensors, path
        self.features = study_features(spec)
        self.regional = _regional_reader(path) if reads_regional(self.features) else None
        expected = (len(spec.labels), len(self.features))
        if tensors["weight"].shape != expected:
            raise ChestlensInputError(path, f"study weight is {tensors['weight'].shape}, expected {expected}")

    @classmethod
    def load(cls, name_or_path: str | Path) -> StudyRunner:
        """Load a study bundle (folder or bundled name); a bundle of another kind is refused in one line."""
        from chestlens.models.catalog import resolve_bundle

        path = resolve_bundle(name_or_path)
        spec = read_spec(path)
        require_kind(spec, "study", path)
        weights = path / WEIGHTS_FILE
        if not weights.is_file():
            raise ChestlensInputError(path, f"bundle has no {WEIGHTS_FILE}")
        return cls(spec, read_safetensors(weights), path)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """``(N, C)`` class probabilities of ``(N, F)`` features (or ``(C,)`` of one ``(F,)`` row)."""
        features = np.asarray(features, np.float64)
        if features.ndim == 1:
            return study_probabilities(self.tensors, features[None])[0]
        return study_probabilities(self.tensors, features)


def _regional_reader(path: Path | None):  # -> RegionalSeriesReader (PyTorch; imported on call)
    """The regional slice classifier embedded in the study bundle at ``path``, loaded for screening."""
    folder = None if path is None else Path(path) / REGIONAL_DIR
    if folder is None or not folder.is_dir():
        raise ChestlensInputError(
            path, f"study bundle reads regional features but has no {REGIONAL_DIR}/ bundle"
        )
    try:
        from chestlens.models.regional import RegionalSeriesReader
    except ImportError as error:
        raise ChestlensInputError(
            path,
            "study bundle reads a regional slice classifier, which needs PyTorch "
            "(pip install 'chestlens[train]')",
        ) from error
    return RegionalSeriesReader.load(folder)


def _network_class() -> type:
    import torch

    class StudyNetwork(torch.nn.Module):
        """``logits = W ((x - mean) / std) + b`` over ``(N, F)`` features (PyTorch twin of the numpy path)."""

        def __init__(self, n_features: int, n_classes: int) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(n_classes, n_features))
            self.bias = torch.nn.Parameter(torch.zeros(n_classes))
            self.register_buffer("mean", torch.zeros(n_features))
            self.register_buffer("std", torch.ones(n_features))

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            z = (features.to(self.weight.dtype) - self.mean) / self.std
            return z @ self.weight.T + self.bias

    return StudyNetwork


class StudyNetwork:
    """Factory for the PyTorch study module (``StudyNetwork.create(F, C)``), defined on first use so that
    importing this module needs no PyTorch."""

    _cls: type | None = None

    @classmethod
    def create(cls, n_features: int, n_classes: int) -> torch.nn.Module:
        if cls._cls is None:
            cls._cls = _network_class()
        return cls._cls(n_features, n_classes)
