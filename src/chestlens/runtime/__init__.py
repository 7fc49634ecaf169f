"""Run a bundle's inference graph: ONNX Runtime by default, PyTorch on request.

Every classifier and segmenter bundle carries one graph, ``model.onnx`` (preprocessing, network and
outputs; :mod:`chestlens.models.graphs`, written by :func:`chestlens.export.bundle_graph.add_graph`).
The screener, ``chestlens predict``, ``chestlens serve``, the Ray engine and ``chestlens demo`` run it:

* ``onnx`` (default): ONNX Runtime on the CPU, :class:`~chestlens.runtime.onnx.OnnxGraph`. Needs no
  PyTorch, so ``pip install chestlens`` screens images without it.
* ``torch``: the same graph as a PyTorch module, :class:`~chestlens.runtime.torch_graph.TorchGraph`
  (needs the ``[train]`` extra; CUDA when available). It also gives the gradient-based heatmaps
  (Grad-CAM, Grad-CAM++, HiResCAM).

Both take the feeds of :func:`chestlens.preprocess.graph_io.graph_feeds` and return the graph's named
outputs as numpy arrays, so the stages that call them never see which runtime ran.
"""

from __future__ import annotations

from typing import Literal

from chestlens.runtime.base import GraphRunner, missing_extra

Runtime = Literal["onnx", "torch"]
RUNTIMES: tuple[Runtime, ...] = ("onnx", "torch")


def load_graph(
    name_or_path: str, kind: str, *, runtime: Runtime = "onnx", device: str = "auto", threads: int = 0
) -> GraphRunner:
    """Load a bundle (bundled name or folder) of the expected ``kind`` for ``runtime``.

    Args:
        kind: ``classifier`` or ``segmenter``; another kind raises
            :class:`~chestlens.errors.ChestlensInputError`.
        device: PyTorch device (``auto``, ``cpu``, ``cuda``); ONNX Runtime runs on the CPU.
        threads: ONNX Runtime intra-op threads (0: one per CPU core).
    """
    if runtime == "onnx":
        from chestlens.runtime.onnx import OnnxGraph

        return OnnxGraph.load(name_or_path, kind, threads=threads)
    try:
        from chestlens.runtime.torch_graph import TorchGraph
    except ImportError as error:
        raise missing_extra("--runtime torch") from error
    return TorchGraph.load(name_or_path, kind, device=device)


__all__ = ["RUNTIMES", "GraphRunner", "Runtime", "load_graph"]
