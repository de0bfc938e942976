"""The batch job lifecycle: create, start, cancel, update, delete, and status sync with Airflow.

The registry is the source of truth for openEO; the Airflow DAG run carries the execution. Tasks
move the status forward themselves; ``refresh`` reconciles on read when a run ended without its
tasks saying so (killed, deleted), so no task has to poll.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from openeo_airflow.compiler.compile import compile_plan
from openeo_airflow.compiler.plan import Plan
from openeo_airflow.compiler.validate import validate_process
from openeo_airflow.core.errors import JobLocked, JobNotFinished, JobNotFound, OpenEOError
from openeo_airflow.core.models import Job, JobStatus
from openeo_airflow.jobs.airflow_client import AirflowClient, AirflowRunExists
from openeo_airflow.jobs.registry import JobRegistry
from openeo_airflow.jobs.status import status_from_run
from openeo_airflow.jobs.user_processes import UserProcesses
from openeo_airflow.processes.registry import specs as process_specs
from openeo_airflow.sizing.resources import validate_job_options

log = logging.getLogger(__name__)

# A status read asks Airflow about the job's run at most this often (per run). Tasks report
# the status themselves; the question only finds runs that ended without them (killed,
# deleted). Asked at every read, a client polling every 0.2 s cost the api-server a call to
# its own REST API per poll: 23 ms of 34 ms per read, CPU taken from the running job.
RECONCILE_SECONDS = 2.0


class JobService:
    def __init__(
        self,
        registry: JobRegistry,
        airflow: AirflowClient,
        collections: Mapping[str, Mapping[str, str | None]],
        jobs_dir: Path,
        user_processes: UserProcesses,
        check_url: Callable[[str], None] | None = None,
    ) -> None:
        self._registry = registry
        self._airflow = airflow
        self._collections = collections
        self._jobs_dir = jobs_dir
        self._user_processes = user_processes
        self._check_url = check_url  # load_stac URLs: a cheap look before a job is queued
        self._reconciled: dict[str, float] = {}  # run id -> when Airflow was last asked

    def compile(self, owner: str, process: dict[str, Any], *, check_urls: bool = False) -> Plan:
        """The plan of a process, or the openEO error of its first problem (all if several).

        Bands are checked against the collections, calls against the owner's own processes,
        ``load_result`` against the owner's own finished jobs; with ``check_urls``,
        ``load_stac`` URLs are looked at (the loaders read them anyway, so only before a job).
        """
        plan = compile_plan(
            process,
            known_processes=process_specs(),
            collections=self._collections,
            user_processes=self._user_processes.by_id(owner),
            check_url=self._check_url if check_urls else None,
        )
        return self._with_results(owner, plan)

    def _with_results(self, owner: str, plan: Plan) -> Plan:
        """Each ``load_result`` source gets the results folder of the owner's finished job
        (an id that is a URL is read as STAC, like ``load_stac``)."""
        sources = []
        for source in plan.sources:
            if source.process_id == "load_result" and source.url is None:
                job_id = source.collection_id
                if job_id.startswith(("http://", "https://")):
                    url = job_id
                else:
                    try:
                        job = self._registry.get(job_id, owner)  # another user's: not found
                    except JobNotFound:
                        raise JobNotFound(
                            f"Node '{source.node_id}' (load_result): parameter 'id': the batch "
                            f"job '{job_id}' does not exist.",
                            identifier=job_id,
                        ) from None
                    if job.status is not JobStatus.FINISHED:
                        raise JobNotFinished(
                            f"Node '{source.node_id}' (load_result): parameter 'id': job "
                            f"'{job_id}' is {job.status.value}; its results can be loaded "
                            "once it has finished."
                        )
                    # engine.workspace's layout (the jobs layer may not import the engine)
                    url = str(self._jobs_dir / job_id / "results")
                source = replace(source, url=url)
            sources.append(source)
        return replace(plan, sources=sources)

    def problems(
        self, owner: str, process: dict[str, Any], defining: str | None = None
    ) -> list[OpenEOError]:
        """Every problem of a process at once (``POST /validation``, ``PUT /process_graphs``);
        ``defining`` is the id of a user-defined process being stored (it may call itself; its
        ``load_stac`` URLs are not looked at: the data may appear before it is used)."""
        user_processes = self._user_processes.by_id(owner)
        if defining:
            user_processes[defining] = process
        return validate_process(
            process,
            known_processes=process_specs(),
            collections=self._collections,
            user_processes=user_processes,
            check_url=None if defining else self._check_url,
        )

    def validate(self, owner: str, process: dict[str, Any]) -> None:
        self.compile(owner, process, check_urls=True)

    def create(self, owner: str, process: dict[str, Any], **fields: Any) -> Job:
        self.validate(owner, process)
        validate_job_options(dict(fields.get("job_options") or {}))
        return self._registry.create(owner, process, **fields)

    def get(self, owner: str, job_id: str) -> Job:
        return self.refresh(self._registry.get(job_id, owner))

    def jobs_of(self, owner: str) -> list[Job]:
        return self._registry.jobs_of(owner)

    def update(self, owner: str, job_id: str, fields: dict[str, Any]) -> None:
        job = self.get(owner, job_id)
        if job.status.is_active:
            raise JobLocked()
        if "process" in fields:
            self.validate(owner, fields["process"])
        self._registry.update(job_id, **fields)

    def start(self, owner: str, job_id: str) -> None:
        """Queue the job as a new DAG run; no effect when it is queued or running already."""
        job = self.get(owner, job_id)
        if job.status.is_active:
            return
        self.validate(owner, job.process)
        run_id = _next_run_id(job)
        self._discard_results(job_id)
        self._registry.update(job_id, run_id=run_id, progress=0.0)
        self._registry.set_status(job_id, JobStatus.QUEUED)
        self._registry.add_log(job_id, "info", f"Job queued as Airflow DAG run '{run_id}'")
        try:
            # The note shows in the Airflow UI beside the run: who asked for what.
            note = f"openEO job {job_id} of {job.owner}" + (f": {job.title}" if job.title else "")
            self._airflow.trigger(run_id, {"job_id": job_id}, note=note)
        except AirflowRunExists:
            log.warning("DAG run %s exists already; keeping it", run_id)
        except OpenEOError:
            self._registry.set_status(job_id, JobStatus.ERROR)
            self._registry.add_log(job_id, "error", "The job could not be handed to Airflow")
            raise

    def cancel(self, owner: str, job_id: str) -> None:
        """Stop processing; a running job becomes ``canceled``, a queued one ``created``."""
        job = self.get(owner, job_id)
        if not job.status.is_active:
            return
        target = JobStatus.CANCELED if job.status is JobStatus.RUNNING else JobStatus.CREATED
        self._registry.set_status(job_id, target)
        self._registry.add_log(job_id, "info", "Job canceled by the user")
        if job.run_id:
            self._airflow.cancel(job.run_id)

    def delete(self, owner: str, job_id: str) -> None:
        self.cancel(owner, job_id)
        self._registry.delete(job_id)
        self._discard_results(job_id)

    def refresh(self, job: Job) -> Job:
        if not job.status.is_active or not job.run_id:
            self._reconciled.pop(job.run_id or "", None)
            return job
        now, last = time.monotonic(), self._reconciled.get(job.run_id)
        if last is not None and now - last < RECONCILE_SECONDS:
            return job
        self._reconciled[job.run_id] = now
        state = self._airflow.run_state(job.run_id)
        status = status_from_run(state, job.status)
        if status is not job.status and self._registry.set_status(
            job.id, status, only_from=[job.status]
        ):
            if status is JobStatus.ERROR:
                self._registry.add_log(
                    job.id, "error", f"The Airflow DAG run ended as '{state or 'missing'}'"
                )
            return self._registry.get(job.id)
        return job

    def _discard_results(self, job_id: str) -> None:
        shutil.rmtree(self._jobs_dir / job_id, ignore_errors=True)


def _next_run_id(job: Job) -> str:
    """The first run is the job id; a restart gets a numbered run id (Airflow keeps history)."""
    if not job.run_id:
        return job.id
    head, _, number = job.run_id.rpartition(".")
    attempt = int(number) + 1 if head == job.id and number.isdigit() else 2
    return f"{job.id}.{attempt}"
