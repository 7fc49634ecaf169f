"""chestlens: AI screening of chest X-ray and chest CT.

Research use only. chestlens output is never a diagnosis.
"""

from chestlens.errors import ChestlensInputError

__version__ = "0.1.0"

RESEARCH_USE_DISCLAIMER = (
    "Research use only. chestlens is not a medical device and its output is not a diagnosis; "
    "a qualified clinician must read every image."
)

__all__ = ["RESEARCH_USE_DISCLAIMER", "ChestlensInputError", "__version__"]
