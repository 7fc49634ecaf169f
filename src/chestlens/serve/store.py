"""Results, overlay pictures and background jobs, persisted with SQLAlchemy 2.

Default: one SQLite file in the data folder (WAL journal, survives restarts); any SQLAlchemy URL works,
e.g. ``postgresql+psycopg://user@127.0.0.1/chestlens`` when several instances share one database.
Nothing here holds patient identity: results carry only the salted ``patient_key`` of the reader, and
no client file name is ever stored.

Owners: who submitted a screening or a job is kept as its principal's hashed id
(:attr:`chestlens.serve.auth.Principal.id`, never a key or a token) in the tables ``screening_owners`` and
``job_owners``. They are tables of their own, not columns, because the store has no migrations:
``create_all`` adds missing tables to an existing database but never columns to existing tables. A row
without an owner (made before roles existed, or by the anonymous principal of an open server) belongs to
nobody: a ``scope`` (the one owner a submitter may see) never matches it, so only roles that see all do.
``JobRow.owner`` is something else: the process that runs the job.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    DateTime,
    Float,
    ForeignKey,
    LargeBinary,
    String,
    Text,
    create_engine,
    delete,
    event,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.sql import Select

JOB_ACTIVE = ("queued", "running")


def new_id() -> str:
    """A random 32-hex-character id for screenings and jobs."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class ScreeningRow(Base):
    """One screened input: its status and the pipeline's JSON result (``ScreeningResult``)."""

    __tablename__ = "screenings"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    status: Mapped[str] = mapped_column(String(16))  # screened / rejected
    result_json: Mapped[str] = mapped_column(Text)


class OverlayRow(Base):
    """One PNG layer of a screening (``image``, ``heatmap``, ``lungs``, ``lesions``, ``summary``...)."""

    __tablename__ = "overlays"
    screening_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("screenings.id", ondelete="CASCADE"), primary_key=True
    )
    layer: Mapped[str] = mapped_column(String(32), primary_key=True)
    png: Mapped[bytes] = mapped_column(LargeBinary)


class JobRow(Base):
    """A background job (CT series): progress in ``[0, 1]``, the owner process, the result when done."""

    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued / running / done / failed
    stage: Mapped[str] = mapped_column(String(64))
    progress: Mapped[float] = mapped_column(Float)
    owner: Mapped[str] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    screening_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class ScreeningOwnerRow(Base):
    """The principal (hashed id) that submitted a screening."""

    __tablename__ = "screening_owners"
    screening_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("screenings.id", ondelete="CASCADE"), primary_key=True
    )
    principal: Mapped[str] = mapped_column(String(64), index=True)


class JobOwnerRow(Base):
    """The principal (hashed id) that submitted a job."""

    __tablename__ = "job_owners"
    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    principal: Mapped[str] = mapped_column(String(64), index=True)


@dataclass(frozen=True, slots=True)
class StoredScreening:
    id: str
    created_at: datetime
    status: str
    result_json: str
    layers: tuple[str, ...]
    principal: str | None = None


@dataclass(frozen=True, slots=True)
class StoredJob:
    id: str
    created_at: datetime
    updated_at: datetime
    status: str
    stage: str
    progress: float
    owner: str
    error: str | None
    screening_id: str | None
    principal: str | None = None


def _job(row: JobRow, principal: str | None) -> StoredJob:
    return StoredJob(
        id=row.id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        status=row.status,
        stage=row.stage,
        progress=row.progress,
        owner=row.owner,
        error=row.error,
        screening_id=row.screening_id,
        principal=principal,
    )


def _screenings(scope: str | None) -> Select[tuple[ScreeningRow, str | None]]:
    """Screenings with their owner; only those of ``scope`` when it is given (None: all)."""
    query = select(ScreeningRow, ScreeningOwnerRow.principal).outerjoin(
        ScreeningOwnerRow, ScreeningOwnerRow.screening_id == ScreeningRow.id
    )
    return query if scope is None else query.where(ScreeningOwnerRow.principal == scope)


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(connection, _record) -> None:  # pragma: no cover - driver callback
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()


