"""Batch job endpoints: /jobs, /jobs/{id}, /jobs/{id}/results, /jobs/{id}/logs."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse

from openeo_airflow.api.deps import BackendDep, UserDep
from openeo_airflow.api.downloads import transfer_headers
from openeo_airflow.api.models import JobCreateBody, JobUpdateBody
from openeo_airflow.api.routes_general import STAC_VERSION, api_root
from openeo_airflow.api.signing import is_valid, signature
from openeo_airflow.core.errors import (
    JobNotFinished,
    NoDataForUpdate,
    PropertyNotEditable,
    ResultAssetNotFound,
)
from openeo_airflow.core.models import Job, JobStatus
from openeo_airflow.engine.planning import size_plan
from openeo_airflow.engine.workspace import JobWorkspace

router = APIRouter()
LINK_TTL_SECONDS = 7 * 24 * 3600
READ_ONLY = ("id", "status", "created", "updated", "progress", "usage", "costs")


def job_summary(job: Job) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": job.id,
        "title": job.title,
        "description": job.description,
        "status": job.status.value,
        "created": _rfc3339(job.created),
        "updated": _rfc3339(job.updated),
    }
    if job.progress is not None:
        document["progress"] = job.progress
    if job.plan:
        document["plan"] = job.plan
    if job.budget is not None:
        document["budget"] = job.budget
    return document


def _rfc3339(value: Any) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


@router.post("/jobs", status_code=201)
def create_job(
    body: JobCreateBody, request: Request, user: UserDep, backend: BackendDep
) -> Response:
    job = backend.jobs.create(
        user.user_id,
        body.process.model_dump(exclude_none=True),
        title=body.title,
        description=body.description,
        plan=body.plan,
        budget=body.budget,
        job_options=body.job_options,
    )
    location = f"{api_root(request)}/jobs/{job.id}"
    return Response(status_code=201, headers={"Location": location, "OpenEO-Identifier": job.id})


@router.get("/jobs")
def list_jobs(request: Request, user: UserDep, backend: BackendDep) -> dict[str, Any]:
    return {
        "jobs": [job_summary(j) for j in backend.jobs.jobs_of(user.user_id)],
        "links": [{"rel": "self", "href": api_root(request) + "/jobs"}],
    }


@router.get("/jobs/{job_id}")
def get_job(job_id: str, user: UserDep, backend: BackendDep) -> dict[str, Any]:
    job = backend.jobs.get(user.user_id, job_id)
    document = job_summary(job)
    document["process"] = job.process
    if job.usage:
        document["usage"] = job.usage
    if job.sizing:
        # Not in the openEO spec: what the sizing predicted and what each stage measured.
        document["sizing"] = job.sizing
    return document


@router.get("/jobs/{job_id}/estimate")
def estimate_job(job_id: str, user: UserDep, backend: BackendDep) -> dict[str, Any]:
    """The sizing model's prediction, before the job runs (the same the size task computes)."""
    job = backend.jobs.get(user.user_id, job_id)
    plan = backend.jobs.compile(user.user_id, job.process)
    sizing, _shape = size_plan(plan, backend.collections, backend.settings, job.job_options)
    save = sizing.stage("save")
    return {
        "costs": sizing.credits,
        "duration": _iso_duration(sizing.seconds),
        "size": int(save.bytes_read) if save else 0,
        "downloads_included": None,
    }


