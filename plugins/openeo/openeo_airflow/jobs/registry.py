"""The job registry: batch jobs and their logs in SQL (SQLite or PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from openeo_airflow.core.errors import JobNotFound
from openeo_airflow.core.models import Job, JobStatus, LogEntry
from openeo_airflow.jobs.tables import job_logs, jobs

LOG_LEVELS = ("debug", "info", "warning", "error")
EDITABLE = ("title", "description", "process", "plan", "budget", "job_options")


def now() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    # Airflow run ids allow these characters; the prefix makes ids recognisable in the UI.
    return "j-" + uuid.uuid4().hex[:20]


class JobRegistry:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(
        self,
        owner: str,
        process: dict[str, Any],
        *,
        title: str | None = None,
        description: str | None = None,
        plan: str | None = None,
        budget: float | None = None,
        job_options: dict[str, Any] | None = None,
        job_id: str | None = None,
    ) -> Job:
        stamp = now()
        job = Job(
            id=job_id or new_job_id(),
            owner=owner,
            process=process,
            status=JobStatus.CREATED,
            created=stamp,
            updated=stamp,
            title=title,
            description=description,
            plan=plan,
            budget=budget,
            job_options=job_options or {},
        )
        with self._engine.begin() as conn:
            conn.execute(insert(jobs).values(**_row(job)))
        return job

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job; ``JobNotFound`` also when it belongs to someone else (never leak existence)."""
        query = select(jobs).where(jobs.c.id == job_id)
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        with self._engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            raise JobNotFound(identifier=job_id)
        return _job(row)

    def jobs_of(self, owner: str) -> list[Job]:
        query = select(jobs).where(jobs.c.owner == owner).order_by(jobs.c.created.desc())
        with self._engine.connect() as conn:
            return [_job(row) for row in conn.execute(query).mappings()]

    def update(self, job_id: str, **fields: Any) -> None:
        unknown = set(fields) - set(EDITABLE) - {"progress", "usage", "sizing", "run_id"}
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        with self._engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(**fields, updated=now()))

    def set_status(
        self,
        job_id: str,
        status: JobStatus,
        *,
        only_from: Iterable[JobStatus] | None = None,
        progress: float | None = None,
    ) -> bool:
        """Move a job to ``status``; with ``only_from``, only if it is currently in one of those.

        The conditional update is one statement, so a late task cannot overwrite a cancel.
        """
        values: dict[str, Any] = {"status": status.value, "updated": now()}
        if progress is not None:
            values["progress"] = progress
        query = update(jobs).where(jobs.c.id == job_id)
        if only_from is not None:
            query = query.where(jobs.c.status.in_([s.value for s in only_from]))
        with self._engine.begin() as conn:
            return conn.execute(query.values(**values)).rowcount > 0

    def delete(self, job_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(job_logs).where(job_logs.c.job_id == job_id))
            conn.execute(delete(jobs).where(jobs.c.id == job_id))

    def add_log(
        self,
        job_id: str,
        level: str,
        message: str,
        *,
        stage: str | None = None,
        data: Any = None,
    ) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(job_logs).values(
                    job_id=job_id,
                    time=now(),
                    level=level if level in LOG_LEVELS else "info",
                    stage=stage,
                    message=message,
                    data=data,
                )
            )

    def logs(
        self, job_id: str, *, offset: str | None = None, level: str = "debug", limit: int = 1000
    ) -> list[LogEntry]:
        """Entries after ``offset`` (an entry id) at or above ``level``, oldest first."""
        wanted = LOG_LEVELS[LOG_LEVELS.index(level) :] if level in LOG_LEVELS else LOG_LEVELS
        query = (
            select(job_logs)
            .where(job_logs.c.job_id == job_id, job_logs.c.level.in_(wanted))
            .order_by(job_logs.c.seq)
            .limit(limit)
        )
        if offset is not None and offset.isdigit():
            query = query.where(job_logs.c.seq > int(offset))
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            LogEntry(
                id=str(r["seq"]),
                level=r["level"],
                message=r["message"],
                time=_utc(r["time"]),
                stage=r["stage"],
                data=r["data"],
            )
            for r in rows
        ]


def _utc(value: datetime) -> datetime:
    # SQLite returns naive datetimes even for timezone-aware columns.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _row(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "owner": job.owner,
        "title": job.title,
        "description": job.description,
        "process": job.process,
        "status": job.status.value,
        "progress": job.progress,
        "plan": job.plan,
        "run_id": job.run_id,
        "budget": job.budget,
        "job_options": job.job_options,
        "usage": job.usage,
        "sizing": job.sizing,
        "created": job.created,
        "updated": job.updated,
    }


def _job(row: Any) -> Job:
    return Job(
        id=row["id"],
        owner=row["owner"],
        process=row["process"],
        status=JobStatus(row["status"]),
        created=_utc(row["created"]),
        updated=_utc(row["updated"]),
        title=row["title"],
        description=row["description"],
        plan=row["plan"],
        run_id=row["run_id"],
        budget=row["budget"],
        progress=row["progress"],
        job_options=row["job_options"] or {},
        usage=row["usage"] or {},
        sizing=row["sizing"] or {},
    )
