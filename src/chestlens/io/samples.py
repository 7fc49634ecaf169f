"""Real DICOM files shipped by pip packages, found without any network access.

* ``pydicom`` bundles a few files in ``pydicom/data/test_files`` (e.g. ``CT_small.dcm``, a 128 x 128
  chest CT slice).
* ``pydicom-data`` installs the package ``data_store`` with ``data_store/data`` (e.g. ``RG1_UNCR.dcm``,
  an adult chest radiograph, and ``RG3_UNCR.dcm``, a leg radiograph, plus JPEG 2000 versions).

pydicom's own ``get_testdata_file`` tries to download missing files, so it is not used here.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: (package, folder inside it) searched in this order.
SAMPLE_LOCATIONS: tuple[tuple[str, str], ...] = (
    ("data_store", "data"),
    ("pydicom.data", "test_files"),
)


def sample_folders() -> list[Path]:
    """The sample folders that are installed."""
    folders = []
    for package, folder in SAMPLE_LOCATIONS:
        try:
            candidate = Path(str(resources.files(package) / folder))
        except ModuleNotFoundError:
            continue
        if candidate.is_dir():
            folders.append(candidate)
    return folders


def sample_path(name: str) -> Path:
    """Path of a bundled sample file by name, e.g. ``sample_path("RG1_UNCR.dcm")``.

    Raises:
        FileNotFoundError: the file is in no installed sample folder (install ``pydicom-data``).
    """
    folders = sample_folders()
    for folder in folders:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(folder) for folder in folders) or "none installed"
    raise FileNotFoundError(
        f"sample file {name!r} not found (searched: {searched}); it ships with the pip packages "
        "'pydicom' and 'pydicom-data' (pip install pydicom-data)"
    )
