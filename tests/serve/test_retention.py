"""Deleting results: ``DELETE /api/v1/screenings/{id}`` and the ``retention_days`` setting.

After a delete nothing derived from the screening remains: its row, every overlay layer (drawn or not)
and the job row that produced it, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from serve_helpers import assert_problem, serving, upload
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from chestlens.serve.settings import ServeSettings
from chestlens.serve.store import JobRow, OverlayRow, ScreeningRow, Store, new_id, utcnow


def _left(store: Store, screening_id: str) -> dict[str, int]:
    """Rows that still mention ``screening_id``, per table."""
    with Session(store.engine) as session:
        count = select(func.count())
        return {
            table.__tablename__: session.scalar(count.select_from(table).where(column == screening_id))
            for table, column in (
                (ScreeningRow, ScreeningRow.id),
                (OverlayRow, OverlayRow.screening_id),
                (JobRow, JobRow.screening_id),
            )
        }


def _screening_with_job(store: Store, age_days: float = 0.0) -> str:
    """A stored screening with two layers and the finished job that made it, ``age_days`` old."""
    screening_id, job_id = new_id(), new_id()
    store.add_screening(screening_id, "screened", "{}", {"image": b"png", "heatmap": b""})
    store.add_job(job_id, "test")
    store.update_job(job_id, status="done", screening_id=screening_id)
    then = utcnow() - timedelta(days=age_days)
    with Session(store.engine) as session, session.begin():
        session.execute(update(ScreeningRow).where(ScreeningRow.id == screening_id).values(created_at=then))
        session.execute(update(JobRow).where(JobRow.id == job_id).values(updated_at=then))
    return screening_id


NOTHING = {"screenings": 0, "overlays": 0, "jobs": 0}


def test_store_deletes_a_screening_with_its_layers_and_job(database_url):
    store = Store(database_url)
    try:
        kept, gone = _screening_with_job(store), _screening_with_job(store)
        assert store.delete_screening(gone) is True
        assert _left(store, gone) == NOTHING
        assert _left(store, kept) == {"screenings": 1, "overlays": 2, "jobs": 1}
        assert store.delete_screening(gone) is False  # nothing left to delete
    finally:
        store.close()


def test_store_retention_deletes_only_what_is_older(database_url):
    store = Store(database_url)
    try:
        old, recent = _screening_with_job(store, age_days=40), _screening_with_job(store, age_days=2)
        failed = new_id()
        store.add_job(failed, "test")
        store.update_job(failed, status="failed", error="unreadable")
        with Session(store.engine) as session, session.begin():
            session.execute(
                update(JobRow).where(JobRow.id == failed).values(updated_at=utcnow() - timedelta(days=40))
            )
        running = new_id()
        store.add_job(running, "test")  # an active job is never removed, however old
        assert store.delete_before(utcnow() - timedelta(days=30)) == 1
        assert _left(store, old) == NOTHING
        assert _left(store, recent) == {"screenings": 1, "overlays": 2, "jobs": 1}
        assert store.job(failed) is None and store.job(running) is not None
    finally:
        store.close()


@pytest.mark.inference
def test_delete_through_the_api_leaves_nothing(client, pip_dicom):
    body = upload(client, pip_dicom("RG1_UNCR.dcm").read_bytes()).json()
    screening_id = body["id"]
    assert client.get(body["overlays"]["heatmap"]).status_code == 200  # drawn and stored
    response = client.delete(f"/api/v1/screenings/{screening_id}")
    assert response.status_code == 204 and not response.content
    assert _left(client.app.state.service.store, screening_id) == NOTHING
    assert_problem(client.get(f"/api/v1/screenings/{screening_id}"), 404)
    assert_problem(client.get(body["overlays"]["image"]), 404)
    assert_problem(client.delete(f"/api/v1/screenings/{screening_id}"), 404, "no screening")
    assert screening_id not in client.get("/api/v1/screenings.csv").text
    assert client.delete("/api/v1/screenings/not-an-id").status_code == 422


@pytest.mark.inference
def test_retention_setting_deletes_old_results_at_start(tmp_path):
    settings = ServeSettings(data_dir=tmp_path / "serve", device="cpu", retention_days=30)
    settings.data_dir.mkdir()
    store = Store(settings.url)
    old, recent = _screening_with_job(store, age_days=31), _screening_with_job(store, age_days=29)
    store.close()
    with serving(settings) as client:
        store = client.app.state.service.store
        assert _left(store, old) == NOTHING
        assert _left(store, recent) == {"screenings": 1, "overlays": 2, "jobs": 1}
