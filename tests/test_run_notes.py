"""The batch run's note in the Airflow UI: the text (pure) and the REST call that sets it
(against a loopback server that records what Airflow would receive)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from openeo_airflow.airflow import run_notes
from openeo_airflow.core.settings import load_settings
from openeo_airflow.jobs.backend import Backend
from tests.api_support import JsonHandler, http_served

NDVI = {
    "process_graph": {
        "save": {
            "process_id": "save_result",
            "arguments": {"data": {"from_node": "max"}, "format": "GTiff"},
            "result": True,
        },
        "load": {
            "process_id": "load_collection",
            "arguments": {"id": "SENTINEL2_L2A", "bands": ["B04", "B08"]},
        },
        "ndvi": {"process_id": "ndvi", "arguments": {"data": {"from_node": "load"}}},
        "max": {
            "process_id": "reduce_dimension",
            "arguments": {
                "data": {"from_node": "ndvi"},
                "dimension": "t",
                "reducer": {
                    "process_graph": {
                        "m": {
                            "process_id": "max",
                            "arguments": {"data": {"from_parameter": "data"}},
                            "result": True,
                        }
                    }
                },
            },
        },
    }
}


def _stage(name: str) -> dict[str, Any]:
    resources = {
        "driver_cores": 1,
        "driver_memory_mb": 1024,
        "executor_cores": 2,
        "executor_memory_mb": 3072,
        "executor_memory_overhead_mb": 1229,
        "executors": 1,
        "max_executors": 4,
        "partitions": 16,
    }
    return {
        "name": name,
        "tiles": 16,
        "peak_tile_mb": 812.4,
        "peak_executor_mb": 1700.0,
        "peak_driver_mb": 300.0,
        "seconds": 40.0,
        "megapixels": 120.0,
        "bytes_read": 1e9,
        "resources": resources,
    }


SIZING = {
    "engine": "spark-k8s",
    "tile_size": 1024,
    "sources": ["load"],
    "reason": "over the inline limit",
    "stages": [_stage("load:load"), _stage("transform"), _stage("save")],
    "megapixels": 1234.5,
    "seconds": 95.0,
    "credits": 0.25,
}


# --- the text ------------------------------------------------------------------------------------


def test_the_graph_summary_lists_nodes_inputs_first_with_their_key_argument() -> None:
    assert run_notes.graph_summary(NDVI) == (
        "4 nodes: load_collection(SENTINEL2_L2A), ndvi, reduce_dimension[max], save_result(GTiff)"
    )
    assert run_notes.graph_summary({"process_graph": {}}) == "(empty)"
    bare = {"a": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}}
    assert run_notes.graph_summary(bare) == "1 node: add"


def test_the_results_link_is_the_openeo_path_below_airflows_base_path() -> None:
    assert run_notes.results_url("http://airflow-api-server:8080", "j-1") == (
        "/openeo/1.2/jobs/j-1/results"
    )
    assert run_notes.results_url("https://eo.example.org/airflow/", "j-1") == (
        "/airflow/openeo/1.2/jobs/j-1/results"
    )


def test_the_note_shows_job_graph_sizing_and_results_link() -> None:
    note = run_notes.build_note(
        "j-42",
        run_notes.graph_summary(NDVI),
        SIZING,
        "/openeo/1.2/jobs/j-42/results",
        owner="alice",
        title="NDVI\nmaximum",
    )
    lines = note.splitlines()
    assert lines[0] == "openEO job j-42 of alice: NDVI maximum"
    assert "**Process graph:** 4 nodes: load_collection(SENTINEL2_L2A)" in note
    assert "XCom `process_graph` of task `size`" in note
    assert (
        "**Sizing:** engine `spark-k8s` (over the inline limit), tile 1024 px, 1,234.5 Mpx, "
        "about 95 s, 0.250 credits"
    ) in lines
    assert (
        "- transform: 16 tile(s), peak 812 MiB/tile; 4 x 2 core(s), 3072+1229 MiB/executor"
    ) in lines
    assert lines[-1] == (
        "**Results** (once finished): "
        "[/openeo/1.2/jobs/j-42/results](/openeo/1.2/jobs/j-42/results)"
    )


def test_a_finished_note_counts_the_files_and_inline_stages_omit_spark_resources() -> None:
    inline = {**SIZING, "engine": "inline", "stages": [_stage("transform")]}
    note = run_notes.build_note("j-1", "1 node: add", inline, "/r", assets=["a.tif", "b.tif"])
    assert note.splitlines()[0] == "openEO job j-1"
    assert "- transform: 16 tile(s), peak 812 MiB/tile\n" in note
    assert note.endswith("**Results:** [/r](/r) (2 files)")
    assert "**Sizing:** not decided yet" in run_notes.build_note("j-1", "g", None, "/r")


def test_a_long_note_stays_within_airflows_limit_and_keeps_the_essentials() -> None:
    many = {**SIZING, "stages": [_stage(f"load:n{i}") for i in range(40)]}
    graph = "9999 nodes: " + ", ".join(f"load_collection(C{i})" for i in range(500))
    note = run_notes.build_note("j-7", graph, many, "/openeo/1.2/jobs/j-7/results", title="t" * 999)
    assert len(note) <= run_notes.NOTE_LIMIT == 1000
    assert note.startswith("openEO job j-7: ")
    assert "**Sizing:** engine `spark-k8s`" in note
    assert "- load:n0" not in note  # stage lines go first
    assert "**Process graph:** 9999 nodes: load_collection(C0)" in note
    assert " ..." in note
    assert note.endswith("(/openeo/1.2/jobs/j-7/results)")
    # A few stages fit: at most six lines, then a count of the rest.
    some = run_notes.sizing_lines({**SIZING, "stages": [_stage(f"s{i}") for i in range(8)]})
    assert len(some) == 8 and some[-1] == "- ... 2 more stage(s)"


# --- the REST call ---------------------------------------------------------------------------


@dataclass
class Recorded:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    patch_status: int = 200


@pytest.fixture
def airflow() -> Iterator[Recorded]:
    """Airflow's token endpoint and DAG run PATCH, recording every request."""
    recorded = Recorded(url="")

    class Handler(JsonHandler):
        def _record(self) -> tuple[int, dict[str, Any]]:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
            url = urlsplit(self.path)
            recorded.requests.append(
                {
                    "method": self.command,
                    "path": url.path,
                    "query": parse_qs(url.query),
                    "auth": self.headers.get("Authorization"),
                    "body": body,
                }
            )
            if self.command == "POST" and url.path == "/auth/token":
                return 201, {"access_token": "tok-1"}
            if self.command == "PATCH" and url.path.startswith("/api/v2/dags/"):
                return recorded.patch_status, {"note": body.get("note")}
            return 404, {"detail": "Not Found"}

        def do_POST(self) -> None:
            self.answer(*self._record())

        def do_PATCH(self) -> None:
            self.answer(*self._record())

    with http_served(Handler) as url:
        recorded.url = url
        yield recorded