class Store:
    """Blocking (call it from a worker thread, never on the event loop) access to the database."""

    def __init__(self, url: str) -> None:
        sqlite = url.startswith("sqlite")
        self.engine = create_engine(
            url,
            connect_args={"check_same_thread": False} if sqlite else {},
            pool_pre_ping=not sqlite,
        )
        if sqlite:
            _sqlite_pragmas(self.engine)
        Base.metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ screenings
    def add_screening(
        self,
        screening_id: str,
        status: str,
        result_json: str,
        layers: dict[str, bytes],
        principal: str | None = None,
    ) -> None:
        """Store a result, its layers (name -> bytes) and its owner (if any) in one transaction."""
        with Session(self.engine) as session, session.begin():
            session.add(
                ScreeningRow(id=screening_id, created_at=utcnow(), status=status, result_json=result_json)
            )
            session.flush()  # the parent row first: PostgreSQL checks the foreign key per statement
            session.add_all(OverlayRow(screening_id=screening_id, layer=k, png=v) for k, v in layers.items())
            if principal is not None:
                session.add(ScreeningOwnerRow(screening_id=screening_id, principal=principal))

    def screening(self, screening_id: str, scope: str | None = None) -> StoredScreening | None:
        """A screening with its layer names; None when there is none, or none of ``scope``'s (when given)."""
        with Session(self.engine) as session:
            found = session.execute(_screenings(scope).where(ScreeningRow.id == screening_id)).first()
            if found is None:
                return None
            row, principal = found
            layers = session.scalars(
                select(OverlayRow.layer).where(OverlayRow.screening_id == screening_id)
            ).all()
            return StoredScreening(
                row.id, row.created_at, row.status, row.result_json, tuple(sorted(layers)), principal
            )

    def recent(self, limit: int, scope: str | None = None) -> list[StoredScreening]:
        """The newest screenings first (without their layer list); only ``scope``'s when it is given."""
        with Session(self.engine) as session:
            rows = session.execute(
                _screenings(scope).order_by(ScreeningRow.created_at.desc()).limit(limit)
            ).all()
            return [StoredScreening(r.id, r.created_at, r.status, r.result_json, (), p) for r, p in rows]

    def visible(self, screening_id: str, scope: str | None) -> bool:
        """Whether the screening exists (and, with ``scope``, is that owner's)."""
        with Session(self.engine) as session:
            query = _screenings(scope).where(ScreeningRow.id == screening_id)
            return session.execute(query).first() is not None

    def overlay(self, screening_id: str, layer: str) -> bytes | None:
        with Session(self.engine) as session:
            row = session.get(OverlayRow, (screening_id, layer))
            return None if row is None else row.png

    def set_overlay(self, screening_id: str, layer: str, png: bytes) -> None:
        """Replace the bytes of an existing layer (a layer drawn on its first request)."""
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(OverlayRow)
                .where(OverlayRow.screening_id == screening_id, OverlayRow.layer == layer)
                .values(png=png)
            )

    def delete_screening(self, screening_id: str, scope: str | None = None) -> bool:
        """Delete a screening, its layers, its owner and the job that made it, in one transaction.

        Returns False when there was no such screening, or none of ``scope``'s when it is given (nothing
        is deleted then).
        """
        with Session(self.engine) as session, session.begin():
            query = _screenings(scope).where(ScreeningRow.id == screening_id)
            if session.execute(query).first() is None:
                return False
            return self._delete(session, [screening_id]) == 1

    def delete_before(self, cutoff: datetime) -> int:
        """Delete screenings created before ``cutoff`` (with layers and jobs) and jobs that ended before
        it without a screening (failed ones); returns how many screenings went."""
        with Session(self.engine) as session, session.begin():
            ids = session.scalars(select(ScreeningRow.id).where(ScreeningRow.created_at < cutoff)).all()
            removed = self._delete(session, list(ids))
            ended = select(JobRow.id).where(JobRow.updated_at < cutoff, JobRow.status.not_in(JOB_ACTIVE))
            session.execute(delete(JobOwnerRow).where(JobOwnerRow.job_id.in_(ended)))
            session.execute(
                delete(JobRow).where(JobRow.updated_at < cutoff, JobRow.status.not_in(JOB_ACTIVE))
            )
            return removed

    @staticmethod
    def _delete(session: Session, screening_ids: list[str]) -> int:
        if not screening_ids:
            return 0
        jobs = select(JobRow.id).where(JobRow.screening_id.in_(screening_ids))
        session.execute(delete(OverlayRow).where(OverlayRow.screening_id.in_(screening_ids)))
        session.execute(delete(ScreeningOwnerRow).where(ScreeningOwnerRow.screening_id.in_(screening_ids)))
        session.execute(delete(JobOwnerRow).where(JobOwnerRow.job_id.in_(jobs)))
        session.execute(delete(JobRow).where(JobRow.screening_id.in_(screening_ids)))
        return session.execute(delete(ScreeningRow).where(ScreeningRow.id.in_(screening_ids))).rowcount

    # ------------------------------------------------------------------ jobs
    def add_job(self, job_id: str, owner: str, principal: str | None = None) -> StoredJob:
        """Record a queued job run by the process ``owner``, submitted by ``principal`` (if any)."""
        now = utcnow()
        row = JobRow(
            id=job_id,
            created_at=now,
            updated_at=now,
            status="queued",
            stage="queued",
            progress=0.0,
            owner=owner,
        )
        with Session(self.engine) as session, session.begin():
            session.add(row)
            if principal is not None:
                session.flush()  # the job row first (foreign key)
                session.add(JobOwnerRow(job_id=job_id, principal=principal))
        return self.job(job_id)  # type: ignore[return-value]

    def job(self, job_id: str, scope: str | None = None) -> StoredJob | None:
        """A job; None when there is none, or none of ``scope``'s when it is given."""
        with Session(self.engine) as session:
            query = select(JobRow, JobOwnerRow.principal).outerjoin(
                JobOwnerRow, JobOwnerRow.job_id == JobRow.id
            )
            if scope is not None:
                query = query.where(JobOwnerRow.principal == scope)
            found = session.execute(query.where(JobRow.id == job_id)).first()
            return None if found is None else _job(*found)

    def update_job(self, job_id: str, **values: object) -> None:
        """Set job fields (``status``, ``stage``, ``progress``, ``error``, ``screening_id``)."""
        with Session(self.engine) as session, session.begin():
            session.execute(update(JobRow).where(JobRow.id == job_id).values(updated_at=utcnow(), **values))

    def active_jobs(self) -> list[StoredJob]:
        """Jobs queued or running, oldest first (without their owners: see :meth:`job`)."""
        with Session(self.engine) as session:
            rows = session.scalars(
                select(JobRow).where(JobRow.status.in_(JOB_ACTIVE)).order_by(JobRow.created_at)
            ).all()
            return [_job(r, None) for r in rows]

    def claim_job(self, job_id: str, old_owner: str, new_owner: str) -> bool:
        """Take over a job atomically: True only for the one process whose update matched."""
        with Session(self.engine) as session, session.begin():
            changed = session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.owner == old_owner, JobRow.status.in_(JOB_ACTIVE))
                .values(
                    owner=new_owner, status="queued", stage="resumed after a restart", updated_at=utcnow()
                )
            )
            return changed.rowcount == 1
