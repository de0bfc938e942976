"""What each task of the batch DAG does, for one job (thin: decisions live in compiler/sizing,
work in engine)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any, TypeVar

from openeo_airflow.core.errors import OpenEOError
from openeo_airflow.core.models import JobStatus
from openeo_airflow.core.settings import load_settings
from openeo_airflow.engine import stages
from openeo_airflow.engine.workspace import JobWorkspace
from openeo_airflow.jobs.backend import Backend
from openeo_airflow.jobs.joblog import job_logging
from openeo_airflow.sizing.size import size_job

log = logging.getLogger(__name__)
T = TypeVar("T")
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


@cache
def backend() -> Backend:
    return Backend(load_settings())


def workspace(job_id: str) -> JobWorkspace:
    return JobWorkspace.for_job(backend().settings.jobs_dir, job_id)


@contextmanager
def stage(job_id: str, name: str) -> Iterator[None]:
    """Run a stage with its logs going to the job, and its failure explained there."""
    registry = backend().registry
    with job_logging(registry, job_id, name):
        try:
            yield
        except OpenEOError as exc:
            log.error("%s failed: [%s] %s", name, exc.code, exc.message)
            raise
        except Exception as exc:
            log.error("%s failed: %s: %s", name, type(exc).__name__, exc)
            raise


def _guard(job_id: str, name: str, work: Callable[[], T]) -> T:
    with stage(job_id, name):
        return work()


def adopt_run(run_id: str, owner: str, conf: dict[str, Any]) -> str:
    """A run triggered in Airflow (UI form or REST API) with a process graph becomes an openEO job
    owned by the triggering Airflow user, visible through /jobs like any other."""
    graph = conf.get("process_graph")
    if not isinstance(graph, dict) or not graph:
        raise ValueError(
            "Trigger this DAG with a 'process_graph' (an openEO process graph as JSON), "
            "or through the openEO API."
        )
    process = graph if "process_graph" in graph else {"process_graph": graph}
    registry = backend().registry
    job = registry.create(
        owner,
        process,
        title=conf.get("title") or f"Airflow run {run_id}",
        job_options=conf.get("job_options") or {},
    )
    registry.update(job.id, run_id=run_id)
    registry.set_status(job.id, JobStatus.QUEUED)
    registry.add_log(job.id, "info", f"Job created from Airflow DAG run '{run_id}' by '{owner}'")
    return job.id


def size(job_id: str) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        b = backend()
        job = b.registry.get(job_id)
        b.registry.set_status(job_id, JobStatus.RUNNING, only_from=[JobStatus.QUEUED])
        log.info("Job started")
        plan = b.jobs.compile(job.owner, job.process)
        workspace(job_id).write_plan(plan)
        sizing = size_job(plan, job.job_options)
        b.registry.update(job_id, sizing=sizing.to_dict(), progress=0.0)
        log.info(
            "Sizing: engine %s, tile %d px (%s)", sizing.engine, sizing.tile_size, sizing.reason
        )
        return sizing.to_dict()

    return _guard(job_id, "size", work)


def load(job_id: str, node_id: str) -> str:
    def work() -> str:
        ws = workspace(job_id)
        b = backend()
        options = b.registry.get(job_id).job_options
        path = stages.run_load(
            ws.read_plan(), node_id, ws, b.collections, b.settings.gdal_profile, options
        )
        return str(path)

    return _guard(job_id, "load", work)


def transform(job_id: str) -> str:
    def work() -> str:
        ws = workspace(job_id)
        b = backend()
        resolver = b.user_processes.resolver(b.registry.get(job_id).owner)
        path = stages.run_transform(ws.read_plan(), ws, resolver)
        backend().registry.update(job_id, progress=66.0)
        return str(path)

    return _guard(job_id, "transform", work)


def save(job_id: str) -> list[str]:
    def work() -> list[str]:
        ws = workspace(job_id)
        files = stages.run_save(ws.read_plan(), ws)
        backend().registry.set_status(job_id, JobStatus.FINISHED, only_from=ACTIVE, progress=100.0)
        log.info("Job finished")
        return [f.name for f in files]

    return _guard(job_id, "save", work)


def mark_failed(job_id: str, task_id: str, reason: str | None) -> None:
    """Called once a task has failed for good; a canceled job stays canceled.

    The reason is logged too: a task can fail before our code runs (e.g. Airflow's execution
    API timing out), and the user must still see why the job stopped.
    """
    registry = backend().registry
    if registry.set_status(job_id, JobStatus.ERROR, only_from=ACTIVE):
        registry.add_log(
            job_id, "error", f"Task '{task_id}' failed: {reason or 'no reason given by Airflow'}"
        )