@pytest.fixture
def backend(tmp_path: Path, airflow: Recorded) -> Backend:
    return Backend(
        load_settings(
            {
                "OPENEO_AIRFLOW_HOME": str(tmp_path),
                "OPENEO_AIRFLOW_AIRFLOW_URL": airflow.url,
                "OPENEO_AIRFLOW_AIRFLOW_USER": "openeo-service",
                "OPENEO_AIRFLOW_AIRFLOW_PASSWORD": "service-pw",
            }
        )
    )


class FakeTaskInstance:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


@dataclass
class FakeRun:
    dag_id: str
    run_id: str


@pytest.fixture
def context(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The running task's context, as ``get_current_context`` gives it inside a task."""
    fake = {"dag_run": FakeRun("openeo_batch_job", "j-run-1"), "ti": FakeTaskInstance()}
    monkeypatch.setattr(run_notes, "_context", lambda: fake)
    return fake


def test_set_note_patches_only_the_note_with_the_service_identity(airflow: Recorded) -> None:
    client = run_notes.RunNoteClient(airflow.url, "openeo-service", "service-pw")
    client.set_note("openeo_batch_job", "run-1", "x" * 1500)
    token, patch = airflow.requests
    assert token["method"] == "POST" and token["path"] == "/auth/token"
    assert token["body"] == {"username": "openeo-service", "password": "service-pw"}
    assert patch["method"] == "PATCH"
    assert patch["path"] == "/api/v2/dags/openeo_batch_job/dagRuns/run-1"
    assert patch["query"] == {"update_mask": ["note"]}
    assert patch["auth"] == "Bearer tok-1"
    assert patch["body"] == {"note": "x" * 1000}  # Airflow answers 422 above 1000


def test_after_sizing_the_run_note_and_xcom_show_the_job(
    backend: Backend, airflow: Recorded, context: dict[str, Any]
) -> None:
    job = backend.registry.create("alice", NDVI, title="NDVI max")
    run_notes.on_sized(backend, job.id, SIZING)
    assert context["ti"].xcom == {"process_graph": NDVI}
    patch = airflow.requests[-1]
    assert patch["path"] == "/api/v2/dags/openeo_batch_job/dagRuns/j-run-1"
    note = patch["body"]["note"]
    assert note.startswith(f"openEO job {job.id} of alice: NDVI max\n\n")
    assert "reduce_dimension[max]" in note
    assert "engine `spark-k8s`" in note
    assert f"(/openeo/1.2/jobs/{job.id}/results)" in note
    assert "once finished" in note


def test_after_saving_the_note_counts_the_results(
    backend: Backend, airflow: Recorded, context: dict[str, Any]
) -> None:
    job = backend.registry.create("alice", NDVI)
    backend.registry.update(job.id, sizing={"predicted": SIZING})
    run_notes.on_finished(backend, job.id, ["result.tif"])
    note = airflow.requests[-1]["body"]["note"]
    assert "engine `spark-k8s`" in note
    assert note.endswith(
        f"**Results:** [/openeo/1.2/jobs/{job.id}/results]"
        f"(/openeo/1.2/jobs/{job.id}/results) (1 file)"
    )


def test_a_failing_airflow_never_fails_the_task(
    backend: Backend, airflow: Recorded, context: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    job = backend.registry.create("alice", NDVI)
    airflow.patch_status = 403
    run_notes.on_sized(backend, job.id, SIZING)
    assert "Could not update the run's note" in caplog.text
    assert "403" in caplog.text


def test_the_final_note_follows_the_sizing_note_on_one_token(
    backend: Backend, airflow: Recorded, context: dict[str, Any]
) -> None:
    job = backend.registry.create("alice", NDVI)
    backend.registry.update(job.id, sizing={"predicted": SIZING})
    run_notes.on_sized(backend, job.id, SIZING)
    run_notes.on_finished(backend, job.id, ["result.tif"])
    token, sized, finished = airflow.requests
    assert token["path"] == "/auth/token"
    assert "once finished" in sized["body"]["note"]
    assert finished["body"]["note"].endswith("(1 file)")


def test_outside_an_airflow_task_nothing_is_called(backend: Backend, airflow: Recorded) -> None:
    job = backend.registry.create("alice", NDVI)
    run_notes.on_sized(backend, job.id, SIZING)
    run_notes.on_finished(backend, job.id, [])
    assert airflow.requests == []
