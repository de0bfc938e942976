"""How an Airflow DAG run's state maps onto an openEO job status (pure)."""

from __future__ import annotations

from openeo_airflow.core.models import JobStatus

_RUN_STATES = {
    "queued": JobStatus.QUEUED,
    "running": JobStatus.RUNNING,
    "success": JobStatus.FINISHED,
    "failed": JobStatus.ERROR,
}


def status_from_run(run_state: str | None, current: JobStatus) -> JobStatus:
    """The job status implied by its DAG run's state.

    A final status is never changed (a cancel marks the run failed: the job stays canceled);
    a missing run of an active job means the run was deleted outside openEO.
    """
    if current.is_final or current is JobStatus.CREATED:
        return current
    if run_state is None:
        return JobStatus.ERROR
    implied = _RUN_STATES.get(run_state, current)
    # Only final states come from the run: "running" starts before the size task marks the job,
    # and a job never moves back from running to queued.
    return implied if implied.is_final else current
