"""Labels of segmentation targets shared by data, models, evaluation and the pipeline."""

from __future__ import annotations

from typing import Literal

#: Label of pixels that no loss or metric counts (unannotated or ambiguous regions).
IGNORE_INDEX = 255
#: Name of class 0 of a multiclass segmentation target.
BACKGROUND = "background"
#: ``binary``: one foreground channel (sigmoid); ``multiclass``: background plus classes (softmax).
SegMode = Literal["binary", "multiclass"]
