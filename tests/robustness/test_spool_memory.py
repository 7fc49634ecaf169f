"""A zipped series is streamed to the spool member by member: memory does not grow with the series.

Issue 19 found that an uploaded zip's members were all read into memory before being written (bounded
only by the upload and series limits). Measured with ``tracemalloc`` (Python allocations, the zip's own
bytes allocated before tracing starts) on copies of the real radiograph RG1_UNCR.dcm (7.2 MB each).
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from chestlens.serve.problems import ProblemError
from chestlens.serve.settings import ServeSettings
from chestlens.serve.uploads import SPOOL, spool_series

pytestmark = pytest.mark.inference

#: Copies of RG1_UNCR.dcm in the zip: 8 x 7.2 MB = 58 MB of members.
COPIES = 8
#: Traced peak allowed while spooling: a few chunks (deflate's buffers included; measured 4.5 MB deflated),
#: independent of the series' size. Reading the members into memory first traced 58 MB here.
PEAK_LIMIT = 8 * 2**20


def _zip_of_copies(member: bytes, copies: int, method: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(
        buffer, "w", method, compresslevel=1 if method == zipfile.ZIP_DEFLATED else None
    ) as z:
        for index in range(copies):
            z.writestr(f"patient/series/{index:03d}.dcm", member)
    return buffer.getvalue()


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
def test_spooling_a_zip_holds_one_chunk_not_the_members(pip_dicom, tmp_path, method):
    member = pip_dicom("RG1_UNCR.dcm").read_bytes()
    data = _zip_of_copies(member, COPIES, method)
    settings = ServeSettings(data_dir=tmp_path, device="cpu")
    tracemalloc.start()
    try:
        folder = spool_series([data], settings, "a" * 32)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [f"{i:05d}.dcm" for i in range(COPIES)]
    assert all(f.read_bytes() == member for f in files)
    assert peak < PEAK_LIMIT, f"spooling {COPIES * len(member):,} bytes traced a peak of {peak:,} bytes"


def _understate_first_size(data: bytes, size: int) -> bytes:
    """The zip with its first member's uncompressed size in the central directory set to ``size``."""
    directory = data.index(b"PK\x01\x02")
    return data[: directory + 24] + struct.pack("<I", size) + data[directory + 28 :]


def test_a_member_longer_than_its_header_says_is_refused_and_nothing_stays(pip_dicom, tmp_path):
    data = _zip_of_copies(pip_dicom("CT_small.dcm").read_bytes(), 2, zipfile.ZIP_STORED)
    lying = _understate_first_size(data, 1000)
    settings = ServeSettings(data_dir=tmp_path, device="cpu")
    with pytest.raises(ProblemError) as caught:
        spool_series([lying], settings, "b" * 32)
    assert caught.value.status == 422 and "the zip cannot be read (BadZipFile)" in caught.value.detail
    assert not any((Path(tmp_path) / SPOOL).glob("*"))


def test_the_declared_size_is_checked_before_anything_is_written(pip_dicom, tmp_path):
    data = _zip_of_copies(pip_dicom("CT_small.dcm").read_bytes(), 3, zipfile.ZIP_DEFLATED)
    settings = ServeSettings(data_dir=tmp_path, device="cpu", max_series_bytes=50_000)
    with pytest.raises(ProblemError) as caught:
        spool_series([data], settings, "c" * 32)
    assert caught.value.status == 413 and "more than the limit of 50,000" in caught.value.detail
    assert not (Path(tmp_path) / SPOOL).exists()
