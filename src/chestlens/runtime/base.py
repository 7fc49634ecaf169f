"""What every runtime gives: a loaded graph that maps named numpy feeds to named numpy outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from chestlens.errors import ChestlensInputError
from chestlens.models.catalog import resolve_bundle
from chestlens.models.kinds import require_graph, require_kind
from chestlens.models.spec import BundleSpec, read_spec


class GraphRunner(Protocol):
    """A bundle's graph ready to run (see :mod:`chestlens.runtime`)."""

    spec: BundleSpec
    path: Path
    runtime: str

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """All outputs of the graph for ``feeds`` (:func:`~chestlens.preprocess.graph_io.graph_feeds`):
        classifiers ``logits`` ``(N, C)``, ``probabilities`` ``(N, C)``, ``cam`` ``(N, C, S, S)``;
        segmenters ``probabilities`` ``(N, K, S, S)``; float32."""
        ...


def checked_spec(name_or_path: str, kind: str) -> tuple[Path, BundleSpec]:
    """The bundle's folder and spec, refused unless it is a ``kind`` bundle with a graph kind."""
    path = resolve_bundle(name_or_path)
    spec = read_spec(path)
    require_kind(spec, kind, name_or_path)
    require_graph(spec, name_or_path)
    return path, spec


def missing_extra(what: str) -> ChestlensInputError:
    """The one-line error for a feature that needs PyTorch when it is not installed."""
    return ChestlensInputError(None, f"{what} needs PyTorch: install it with pip install 'chestlens[train]'")
