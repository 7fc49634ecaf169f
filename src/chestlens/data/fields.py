"""Parsing of demographic fields as datasets write them (CSV cells, DICOM Age Strings)."""

from __future__ import annotations

import re

_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([YMWD]?)$", re.IGNORECASE)
_AGE_UNIT_YEARS = {"": 1.0, "Y": 1.0, "M": 1.0 / 12.0, "W": 7.0 / 365.25, "D": 1.0 / 365.25}
MAX_AGE_YEARS = 150.0
_SEX = {"m": "M", "male": "M", "f": "F", "female": "F", "w": "F", "weiblich": "F"}


def parse_age(text: str, *, strict: bool = False) -> float | None:
    """Age in years from ``"54"``, ``"54.5"`` or a DICOM Age String (``"058Y"``, ``"006M"``, ``"002W"``,
    ``"010D"``): months / 12, weeks * 7 / 365.25, days / 365.25.

    Blank text gives None. Text that is not an age, or an age above 150 years, gives None, or raises
    ``ValueError`` when ``strict`` (for user-written manifests, where a typo should be reported).
    """
    text = text.strip()
    if not text:
        return None
    match = _AGE.match(text)
    years = None if match is None else float(match.group(1)) * _AGE_UNIT_YEARS[match.group(2).upper()]
    if years is not None and years <= MAX_AGE_YEARS:
        return years
    if strict:
        raise ValueError(f"not an age: {text!r}" if years is None else f"implausible age: {text!r}")
    return None


def parse_sex(value: str) -> str | None:
    """``"M"``/``"F"`` from ``M``, ``f``, ``male``, ``w`` (German *weiblich*, Hannover readme)...

    Returns None for anything else (blank, ``O``, unknown).
    """
    return _SEX.get(value.strip().lower())
