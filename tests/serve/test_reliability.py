"""Issue 19 through a running service: one bad input never hurts another, uploads never 500, and patient
keys are not the public-salt hash (the start-up parts are in ``test_start_up.py``).

Built from real files: the pip radiograph RG1_UNCR.dcm and CT slice CT_small.dcm, and real radiographs
of ``../shared/data``. The section numbers are the issue's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from serve_helpers import assert_problem, serving, upload
from tests.io.test_non_finite import NAN_COLUMNS, nan_slope_radiograph

from chestlens.errors import ChestlensInputError
from chestlens.io import MedicalImage, read_image
from chestlens.io.deid import DEFAULT_SALT, SALT_ENV, salted_key
from chestlens.io.salt import SALT_FILE
from chestlens.pipeline.screener import Screening
from chestlens.serve.engine import Engine
from chestlens.serve.settings import ServeSettings
from chestlens.serve.uploads import SPOOL

pytestmark = [pytest.mark.inference, pytest.mark.shared_data]
BURST = 6
PATIENT_FOLDER = "PATIENT-123456"  # a zip member name holding a patient id


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[TestClient]:
    """A ready service whose batcher waits long enough for a burst to share one batch."""
    settings = ServeSettings(
        data_dir=tmp_path_factory.mktemp("serve"), device="cpu", max_batch=BURST, batch_wait_ms=300
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(SALT_ENV, raising=False)  # the installation salt, not a configured one
        with serving(settings) as ready:
            yield ready


# ----------------------------------------------------------------------------- 1. NaN pixels
def test_a_nan_radiograph_in_a_burst_fails_alone(service, radiographs, pip_dicom):
    valid = [path.read_bytes() for path in radiographs(BURST - 1)]
    burst = [nan_slope_radiograph(pip_dicom), *valid]
    with ThreadPoolExecutor(BURST) as pool:
        responses = list(pool.map(lambda data: upload(service, data, "scan.dcm"), burst))
    assert_problem(responses[0], 422, r"100% of the pixel values are NaN or infinite")
    assert [r.status_code for r in responses[1:]] == [200] * (BURST - 1), [r.text for r in responses]


def _with_nan_columns(image: MedicalImage, name: str) -> MedicalImage:
    """A real decoded radiograph with NaN columns, as no reader returns it: it breaks the gate."""
    pixels = image.pixels.copy()
    pixels[:, NAN_COLUMNS] = np.nan
    return MedicalImage(pixels=pixels, meta=dataclasses.replace(image.meta, source_path=name))


async def _burst(engine: Engine, images: list[MedicalImage]) -> list[Screening | BaseException]:
    engine.start()
    try:
        return await asyncio.gather(*(engine.screen(image) for image in images), return_exceptions=True)
    finally:
        await engine.stop()


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")  # the broken gate
def test_engine_isolates_an_input_that_breaks_its_batch(service, radiographs, pip_dicom):
    screener = service.app.state.service.engine.screener
    valid = [read_image(path) for path in radiographs(3)]
    broken = _with_nan_columns(read_image(pip_dicom("RG1_UNCR.dcm")), "upload-broken")
    engine = Engine(screener, max_batch=4, batch_wait_ms=300, queue_size=8)
    outcomes = asyncio.run(_burst(engine, [valid[0], broken, *valid[1:]]))
    assert isinstance(outcomes[1], ChestlensInputError), outcomes[1]
    assert outcomes[1].path == "upload-broken" and "could not be screened" in outcomes[1].reason
    assert all(isinstance(o, Screening) for o in (outcomes[0], *outcomes[2:])), outcomes
    assert engine.batches == 1 and engine.images == 4  # one batch, split only to isolate the broken input


# ----------------------------------------------------------------------------- 3. encrypted zips
def _encrypted_with_zip_binary(member: Path, tmp_path: Path) -> bytes:
    """``zip -P``: a real traditional-PKWARE-encrypted zip, as ``zip -e`` writes it."""
    if shutil.which("zip") is None:
        pytest.skip("no zip binary")
    folder = tmp_path / "zipped" / PATIENT_FOLDER
    folder.mkdir(parents=True)
    shutil.copy(member, folder / "slice1.dcm")
    target = tmp_path / "encrypted.zip"
    subprocess.run(
        ["zip", "-q", "-r", "-P", "secret", str(target), PATIENT_FOLDER], cwd=folder.parent, check=True
    )
    return target.read_bytes()


def _encrypted_by_flag(member: Path, _tmp_path: Path) -> bytes:
    """A zip whose member has the 'encrypted' flag bit set, in its local and central headers."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{PATIENT_FOLDER}/slice1.dcm", member.read_bytes())
    data = bytearray(buffer.getvalue())
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature) + flag_offset
        data[at] |= 0x01
    return bytes(data)


@pytest.mark.parametrize("build", [_encrypted_with_zip_binary, _encrypted_by_flag])
def test_encrypted_zip_is_a_422_and_the_log_names_no_member(service, pip_dicom, tmp_path, caplog, build):
    data = build(pip_dicom("CT_small.dcm"), tmp_path)
    with caplog.at_level("DEBUG"):
        response = upload(service, data, "series.zip")
    body = assert_problem(response, 422, "the zip is encrypted")
    assert PATIENT_FOLDER not in body["detail"]
    assert PATIENT_FOLDER not in caplog.text and "Traceback" not in caplog.text
    spool = Path(service.app.state.settings.data_dir) / SPOOL
    assert not spool.exists() or not any(spool.iterdir())


# ----------------------------------------------------------------------------- 5. the secret salt
def test_patient_key_is_not_the_public_default_hash(service, pip_dicom):
    import pydicom

    source = pip_dicom("CT_small.dcm")
    patient_id = str(pydicom.dcmread(source, stop_before_pixels=True).PatientID)
    key = upload(service, source.read_bytes()).json()["result"]["input"]["patient_key"]
    public = hashlib.sha256(f"{DEFAULT_SALT}\x1f{patient_id}".encode()).hexdigest()[:16]
    salt = (Path(service.app.state.settings.data_dir) / SALT_FILE).read_text().strip()
    assert key != public
    assert key == hashlib.sha256(f"{salt}\x1f{patient_id}".encode()).hexdigest()[:16]
    assert salted_key(patient_id) == key  # the running service's process uses its installation salt
