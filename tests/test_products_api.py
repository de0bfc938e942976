"""The /products extension answered in-process (Airflow replaced by a recorder of its calls)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from openeo_airflow.jobs.backend import Backend
from tests.api_support import (
    PREFIX,
    JsonHandler,
    bearer,
    http_served,
    make_client,
)

COLLECTION = "TEST_CDSE_S2"
GRAPH = {
    "load": {
        "process_id": "load_collection",
        "arguments": {
            "id": COLLECTION,
            "spatial_extent": {"west": 5.0, "south": 51.2, "east": 5.01, "north": 51.21},
            "temporal_extent": None,
            "bands": ["B04", "B08"],
        },
    },
    "ndvi": {
        "process_id": "ndvi",
        "arguments": {"data": {"from_node": "load"}, "nir": "B08", "red": "B04"},
    },
    "save": {
        "process_id": "save_result",
        "arguments": {"data": {"from_node": "ndvi"}, "format": "GTiff"},
        "result": True,
    },
}


class FakeAirflow:
    """Records calls; ``dags`` holds the paused state of the DAGs it "has parsed"."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.dags: dict[str, bool] = {}

    def set_paused(self, dag_id: str, paused: bool) -> bool:
        self.calls.append(("paused", dag_id, paused))
        if dag_id not in self.dags:
            return False
        self.dags[dag_id] = paused
        return True

    def paused(self, dag_id: str) -> bool | None:
        return self.dags.get(dag_id)

    def paused_states(self) -> dict[str, bool]:
        return dict(self.dags)

    def backfill(self, dag_id: str, start: datetime, end: datetime, reprocess: str) -> dict:
        self.calls.append(("backfill", dag_id, start, end, reprocess))
        return {"id": 7}

    def delete_dag(self, dag_id: str) -> bool:
        self.calls.append(("delete", dag_id))
        return True


@pytest.fixture
def airflow(backend: Backend) -> FakeAirflow:
    fake = FakeAirflow()
    backend.products._airflow = fake  # type: ignore[assignment]
    return fake


@pytest.fixture
def client(backend: Backend, airflow: FakeAirflow) -> TestClient:
    return make_client(backend)


@pytest.fixture
def alice(client: TestClient) -> dict[str, str]:
    return bearer(client, "alice")


def body(**fields: Any) -> dict[str, Any]:
    return {
        "id": "ndvi_monthly",
        "title": "Monthly NDVI",
        "process": {"process_graph": GRAPH},
        "schedule": "0 0 1 * *",
        "window": "previous-month",
        **fields,
    }


def register(client: TestClient, headers: dict[str, str], **fields: Any) -> Any:
    return client.post(f"{PREFIX}/products", json=body(**fields), headers=headers)


