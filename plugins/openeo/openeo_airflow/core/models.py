"""Domain models shared by the API, the job registry and the DAG tasks."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class JobStatus(enum.StrEnum):
    CREATED = "created"
    QUEUED = "queued"
    RUNNING = "running"
    CANCELED = "canceled"
    FINISHED = "finished"
    ERROR = "error"

    @property
    def is_active(self) -> bool:
        return self in (JobStatus.QUEUED, JobStatus.RUNNING)

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.CANCELED, JobStatus.FINISHED, JobStatus.ERROR)


@dataclass
class Job:
    id: str
    owner: str
    process: dict[str, Any]
    status: JobStatus
    created: datetime
    updated: datetime
    title: str | None = None
    description: str | None = None
    plan: str | None = None
    run_id: str | None = None
    budget: float | None = None
    progress: float | None = None
    job_options: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    sizing: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LogEntry:
    id: str
    level: str
    message: str
    time: datetime
    stage: str | None = None
    data: Any = None


@dataclass(frozen=True)
class User:
    user_id: str
    name: str | None = None
