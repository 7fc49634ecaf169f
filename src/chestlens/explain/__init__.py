"""Heatmaps that show what a classifier looked at.

* ``cam`` (default, every runtime and the browser): the class-activation map of the last feature layer,
  part of the classifier's graph (:class:`chestlens.models.graphs.ClassifierGraph`). For a global
  average pool followed by a linear head it equals Grad-CAM at that layer (tested).
* ``gradcam``, ``gradcam++``, ``hirescam``: gradient-based maps, PyTorch runtime only
  (:mod:`chestlens.explain.gradients`).
* :func:`chestlens.explain.energy.energy_inside`: the share of a map inside the lung fields.
"""

from typing import Literal

#: Heatmap methods: ``cam`` runs in every runtime, the others need ``--runtime torch``.
HeatmapMethod = Literal["cam", "gradcam", "gradcam++", "hirescam"]
HEATMAP_METHODS: tuple[HeatmapMethod, ...] = ("cam", "gradcam", "gradcam++", "hirescam")

__all__ = ["HEATMAP_METHODS", "HeatmapMethod"]
