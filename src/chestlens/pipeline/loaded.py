"""A bundle loaded for inference: its spec, its module on a device, and how results cite it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from chestlens.data.transforms import normalise
from chestlens.errors import ChestlensInputError
from chestlens.models.bundle import Bundle, load_bundle
from chestlens.models.spec import BundleSpec
from chestlens.pipeline.schema import ModelRef


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """One bundle ready to run: ``module`` in eval mode on ``device``."""

    bundle: Bundle
    module: torch.nn.Module
    device: torch.device

    @property
    def spec(self) -> BundleSpec:
        return self.bundle.spec

    @property
    def ref(self) -> ModelRef:
        """How results name this model."""
        spec = self.spec
        return ModelRef(
            name=spec.name, version=spec.version, kind=spec.kind, weights_sha256=spec.weights_sha256
        )

    def compiled(self) -> LoadedModel:
        """The same model with its module wrapped by ``torch.compile`` (inference only)."""
        return dataclasses.replace(self, module=torch.compile(self.module))

    def inputs(self, units: list[torch.Tensor]) -> torch.Tensor:
        """Stack grey ``[0, 1]`` images, each ``(1, H, W)`` of any size, into a normalised batch
        ``(N, in_chans, S, S)`` on the model's device (the bundle's one preprocessing path)."""
        batch = torch.stack([normalise(unit, self.spec.preprocess) for unit in units])
        return batch.to(self.device).contiguous(memory_format=torch.channels_last)


def load_for_inference(name_or_path: str, kind: str, device: torch.device) -> LoadedModel:
    """Load a bundle (bundled name or folder) and check it is of the expected ``kind``."""
    bundle = load_bundle(name_or_path)
    if bundle.spec.kind != kind:
        raise ChestlensInputError(name_or_path, f"expected a {kind} bundle, got a {bundle.spec.kind}")
    module = bundle.build_model().to(device).to(memory_format=torch.channels_last)
    return LoadedModel(bundle=bundle, module=module, device=device)
