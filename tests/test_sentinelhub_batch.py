"""Batch jobs over Sentinel Hub collections, end to end through the DAG's task functions.

The loopback server of ``test_sentinelhub`` (token, Catalog API, Process API; answers cut from
the real WorldCereal patch) stands in for the service; the job runs size -> load -> transform
-> save as the batch DAG does, with the production loaders unchanged. What is checked: the
request bodies the server received, the saved GeoTIFF pixels against the GeoTIFFs the server
answered, and the processing units in the job's usage.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile

from openeo_airflow.jobs.backend import Backend
from tests.load_support import backend_over_catalogs, load_node, run_job, save
from tests.test_sentinelhub import CLIENT_ID, CLIENT_SECRET, EXTENT, ShServer

UNITS_PER_REQUEST = 1.5  # what the loopback server reports per Process API request


class RecordingServer(ShServer):
    """Keeps every Process API answer (request body, GeoTIFF bytes) it sent."""

    def __init__(self, shared: Path) -> None:
        super().__init__(shared)
        self.answers: list[tuple[dict[str, Any], bytes]] = []

    def process(self, request: dict[str, Any], token: str) -> Any:
        answer = super().process(request, token)
        if answer[0] == 200:
            with self.lock:
                self.answers.append((request, answer[1]))
        return answer


def sh_entry(
    server: ShServer, id_: str, data_collection: str, bands: list[str], units: str
) -> dict[str, Any]:
    return {
        "id": id_,
        "title": id_,
        "description": "Loopback Sentinel Hub",
        "license": "proprietary",
        "resolution": 10,
        "crs": "EPSG:32631",
        "sentinelhub": {
            "data_collection": data_collection,
            "base_url": server.url,
            "token_url": server.url + "/oauth/token",
            "client_id_env": "TEST_SH_CLIENT_ID",
            "client_secret_env": "TEST_SH_CLIENT_SECRET",
        },
        "bands": [{"name": b, "asset": b, "units": units} for b in bands],
    }


@pytest.fixture(scope="module")
def setup(
    shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Backend, RecordingServer]]:
    patch = pytest.MonkeyPatch()
    patch.setenv("TEST_SH_CLIENT_ID", CLIENT_ID)
    patch.setenv("TEST_SH_CLIENT_SECRET", CLIENT_SECRET)
    patch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain-HTTP token endpoint: loopback
    server = RecordingServer(shared_data)
    with server:
        entries = [
            sh_entry(server, "S2_SH", "SENTINEL2_L2A", ["B04", "B08"], "REFLECTANCE"),
            sh_entry(server, "S1_SH", "SENTINEL1_IW", ["VV", "VH"], "LINEAR_POWER"),
        ]
        yield from (
            (backend, server)
            for backend, _ in backend_over_catalogs(
                tmp_path_factory, shared_data, "sh_batch", extra_collections=entries
            )
        )
    patch.undo()


@pytest.fixture
def fresh(setup: tuple[Backend, RecordingServer]) -> tuple[Backend, RecordingServer]:
    """The module's backend and server, the server's records of earlier tests forgotten."""
    _, server = setup
    server.process_bodies.clear()
    server.answers.clear()
    return setup


def assert_units_charged(backend: Backend, job_id: str, server: RecordingServer) -> None:
    """The job's usage holds the processing units of every Process API request it made."""
    spent = (backend.registry.get(job_id).usage or {})["sentinelhub"]
    assert spent["unit"] == "processing units"
    assert spent["value"] == pytest.approx(UNITS_PER_REQUEST * len(server.process_bodies))


def answered(server: RecordingServer, day: str) -> list[tuple[dict[str, Any], np.ndarray]]:
    """The server's answers for ``day``: (request body, decoded GeoTIFF bands)."""
    found = []
    for body, tiff in server.answers:
        if body["input"]["data"][0]["dataFilter"]["timeRange"]["from"].startswith(day):
            with MemoryFile(tiff) as memory, memory.open() as src:
                found.append((body, src.read()))
    return found


def mosaic(server: RecordingServer, day: str, saved: rasterio.DatasetReader) -> np.ndarray:
    """The server's answers for ``day`` placed on the saved file's grid by their bboxes."""
    out = np.full((saved.count, saved.height, saved.width), np.nan, dtype=np.float32)
    pieces = answered(server, day)
    assert pieces, f"no answer for {day}"
    for body, values in pieces:
        west, _, _, north = body["input"]["bounds"]["bbox"]
        col, row = ~saved.transform * (west, north)
        r, c = round(row), round(col)
        out_bands = min(out.shape[0], values.shape[0])
        out[:out_bands, r : r + values.shape[1], c : c + values.shape[2]] = values[:out_bands]
    return out


