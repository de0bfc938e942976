"""The synchronous path's fixed costs: what the API host adds around a result file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.testclient import TestClient

from openeo_airflow.api.app import create_app
from openeo_airflow.api.downloads import transfer_headers
from openeo_airflow.jobs.backend import Backend
from tests.api_support import PREFIX, bearer
from tests.test_api import CDSE_CUBE_EXTENT, graph

MAX = {
    "process_graph": {
        "m": {
            "process_id": "max",
            "arguments": {"data": {"from_parameter": "data"}},
            "result": True,
        }
    }
}


@pytest.fixture
def gzipping_client(backend: Backend) -> TestClient:
    """The app mounted as Airflow's api-server mounts it: inside a GZipMiddleware."""
    host = FastAPI()
    host.mount("/openeo", create_app(lambda: backend))
    host.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=5)
    return TestClient(host, raise_server_exceptions=False)


def test_compressed_result_formats_skip_http_compression() -> None:
    tiff = "image/tiff; application=geotiff; profile=cloud-optimized"
    assert transfer_headers(tiff) == {"Content-Encoding": "identity"}
    assert transfer_headers("application/x-netcdf") == {"Content-Encoding": "identity"}
    assert transfer_headers("application/json") == {}


def test_sync_geotiff_is_not_gzipped_again(gzipping_client: TestClient, tmp_path: Path) -> None:
    alice = bearer(gzipping_client, "alice")
    body = graph(
        max={
            "process_id": "reduce_dimension",
            "arguments": {"data": {"from_node": "ndvi"}, "dimension": "t", "reducer": MAX},
        }
    )
    body["process_graph"]["load"]["arguments"]["spatial_extent"] = CDSE_CUBE_EXTENT
    body["process_graph"]["save"]["arguments"]["data"] = {"from_node": "max"}
    response = gzipping_client.post(
        PREFIX + "/result",
        json={"process": body},
        headers={**alice, "Accept-Encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-encoding"] == "identity"
    assert int(response.headers["content-length"]) == len(response.content)
    path = tmp_path / "result.tif"
    path.write_bytes(response.content)
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 32631 and src.transform.c == 587880
        assert np.isfinite(src.read()).any()
    # Other answers are still compressed by the host.
    processes = gzipping_client.get(PREFIX + "/processes", headers={"Accept-Encoding": "gzip"})
    assert processes.headers["content-encoding"] == "gzip"
