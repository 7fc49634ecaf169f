"""Fixtures of the pipeline tests."""

from __future__ import annotations

import copy
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from chestlens.io.samples import sample_path

#: Slices of :func:`ct_small_series`: more than one graph batch (``stages.MAX_GRAPH_BATCH``).
CT_SMALL_SERIES_SLICES = 10


@pytest.fixture
def ct_small_series(tmp_path) -> Path:
    """A CT series folder: ``CT_SMALL_SERIES_SLICES`` copies of pydicom's ``CT_small.dcm``, 5 mm apart."""
    folder = tmp_path / "series"
    folder.mkdir()
    template = pydicom.dcmread(sample_path("CT_small.dcm"))
    series_uid = generate_uid()
    for k in range(CT_SMALL_SERIES_SLICES):
        ds = copy.deepcopy(template)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID = series_uid
        ds.ImagePositionPatient = [-80.0, -90.0, 5.0 * k]
        ds.SliceLocation = 5.0 * k
        ds.InstanceNumber = k + 1
        ds.save_as(folder / f"slice{k}.dcm", enforce_file_format=True)
    return folder
