"""Synchronous processing: ``POST /result`` in a bounded worker pool, off the event loop."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response

from openeo_airflow.api.deps import BackendDep, UserDep
from openeo_airflow.api.downloads import transfer_headers
from openeo_airflow.api.models import SyncBody
from openeo_airflow.engine.sync import execute

router = APIRouter()


@router.post("/result")
async def process_sync(
    body: SyncBody, request: Request, user: UserDep, backend: BackendDep
) -> Response:
    plan = backend.jobs.compile(user.user_id, body.process.model_dump(exclude_none=True))
    settings = backend.settings
    pool = request.app.state.sync_pool(settings.sync_workers)
    future = pool.submit(
        execute,
        plan,
        backend.collections,
        gdal_profile=settings.gdal_profile,
        max_pixels=settings.sync_max_pixels,
        job_options=body.job_options,
        resolver=backend.user_processes.resolver(user.user_id),
        workers=settings.local_cores,
    )
    result = await asyncio.wrap_future(future)
    return Response(
        content=result.content,
        media_type=result.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{result.filename}"',
            **transfer_headers(result.media_type),
        },
    )
