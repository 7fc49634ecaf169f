"""Bundles shipped inside the package (``chestlens/bundles/<name>/``) and name-or-path resolution."""

from __future__ import annotations

from pathlib import Path

from chestlens.errors import ChestlensInputError
from chestlens.models.spec import BUNDLE_JSON

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "bundles"
DEFAULT_CLASSIFIER = "xray3-screener"
DEFAULT_LUNGS = "lungs-segmenter"


def bundled_names() -> list[str]:
    """Names of the bundles that ship with chestlens (each a folder with ``bundle.json``)."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / BUNDLE_JSON).is_file())


def _bundle_folder(name_or_path: str | Path) -> Path | None:
    """The bundle folder at a path, or of a bundled model's name; None when neither exists."""
    path = Path(name_or_path).expanduser()
    if (path / BUNDLE_JSON).is_file():
        return path
    name = str(name_or_path)
    if "/" not in name and (BUNDLED_DIR / name / BUNDLE_JSON).is_file():
        return BUNDLED_DIR / name
    return None


def is_bundle(name_or_path: str | Path) -> bool:
    """True for a bundle folder or the name of a bundled model (what :func:`resolve_bundle` accepts)."""
    return _bundle_folder(name_or_path) is not None


def resolve_bundle(name_or_path: str | Path) -> Path:
    """A bundle folder from a path, or from the name of a bundled model (e.g. ``"xray3-screener"``)."""
    folder = _bundle_folder(name_or_path)
    if folder is not None:
        return folder
    known = ", ".join(bundled_names()) or "none"
    raise ChestlensInputError(
        name_or_path, f"not a bundle folder nor a bundled model name (bundled: {known})"
    )


def bundled_lesion_segmenters() -> list[str]:
    """Names of the shipped lesion segmenters (segmenter bundles of any task but ``lungs``), the
    screening pipeline's default lesion models."""
    from chestlens.models.kinds import role_of
    from chestlens.models.spec import read_spec

    return [name for name in bundled_names() if role_of(read_spec(BUNDLED_DIR / name)) == "lesions"]


def default_models() -> tuple[str, ...]:
    """The models every entry point (``predict``, ``demo``, ``serve``, ``chestlens.Screener()``) loads
    when none are named: the X-ray classifier, the lung segmenter and every shipped lesion segmenter."""
    return (DEFAULT_CLASSIFIER, DEFAULT_LUNGS, *bundled_lesion_segmenters())
