"""ONNX Runtime: the default runtime, no PyTorch needed."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chestlens.errors import ChestlensInputError
from chestlens.models.spec import GRAPH_FILE, BundleSpec
from chestlens.runtime.base import checked_spec


def cpu_threads() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def session(model: Path | bytes, threads: int = 0) -> Any:
    """An ONNX Runtime CPU session for a graph file or its bytes: ``threads`` intra-op threads (0: one
    per core), one inter-op thread, and no busy-waiting, so idle session threads leave the cores to the
    image decoders."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or cpu_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def verified_graph(path: Path, spec: BundleSpec) -> bytes:
    """The bytes of the bundle's ``model.onnx``, checked against the SHA-256 in ``bundle.json``; a bundle
    without one gets a one-line error that says what to do."""
    graph = path / GRAPH_FILE
    if spec.graph is None or not graph.is_file():
        raise ChestlensInputError(
            path,
            f"bundle has no {GRAPH_FILE}: add it with 'chestlens export graph {path}' "
            "or screen with --runtime torch",
        )
    data = graph.read_bytes()
    if hashlib.sha256(data).hexdigest() != spec.graph.sha256:
        raise ChestlensInputError(graph, "graph does not match the checksum in bundle.json")
    return data


@dataclass(slots=True)
class OnnxGraph:
    """A bundle's ``model.onnx`` in an ONNX Runtime session (see :class:`~chestlens.runtime.GraphRunner`)."""

    spec: BundleSpec
    path: Path
    session: Any
    runtime: str = "onnx"

    @classmethod
    def load(cls, name_or_path: str, kind: str, *, threads: int = 0) -> OnnxGraph:
        """Load and check the graph; a bundle without one gets a one-line error that says what to do."""
        path, spec = checked_spec(name_or_path, kind)
        data = verified_graph(path, spec)
        try:
            return cls(spec=spec, path=path, session=session(data, threads))
        except Exception as error:  # onnxruntime raises its own exception types
            message = f"ONNX Runtime cannot load the graph: {error}"
            raise ChestlensInputError(path / GRAPH_FILE, message) from error

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, feeds), strict=True))
