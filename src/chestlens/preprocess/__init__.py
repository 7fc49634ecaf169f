"""Preprocessing shared by every layer and runtime, with numpy only (no PyTorch).

* :mod:`~chestlens.preprocess.spec`: :class:`PreprocessSpec`, the record in ``bundle.json``;
* :mod:`~chestlens.preprocess.units`: decoded pixels to grey ``[0, 1]`` (CT windowing);
* :mod:`~chestlens.preprocess.resize`: the one nearest-neighbour resize of masks and label maps, and the
  working image that every model stage of a screening reads;
* :mod:`~chestlens.preprocess.lung_roi`: the lung-field frame, crop and mask geometry;
* :mod:`~chestlens.preprocess.labels`: the background and ignore labels of segmentation targets.

The PyTorch side (antialiased resize, normalisation, augmentation) lives in :mod:`chestlens.data`; the
ONNX graphs carry the same resize and normalisation (:mod:`chestlens.models.graphs`).
"""