def test_register_list_get(client: TestClient, alice: dict[str, str]) -> None:
    response = register(client, alice)
    assert response.status_code == 201, response.text
    assert response.headers["Location"].endswith(f"{PREFIX}/products/ndvi_monthly")
    document = client.get(f"{PREFIX}/products/ndvi_monthly", headers=alice).json()
    assert document["dag_id"] == "openeo_product_ndvi_monthly"
    assert document["asset"] == "openeo://products/ndvi_monthly"
    assert document["schedule"] == "0 0 1 * *" and document["paused"] is False
    listed = client.get(f"{PREFIX}/products", headers=alice).json()["products"]
    assert [p["id"] for p in listed] == ["ndvi_monthly"]
    # The extension is listed in the capabilities with every other endpoint.
    paths = {e["path"] for e in client.get(f"{PREFIX}/").json()["endpoints"]}
    assert {"/products", "/products/{product_id}", "/products/{product_id}/backfill"} <= paths
    # The id is taken; other users neither see nor take it.
    assert register(client, alice).json()["code"] == "ProductInvalid"
    bob = bearer(client, "bob")
    assert client.get(f"{PREFIX}/products/ndvi_monthly", headers=bob).status_code == 404
    assert client.get(f"{PREFIX}/products", headers=bob).json()["products"] == []


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"schedule": "0 0 32 * *"}, "schedule", "neither a cron expression"),
        ({"schedule": "every day"}, "schedule", "ISO 8601 duration"),
        ({"timezone": "Mars/Olympus"}, "timezone", "not an IANA time zone"),
        ({"timezone": 2}, "timezone", "not an IANA time zone"),
        ({"process": None, "process_graph_id": "nope"}, "process_graph_id", "'nope'"),
        ({"window": "last-fortnight"}, "window", "unknown rule"),
        (
            {"schedule": None, "trigger_assets": ["s3://bucket/scenes"], "window": "data-interval"},
            "window",
            "empty temporal extent",
        ),
        ({"trigger_assets": ["no uri"]}, "trigger_assets", "not an asset URI"),
        ({"schedule": None}, "schedule", "give a 'schedule'"),
        ({"id": "a b"}, "id", "letters"),
        ({"colour": "red"}, "colour", "unknown field"),
        (
            {"process": {"process_graph": {**GRAPH, "x": {"process_id": "nope", "arguments": {}}}}},
            "process",
            "ProcessUnsupported",
        ),
    ],
)
def test_bad_products_are_refused_naming_the_field(
    client: TestClient, alice: dict[str, str], fields: dict, field: str, words: str
) -> None:
    response = register(client, alice, **fields)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["code"] == "ProductInvalid"
    assert error["message"].startswith(f"Field '{field}':") and words in error["message"]


def test_paused_state_is_the_one_airflow_has(
    client: TestClient, alice: dict[str, str], airflow: FakeAirflow
) -> None:
    """Before Airflow parses the DAG the product shows the state it will be created with;
    after, Airflow's (a DAG paused in the Airflow UI shows as paused here)."""
    assert register(client, alice, paused=True).status_code == 201
    url = f"{PREFIX}/products/ndvi_monthly"
    assert client.get(url, headers=alice).json()["paused"] is True
    airflow.dags["openeo_product_ndvi_monthly"] = False  # parsed, then resumed in the UI
    assert client.get(url, headers=alice).json()["paused"] is False
    listed = client.get(f"{PREFIX}/products", headers=alice).json()["products"]
    assert [p["paused"] for p in listed] == [False]
    airflow.dags["openeo_product_ndvi_monthly"] = True  # paused in the UI
    assert client.get(url, headers=alice).json()["paused"] is True
    refused = client.post(
        f"{url}/backfill", json={"start": "2023-10-01", "end": "2023-12-01"}, headers=alice
    )
    assert refused.status_code == 409 and "paused" in refused.json()["message"]
    assert client.post(f"{url}/resume", headers=alice).json()["paused"] is False
    assert airflow.dags["openeo_product_ndvi_monthly"] is False


def test_time_zone_is_stored_and_shown(client: TestClient, alice: dict[str, str]) -> None:
    assert register(client, alice, timezone="Europe/Brussels").status_code == 201
    document = client.get(f"{PREFIX}/products/ndvi_monthly", headers=alice).json()
    assert document["timezone"] == "Europe/Brussels"
    # The first run covers the Brussels month the product was registered in.
    start = datetime.fromisoformat(document["start"].replace("Z", "+00:00"))
    assert (start.hour, start.minute) in ((22, 0), (23, 0))
    assert register(client, alice, id="in_utc").status_code == 201
    assert client.get(f"{PREFIX}/products/in_utc", headers=alice).json()["timezone"] == "UTC"


