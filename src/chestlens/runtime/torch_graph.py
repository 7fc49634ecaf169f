"""PyTorch: the same graph as ``model.onnx``, run as a torch module (``--runtime torch``).

It needs the ``[train]`` extra. Besides the graph's own outputs it gives the gradient-based heatmaps
(:mod:`chestlens.explain.gradients`), and can ``torch.compile`` the graph.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from chestlens.explain.gradients import GradientCamMethod, logits_and_cams
from chestlens.models.bundle import load_bundle
from chestlens.models.device import resolve_device
from chestlens.models.graphs import ClassifierGraph, build_graph
from chestlens.models.kinds import kind_of
from chestlens.models.registry import get_model_config
from chestlens.models.spec import BundleSpec
from chestlens.preprocess.graph_io import INPUT_NAME, LUNGS_INPUT
from chestlens.runtime.base import checked_spec


@dataclass(frozen=True, slots=True)
class TorchGraph:
    """A bundle's graph as a torch module in eval mode on ``device``."""

    spec: BundleSpec
    path: Path
    graph: torch.nn.Module
    device: torch.device
    runtime: str = "torch"

    @classmethod
    def load(cls, name_or_path: str, kind: str, *, device: str = "auto") -> TorchGraph:
        path, _ = checked_spec(name_or_path, kind)
        bundle = load_bundle(path)
        target = resolve_device(device)
        return cls(spec=bundle.spec, path=path, graph=build_graph(bundle).to(target), device=target)

    def compiled(self) -> TorchGraph:
        """The same graph wrapped by ``torch.compile`` (the first call pays the compile time)."""
        return dataclasses.replace(self, graph=torch.compile(self.graph))

    def _inputs(self, feeds: dict[str, np.ndarray]) -> list[torch.Tensor]:
        names = [INPUT_NAME] + ([LUNGS_INPUT] if LUNGS_INPUT in feeds else [])
        return [torch.from_numpy(feeds[name]).to(self.device) for name in names]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            outputs = self.graph(*self._inputs(feeds))
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        names = kind_of(self.spec).graph_outputs
        return {n: o.float().cpu().numpy() for n, o in zip(names, outputs, strict=True)}

    def gradient_cams(
        self, feeds: dict[str, np.ndarray], method: GradientCamMethod
    ) -> tuple[np.ndarray, np.ndarray]:
        """Classifier only: calibrated probabilities ``(N, C)`` and the ``method`` map of each image's top
        class ``(N, S, S)`` in ``[0, 1]``, from one forward and one backward pass."""
        graph = self.graph
        if not isinstance(graph, ClassifierGraph):
            raise TypeError("gradient heatmaps need an eager classifier graph")
        x = graph.network_input(*self._inputs(feeds))
        layer = get_model_config(self.spec.architecture).cam_layer
        out = logits_and_cams(graph.network, x, layer, method)
        probabilities = torch.softmax(out.logits / self.spec.temperature, dim=1)
        return probabilities.numpy(), out.maps
