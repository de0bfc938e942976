"""The client of Airflow's REST API against a loopback stand-in of it (the recorded protocol:
token, then DAG-run calls with the bearer)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from openeo_airflow.core.errors import InfrastructureBusy
from openeo_airflow.core.models import JobStatus
from openeo_airflow.jobs import airflow_client, service
from openeo_airflow.jobs.airflow_client import AirflowClient
from tests.api_support import JsonHandler, http_served, make_backend


class Airflow(JsonHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Airflow's api-server (uvicorn) answers
    seen: ClassVar[list[dict[str, Any]]] = []
    run_state: ClassVar[str] = "running"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self.seen.append({"path": self.path, "body": body, "peer": self.client_address})
        if self.path == "/auth/token":
            self.answer(201, {"access_token": "t-1"})
        else:
            self.answer(200, {"dag_run_id": body.get("dag_run_id"), "state": "queued"})

    def do_GET(self) -> None:
        self.seen.append({"path": self.path, "body": None, "peer": self.client_address})
        self.answer(200, {"state": self.run_state})


def test_a_triggered_run_may_start_at_once_on_a_database_clock_of_whole_seconds() -> None:
    # The scheduler starts queued runs with run_after <= now() in SQL; SQLite's now() is a whole
    # second, so run_after must not lie inside the current second.
    Airflow.seen = []
    with http_served(Airflow) as url:
        before = datetime.now(UTC)
        AirflowClient(url, "svc", "pw").trigger("j-1", {"job_id": "j-1"})
    trigger = next(r for r in Airflow.seen if r["path"].endswith("/dagRuns"))
    run_after = datetime.fromisoformat(trigger["body"]["run_after"])
    assert run_after.microsecond == 0 and run_after.tzinfo is not None
    whole_second = before.replace(microsecond=0)
    assert whole_second - timedelta(seconds=2) <= run_after < whole_second
    assert trigger["body"]["conf"] == {"job_id": "j-1"}
    assert trigger["body"]["logical_date"] is None


def test_calls_share_one_connection_and_one_token() -> None:
    Airflow.seen = []
    with http_served(Airflow) as url:
        client = AirflowClient(url, "svc", "pw")
        client.trigger("j-2", {"job_id": "j-2"})
        assert client.run_state("j-2") == "running"
        assert client.run_state("j-2") == "running"
    assert [r["path"] for r in Airflow.seen].count("/auth/token") == 1
    assert len(Airflow.seen) == 4
    # one TCP connection (one client port) for all four requests
    assert len({r["peer"] for r in Airflow.seen}) == 1


def test_status_reads_ask_airflow_about_a_run_at_most_every_few_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tasks report the status themselves; asking Airflow only finds runs that ended without
    # them, and a client polling fast must not cost a REST call per poll.
    collections = tmp_path / "collections.yaml"
    collections.write_text("collections: []\n")
    Airflow.seen = []
    with http_served(Airflow) as url:
        backend = make_backend(tmp_path / "home", collections, airflow_url=url)
        job = backend.registry.create("alice", {"process_graph": {}})
        backend.registry.update(job.id, run_id=job.id)
        backend.registry.set_status(job.id, JobStatus.QUEUED)
        for _ in range(5):
            assert backend.jobs.get("alice", job.id).status is JobStatus.QUEUED
        assert len([r for r in Airflow.seen if "/dagRuns/" in r["path"]]) == 1
        # the run failed without its tasks saying so: seen at the next question
        monkeypatch.setattr(Airflow, "run_state", "failed")
        assert backend.jobs.get("alice", job.id).status is JobStatus.QUEUED
        monkeypatch.setattr(service, "RECONCILE_SECONDS", 0.0)
        assert backend.jobs.get("alice", job.id).status is JobStatus.ERROR
        assert len([r for r in Airflow.seen if "/dagRuns/" in r["path"]]) == 2


class StubbornAirflow(Airflow):
    """Answers PATCHes from a script: each entry is (status, state the run has afterwards)."""

    script: ClassVar[list[tuple[int, str]]] = []

    def do_PATCH(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self.seen.append({"path": self.path, "body": body, "peer": self.client_address})
        status, state = self.script.pop(0) if self.script else (200, "failed")
        StubbornAirflow.run_state = state
        if status >= 500:
            self.answer(status, {"detail": "database is locked"})
        else:
            self.answer(status, {"state": state})


def _patches() -> list[dict[str, Any]]:
    return [r for r in StubbornAirflow.seen if r["body"] == {"state": "failed"}]


@pytest.mark.parametrize(
    "script",
    [
        [(500, "running")],  # the mark lost a race for SQLite's lock
        [(200, "running")],  # answered, yet the run is still active
    ],
)
def test_a_cancel_is_sent_again_until_the_run_has_ended(
    script: list[tuple[int, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("openeo_airflow.jobs.airflow_client.CANCEL_PAUSE_SECONDS", 0.0)
    StubbornAirflow.seen, StubbornAirflow.script = [], list(script)
    StubbornAirflow.run_state = "running"
    with http_served(StubbornAirflow) as url:
        AirflowClient(url, "svc", "pw").cancel("j-3")
    assert len(_patches()) == 2
    assert StubbornAirflow.run_state == "failed"


def test_a_cancel_that_never_takes_is_a_clear_busy_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("openeo_airflow.jobs.airflow_client.CANCEL_PAUSE_SECONDS", 0.0)
    StubbornAirflow.seen, StubbornAirflow.script = [], [(200, "running")] * 10
    StubbornAirflow.run_state = "running"
    with http_served(StubbornAirflow) as url, pytest.raises(InfrastructureBusy) as raised:
        AirflowClient(url, "svc", "pw").cancel("j-4")
    assert "j-4" in raised.value.message
    assert len(_patches()) == airflow_client.CANCEL_ATTEMPTS