def test_backfill_dates_are_read_in_the_product_time_zone(
    client: TestClient, alice: dict[str, str], airflow: FakeAirflow
) -> None:
    """October and November in Brussels: their intervals start at 22:00 and 23:00 UTC the
    day before, so the backfill's bounds must too, or October's run is left out."""
    assert register(client, alice, timezone="Europe/Brussels").status_code == 201
    url = f"{PREFIX}/products/ndvi_monthly/backfill"
    response = client.post(url, json={"start": "2023-10-01", "end": "2023-12-01"}, headers=alice)
    assert response.status_code == 202, response.text
    assert (response.json()["start"], response.json()["end"]) == (
        "2023-09-30T22:00:00Z",
        "2023-11-30T23:00:00Z",
    )
    explicit = {"start": "2023-10-01T00:00:00Z", "end": "2023-12-01T00:00:00+01:00"}
    utc_october = datetime(2023, 10, 1, tzinfo=UTC)
    assert client.post(url, json=explicit, headers=alice).status_code == 202
    last = datetime(2023, 11, 30, 22, 59, 59, 999999, tzinfo=UTC)  # Airflow's bounds are inclusive
    bounds = [(call[2], call[3]) for call in airflow.calls if call[0] == "backfill"]
    assert bounds == [(datetime(2023, 9, 30, 22, tzinfo=UTC), last), (utc_october, last)]


def test_product_from_a_stored_process(client: TestClient, alice: dict[str, str]) -> None:
    stored = {
        "parameters": [{"name": "temporal_extent", "schema": {"type": "array"}}],
        "process_graph": GRAPH,
    }
    assert client.put(f"{PREFIX}/process_graphs/ndvi_of", json=stored, headers=alice).is_success
    response = register(
        client, alice, process=None, process_graph_id="ndvi_of", schedule="P1D",
        window="previous-day", trigger_assets=["s3://bucket/scenes"],
    )  # fmt: skip
    assert response.status_code == 201, response.text


def test_pause_resume_backfill_delete(
    client: TestClient, alice: dict, airflow: FakeAirflow
) -> None:
    assert register(client, alice).status_code == 201
    url = f"{PREFIX}/products/ndvi_monthly"
    assert client.post(f"{url}/pause", headers=alice).json()["paused"] is True
    refused = client.post(
        f"{url}/backfill", json={"start": "2023-10-01", "end": "2023-12-01"}, headers=alice
    )
    assert refused.status_code == 409 and "paused" in refused.json()["message"]
    assert client.post(f"{url}/resume", headers=alice).json()["paused"] is False
    response = client.post(
        f"{url}/backfill", json={"start": "2023-10-01", "end": "2023-12-01"}, headers=alice
    )
    assert response.status_code == 202, response.text
    assert response.json()["backfill_id"] == 7
    bad = client.post(f"{url}/backfill", json={"start": "soon", "end": "2023-12-01"}, headers=alice)
    assert bad.status_code == 400 and bad.json()["message"].startswith("Field 'start':")
    assert client.delete(url, headers=alice).status_code == 204
    assert client.get(url, headers=alice).status_code == 404
    dag = "openeo_product_ndvi_monthly"
    assert airflow.calls == [
        ("paused", dag, True),
        ("paused", dag, False),
        ("backfill", dag, datetime(2023, 10, 1, tzinfo=UTC),
         datetime(2023, 11, 30, 23, 59, 59, 999999, tzinfo=UTC), "failed"),
        ("paused", dag, True),
        ("delete", dag),
    ]  # fmt: skip
    # Its owner may register it again (the collection keeps growing); nobody else may.
    assert register(client, bearer(client, "bob")).status_code == 400
    assert register(client, alice).status_code == 201


