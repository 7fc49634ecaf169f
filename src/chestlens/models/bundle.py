"""The chestlens model bundle: one format for training, evaluation, CLI, server, ONNX and the browser.

On disk a bundle is a folder::

    <name>/
      bundle.json          # BundleSpec: architecture, labels, preprocessing, calibration, thresholds,
                           # training summary, metrics, versions (validated with pydantic)
      weights.safetensors  # the state dict (fp32 or fp16), never a pickle
      model.onnx           # the inference graph, preprocessing included (chestlens.runtime)

``bundle.json`` is read without PyTorch (:mod:`chestlens.models.spec`); this module loads and saves the
weights. Preprocessing lives only in ``bundle.json``
(:class:`~chestlens.preprocess.spec.PreprocessSpec`), so every consumer applies the same steps.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from chestlens.errors import ChestlensInputError
from chestlens.models.spec import BUNDLE_JSON, WEIGHTS_FILE, BundleSpec, read_spec, spec_json


@dataclass(frozen=True, slots=True)
class Bundle:
    """A loaded bundle: its spec, its folder and its state dict (fp32 tensors on CPU)."""

    spec: BundleSpec
    path: Path | None
    state_dict: dict[str, torch.Tensor]

    def build_model(self) -> torch.nn.Module:
        """Build the network of the bundle's kind (:mod:`chestlens.models.kinds`), load the weights
        (strict) and switch to eval mode."""
        from chestlens.models.kinds import kind_of

        model = kind_of(self.spec).build(self.spec)
        model.load_state_dict(self.state_dict, strict=True)
        return model.eval()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_bundle(
    spec: BundleSpec, state_dict: dict[str, torch.Tensor], path: Path, *, fp16: bool = False
) -> Path:
    """Write a bundle folder atomically (built in a temp folder beside it, then renamed into place).

    Args:
        spec: metadata; ``weights_sha256``, ``weights_dtype``, ``created_utc`` and
            ``chestlens_version`` are filled in here.
        state_dict: model weights; floating tensors are stored as fp16 when ``fp16`` is set.
        path: target folder; an existing bundle there is replaced only after the new one is complete.
    """
    from safetensors.torch import save_file

    from chestlens import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if fp16 else torch.float32
    tensors = {
        k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in state_dict.items()
    }
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    staging.chmod(0o755)  # mkdtemp creates 0700; a bundle is meant to be shared and packaged
    try:
        save_file(tensors, str(staging / WEIGHTS_FILE))
        (staging / WEIGHTS_FILE).chmod(0o644)
        final = spec.model_copy(
            update={
                "weights_sha256": _sha256(staging / WEIGHTS_FILE),
                "weights_dtype": "float16" if fp16 else "float32",
                "created_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "chestlens_version": __version__,
            }
        )
        (staging / BUNDLE_JSON).write_text(spec_json(final))
        if path.exists():
            retired = path.with_name(f".{path.name}.old")
            shutil.rmtree(retired, ignore_errors=True)
            path.replace(retired)
            staging.replace(path)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.replace(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def load_bundle(path: str | Path, *, verify: bool = True) -> Bundle:
    """Load a bundle folder, or a bundled model by name; weights come back as fp32 CPU tensors.

    Args:
        verify: check the weights file against ``weights_sha256`` (detects truncated copies).
    """
    from safetensors.torch import load_file

    from chestlens.models.catalog import resolve_bundle

    path = resolve_bundle(path)
    spec = read_spec(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise ChestlensInputError(path, f"bundle has no {WEIGHTS_FILE}")
    if verify and spec.weights_sha256 and _sha256(weights) != spec.weights_sha256:
        raise ChestlensInputError(weights, "weights do not match the checksum in bundle.json")
    try:
        tensors = load_file(str(weights))
    except Exception as error:
        raise ChestlensInputError(weights, f"cannot read safetensors weights: {error}") from error
    state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    return Bundle(spec=spec, path=path, state_dict=state)
