"""Issue 19, what a service does at start-up: orphan spool folders removed, a secret salt per installation.

Model-less services (``models=()``) on temporary data folders, with the real CT slice CT_small.dcm in
the spool. These start and stop services of their own, so they live apart from the module-wide service
of ``test_reliability.py`` (the installation salt is per process). The section numbers are the issue's.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from fastapi.testclient import TestClient
from serve_helpers import wait_ready

from chestlens.io.deid import DEFAULT_SALT, SALT_ENV, id_salt
from chestlens.io.salt import SALT_FILE
from chestlens.serve.app import create_app
from chestlens.serve.settings import ServeSettings
from chestlens.serve.store import Store, new_id
from chestlens.serve.uploads import SPOOL, SPOOL_GRACE_S


# ----------------------------------------------------------------------------- 8. orphan spools
def _spooled(spool: Path, name: str, member: Path, *, age_s: float) -> Path:
    folder = spool / name
    folder.mkdir(parents=True)
    shutil.copy(member, folder / "00000.dcm")
    old = time.time() - age_s
    for path in (folder / "00000.dcm", folder):
        os.utime(path, (old, old))
    return folder


def test_orphan_spool_folders_are_removed_at_start(tmp_path, pip_dicom):
    settings = ServeSettings(data_dir=tmp_path, device="cpu", models=())
    spool, member = tmp_path / SPOOL, pip_dicom("CT_small.dcm")
    killed = _spooled(spool, new_id(), member, age_s=3600)  # a kill between spooling and the job row
    pending_id = new_id()
    pending = _spooled(spool, pending_id, member, age_s=3600)
    in_flight = _spooled(spool, new_id(), member, age_s=SPOOL_GRACE_S / 4)  # another worker writing
    not_ours = _spooled(spool, "keep-me", member, age_s=3600)
    (spool / "notes.txt").write_text("not the service's")
    outside = tmp_path / "outside"
    outside.mkdir()
    (spool / new_id()).symlink_to(outside, target_is_directory=True)
    store = Store(settings.url)
    store.add_job(pending_id, "another-host:1:cafe")  # a queued job of another instance
    store.close()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_ready(client)
    assert not killed.exists()
    assert pending.is_dir() and in_flight.is_dir() and not_ours.is_dir() and outside.is_dir()
    assert (spool / "notes.txt").is_file()


# ----------------------------------------------------------------------------- 5. the secret salt
def _start(data_dir: Path) -> str:
    """Start and stop a model-less service on ``data_dir``; the salt it used."""
    with TestClient(create_app(ServeSettings(data_dir=data_dir, models=(), device="cpu"))) as client:
        wait_ready(client)
        return id_salt()


def test_each_installation_gets_its_own_private_salt(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(SALT_ENV, raising=False)
    caplog.set_level("INFO")
    first, second = _start(tmp_path / "a"), _start(tmp_path / "b")
    assert first != second and DEFAULT_SALT not in (first, second) and len(first) == 64
    for data_dir, salt in ((tmp_path / "a", first), (tmp_path / "b", second)):
        path = data_dir / SALT_FILE
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.read_text().strip() == salt
        assert salt not in caplog.text
    assert "installation salt created" in caplog.text
    assert _start(tmp_path / "a") == first  # kept across restarts
    assert "installation salt read" in caplog.text
    assert id_salt() == DEFAULT_SALT  # a stopped service leaves the process as it found it


def test_a_configured_salt_wins(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(SALT_ENV, "site-secret")
    with caplog.at_level("INFO"):
        assert _start(tmp_path) == "site-secret"
    assert not (tmp_path / SALT_FILE).exists()
    assert "configured salt" in caplog.text and "site-secret" not in caplog.text
