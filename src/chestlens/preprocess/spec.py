"""The preprocessing record of a bundle: how an image becomes network input (``bundle.json``'s
``preprocess``). Every runtime (PyTorch, ONNX Runtime, the browser) reads this one record."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from chestlens.strict import StrictModel

#: Test-time augmentations a segmenter bundle may name (``preprocess.tta``, :mod:`chestlens.models.tta`):
#: left-right and up-down flips, and the network input one encoder stride (32 px) larger or smaller.
TtaName = Literal["hflip", "vflip", "scale_up", "scale_down"]


class PreprocessSpec(StrictModel):
    """How an image becomes network input. Shapes: input ``(in_chans, input_size, input_size)``.

    Steps, in order: CT pixels (HU) are windowed to ``[0, 1]`` with ``ct_window`` (centre, width in HU);
    radiograph pixels are already in ``[0, 1]`` (see :mod:`chestlens.io.image`); the image is resized to
    ``input_size`` x ``input_size`` (``resize="stretch"``: aspect ratio not kept, bilinear with
    antialiasing); then ``(x - mean) / std`` per channel.

    Radiograph classifiers may read the lung fields only (:mod:`chestlens.preprocess.lung_roi`): ``lung_roi``
    ``"crop"`` crops to the lungs' bounding box widened by ``lung_margin`` before the resize, ``"mask"``
    also blanks everything outside the dilated lungs; ``equalise="clahe"`` equalises contrast on the
    input grid. Their defaults leave the image as it is.

    ``tta`` (segmenters; test-time augmentation): the network also reads these variants of its input
    (``hflip``: left-right, ``vflip``: up-down; ``scale_up`` / ``scale_down``: resized to
    ``input_size`` + / - 32 px) and the logits, mapped back to the input grid, are averaged before the
    sigmoid/softmax. It is part of the graph (:mod:`chestlens.models.graphs`), so the CLI, the server,
    ONNX Runtime and the browser all apply it, and of :func:`chestlens.models.inference.iter_logits`
    (evaluation). Empty: the network reads the image once.
    """

    input_size: int = Field(gt=0)
    in_chans: Literal[1, 3] = 1
    mean: list[float]
    std: list[float]
    resize: Literal["stretch"] = "stretch"
    ct_window: tuple[float, float] | None = (-600.0, 1500.0)
    lung_roi: Literal["none", "crop", "mask"] = "none"
    lung_margin: float = Field(0.08, ge=0.0, le=0.5)
    equalise: Literal["none", "clahe"] = "none"
    tta: tuple[TtaName, ...] = ()

    @model_serializer(mode="wrap")
    def _leave_out_no_tta(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave ``tta`` out of the file when empty (bundles written before it existed read the same)."""
        data = handler(self)
        if not data.get("tta"):
            data.pop("tta", None)
        return data