def test_published_items_are_served_and_outlive_the_product(
    client: TestClient, alice: dict[str, str], backend: Backend, tmp_path: Path
) -> None:
    assert register(client, alice).status_code == 201
    results = tmp_path / "results"
    results.mkdir()
    (results / "openEO.tif").write_bytes(b"tif v1")
    metadata = {"assets": {"openEO.tif": {"type": "image/tiff; application=geotiff"}}}
    metadata["bbox"] = [5.0, 51.2, 5.01, 51.21]
    interval = (datetime(2023, 10, 1, tzinfo=UTC), datetime(2023, 11, 1, tzinfo=UTC))
    for content in (b"tif v1", b"tif v2"):  # a re-run replaces its item
        (results / "openEO.tif").write_bytes(content)
        backend.products.catalog.publish(
            "ndvi_monthly", "20231001T000000Z_20231101T000000Z",
            extent=["2023-10-01", "2023-11-01"], data_interval=interval, job_id="j-1",
            results_dir=results, metadata=metadata,
        )  # fmt: skip
    assert client.delete(f"{PREFIX}/products/ndvi_monthly", headers=alice).status_code == 204

    url = f"{PREFIX}/products/ndvi_monthly/collection"
    collection = client.get(url, headers=alice).json()
    assert collection["extent"]["temporal"]["interval"] == [
        ["2023-10-01T00:00:00Z", "2023-11-01T00:00:00Z"]
    ]
    items = client.get(f"{url}/items", headers=alice).json()["features"]
    assert [i["id"] for i in items] == ["20231001T000000Z_20231101T000000Z"]
    href = items[0]["assets"]["openEO.tif"]["href"]
    assert client.get(href).content == b"tif v2"
    assert client.get(href.replace("signature=", "signature=0")).status_code == 404
    assert client.get(url, headers=bearer(client, "bob")).status_code == 404
    on_disk = backend.settings.workspace / "products" / "ndvi_monthly" / "items"
    assert [p.name for p in on_disk.iterdir()] == ["20231001T000000Z_20231101T000000Z"]
    item = json.loads((on_disk / items[0]["id"] / "item.json").read_text())
    assert item["properties"]["openeo:job_id"] == "j-1"


def test_cli_talks_to_the_api(
    client: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from openeo_airflow.cli import build_parser
    from openeo_airflow.cli import products as cli

    definition = tmp_path / "product.json"
    definition.write_text(json.dumps(body()))
    common = ["products", "--url", f"http://testserver{PREFIX}", "--user", "alice:alice-pw"]

    def run(*action: str) -> int:
        args = build_parser().parse_args([*common, *action])
        return cli.run(args, transport=client._transport)

    assert run("create", str(definition)) == 0
    assert capsys.readouterr().out.strip() == "ndvi_monthly"
    assert run("pause", "ndvi_monthly") == 0
    assert json.loads(capsys.readouterr().out)["paused"] is True
    assert run("list") == 0
    assert [p["id"] for p in json.loads(capsys.readouterr().out)["products"]] == ["ndvi_monthly"]
    assert run("create", str(definition)) == 1
    assert "[ProductInvalid] Field 'id'" in capsys.readouterr().err


class LockedAirflow(JsonHandler):
    """Airflow's answers to a backfill on SQLite while the scheduler writes: 503 ``locked``
    ``locked_times`` times, then the backfill."""

    locked_times = 0
    posts = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/auth/token":
            return self.answer(201, {"access_token": "t"})
        type(self).posts += 1
        if type(self).posts <= self.locked_times:
            return self.answer(503, {"detail": "Database is locked."})
        return self.answer(200, {"id": 3})


@pytest.mark.parametrize(("locked_times", "answer"), [(2, 3), (9, None)])
def test_backfill_waits_out_a_locked_airflow_database(
    monkeypatch: pytest.MonkeyPatch, locked_times: int, answer: int | None
) -> None:
    from openeo_airflow.core.errors import InfrastructureBusy
    from openeo_airflow.jobs import product_airflow

    monkeypatch.setattr(product_airflow, "LOCK_RETRY_SECONDS", (0, 0, 0, 0))
    handler = type("Handler", (LockedAirflow,), {"locked_times": locked_times, "posts": 0})
    with http_served(handler) as url:
        client = product_airflow.ProductAirflow(url, "a", "b")
        moment = datetime(2023, 10, 1, tzinfo=UTC)
        if answer is not None:
            assert client.backfill("d", moment, moment, "failed") == {"id": answer}
            assert handler.posts == locked_times + 1
        else:
            with pytest.raises(InfrastructureBusy, match="Database is locked"):
                client.backfill("d", moment, moment, "failed")
            assert handler.posts == 5
