"""End to end: the real local stack (Airflow api-server, scheduler, dag-processor, triggerer,
SQLite, LocalExecutor) driven by the real openEO client, on catalogs built from ../shared/data.

The NDVI results must equal an independent numpy computation from the source netCDF
(tests/fixtures/reference.py) within 1e-6 (float32 rounding), NaN where every date is masked.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openeo
import pytest
import rasterio
import yaml

from openeo_airflow.cli.demo import ndvi_max_composite
from tests.api_support import USERS, build_test_collections
from tests.fixtures.reference import reference_ndvi_max_from_netcdf
from tests.openapi_check import assert_valid

pytestmark = pytest.mark.e2e

COLLECTION = "TEST_CDSE_S2"
BROKEN = "TEST_ARCHIVE_GONE"
# The whole CDSE cube (46 x 52 px at 10 m), given in its own CRS.
FULL_EXTENT = {"west": 587880, "south": 5684910, "east": 588340, "north": 5685430, "crs": 32631}
PERIOD = ["2023-10-01", "2024-01-01"]
TOLERANCE = 1e-6
# Runs triggered in Airflow belong to the Airflow user; an openEO account of that name sees them.
AIRFLOW_ADMIN_AS_OPENEO_USER = {"admin": "admin-openeo-pw"}


@dataclass
class Stack:
    url: str
    base: str
    home: Path


def add_broken_collection(collections: Path, missing_catalog: Path) -> None:
    """A collection whose archive disappeared: only running the job can find that out."""
    config = yaml.safe_load(collections.read_text())
    config["collections"].append(
        {
            "id": BROKEN,
            "title": "archive gone",
            "description": "points at a catalog that does not exist",
            "license": "proprietary",
            "catalog": str(missing_catalog),
            "crs": "EPSG:32631",
            "resolution": 10,
            "bands": [{"name": "B04", "asset": "B04", "nodata": 0}],
        }
    )
    collections.write_text(yaml.safe_dump(config))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def stack(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    home = tmp_path_factory.mktemp("stack")
    collections = build_test_collections(shared_data, home / "catalogs")
    add_broken_collection(collections, home / "catalogs" / "gone" / "catalog.json")
    port = _free_port()
    command = [str(Path(sys.executable).parent / "openeo-airflow"), "up", "--home", str(home)]
    command += ["--port", str(port), "--collections", str(collections)]
    for user, password in {**USERS, **AIRFLOW_ADMIN_AS_OPENEO_USER}.items():
        command += ["--user", f"{user}:{password}"]
    log = open(home / "up.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://localhost:{port}"
    url = f"{base}/openeo/1.2"
    deadline = time.monotonic() + 300
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"openeo-airflow up exited: {(home / 'up.log').read_text()[-3000:]}")
            # `up` prints the URL once the API answers and Airflow has registered the DAG.
            if "openEO API:" in (home / "up.log").read_text():
                break
            if time.monotonic() > deadline:
                pytest.fail("the local stack did not answer within 300 s")
            time.sleep(1)
        yield Stack(url=url, base=base, home=home)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def alice(stack: Stack) -> openeo.Connection:
    return openeo.connect(stack.url).authenticate_basic("alice", USERS["alice"])


def airflow_admin(stack: Stack) -> dict[str, str]:
    """Headers for Airflow's own REST API, as the Airflow admin."""
    password = (stack.home / "secrets" / "airflow-admin").read_text().strip()
    token = httpx.post(
        f"{stack.base}/auth/token", json={"username": "admin", "password": password}
    ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def airflow_run_state(stack: Stack, run_id: str) -> str | None:
    """Ask Airflow itself (as its admin) for a DAG run's state."""
    response = httpx.get(
        f"{stack.base}/api/v2/dags/openeo_batch_job/dagRuns/{run_id}",
        headers=airflow_admin(stack),
    )
    return None if response.status_code == 404 else response.json()["state"]


def wait_for(predicate, timeout: float = 120, interval: float = 1.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def assert_matches_reference(tif: Path, shared_data: Path) -> None:
    with rasterio.open(tif) as src:
        ours = src.read(1)
        bounds = src.bounds
        assert src.crs.to_epsg() == 32631
        assert (src.res[0], src.res[1]) == (10.0, 10.0)
    reference = reference_ndvi_max_from_netcdf(
        shared_data / "s2_cubes" / "test_optical_cube.nc",
        (bounds.left, bounds.bottom, bounds.right, bounds.top),
        start=PERIOD[0],
        end=PERIOD[1],
    )
    expected = reference.ndvi_max
    assert ours.shape == expected.shape
    assert reference.transform.c == bounds.left and reference.transform.f == bounds.top
    assert np.array_equal(np.isnan(ours), np.isnan(expected))
    assert np.nanmax(np.abs(ours - expected)) <= TOLERANCE
    assert np.isfinite(ours).sum() > ours.size // 2  # a real composite, not all masked


def test_collections_are_listed(alice: openeo.Connection) -> None:
    assert {"TEST_CDSE_S2", "TEST_29RKH_S2"} <= set(alice.list_collection_ids())


def test_batch_job_ndvi_composite(
    alice: openeo.Connection, stack: Stack, shared_data: Path, tmp_path: Path
) -> None:
    cube = ndvi_max_composite(alice, COLLECTION, FULL_EXTENT, PERIOD).save_result("GTiff")
    job = cube.create_job(title="e2e ndvi")
    job.start_and_wait(max_poll_interval=2)
    assert job.status() == "finished"
    raw = httpx.get(
        f"{stack.url}/jobs/{job.job_id}/results",
        headers={"Authorization": f"Bearer {alice.auth.bearer}"},  # type: ignore[union-attr]
    )
    assert_valid(raw, "/jobs/{job_id}/results")
    assert raw.json()["openeo:status"] == "finished"
    results = job.get_results()
    assets = results.get_assets()
    assert [a.name for a in assets] == ["openEO.tif"]
    tif = assets[0].download(tmp_path / "batch.tif")
    assert_matches_reference(tif, shared_data)

    messages = [entry["message"] for entry in job.logs()]
    assert any("Loaded TEST_CDSE_S2" in m for m in messages), messages
    assert any("Saved 1 file" in m for m in messages), messages
    run = httpx.get(
        f"{stack.base}/api/v2/dags/openeo_batch_job/dagRuns/{job.job_id}",
        headers=airflow_admin(stack),
    ).json()
    # The first line is set at trigger; size and save add the sizing and the results link.
    assert run["note"].startswith(f"openEO job {job.job_id} of alice: e2e ndvi")
    assert "Sizing" in run["note"] and f"/jobs/{job.job_id}/results" in run["note"]
    assert run["conf"]["job_id"] == job.job_id
    # The job is finished when its save task says so; the run ends a moment later.
    assert wait_for(lambda: airflow_run_state(stack, job.job_id) == "success", timeout=60)

    # Starting a finished job again recomputes it as a new DAG run (openEO API: restart).
    job.start_and_wait(max_poll_interval=2)
    assert job.status() == "finished"
    assert wait_for(lambda: airflow_run_state(stack, f"{job.job_id}.2") == "success", timeout=60)
    again = job.get_results().get_assets()[0].download(tmp_path / "again.tif")
    assert_matches_reference(again, shared_data)


def test_sync_download_same_values(
    alice: openeo.Connection, shared_data: Path, tmp_path: Path
) -> None:
    cube = ndvi_max_composite(alice, COLLECTION, FULL_EXTENT, PERIOD).save_result("GTiff")
    out = tmp_path / "sync.tif"
    cube.download(out)
    assert_matches_reference(out, shared_data)


def test_runtime_error_sets_error_status_with_a_clear_log(alice: openeo.Connection) -> None:
    graph = {
        "load": {
            "process_id": "load_collection",
            "arguments": {"id": BROKEN, "spatial_extent": FULL_EXTENT, "temporal_extent": PERIOD},
        },
        "save": {
            "process_id": "save_result",
            "arguments": {"data": {"from_node": "load"}, "format": "GTiff"},
            "result": True,
        },
    }
    job = alice.create_job(graph, title="archive gone")
    job.start()
    wait_for(lambda: job.status() in ("error", "finished"))
    assert job.status() == "error"
    errors = [e["message"] for e in job.logs(level="error")]
    # The size task searches the catalog (to size the job), so that is where it fails.
    assert any("size failed" in m and "catalog.json" in m for m in errors), errors


# The demo job is done within a second or two of starting to run: too short to be stopped
# reliably. A UDF that takes its time keeps the job running while the test stops it.
SLOW_UDF = "import time\ndef apply_datacube(cube, context):\n    time.sleep(30)\n    return cube\n"


def slow_job(alice: openeo.Connection, title: str) -> Any:
    cube = alice.load_collection(
        COLLECTION, spatial_extent=FULL_EXTENT, temporal_extent=PERIOD, bands=["B04"]
    )
    cube = cube.apply(openeo.UDF(SLOW_UDF, runtime="Python"))
    return cube.save_result("GTiff").create_job(title=title)


def run_ends_failed(stack: Stack, run_id: str) -> None:
    """The run is marked failed within a minute; if not, the states it went through say why
    (a rare CI failure of the delete test left no trace of them)."""
    seen: list[str | None] = []

    def failed() -> bool:
        state = airflow_run_state(stack, run_id)
        if not seen or seen[-1] != state:
            seen.append(state)
        return state == "failed"

    try:
        wait_for(failed, timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"run {run_id} not failed within 60 s; its states: {seen}") from exc


def test_delete_running_job_cancels_its_run(alice: openeo.Connection, stack: Stack) -> None:
    job = slow_job(alice, "to be deleted")
    job.start()
    wait_for(lambda: job.status() == "running", interval=0.3)
    job.delete()
    with pytest.raises(openeo.rest.OpenEoApiError) as raised:
        job.describe()
    assert raised.value.code == "JobNotFound"
    run_ends_failed(stack, job.job_id)


def test_cancel_running_job(alice: openeo.Connection, stack: Stack) -> None:
    job = slow_job(alice, "to be canceled")
    job.start()
    wait_for(lambda: job.status() == "running", interval=0.3)
    job.stop()
    assert job.status() == "canceled"
    run_ends_failed(stack, job.job_id)
    time.sleep(3)  # a late task must not turn the cancel into an error
    assert job.status() == "canceled"


def test_other_users_cannot_see_the_job(alice: openeo.Connection, stack: Stack) -> None:
    job = (
        alice.load_collection(COLLECTION, spatial_extent=FULL_EXTENT)
        .save_result("GTiff")
        .create_job()
    )
    bob = openeo.connect(stack.url).authenticate_basic("bob", USERS["bob"])
    assert job.job_id not in [j["id"] for j in bob.list_jobs()]
    with pytest.raises(openeo.rest.OpenEoApiError) as raised:
        bob.job(job.job_id).describe()
    assert raised.value.http_status_code == 404


def trigger_in_airflow(stack: Stack, run_id: str, conf: dict) -> None:
    response = httpx.post(
        f"{stack.base}/api/v2/dags/openeo_batch_job/dagRuns",
        json={"dag_run_id": run_id, "logical_date": None, "conf": conf},
        headers=airflow_admin(stack),
    )
    assert response.status_code == 200, response.text


def test_run_triggered_through_airflow_becomes_an_openeo_job(
    alice: openeo.Connection, stack: Stack, shared_data: Path, tmp_path: Path
) -> None:
    cube = ndvi_max_composite(alice, COLLECTION, FULL_EXTENT, PERIOD).save_result("GTiff")
    graph = cube.flat_graph()
    trigger_in_airflow(stack, "external-ndvi", {"process_graph": graph, "title": "from airflow"})
    assert wait_for(lambda: airflow_run_state(stack, "external-ndvi") in ("success", "failed"))
    assert airflow_run_state(stack, "external-ndvi") == "success"

    admin = openeo.connect(stack.url).authenticate_basic("admin", "admin-openeo-pw")
    jobs = [j for j in admin.list_jobs() if j.get("title") == "from airflow"]
    assert len(jobs) == 1 and jobs[0]["status"] == "finished"
    assert not [j for j in alice.list_jobs() if j.get("title") == "from airflow"]
    job = admin.job(jobs[0]["id"])
    tif = job.get_results().get_assets()[0].download(tmp_path / "external.tif")
    assert_matches_reference(tif, shared_data)


def test_bad_graph_triggered_through_airflow_fails_with_the_openeo_error(stack: Stack) -> None:
    graph = {"x": {"process_id": "no_such_process", "arguments": {}, "result": True}}
    trigger_in_airflow(stack, "external-bad", {"process_graph": graph, "title": "bad from airflow"})
    assert wait_for(lambda: airflow_run_state(stack, "external-bad") in ("success", "failed"))
    assert airflow_run_state(stack, "external-bad") == "failed"
    admin = openeo.connect(stack.url).authenticate_basic("admin", "admin-openeo-pw")
    job = next(j for j in admin.list_jobs() if j.get("title") == "bad from airflow")
    assert job["status"] == "error"
    errors = [e["message"] for e in admin.job(job["id"]).logs(level="error")]
    assert any("ProcessUnsupported" in m and "no_such_process" in m for m in errors), errors


# --- Recurring products (one DAG each): backfill, asset triggers, pause, delete ---

# Generous timeouts: the stack shares two cores with the runs it executes.
_http = httpx.Client(timeout=60)


def _admin(stack: Stack) -> dict[str, str]:
    """As ``airflow_admin``, with the generous timeout."""
    password = (stack.home / "secrets" / "airflow-admin").read_text().strip()
    credentials = {"username": "admin", "password": password}
    token = _http.post(f"{stack.base}/auth/token", json=credentials).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def openeo_headers(connection: openeo.Connection) -> dict[str, str]:
    return {"Authorization": f"Bearer {connection.auth.bearer}"}  # type: ignore[union-attr]


def register_product(stack: Stack, alice: openeo.Connection, product: dict) -> str:
    """Register through the openEO API; returns the DAG id once Airflow has parsed it (the
    DAG file re-reads the products table on every parse: no restart)."""
    response = _http.post(f"{stack.url}/products", json=product, headers=openeo_headers(alice))
    assert response.status_code == 201, response.text
    dag_id = f"openeo_product_{product['id']}"
    dag_url = f"{stack.base}/api/v2/dags/{dag_id}"
    wait_for(lambda: _http.get(dag_url, headers=_admin(stack)).status_code == 200, 120, 2)
    return dag_id


def dag_runs(stack: Stack, dag_id: str) -> list[dict]:
    response = _http.get(f"{stack.base}/api/v2/dags/{dag_id}/dagRuns", headers=_admin(stack))
    return list(response.json()["dag_runs"]) if response.status_code == 200 else []


def test_product_backfill_publishes_one_item_per_interval_and_outlives_deletion(
    alice: openeo.Connection, stack: Stack, tmp_path: Path
) -> None:
    cube = ndvi_max_composite(alice, COLLECTION, FULL_EXTENT, PERIOD).save_result("GTiff")
    product = {
        "id": "e2e_monthly",
        "title": "NDVI max per month",
        "process": {"process_graph": cube.flat_graph()},
        "schedule": "0 0 1 * *",
        "window": "data-interval",
    }
    dag_id = register_product(stack, alice, product)
    url = f"{stack.url}/products/e2e_monthly"
    headers = openeo_headers(alice)
    response = _http.post(
        f"{url}/backfill", json={"start": "2023-10-01", "end": "2023-12-01"}, headers=headers
    )
    assert response.status_code == 202, response.text

    def items() -> list[dict]:
        return list(_http.get(f"{url}/collection/items", headers=headers).json()["features"])

    wait_for(lambda: len(items()) == 2, timeout=300, interval=3)
    published = items()
    windows = [
        (i["properties"]["start_datetime"], i["properties"]["end_datetime"]) for i in published
    ]
    assert windows == [
        ("2023-10-01T00:00:00Z", "2023-11-01T00:00:00Z"),
        ("2023-11-01T00:00:00Z", "2023-12-01T00:00:00Z"),
    ]
    assert [i["id"] for i in published] == [
        "20231001T000000Z_20231101T000000Z",
        "20231101T000000Z_20231201T000000Z",
    ]
    tif = tmp_path / "october.tif"
    tif.write_bytes(_http.get(published[0]["assets"]["openEO.tif"]["href"]).content)
    with rasterio.open(tif) as src:
        assert src.crs.to_epsg() == 32631 and np.isfinite(src.read(1)).any()
    # Each run is an openEO job of the product's owner.
    titles = [j.get("title") or "" for j in alice.list_jobs()]
    assert {
        "NDVI max per month 2023-10-01/2023-11-01",
        "NDVI max per month 2023-11-01/2023-12-01",
    } <= set(titles)
    # Each published run emitted the product's Asset (downstream DAGs schedule on it).
    admin = _admin(stack)
    assets = _http.get(
        f"{stack.base}/api/v2/assets",
        params={"uri_pattern": "openeo://products/e2e_monthly"},
        headers=admin,
    ).json()["assets"]
    events = _http.get(
        f"{stack.base}/api/v2/assets/events", params={"asset_id": assets[0]["id"]}, headers=admin
    ).json()["asset_events"]
    assert sorted(e["extra"]["item_id"] for e in events) == [i["id"] for i in published]

    # Deleting the product removes its DAG and keeps its published collection.
    assert _http.delete(url, headers=headers).status_code == 204
    assert _http.get(f"{stack.base}/api/v2/dags/{dag_id}", headers=admin).status_code == 404
    assert _http.get(url, headers=headers).status_code == 404
    assert [i["id"] for i in items()] == [i["id"] for i in published]


def test_external_asset_event_starts_a_product(alice: openeo.Connection, stack: Stack) -> None:
    product = {
        "id": "e2e_on_event",
        "process": {"process_graph": ndvi_max_composite(alice, COLLECTION, FULL_EXTENT, PERIOD)
                    .save_result("GTiff").flat_graph()},
        "trigger_assets": ["s3://e2e-bucket/new-scenes"],
        "window": "previous-day",
    }  # fmt: skip
    dag_id = register_product(stack, alice, product)
    admin = _admin(stack)
    # What an external system does (README): find the asset's id, post an event for it.
    found = _http.get(
        f"{stack.base}/api/v2/assets",
        params={"uri_pattern": "s3://e2e-bucket/new-scenes"},
        headers=admin,
    ).json()["assets"]
    response = _http.post(
        f"{stack.base}/api/v2/assets/events",
        json={"asset_id": found[0]["id"], "extra": {"scene": "S2B_20231101"}},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    runs = wait_for(lambda: dag_runs(stack, dag_id), timeout=120, interval=2)
    assert runs[0]["run_type"] == "asset_triggered"
    assert _http.delete(f"{stack.url}/products/e2e_on_event", headers=openeo_headers(alice))


def test_pausing_a_product_stops_its_runs(alice: openeo.Connection, stack: Stack) -> None:
    product = {
        "id": "e2e_every_minute",
        "process": {"process_graph": ndvi_max_composite(alice, COLLECTION, FULL_EXTENT, PERIOD)
                    .save_result("GTiff").flat_graph()},
        "schedule": "* * * * *",
        "window": "previous-day",
    }  # fmt: skip
    dag_id = register_product(stack, alice, product)
    url = f"{stack.url}/products/e2e_every_minute"
    # A minute schedule runs the latest complete minute as soon as the DAG is there.
    wait_for(lambda: dag_runs(stack, dag_id), timeout=120, interval=2)
    paused = _http.post(f"{url}/pause", headers=openeo_headers(alice))
    assert paused.json()["paused"] is True
    dag = _http.get(f"{stack.base}/api/v2/dags/{dag_id}", headers=_admin(stack)).json()
    assert dag["is_paused"] is True
    before = len(dag_runs(stack, dag_id))
    time.sleep(75)  # more than one schedule interval
    assert len(dag_runs(stack, dag_id)) == before
    assert _http.delete(url, headers=openeo_headers(alice)).status_code == 204
