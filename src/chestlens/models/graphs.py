"""The inference graphs as PyTorch modules: preprocessing, network and outputs in one graph, exported
as the bundle's ``model.onnx`` and run by either runtime (:mod:`chestlens.runtime`).

Every exported graph takes the same input, ``image``: grey pixels in ``[0, 1]``, float32
``(N, 1, H, W)`` of ANY height and width (what :func:`chestlens.preprocess.units.to_unit_range` gives,
i.e. after decoding, DICOM VOI / CT windowing and MONOCHROME1 inversion). The graph then does the
bundle's :func:`chestlens.data.transforms.normalise` (antialiased bilinear resize, mean/std, channel
expansion): the resize is an ONNX ``Resize`` with ``antialias=1``, so PyTorch, ONNX Runtime and the
browser resize with the same code and preprocessing is defined once.

A classifier that reads the lung fields (:mod:`chestlens.data.lung_roi`) is fed the image already
cropped to its frame (the lungs' box; :func:`chestlens.preprocess.graph_io.graph_feeds` and the
browser crop alike); with ``lung_roi="mask"`` it takes a second input, ``lungs``: float32
``(N, 1, S, S)``, 1 inside the dilated lung fields on the network grid, and the graph blanks the rest
after its resize, as the PyTorch path does. CLAHE (``equalise``) has no graph implementation: such
bundles are refused.

Outputs:

* classifier: ``logits`` ``(N, C)``; ``probabilities`` ``(N, C)`` = ``softmax(logits / T)`` with the
  bundle's calibration temperature; ``cam`` ``(N, C, S, S)``: class-activation maps (last feature map
  times the linear classifier's weights, no gradients), ReLU, bilinearly upsampled to the input size
  ``S`` and min-max scaled to ``[0, 1]`` per map.
* segmenter: ``probabilities`` ``(N, K, S, S)``: sigmoid of a binary segmenter (``K = 1``) or softmax
  over the classes of a multiclass one (channel 0 background), of the logits averaged over the bundle's
  test-time augmentation (``preprocess.tta``, :mod:`chestlens.models.tta`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from chestlens.data.transforms import normalise, resize_unit
from chestlens.errors import ChestlensInputError
from chestlens.models.bundle import Bundle
from chestlens.models.kinds import require_graph
from chestlens.models.tta import tta_logits
from chestlens.preprocess.lung_roi import MASK_FILL
from chestlens.preprocess.spec import PreprocessSpec


class ClassifierGraph(torch.nn.Module):
    """Unit image ``(N, 1, H, W)`` -> logits, calibrated probabilities and CAMs (module docstring)."""

    def __init__(self, network: torch.nn.Module, preprocess: PreprocessSpec, temperature: float) -> None:
        super().__init__()
        head = getattr(network, "get_classifier", lambda: None)()
        if not isinstance(head, torch.nn.Linear) or not hasattr(network, "forward_features"):
            raise ChestlensInputError(
                None, "CAM export needs a timm classifier (forward_features + a linear classifier)"
            )
        self.network, self.head = network, head
        self.preprocess, self.temperature = preprocess, temperature

    def network_input(self, image: torch.Tensor, lungs: torch.Tensor | None = None) -> torch.Tensor:
        """The graph's preprocessing: resize, lung mask (if given), normalise: ``(N, in_chans, S, S)``."""
        unit = resize_unit(image, self.preprocess.input_size)
        if lungs is not None:
            unit = torch.where(lungs > 0.5, unit, torch.full_like(unit, MASK_FILL))
        return normalise(unit, self.preprocess)

    def forward(
        self, image: torch.Tensor, lungs: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.network_input(image, lungs)
        features = self.network.forward_features(x)
        logits = self.network.forward_head(features)
        cam = torch.relu(torch.einsum("nchw,kc->nkhw", features, self.head.weight))
        size = self.preprocess.input_size
        cam = F.interpolate(cam, size=(size, size), mode="bilinear", align_corners=False)
        low = cam.amin(dim=(2, 3), keepdim=True)
        high = cam.amax(dim=(2, 3), keepdim=True)
        cam = (cam - low) / (high - low).clamp_min(1e-12)
        return logits, torch.softmax(logits / self.temperature, dim=1), cam


class SegmenterGraph(torch.nn.Module):
    """Unit image ``(N, 1, H, W)`` -> per-class probabilities ``(N, K, S, S)`` (module docstring)."""

    def __init__(self, network: torch.nn.Module, preprocess: PreprocessSpec, binary: bool) -> None:
        super().__init__()
        self.network, self.preprocess, self.binary = network, preprocess, binary

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = tta_logits(self.network, normalise(image, self.preprocess), self.preprocess.tta)
        return torch.sigmoid(logits) if self.binary else torch.softmax(logits, dim=1)


def build_graph(bundle: Bundle) -> torch.nn.Module:
    """The graph module of a bundle whose kind has one (:mod:`chestlens.models.kinds`), in eval mode on
    the CPU."""
    spec = bundle.spec
    kind = require_graph(spec, bundle.path)
    if spec.preprocess.equalise != "none":
        raise ChestlensInputError(
            bundle.path, f"equalise={spec.preprocess.equalise!r} has no ONNX graph: export refused"
        )
    network = bundle.build_model().float().cpu().eval()
    return kind.graph(network, spec).eval()  # type: ignore[misc]
