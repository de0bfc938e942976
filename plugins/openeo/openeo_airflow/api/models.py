"""Request bodies of the openEO API (typed at the boundary; unknown keys kept for job options)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class ProcessBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    process_graph: dict[str, Any]
    id: str | None = None
    summary: str | None = None
    description: str | None = None
    parameters: list[dict[str, Any]] | None = None


class JobCreateBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    process: ProcessBody
    title: str | None = None
    description: str | None = None
    plan: str | None = None
    budget: float | None = None
    job_options: dict[str, Any] | None = None


class JobUpdateBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    process: ProcessBody | None = None
    title: str | None = None
    description: str | None = None
    plan: str | None = None
    budget: float | None = None
    job_options: dict[str, Any] | None = None


class SyncBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    process: ProcessBody
    plan: str | None = None
    budget: float | None = None
    job_options: dict[str, Any] | None = None
