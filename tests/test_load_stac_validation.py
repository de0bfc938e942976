"""A bad ``load_stac`` URL is refused when a batch job is created and by ``POST /validation``,
through the real openEO client over HTTP on loopback: each problem names its node and the
parameter ``url``, all problems come at once, and the look at a URL is bounded in time."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openeo
import pytest
import uvicorn
from bench.range_server import RangeServer
from fastapi import FastAPI

from openeo_airflow.api.app import create_app
from openeo_airflow.catalog.adhoc import ROOTS_ENV, probe_stac
from openeo_airflow.core.errors import ProcessParameterInvalid
from openeo_airflow.jobs.backend import DEFAULT_COLLECTIONS
from tests.api_support import USERS, make_backend

ITEM = {
    "type": "Feature",
    "stac_version": "1.0.0",
    "id": "one",
    "bbox": [4.4, 50.9, 4.5, 51.0],
    "geometry": None,
    "properties": {"datetime": "2023-01-02T10:00:00Z"},
    "assets": {"B04": {"href": "B04.tif", "roles": ["data"]}},
    "links": [],
}


EVERYWHERE = {"spatial_extent": None, "temporal_extent": None}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Allowed documents: a STAC item, a JSON non-STAC document, a text file."""
    root = tmp_path_factory.mktemp("stac-files")
    (root / "item.json").write_text(json.dumps(ITEM))
    (root / "hello.json").write_text(json.dumps({"hello": "world"}))
    (root / "notes.txt").write_text("not json")
    return root


@pytest.fixture(scope="module")
def http(files: Path) -> Iterator[RangeServer]:
    with RangeServer(files) as server:
        yield server


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, files: Path) -> Iterator[str]:
    """The openEO API served by uvicorn on a loopback port (Airflow is not needed to create
    jobs); local STAC is allowed under ``files``."""
    patch = pytest.MonkeyPatch()
    patch.setenv(ROOTS_ENV, str(files))
    backend = make_backend(tmp_path_factory.mktemp("home"), DEFAULT_COLLECTIONS)
    host = FastAPI()
    host.mount("/openeo", create_app(lambda: backend))
    server = uvicorn.Server(uvicorn.Config(host, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/openeo/1.2"
    server.should_exit = True
    thread.join(timeout=10)
    patch.undo()


@pytest.fixture(scope="module")
def alice(url: str) -> openeo.Connection:
    return openeo.connect(url).authenticate_basic("alice", USERS["alice"])


def load_stac(node: str, url: str) -> dict[str, Any]:
    return {node: {"process_id": "load_stac", "arguments": {"url": url}}}


def process(*loads: dict[str, Any]) -> dict[str, Any]:
    graph: dict[str, Any] = {}
    for load in loads:
        graph.update(load)
    first = next(iter(graph))
    graph["save"] = {
        "process_id": "save_result",
        "arguments": {"data": {"from_node": first}, "format": "GTiff"},
        "result": True,
    }
    return graph


def create_error(alice: openeo.Connection, graph: dict[str, Any]) -> openeo.rest.OpenEoApiError:
    with pytest.raises(openeo.rest.OpenEoApiError) as raised:
        alice.create_job(graph, validate=False)
    return raised.value


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("closed-port", "cannot be read"),
        ("outside-roots", "may not be read"),
        ("missing-file", "cannot be read"),
        ("http-404", "HTTP Error 404"),
        ("not-json", "is not a JSON document"),
        ("not-stac", "is not a STAC"),
    ],
)
def test_job_creation_refuses_a_bad_url_naming_node_and_parameter(
    alice: openeo.Connection, files: Path, http: RangeServer, name: str, reason: str
) -> None:
    bad = {
        "closed-port": "http://127.0.0.1:9/catalog.json",
        "outside-roots": "/etc/hostname",
        "missing-file": str(files / "absent.json"),
        "http-404": http.url + "absent.json",
        "not-json": str(files / "notes.txt"),
        "not-stac": http.url + "hello.json",
    }[name]
    error = create_error(alice, process(load_stac("src", bad)))
    assert (error.http_status_code, error.code) == (400, "ProcessParameterInvalid")
    for word in ("'src'", "load_stac", "'url'", reason):
        assert word in error.message, error.message
    assert not alice.list_jobs()  # nothing was created


def test_a_good_url_creates_the_job(
    alice: openeo.Connection, files: Path, http: RangeServer
) -> None:
    for good in (str(files / "item.json"), http.url + "item.json"):
        job = alice.create_job(process(load_stac("src", good)), validate=False)
        assert job.status() == "created"
        job.delete()


def test_validation_reports_every_problem_at_once(alice: openeo.Connection, files: Path) -> None:
    graph = process(
        load_stac("a", "/etc/hostname"),
        load_stac("b", str(files / "hello.json")),
        load_stac("c", str(files / "item.json")),  # fine
        {"d": {"process_id": "load_collection", "arguments": {"id": "NO_SUCH", **EVERYWHERE}}},
    )
    errors = alice.validate_process_graph(graph)
    found = sorted((e["code"], e["message"].split(":")[0]) for e in errors)
    assert found == [
        ("CollectionNotFound", "Node 'd' (load_collection)"),
        ("ProcessParameterInvalid", "Node 'a' (load_stac)"),
        ("ProcessParameterInvalid", "Node 'b' (load_stac)"),
    ], errors
    assert not alice.validate_process_graph(process(load_stac("c", str(files / "item.json"))))


def test_a_stored_process_may_name_a_url_that_does_not_exist_yet(
    alice: openeo.Connection, files: Path
) -> None:
    graph = process(load_stac("src", str(files / "later.json")))
    alice.save_user_defined_process("later", graph)
    assert alice.user_defined_process("later").describe()["id"] == "later"


def test_a_stalled_server_fails_the_look_within_its_timeout(files: Path) -> None:
    with RangeServer(files) as server:
        server.stall_after(10)  # headers and 10 bytes, then nothing
        started = time.monotonic()
        with pytest.raises(ProcessParameterInvalid, match=r"did not answer within 0\.5 s"):
            probe_stac(server.url + "item.json", (), timeout=0.5)
        assert time.monotonic() - started < 3


def test_a_document_beyond_the_size_limit_is_not_parsed(files: Path) -> None:
    """A huge ItemCollection would be read whole by the loader anyway: the look stops early."""
    probe_stac(str(files / "notes.txt"), (str(files),), limit=3)
    with pytest.raises(ProcessParameterInvalid, match="not a JSON document"):
        probe_stac(str(files / "notes.txt"), (str(files),))
