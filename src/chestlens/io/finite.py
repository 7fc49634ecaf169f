"""Non-finite pixel values (NaN, +inf, -inf), handled at read time by one rule for every reader.

Float pixel data (DICOM float pixel data, a NaN or infinite Rescale Slope/Intercept, NIfTI, 32-bit
float TIFF) can hold values that are not numbers. Every reader passes its raw values (modality values
for DICOM, before any window or min-max scaling) through :func:`mask_non_finite`, so nothing after the
reader ever sees them. The rule:

* no non-finite value: the values are returned unchanged;
* more than :data:`MAX_NON_FINITE_FRACTION` of the values are non-finite: the image is unusable and
  :class:`~chestlens.errors.ChestlensInputError` names the file and the share;
* otherwise the non-finite values are masked: set to the smallest finite value of the image (dark:
  background in a radiograph, air in CT), and a warning saying how many were masked is returned for
  ``ImageMeta.warnings``.
"""

from __future__ import annotations

import numpy as np

from chestlens.errors import ChestlensInputError

#: An image with more than this share of NaN or infinite values is refused rather than masked.
MAX_NON_FINITE_FRACTION = 0.5


def mask_non_finite(values: np.ndarray, where: str | None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Apply the module's rule to ``values``: ``(finite values, warnings)``.

    Args:
        values: pixel values of any shape; integer arrays are always finite and returned as they are.
            A writeable float array is masked in place (readers pass arrays they own; no second copy
            of a large volume), a read-only one in a copy.
        where: file or folder for the error message.

    Returns:
        The finite values and zero or one warning.

    Raises:
        ChestlensInputError: more than :data:`MAX_NON_FINITE_FRACTION` of the values are non-finite.
    """
    if not np.issubdtype(values.dtype, np.floating):
        return values, ()
    bad = ~np.isfinite(values)
    count = int(np.count_nonzero(bad))
    if count == 0:
        return values, ()
    share = count / values.size
    if share > MAX_NON_FINITE_FRACTION:
        raise ChestlensInputError(
            where,
            f"{100 * share:.3g}% of the pixel values are NaN or infinite (more than "
            f"{MAX_NON_FINITE_FRACTION:.0%}): the image cannot be used",
        )
    floor = float(np.min(values, where=~bad, initial=np.inf))
    masked = values if values.flags.writeable else values.copy()
    masked[bad] = floor
    note = (
        f"{count:,} pixel value(s) ({100 * share:.3g}%) were NaN or infinite and were set to the image's "
        f"smallest value ({floor:g})"
    )
    return masked, (note,)
