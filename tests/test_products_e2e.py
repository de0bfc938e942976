"""Recurring products on the real local stack, beyond test_e2e's backfill/trigger/pause tests:
a real minute schedule, asset events that choose the run's dates (in a product's time zone),
and the paused state Airflow has for a product's DAG."""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta

import openeo
import pytest

from openeo_airflow.cli.demo import ndvi_max_composite
from tests import test_e2e
from tests.test_e2e import (
    COLLECTION,
    FULL_EXTENT,
    PERIOD,
    Stack,
    _admin,
    _http,
    dag_runs,
    openeo_headers,
    register_product,
    wait_for,
)

# test_e2e's module-scoped fixtures: this module gets a stack of its own.
stack, alice = test_e2e.stack, test_e2e.alice
pytestmark = pytest.mark.e2e


def ndvi_graph(alice: openeo.Connection) -> dict:
    cube = ndvi_max_composite(alice, COLLECTION, FULL_EXTENT, PERIOD).save_result("GTiff")
    return dict(cube.flat_graph())


def items(stack: Stack, alice: openeo.Connection, product_id: str) -> list[dict]:
    url = f"{stack.url}/products/{product_id}/collection/items"
    return list(_http.get(url, headers=openeo_headers(alice)).json()["features"])


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_minute_schedule_publishes_consecutive_windows(
    alice: openeo.Connection, stack: Stack
) -> None:
    """Scheduled by Airflow's scheduler (no backfill): two consecutive runs, each item the
    run's own minute. The graph's minute holds no scenes, so the items have no assets."""
    product = {
        "id": "e2e_minutely",
        "process": {"process_graph": ndvi_graph(alice)},
        "schedule": "* * * * *",
        "window": "data-interval",
    }
    registered = time.monotonic()
    register_product(stack, alice, product)
    parsed = time.monotonic()
    wait_for(lambda: len(items(stack, alice, "e2e_minutely")) >= 2, 240, 3)
    done = time.monotonic()
    assert _http.post(
        f"{stack.url}/products/e2e_minutely/pause", headers=openeo_headers(alice)
    ).is_success
    published = items(stack, alice, "e2e_minutely")
    windows = [
        (instant(i["properties"]["start_datetime"]), instant(i["properties"]["end_datetime"]))
        for i in published
    ]
    assert len(windows) >= 2
    for item, (start, end) in zip(published, windows, strict=True):
        assert end - start == timedelta(minutes=1) and start.second == 0
        assert item["id"] == f"{start:%Y%m%dT%H%M%SZ}_{end:%Y%m%dT%H%M%SZ}"
    for (_, end), (after, _) in itertools.pairwise(windows):
        assert after == end  # consecutive: no gap, no overlap
    print(
        f"DAG parsed {parsed - registered:.0f} s after registering, "
        f"two scheduled items {done - parsed:.0f} s later"
    )
    runs = dag_runs(stack, "openeo_product_e2e_minutely")
    assert {r["run_type"] for r in runs} == {"scheduled"}
    assert _http.delete(
        f"{stack.url}/products/e2e_minutely", headers=openeo_headers(alice)
    ).is_success


def post_event(stack: Stack, uri: str, extra: dict) -> None:
    admin = _admin(stack)
    found = _http.get(
        f"{stack.base}/api/v2/assets", params={"uri_pattern": uri}, headers=admin
    ).json()["assets"]
    response = _http.post(
        f"{stack.base}/api/v2/assets/events",
        json={"asset_id": found[0]["id"], "extra": extra},
        headers=admin,
    )
    assert response.status_code == 200, response.text


def size_log(stack: Stack, dag_id: str, run_id: str) -> str:
    url = f"{stack.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/size/logs/1"
    return _http.get(url, headers={**_admin(stack), "Accept": "application/json"}).text


def test_asset_event_chooses_the_dates_in_the_product_time_zone(
    alice: openeo.Connection, stack: Stack
) -> None:
    product = {
        "id": "e2e_event_dates",
        "title": "NDVI on request",
        "process": {"process_graph": ndvi_graph(alice)},
        "trigger_assets": ["s3://e2e-bucket/month-ready"],
        "window": "previous-day",
        "timezone": "Europe/Brussels",
    }
    dag_id = register_product(stack, alice, product)
    uri = "s3://e2e-bucket/month-ready"

    # A bad extent fails the run's first task, with the field in its log; no job is made.
    post_event(stack, uri, {"temporal_extent": ["2023-11-01", "2023-10-01"]})
    runs = wait_for(lambda: [r for r in dag_runs(stack, dag_id) if r["state"] == "failed"], 180, 2)
    log = size_log(stack, dag_id, runs[0]["dag_run_id"])
    assert "extra.temporal_extent" in log and "not before its end" in log, log[-2000:]

    # October in Brussels: from 1 October 00:00 +02:00 to 1 November 00:00 +01:00.
    post_event(stack, uri, {"temporal_extent": ["2023-10-01", "2023-11-01"], "scene": "x"})
    published = wait_for(lambda: items(stack, alice, "e2e_event_dates"), 300, 3)
    assert [i["id"] for i in published] == ["20230930T220000Z_20231031T230000Z"]
    properties = published[0]["properties"]
    assert (properties["start_datetime"], properties["end_datetime"]) == (
        "2023-09-30T22:00:00Z",
        "2023-10-31T23:00:00Z",
    )
    assert "openEO.tif" in published[0]["assets"]
    titles = {j.get("title") for j in alice.list_jobs()}
    assert "NDVI on request 2023-09-30T22:00:00Z/2023-10-31T23:00:00Z" in titles
    assert _http.delete(
        f"{stack.url}/products/e2e_event_dates", headers=openeo_headers(alice)
    ).is_success


def test_paused_state_comes_from_airflow(alice: openeo.Connection, stack: Stack) -> None:
    product = {
        "id": "e2e_paused_in_ui",
        "process": {"process_graph": ndvi_graph(alice)},
        "schedule": "0 0 1 * *",  # its first run is at the next month's start
        "window": "previous-month",
        "timezone": "Europe/Brussels",
    }
    dag_id = register_product(stack, alice, product)
    url = f"{stack.url}/products/e2e_paused_in_ui"
    headers = openeo_headers(alice)
    assert _http.get(url, headers=headers).json()["paused"] is False

    # Paused where the Airflow UI pauses it: Airflow's REST API, as the Airflow admin.
    dag_url = f"{stack.base}/api/v2/dags/{dag_id}"
    patched = _http.patch(dag_url, json={"is_paused": True}, headers=_admin(stack))
    assert patched.status_code == 200, patched.text
    assert _http.get(url, headers=headers).json()["paused"] is True
    listed = _http.get(f"{stack.url}/products", headers=headers).json()["products"]
    assert next(p for p in listed if p["id"] == "e2e_paused_in_ui")["paused"] is True

    # Resumed through our API: Airflow has it resumed.
    assert _http.post(f"{url}/resume", headers=headers).json()["paused"] is False
    assert _http.get(dag_url, headers=_admin(stack)).json()["is_paused"] is False
    assert _http.delete(url, headers=headers).status_code == 204
