"""Put a bundle's inference graph into the bundle: ``model.onnx`` beside the weights, verified.

The graph is :func:`chestlens.models.graphs.build_graph` exported with the dynamo exporter (dynamic
batch, height and width), stored as float32: the exporter folds batch norms into the convolutions, so
fp16 storage would no longer hold the bundle's own numbers (measured on ``xray3-screener``: 1.1e-3 in
probabilities, against 1e-4 allowed). Before it is written, the graph must match PyTorch on real images
(:func:`~chestlens.export.verify.check_fp32`); ``bundle.json`` then records it
(:class:`~chestlens.models.spec.GraphRecord`). Both files are replaced atomically, the graph first.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from chestlens.atomic import write_bytes_atomic
from chestlens.errors import ChestlensInputError
from chestlens.export.onnx_export import DEFAULT_OPSET, export_fp32
from chestlens.export.verify import VerificationSet, check_fp32
from chestlens.models.bundle import load_bundle
from chestlens.models.spec import GRAPH_FILE, GraphRecord, write_spec


def add_graph(bundle: str | Path, check_set: VerificationSet, *, opset: int = DEFAULT_OPSET) -> GraphRecord:
    """Export, verify and store the graph of a classifier or segmenter bundle folder; returns its record.

    Raises :class:`~chestlens.errors.ChestlensInputError` (nothing written) when the graph does not
    match PyTorch within the tolerance.
    """
    loaded = load_bundle(bundle)
    if loaded.path is None:
        raise ChestlensInputError(bundle, "the graph goes into a bundle folder")
    with tempfile.TemporaryDirectory() as tmp:
        graph = export_fp32(loaded, Path(tmp) / "fp32.onnx", opset=opset).path
        check = check_fp32(loaded, graph, check_set)
        if not check["passed"]:
            raise ChestlensInputError(
                bundle,
                f"graph differs from PyTorch by {check['max_abs_diff_probabilities']:.2e} "
                f"(tolerance {check['tolerance']:g}): not written",
            )
        data = graph.read_bytes()
    record = GraphRecord(
        sha256=hashlib.sha256(data).hexdigest(),
        opset=opset,
        parity_images=check["images"],
        parity_n_images=check["n_images"],
        max_abs_diff_probabilities=check["max_abs_diff_probabilities"],
        tolerance=check["tolerance"],
    )
    spec = loaded.spec.model_copy(update={"graph": record})
    write_bytes_atomic(loaded.path / GRAPH_FILE, data)
    write_spec(loaded.path, spec)
    return record
