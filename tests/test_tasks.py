"""The batch DAG's task functions against a real registry (no Airflow needed for these)."""

from pathlib import Path

import pytest

from openeo_airflow.airflow import tasks
from openeo_airflow.core.models import JobStatus
from tests.test_registry import GRAPH


@pytest.fixture
def backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OPENEO_AIRFLOW_HOME", str(tmp_path))
    tasks.backend.cache_clear()
    yield tasks.backend()
    tasks.backend.cache_clear()


def test_a_failed_task_explains_the_error(backend) -> None:  # type: ignore[no-untyped-def]
    job = backend.registry.create("alice", GRAPH)
    backend.registry.set_status(job.id, JobStatus.RUNNING)
    tasks.mark_failed(job.id, "size", "ReadTimeout: timed out")
    assert backend.registry.get(job.id).status is JobStatus.ERROR
    messages = [e.message for e in backend.registry.logs(job.id, level="error")]
    assert messages == ["Task 'size' failed: ReadTimeout: timed out"]


def test_a_canceled_job_stays_canceled(backend) -> None:  # type: ignore[no-untyped-def]
    job = backend.registry.create("alice", GRAPH)
    backend.registry.set_status(job.id, JobStatus.CANCELED)
    tasks.mark_failed(job.id, "load", None)
    assert backend.registry.get(job.id).status is JobStatus.CANCELED
    assert backend.registry.logs(job.id) == []


def test_a_run_triggered_in_airflow_becomes_a_job(backend) -> None:  # type: ignore[no-untyped-def]
    job_id = tasks.adopt_run("manual__1", "admin", {"process_graph": GRAPH["process_graph"]})
    job = backend.registry.get(job_id, "admin")
    assert job.status is JobStatus.QUEUED
    assert job.run_id == "manual__1"
    assert job.process == GRAPH
    with pytest.raises(ValueError, match="process_graph"):
        tasks.adopt_run("manual__2", "admin", {})
