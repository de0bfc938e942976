"""The openEO API answered in-process: every response validated against the official OpenAPI."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from openeo_airflow.jobs.backend import Backend
from tests.api_support import (
    PREFIX,
    basic_header,
    bearer,
    make_client,
)
from tests.openapi_check import SPEC, assert_valid

pytestmark = pytest.mark.skipif(
    not SPEC.exists(), reason=f"openEO OpenAPI document not found at {SPEC}"
)

COLLECTION = "TEST_CDSE_S2"
# The whole CDSE test cube, in its own CRS.
CDSE_CUBE_EXTENT = {
    "west": 587880,
    "south": 5684910,
    "east": 588340,
    "north": 5685430,
    "crs": 32631,
}


def graph(collection: str = COLLECTION, **extra_nodes: dict) -> dict:
    nodes = {
        "load": {
            "process_id": "load_collection",
            "arguments": {
                "id": collection,
                "spatial_extent": {"west": 5.0, "south": 51.2, "east": 5.01, "north": 51.21},
                "temporal_extent": ["2023-10-01", "2024-01-01"],
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
    nodes.update(extra_nodes)
    return {"process_graph": nodes}


@pytest.fixture
def client(backend: Backend) -> TestClient:
    return make_client(backend)


@pytest.fixture
def alice(client: TestClient) -> dict[str, str]:
    return bearer(client, "alice")


@pytest.fixture
def bob(client: TestClient) -> dict[str, str]:
    return bearer(client, "bob")


def assert_error(response, status: int, code: str, *fragments: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    for fragment in fragments:
        assert fragment in body["message"], body["message"]


@pytest.mark.parametrize(
    ("path", "pattern"),
    [
        ("/", "/"),
        ("/conformance", "/conformance"),
        ("/file_formats", "/file_formats"),
        ("/processes", "/processes"),
        ("/collections", "/collections"),
        (f"/collections/{COLLECTION}", "/collections/{collection_id}"),
    ],
)
def test_discovery_endpoints_follow_the_spec(client: TestClient, path: str, pattern: str) -> None:
    response = client.get(PREFIX + path)
    assert response.status_code == 200, response.text
    assert_valid(response, pattern)


def test_well_known_points_at_the_versioned_api(client: TestClient) -> None:
    response = client.get("/openeo/.well-known/openeo")
    assert response.status_code == 200
    versions = response.json()["versions"]
    assert versions == [
        {"url": "http://testserver/openeo/1.2/", "api_version": "1.2.0", "production": False}
    ]


def test_capabilities_list_every_endpoint_served(client: TestClient) -> None:
    endpoints = {e["path"]: set(e["methods"]) for e in client.get(PREFIX + "/").json()["endpoints"]}
    assert endpoints["/jobs"] == {"GET", "POST"}
    assert endpoints["/jobs/{job_id}"] == {"GET", "PATCH", "DELETE"}
    assert endpoints["/jobs/{job_id}/results"] == {"GET", "POST", "DELETE"}
    assert {"/result", "/jobs/{job_id}/logs", "/credentials/basic", "/me", "/collections"} <= set(
        endpoints
    )


def test_processes_list_what_is_implemented(client: TestClient) -> None:
    ids = {p["id"] for p in client.get(PREFIX + "/processes").json()["processes"]}
    assert {"load_collection", "ndvi", "mask", "reduce_dimension", "max", "save_result"} <= ids


def test_unknown_collection(client: TestClient) -> None:
    response = client.get(PREFIX + "/collections/NOPE")
    assert_error(response, 404, "CollectionNotFound", "NOPE")
    assert_valid(response, "/collections/{collection_id}")


def test_basic_login_and_me(client: TestClient, alice: dict[str, str]) -> None:
    response = client.get(PREFIX + "/me", headers=alice)
    assert response.status_code == 200
    assert response.json()["user_id"] == "alice"
    assert_valid(response, "/me")


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "AuthenticationRequired"),
        ({"Authorization": "Bearer basic//forged"}, 403, "TokenInvalid"),
        ({"Authorization": "Bearer oidc/egi/abc"}, 403, "AuthenticationSchemeInvalid"),
        ({"Authorization": "Token abc"}, 403, "AuthenticationSchemeInvalid"),
    ],
)
def test_missing_or_wrong_tokens(client: TestClient, headers: dict, status: int, code: str) -> None:
    assert_error(client.get(PREFIX + "/me", headers=headers), status, code)
    assert_error(client.get(PREFIX + "/jobs", headers=headers), status, code)


def test_wrong_credentials(client: TestClient) -> None:
    response = client.get(PREFIX + "/credentials/basic", headers=basic_header("alice", "nope"))
    assert_error(response, 403, "CredentialsInvalid")
    assert_valid(response, "/credentials/basic")
    assert_error(client.get(PREFIX + "/credentials/basic"), 401, "AuthenticationRequired")


def create_job(client: TestClient, headers: dict, body: dict | None = None) -> str:
    response = client.post(
        PREFIX + "/jobs", json=body or {"process": graph(), "title": "t"}, headers=headers
    )
    assert response.status_code == 201, response.text
    assert_valid(response, "/jobs")
    job_id = response.headers["OpenEO-Identifier"]
    assert response.headers["Location"].endswith(f"/openeo/1.2/jobs/{job_id}")
    return job_id


def test_job_crud(client: TestClient, alice: dict) -> None:
    job_id = create_job(client, alice)
    listed = client.get(PREFIX + "/jobs", headers=alice)
    assert_valid(listed, "/jobs")
    assert [j["id"] for j in listed.json()["jobs"]] == [job_id]

    got = client.get(f"{PREFIX}/jobs/{job_id}", headers=alice)
    assert_valid(got, "/jobs/{job_id}")
    assert got.json()["status"] == "created"
    assert got.json()["process"]["process_graph"]["ndvi"]["process_id"] == "ndvi"

    patched = client.patch(f"{PREFIX}/jobs/{job_id}", json={"title": "renamed"}, headers=alice)
    assert patched.status_code == 204
    assert client.get(f"{PREFIX}/jobs/{job_id}", headers=alice).json()["title"] == "renamed"

    logs = client.get(f"{PREFIX}/jobs/{job_id}/logs", headers=alice)
    assert_valid(logs, "/jobs/{job_id}/logs")

    deleted = client.delete(f"{PREFIX}/jobs/{job_id}", headers=alice)
    assert deleted.status_code == 204
    assert_error(client.get(f"{PREFIX}/jobs/{job_id}", headers=alice), 404, "JobNotFound", job_id)


def test_job_update_errors(client: TestClient, alice: dict) -> None:
    job_id = create_job(client, alice)
    url = f"{PREFIX}/jobs/{job_id}"
    assert_error(
        client.patch(url, json={"status": "finished"}, headers=alice),
        400,
        "PropertyNotEditable",
        "status",
    )
    assert_error(client.patch(url, json={}, headers=alice), 400, "NoDataForUpdate")


def test_results_before_the_job_ran(client: TestClient, alice: dict) -> None:
    job_id = create_job(client, alice)
    response = client.get(f"{PREFIX}/jobs/{job_id}/results", headers=alice)
    assert_error(response, 400, "JobNotFinished")
    assert_valid(response, "/jobs/{job_id}/results")


def test_another_users_job_is_not_found(client: TestClient, alice: dict, bob: dict) -> None:
    job_id = create_job(client, alice)
    for method, path in [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("GET", "/results"),
        ("POST", "/results"),
        ("DELETE", "/results"),
        ("GET", "/logs"),
    ]:
        kwargs = {"json": {"title": "mine"}} if method == "PATCH" else {}
        response = client.request(method, f"{PREFIX}/jobs/{job_id}{path}", headers=bob, **kwargs)
        assert_error(response, 404, "JobNotFound", job_id)
        assert "process_graph" not in response.text
    # and it is untouched for its owner
    assert client.get(f"{PREFIX}/jobs/{job_id}", headers=alice).json()["title"] == "t"


def test_malformed_json(client: TestClient, alice: dict) -> None:
    response = client.post(
        PREFIX + "/jobs",
        content=b'{"process": {',
        headers={**alice, "Content-Type": "application/json"},
    )
    assert_error(response, 400, "RequestInvalid", "JSON")
    assert_valid(response, "/jobs")


def test_missing_process_graph(client: TestClient, alice: dict) -> None:
    response = client.post(PREFIX + "/jobs", json={"title": "no graph"}, headers=alice)
    assert_error(response, 400, "ProcessGraphMissing")


def test_unknown_collection_in_graph(client: TestClient, alice: dict) -> None:
    response = client.post(PREFIX + "/jobs", json={"process": graph("NOPE")}, headers=alice)
    assert_error(response, 404, "CollectionNotFound", "NOPE")


def test_unknown_process(client: TestClient, alice: dict) -> None:
    body = graph()
    body["process_graph"]["ndvi"]["process_id"] = "ndvi_magic"
    response = client.post(PREFIX + "/jobs", json={"process": body}, headers=alice)
    assert_error(response, 400, "ProcessUnsupported", "ndvi_magic")
    assert_valid(response, "/jobs")


def test_invalid_graph_names_the_node(client: TestClient, alice: dict) -> None:
    body = graph()
    body["process_graph"]["ndvi"]["arguments"]["data"] = {"from_node": "missing_node"}
    response = client.post(PREFIX + "/jobs", json={"process": body}, headers=alice)
    assert_error(response, 400, "ProcessGraphInvalid", "ndvi", "missing_node")


def test_sync_rejects_oversized_requests(client: TestClient, alice: dict) -> None:
    body = graph()
    body["process_graph"]["load"]["arguments"]["spatial_extent"] = {
        "west": 4.0,
        "south": 50.0,
        "east": 6.0,
        "north": 52.0,
    }
    response = client.post(PREFIX + "/result", json={"process": body}, headers=alice)
    assert_error(response, 400, "ProcessGraphComplexity", "batch job")


def test_forged_download_links_are_refused(client: TestClient, alice: dict) -> None:
    job_id = create_job(client, alice)
    response = client.get(
        f"{PREFIX}/jobs/{job_id}/results/assets/openEO.tif?expires=99999999999&signature=00"
    )
    assert_error(response, 404, "ResultAssetNotFound")


def test_unknown_path_is_an_openeo_error(client: TestClient) -> None:
    assert_error(client.get(PREFIX + "/nothing/here"), 404, "NotFound")


def test_logs_with_entries_follow_the_spec(
    client: TestClient, backend: Backend, alice: dict
) -> None:
    job_id = create_job(client, alice)
    backend.registry.add_log(job_id, "info", "Loaded", stage="load", data={"t": 3})
    backend.registry.add_log(job_id, "error", "failed", stage="save")
    response = client.get(f"{PREFIX}/jobs/{job_id}/logs", headers=alice)
    assert_valid(response, "/jobs/{job_id}/logs")
    assert [e["message"] for e in response.json()["logs"]] == ["Loaded", "failed"]
    errors = client.get(f"{PREFIX}/jobs/{job_id}/logs?level=error", headers=alice).json()["logs"]
    assert [e["message"] for e in errors] == ["failed"]
    after = client.get(f"{PREFIX}/jobs/{job_id}/logs?offset={errors[0]['id']}", headers=alice)
    assert after.json()["logs"] == []


def test_sync_netcdf_matches_numpy(
    client: TestClient, alice: dict, shared_data: Path, tmp_path: Path
) -> None:
    """Unmasked NDVI maximum over all dates, as netCDF, against numpy on the source netCDF."""
    import rasterio
    import xarray as xr

    from tests.fixtures.reference import max_composite, ndvi

    body = graph()
    nodes = body["process_graph"]
    nodes["load"]["arguments"]["spatial_extent"] = {
        "west": 587880,
        "south": 5684910,
        "east": 588340,
        "north": 5685430,
        "crs": 32631,
    }
    nodes["max"] = {
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
    }
    nodes["save"]["arguments"] = {"data": {"from_node": "max"}, "format": "netCDF"}
    response = client.post(PREFIX + "/result", json={"process": body}, headers=alice)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-netcdf"
    result = tmp_path / "result.nc"
    result.write_bytes(response.content)
    with xr.open_dataset(result, engine="h5netcdf") as ds:
        variables = [v for v in ds.data_vars if v != "crs"]
        assert len(variables) == 1
        ours = ds[variables[0]].values
        assert ds.x.values[0] == 587885 and ds.y.values[0] == 5685425

    source = shared_data / "s2_cubes" / "test_optical_cube.nc"
    bands = {}
    for band in ("B04", "B08"):
        with rasterio.open(f"netcdf:{source}:S2-L2A-{band}") as src:
            bands[band] = src.read().astype("float64")
    expected = max_composite(
        np.stack([ndvi(r, n) for r, n in zip(bands["B04"], bands["B08"], strict=True)])
    )
    assert ours.shape == expected.shape
    assert np.array_equal(np.isnan(ours), np.isnan(expected))
    assert np.nanmax(np.abs(ours - expected)) <= 1e-6


def test_invalid_soft_error_option_is_a_clear_error(client: TestClient, alice: dict) -> None:
    response = client.post(
        PREFIX + "/result",
        json={"process": graph(), "job_options": {"soft-errors": 2}},
        headers=alice,
    )
    assert_error(response, 400, "ProcessParameterInvalid", "soft-errors")


NDVI_UDP = {
    "summary": "NDVI of a cube",
    "parameters": [
        {
            "name": "cube",
            "description": "a cube",
            "schema": {"type": "object", "subtype": "datacube"},
        }
    ],
    "returns": {"description": "NDVI", "schema": {"type": "object", "subtype": "datacube"}},
    "process_graph": {
        "n": {
            "process_id": "ndvi",
            "arguments": {"data": {"from_parameter": "cube"}, "nir": "B08", "red": "B04"},
            "result": True,
        }
    },
}


def test_user_defined_processes_crud(client: TestClient, alice: dict, bob: dict) -> None:
    url = PREFIX + "/process_graphs/my_ndvi"
    stored = client.put(url, json=NDVI_UDP, headers=alice)
    assert stored.status_code == 200, stored.text
    got = client.get(url, headers=alice)
    assert_valid(got, "/process_graphs/{process_graph_id}")
    assert got.json()["id"] == "my_ndvi"
    listed = client.get(PREFIX + "/process_graphs", headers=alice)
    assert_valid(listed, "/process_graphs")
    assert [p["id"] for p in listed.json()["processes"]] == ["my_ndvi"]
    assert_error(client.get(url, headers=bob), 404, "ProcessGraphNotFound", "my_ndvi")
    assert client.delete(url, headers=alice).status_code == 204
    assert_error(client.get(url, headers=alice), 404, "ProcessGraphNotFound")


def test_user_defined_process_errors(client: TestClient, alice: dict) -> None:
    response = client.put(PREFIX + "/process_graphs/ndvi", json=NDVI_UDP, headers=alice)
    assert_error(response, 400, "PredefinedProcessExists")
    bad = {
        **NDVI_UDP,
        "process_graph": {"n": {"process_id": "nope", "arguments": {}, "result": True}},
    }
    response = client.put(PREFIX + "/process_graphs/mine", json=bad, headers=alice)
    assert_error(response, 400, "ProcessUnsupported", "nope")


def test_sync_calls_a_user_defined_process(client: TestClient, alice: dict) -> None:
    assert (
        client.put(PREFIX + "/process_graphs/my_ndvi", json=NDVI_UDP, headers=alice).status_code
        == 200
    )
    direct = graph()
    nodes = direct["process_graph"]
    nodes["load"]["arguments"]["spatial_extent"] = CDSE_CUBE_EXTENT
    nodes["save"]["arguments"]["format"] = "netCDF"
    via_udp = copy.deepcopy(direct)
    via_udp["process_graph"]["ndvi"] = {
        "process_id": "my_ndvi",
        "arguments": {"cube": {"from_node": "load"}},
    }
    first = client.post(PREFIX + "/result", json={"process": direct}, headers=alice)
    second = client.post(PREFIX + "/result", json={"process": via_udp}, headers=alice)
    assert first.status_code == second.status_code == 200, second.text
    assert first.content == second.content


def test_validation_reports_every_problem(client: TestClient, alice: dict) -> None:
    body = graph("NOPE")
    body["process_graph"]["ndvi"]["process_id"] = "ndvi_magic"
    response = client.post(PREFIX + "/validation", json=body, headers=alice)
    assert_valid(response, "/validation")
    codes = sorted(e["code"] for e in response.json()["errors"])
    assert codes == ["CollectionNotFound", "ProcessUnsupported"]
    ok = client.post(PREFIX + "/validation", json=graph(), headers=alice)
    assert ok.json() == {"errors": []}


def test_sync_without_data_says_so(client: TestClient, alice: dict) -> None:
    # graph()'s default extent lies beside the test cube.
    response = client.post(PREFIX + "/result", json={"process": graph()}, headers=alice)
    assert_error(response, 400, "NoDataAvailable")


def test_wrong_band_is_refused_when_the_job_is_created(client: TestClient, alice: dict) -> None:
    body = graph()
    body["process_graph"]["load"]["arguments"]["bands"] = ["B04", "B99"]
    response = client.post(PREFIX + "/jobs", json={"process": body}, headers=alice)
    assert response.status_code == 400, response.text
    assert "B99" in response.json()["message"] and "load" in response.json()["message"]


def test_udf_runtimes_follow_the_spec(client: TestClient) -> None:
    response = client.get(PREFIX + "/udf_runtimes")
    assert_valid(response, "/udf_runtimes")
    assert "Python" in response.json()
