"""Keep DICOM values out of warnings and logs: pydicom quotes the offending value when it validates one.

pydicom reports an invalid value (e.g. ``Invalid value for VR UI: '1.2.840.PAT12345'``) both on its
``pydicom`` logger and with :func:`warnings.warn`, so a malformed Study or SOP Instance UID, or a nested
identifier the reader never converts itself, would reach stderr and the server log verbatim. After
:func:`withhold_dicom_values` the logger's records keep the VR but not the value, and the duplicate
warning is silenced. The CLI, the web service and the DICOM listener call it at start; it is idempotent.
"""

from __future__ import annotations

import logging
import re
import warnings

#: pydicom's validation message, value included.
_QUOTED_VALUE = re.compile(r"(Invalid value for VR \w+): .*", re.DOTALL)
WITHHELD = r"\1 (value withheld)"


class WithholdDicomValues(logging.Filter):
    """Rewrites pydicom's validation messages without the value they quote."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _QUOTED_VALUE.sub(WITHHELD, message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def withhold_dicom_values() -> None:
    """Install the filter on the ``pydicom`` logger and silence the same message as a warning."""
    logger = logging.getLogger("pydicom")
    if not any(isinstance(f, WithholdDicomValues) for f in logger.filters):
        logger.addFilter(WithholdDicomValues())
    warnings.filterwarnings("ignore", message=r"Invalid value for VR ")
