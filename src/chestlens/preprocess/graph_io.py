"""What the model graphs take and give: input and output names, and the feeds for one image.

Every graph (:mod:`chestlens.models.graphs`; the same graph as ``model.onnx`` in a bundle and in the
browser) takes ``image``: grey pixels in ``[0, 1]``, float32 ``(N, 1, H, W)`` of any height and width
(:func:`chestlens.preprocess.units.to_unit_range`), and resizes and normalises inside. A classifier
that masks outside the lungs also takes ``lungs``: float32 ``(N, 1, S, S)``, 1 inside the dilated lung
fields on the network grid. Outputs: classifiers ``logits``, ``probabilities`` and ``cam``;
segmenters ``probabilities``.
"""

from __future__ import annotations

import numpy as np

from chestlens.preprocess.lung_roi import crop_to_frame, inside_mask
from chestlens.preprocess.spec import PreprocessSpec

#: Input names of the graphs (the browser reads them by name; outputs: chestlens.models.kinds).
INPUT_NAME = "image"
LUNGS_INPUT = "lungs"


def input_names(preprocess: PreprocessSpec) -> tuple[str, ...]:
    """The graph's inputs: ``image``, and ``lungs`` for a classifier that masks outside the lungs."""
    return (INPUT_NAME, LUNGS_INPUT) if preprocess.lung_roi == "mask" else (INPUT_NAME,)


def graph_feeds(
    preprocess: PreprocessSpec, unit: np.ndarray, lungs: np.ndarray | None
) -> dict[str, np.ndarray]:
    """The inputs of a graph for one unit image ``(1, 1, H, W)``, given its lung mask on the lung
    segmenter's grid (needed by lung-field classifiers, else ignored): the image cropped to the
    classifier's frame and, for ``lung_roi="mask"``, the dilated lungs on the network grid."""
    cropped, cropped_lungs = crop_to_frame(unit[0], lungs, preprocess)
    feeds = {INPUT_NAME: np.ascontiguousarray(cropped[None], dtype=np.float32)}
    if LUNGS_INPUT in input_names(preprocess):
        inside = inside_mask(cropped_lungs, preprocess)
        size = preprocess.input_size
        grid = np.ones((size, size), dtype=bool) if inside is None else inside
        feeds[LUNGS_INPUT] = grid[None, None].astype(np.float32)
    return feeds
