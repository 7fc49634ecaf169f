"""Bundle -> self-contained ``.onnx`` files (fp32, and fp16 / int8 variants) with a JSON sidecar.

Files written for a bundle ``NAME`` into the output folder::

    NAME.onnx          # fp32, one file (no external data), input "image" (N, 1, H, W) in [0, 1]
    NAME.json          # sidecar: labels, preprocessing, temperature, operating points, verification
    NAME.fp16.onnx     # --fp16: weights stored as float16 (cast to float32 in the graph)
    NAME.int8.onnx     # --int8-calibrate DATA: static QDQ int8 (per-channel weights), calibrated on DATA
    NAME.fp16.json / NAME.int8.json

The sidecar is generated from ``bundle.json``, so the browser and any other consumer read the same
preprocessing, labels, calibration and thresholds as Python (see :mod:`chestlens.export.sidecar`).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chestlens.atomic import write_bytes_atomic
from chestlens.errors import ChestlensInputError
from chestlens.models.bundle import Bundle
from chestlens.models.graphs import build_graph
from chestlens.models.kinds import kind_of
from chestlens.preprocess.graph_io import LUNGS_INPUT, input_names

DEFAULT_OPSET = 18  # Resize with antialias needs opset >= 18
#: Image size used to trace the graph; any size works at run time (dynamic height and width).
TRACE_SIZE = (1, 1, 320, 288)
#: Initialisers smaller than this many numbers stay float32 in the fp16 variant (biases, scales).
FP16_MIN_ELEMENTS = 64


@dataclass(frozen=True, slots=True)
class ExportedModel:
    """One written ``.onnx`` file: ``variant`` is ``fp32``, ``fp16`` or ``int8``."""

    path: Path
    variant: str

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def model_file(out: Path, name: str, variant: str) -> Path:
    """``OUT/NAME.onnx`` for fp32, ``OUT/NAME.VARIANT.onnx`` otherwise."""
    return out / (f"{name}.onnx" if variant == "fp32" else f"{name}.{variant}.onnx")


def export_fp32(bundle: Bundle, path: Path, *, opset: int = DEFAULT_OPSET) -> ExportedModel:
    """Export the bundle's graph (:func:`chestlens.models.graphs.build_graph`) with the dynamo
    exporter into one self-contained file; batch, height and width are dynamic."""
    from torch.export import Dim

    if opset < DEFAULT_OPSET:
        raise ChestlensInputError(None, f"--opset must be >= {DEFAULT_OPSET} (antialiased Resize)")
    graph = build_graph(bundle)
    names = input_names(bundle.spec.preprocess)
    batch = Dim("batch", max=64)
    examples: tuple[torch.Tensor, ...] = (torch.rand(*TRACE_SIZE),)
    dims: tuple[dict[int, Any], ...] = (
        {0: batch, 2: Dim("height", min=16, max=8192), 3: Dim("width", min=16, max=8192)},
    )
    if LUNGS_INPUT in names:
        size = bundle.spec.preprocess.input_size
        examples += ((torch.rand(1, 1, size, size) > 0.5).float(),)
        dims += ({0: batch},)
    with tempfile.TemporaryDirectory() as tmp, _quiet_exporter():
        staged = Path(tmp) / "model.onnx"
        torch.onnx.export(
            graph,
            examples,
            str(staged),
            dynamo=True,
            external_data=False,
            opset_version=opset,
            input_names=list(names),
            output_names=list(kind_of(bundle.spec).graph_outputs),
            dynamic_shapes=dims,
            verbose=False,
        )
        write_bytes_atomic(path, staged.read_bytes())
    return ExportedModel(path, "fp32")


def convert_fp16(source: Path, path: Path) -> ExportedModel:
    """fp16 weight storage: large float32 initialisers become float16 followed by a ``Cast`` back to
    float32, so the file is about half the size and the arithmetic stays float32 (ONNX Runtime's CPU
    and wasm backends have few float16 kernels)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    casts = []
    for init in model.graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < FP16_MIN_ELEMENTS:
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), f"{init.name}__fp16")
        name = init.name
        init.CopyFrom(half)
        casts.append(
            helper.make_node("Cast", [half.name], [name], to=TensorProto.FLOAT, name=f"{name}__cast")
        )
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    write_bytes_atomic(path, model.SerializeToString())
    return ExportedModel(path, "fp16")


def quantize_int8(source: Path, path: Path, calibration: Sequence[dict[str, np.ndarray]]) -> ExportedModel:
    """Static QDQ int8 quantisation (per-channel weights) of the convolutions and matrix products,
    with activation ranges from ``calibration``: the graph's feeds (:func:`graph_feeds`) per image."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if not calibration:
        raise ChestlensInputError(None, "int8 calibration needs at least one image")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items: Iterator[dict[str, np.ndarray]] = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp, _quiet_exporter():
        staged = Path(tmp) / "int8.onnx"
        quantize_static(
            str(source),
            str(staged),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv", "Gemm", "MatMul"],
        )
        write_bytes_atomic(path, staged.read_bytes())
    return ExportedModel(path, "int8")


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporters' warnings and log chatter (the CLI prints its own summary)."""
    names = ("torch", "onnxscript", "onnx_ir", "root")
    levels = {n: logging.getLogger(n).level for n in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
