"""chestlens: AI screening of chest X-ray and chest CT.

Research use only. chestlens output is never a diagnosis.
"""

from chestlens.errors import ChestlensInputError

__version__ = "0.1.0"

RESEARCH_USE_DISCLAIMER = (
    "Research use only. chestlens is not a medical device and its output is not a diagnosis; "
    "a qualified clinician must read every image."
)


def load(name_or_path: str):
    """Load a model bundle by bundled name (e.g. ``"xray3-screener"``) or folder path, without network."""
    from chestlens.models.bundle import load_bundle

    return load_bundle(name_or_path)


def __getattr__(name: str):
    """``chestlens.Screener`` is imported on first use, so ``import chestlens`` stays light."""
    if name == "Screener":
        from chestlens.pipeline.screener import Screener

        return Screener
    raise AttributeError(f"module 'chestlens' has no attribute {name!r}")


__all__ = ["RESEARCH_USE_DISCLAIMER", "ChestlensInputError", "Screener", "__version__", "load"]