def _iso_duration(seconds: float) -> str:
    whole = max(1, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"PT{hours}H{minutes}M{secs}S"


@router.patch("/jobs/{job_id}", status_code=204)
def update_job(job_id: str, body: JobUpdateBody, user: UserDep, backend: BackendDep) -> Response:
    given = body.model_dump(exclude_unset=True)
    for name in READ_ONLY:
        if name in given:
            raise PropertyNotEditable(property=name)
    fields = {k: v for k, v in given.items() if k in JobUpdateBody.model_fields}
    if not fields:
        raise NoDataForUpdate()
    if body.process is not None:
        fields["process"] = body.process.model_dump(exclude_none=True)
    backend.jobs.update(user.user_id, job_id, fields)
    return Response(status_code=204)


@router.delete("/jobs/{job_id}", status_code=204)
def delete_job(job_id: str, user: UserDep, backend: BackendDep) -> Response:
    backend.jobs.delete(user.user_id, job_id)
    return Response(status_code=204)


@router.post("/jobs/{job_id}/results", status_code=202)
def start_job(job_id: str, user: UserDep, backend: BackendDep) -> Response:
    backend.jobs.start(user.user_id, job_id)
    return Response(status_code=202)


@router.delete("/jobs/{job_id}/results", status_code=204)
def cancel_job(job_id: str, user: UserDep, backend: BackendDep) -> Response:
    backend.jobs.cancel(user.user_id, job_id)
    return Response(status_code=204)


@router.get("/jobs/{job_id}/results")
def job_results(
    job_id: str, request: Request, user: UserDep, backend: BackendDep
) -> dict[str, Any]:
    job = backend.jobs.get(user.user_id, job_id)
    workspace = JobWorkspace.for_job(backend.settings.jobs_dir, job_id)
    metadata = workspace.read_result_metadata()
    if job.status is not JobStatus.FINISHED or metadata is None:
        raise JobNotFinished()
    expires = int(time.time()) + LINK_TTL_SECONDS
    root = api_root(request)
    assets = {}
    for name, asset in metadata["assets"].items():
        sig = signature(backend.signing_key, job_id, name, expires)
        href = f"{root}/jobs/{job_id}/results/assets/{name}?expires={expires}&signature={sig}"
        assets[name] = {**asset, "href": href, "title": name}
    return _stac_item(job, metadata, assets, root)


def _stac_item(
    job: Job, metadata: dict[str, Any], assets: dict[str, Any], root: str
) -> dict[str, Any]:
    bbox = metadata.get("bbox")
    geometry = None
    if bbox:
        w, s, e, n = bbox
        geometry = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    start, end = (metadata.get("datetime") or [None, None])[:2]
    properties: dict[str, Any] = {
        "datetime": None,
        "start_datetime": start,
        "end_datetime": end,
        "title": job.title,
        "created": _rfc3339(job.created),
        "updated": _rfc3339(job.updated),
    }
    if start is None:
        properties["datetime"] = _rfc3339(job.updated)
        del properties["start_datetime"], properties["end_datetime"]
    item: dict[str, Any] = {
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "type": "Feature",
        "id": job.id,
        "geometry": geometry,
        "properties": properties,
        "assets": assets,
        "links": [
            {"rel": "self", "href": f"{root}/jobs/{job.id}/results", "type": "application/json"}
        ],
        "openeo:status": job.status.value,
    }
    if bbox:
        item["bbox"] = bbox
    if metadata.get("epsg"):
        item["stac_extensions"].append(
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json"
        )
        properties["proj:code"] = f"EPSG:{metadata['epsg']}"
        properties["proj:shape"] = metadata.get("shape")
        properties["proj:transform"] = metadata.get("transform")
    return item


@router.get("/jobs/{job_id}/results/assets/{name}", include_in_schema=False)
def download_asset(
    job_id: str,
    name: str,
    backend: BackendDep,
    expires: int = Query(0),
    signature: str = Query(""),
) -> FileResponse:
    if not is_valid(backend.signing_key, job_id, name, expires, signature):
        raise ResultAssetNotFound(file=name)
    workspace = JobWorkspace.for_job(backend.settings.jobs_dir, job_id)
    path = workspace.result_file(name)
    if path is None:
        raise ResultAssetNotFound(file=name)
    assets = (workspace.read_result_metadata() or {}).get("assets", {})
    media = assets.get(name, {}).get("type", "application/octet-stream")
    return FileResponse(path, media_type=media, filename=name, headers=transfer_headers(media))


@router.get("/jobs/{job_id}/logs")
def job_logs(
    job_id: str,
    request: Request,
    user: UserDep,
    backend: BackendDep,
    offset: str | None = None,
    level: str = "debug",
    limit: int = Query(1000, ge=1, le=10000),
) -> dict[str, Any]:
    backend.jobs.get(user.user_id, job_id)
    entries = backend.registry.logs(job_id, offset=offset, level=level, limit=limit)
    logs = []
    for entry in entries:
        item: dict[str, Any] = {
            "id": entry.id,
            "level": entry.level,
            "message": entry.message,
            "time": _rfc3339(entry.time),
        }
        if entry.stage:
            item["path"] = [{"node_id": entry.stage}]
        if entry.data is not None:
            item["data"] = entry.data
        logs.append(item)
    links = []
    if len(entries) == limit:
        links.append(
            {
                "rel": "next",
                "href": f"{api_root(request)}/jobs/{job_id}/logs?offset={entries[-1].id}",
            }
        )
    return {"level": level, "logs": logs, "links": links}