# 1280 m square around the WorldCereal patch's corner: 128 x 128 px, a quarter with data.
WIDER = {"west": 500720, "south": 5628400, "east": 502000, "north": 5629680, "crs": 32631}
# A small job runs fused (in memory, in the size task); forced apart and tiled, the load
# stage makes each 64 px tile's own requests.
RUNS = [
    (EXTENT, None, 64, 64),
    (WIDER, {"engine": "inline", "fuse-stages": False, "tile-size": 64}, 128, 64),
]


@pytest.mark.parametrize(("extent", "options", "side", "edge"), RUNS, ids=["fused", "tiled"])
def test_batch_job_over_sentinelhub_saves_what_the_service_answered(
    fresh: tuple[Backend, RecordingServer],
    extent: dict[str, Any],
    options: dict[str, Any] | None,
    side: int,
    edge: int,
) -> None:
    backend, server = fresh
    process = {
        "process_graph": {
            "load": load_node(
                "load_collection",
                id="S2_SH",
                spatial_extent=extent,
                temporal_extent=["2017-08-01", "2017-08-20"],
                bands=["B04", "B08"],
            ),
            "scale": {
                "process_id": "apply",
                "arguments": {
                    "data": {"from_node": "load"},
                    "process": {
                        "process_graph": {
                            "m": {
                                "process_id": "multiply",
                                "arguments": {"x": {"from_parameter": "x"}, "y": 10000},
                                "result": True,
                            }
                        }
                    },
                },
            },
            "save": save("scale", "GTiff"),
        }
    }
    job_id, results = run_job(backend, process, options=options)

    days = sorted(
        {
            b["input"]["data"][0]["dataFilter"]["timeRange"]["from"][:10]
            for b in server.process_bodies
        }
    )
    assert days == ["2017-08-04", "2017-08-14"]  # the Catalog API's days in the period
    for body in server.process_bodies:
        assert body["input"]["data"][0]["type"] == "sentinel-2-l2a"
        assert '"B04", "B08", "dataMask"' in body["evalscript"]
        assert body["input"]["bounds"]["properties"]["crs"].endswith("/32631")
        assert max(body["output"]["width"], body["output"]["height"]) <= 2500
    per_day = [answered(server, day) for day in days]
    tiles = (side // edge) ** 2
    assert [len(answers) for answers in per_day] == [tiles, tiles]
    assert {(b["output"]["width"], b["output"]["height"]) for b, _ in per_day[0]} == {(edge, edge)}
    files = sorted(results.glob("*.tif"))
    assert [f.name[-14:-4] for f in files] == days
    for day, path in zip(days, files, strict=True):
        with rasterio.open(path) as saved:
            assert saved.count == 2 and (saved.width, saved.height) == (side, side)
            assert saved.descriptions == ("B04", "B08")
            expected = mosaic(server, day, saved) * 10000
            np.testing.assert_allclose(saved.read(), expected, rtol=1e-6, equal_nan=True)
            assert np.isfinite(saved.read()).mean() > 0.9 * (64 / side) ** 2
    assert_units_charged(backend, job_id, server)


def test_batch_sar_backscatter_sends_the_backscatter_options(
    fresh: tuple[Backend, RecordingServer],
) -> None:
    backend, server = fresh
    process = {
        "process_graph": {
            "load": load_node(
                "load_collection",
                id="S1_SH",
                spatial_extent=EXTENT,
                temporal_extent=["2017-08-01", "2017-08-03"],
                bands=["VV", "VH"],
            ),
            "sar": {
                "process_id": "sar_backscatter",
                "arguments": {
                    "data": {"from_node": "load"},
                    "coefficient": "sigma0-ellipsoid",
                    "mask": True,
                    "options": {"speckleFilter": {"type": "LEE", "windowSizeX": 3}},
                },
            },
            "save": save("sar", "GTiff"),
        }
    }
    job_id, results = run_job(backend, process)

    assert server.process_bodies
    for body in server.process_bodies:
        data = body["input"]["data"][0]
        assert data["type"] == "sentinel-1-grd"
        assert data["processing"] == {
            "backCoeff": "SIGMA0_ELLIPSOID",
            "orthorectify": False,
            "speckleFilter": {"type": "LEE", "windowSizeX": 3},
        }
        assert '"VV", "VH", "dataMask"' in body["evalscript"]
    [path] = sorted(results.glob("*.tif"))
    with rasterio.open(path) as saved:
        assert saved.descriptions == ("VV", "VH", "mask")
        values = saved.read()
        expected = mosaic(server, path.name[-14:-4], saved)
    np.testing.assert_allclose(values, expected, rtol=1e-6, equal_nan=True)
    assert set(np.unique(values[2][np.isfinite(values[2])])) <= {0.0, 1.0}
    assert_units_charged(backend, job_id, server)
