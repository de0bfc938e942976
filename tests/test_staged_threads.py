"""The staged path on the inline engine: tiles on the worker's threads, transform tiles on the
stores' chunk grid writing straight into the result cube (or, when the graph's alignment
forbids that grid, into pieces the driver assembles); all must equal one whole-cube run."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from affine import Affine

from openeo_airflow.airflow import tasks
from openeo_airflow.cube import make_cube
from openeo_airflow.engine import entrypoint, tiled
from openeo_airflow.io.store import read_cube
from openeo_airflow.jobs.backend import Backend
from tests.load_support import backend_over_catalogs, read_nc, run_job


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Backend]:
    for backend, _catalogs in backend_over_catalogs(
        tmp_path_factory, shared_data, "staged_threads", LOCAL_CORES="2"
    ):
        yield backend


def test_the_thread_mapper_runs_tiles_side_by_side_in_order() -> None:
    both_running = threading.Barrier(2, timeout=10)  # a serial mapper would time out here

    def tile(descriptor: dict[str, Any]) -> dict[str, Any]:
        both_running.wait()
        return {"index": descriptor["index"]}

    results = tiled.ThreadMapper(2)(tile, [{"index": i} for i in range(4)])
    assert [r["index"] for r in results] == [0, 1, 2, 3]


def _cube(left_px: int, top_px: int, size: int = 100) -> Any:
    transform = Affine(10.0, 0, left_px * 10.0, 0, -10.0, top_px * 10.0)
    return make_cube(
        np.zeros((1, 1, size, size), "float32"),
        times=np.array(["2020-02-01"], dtype="datetime64[ns]"),
        bands=["B04"],
        transform=transform,
        crs="EPSG:32631",
    )


def test_chunk_tiles_start_at_the_first_pixel_unless_the_alignment_forbids() -> None:
    rows = tiled.chunk_tiles(_cube(7, 1003), 40, 1)
    assert rows is not None and [len(r) for r in rows] == [3, 3, 3]
    first = rows[0][0]
    assert (first.left, first.right, first.top, first.bottom) == (70.0, 470.0, 10030.0, 9630.0)
    assert rows[2][2].crop(_cube(7, 1003)).shape == (1, 1, 20, 20)
    # apply_neighborhood chunks of 32 px fall on CRS multiples of 32: off the first pixel here
    assert tiled.chunk_tiles(_cube(7, 1003), 64, 32) is None
    assert tiled.chunk_tiles(_cube(64, 1024), 64, 32) is not None


def _neighbourhood(west: float, north: float) -> dict[str, Any]:
    """7x7 mean in apply_neighborhood chunks of 32 px over about 192 x 192 px at 100 m: the
    kernel reaches past the 2 px overlap, so every chunk's edges show in the result (tiles
    that cut chunks would differ from the whole cube)."""
    kernel = [[1] * 7 for _ in range(7)]
    chunk = [{"dimension": d, "value": 32, "unit": "px"} for d in ("x", "y")]
    overlap = [{"dimension": d, "value": 2, "unit": "px"} for d in ("x", "y")]
    extent = {"west": west, "south": north - 19200, "east": west + 19200, "north": north}
    return {
        "process_graph": {
            "load": {
                "process_id": "load_collection",
                "arguments": {
                    "id": "TEST_29RKH_S2",
                    "spatial_extent": {**extent, "crs": 32629},
                    "temporal_extent": ["2020-02-01", "2020-03-01"],
                    "bands": ["B04", "B08"],
                },
            },
            "smooth": {
                "process_id": "apply_neighborhood",
                "arguments": {
                    "data": {"from_node": "load"},
                    "size": chunk,
                    "overlap": overlap,
                    "process": {
                        "process_graph": {
                            "k": {
                                "process_id": "apply_kernel",
                                "arguments": {
                                    "data": {"from_parameter": "data"},
                                    "kernel": kernel,
                                    "factor": 1 / 49,
                                },
                                "result": True,
                            }
                        }
                    },
                },
            },
            "save": {
                "process_id": "save_result",
                "arguments": {"data": {"from_node": "smooth"}, "format": "netCDF"},
                "result": True,
            },
        }
    }


@pytest.mark.parametrize(
    ("west", "north", "path"),
    [
        (211200, 2777600, "probe_seconds"),  # first pixel on multiples of 32: the chunk grid
        (211300, 2777500, "assemble_seconds"),  # 1 px off: CRS-anchored tiles and pieces
    ],
)
def test_staged_tiles_on_threads_equal_one_whole_cube(
    backend: Backend, west: float, north: float, path: str
) -> None:
    graph = _neighbourhood(west, north)
    staged = {"engine": "inline", "fuse-stages": False}
    job_id, tiled_results = run_job(backend, graph, options={**staged, "tile-size": 64})
    _, whole_results = run_job(backend, graph, options={**staged, "tile-size": 4096})
    measured = backend.registry.get(job_id).sizing["measured"]["transform"]
    assert measured["extra"]["tiles"] >= 9 and path in measured["extra"]
    assert measured["pieces"] >= 9  # tiles counted even when measured as one mapping
    x, y = read_nc(tiled_results), read_nc(whole_results)
    assert x.sizes["x"] >= 192 and x.sizes["y"] >= 192
    for name in ("B04", "B08"):
        assert np.isfinite(x[name].values).mean() > 0.9
        np.testing.assert_allclose(x[name].values, y[name].values, rtol=1e-6, equal_nan=True)

    # the same stages on threads and on one thread write the same cubes (the job's own cubes
    # were discarded once its results were saved)
    ws = tasks.workspace(job_id)
    assert not ws.intermediate_dir.exists()
    for source in ws.read_plan().sources:
        entrypoint.run_stage(ws, "load", source.node_id, 64, tiled.inline_mapper)
    entrypoint.run_stage(ws, "transform", None, 64, tiled.ThreadMapper(2))
    threaded = read_cube(ws.result_cube)
    entrypoint.run_stage(ws, "transform", None, 64, tiled.inline_mapper)
    np.testing.assert_array_equal(read_cube(ws.result_cube).values, threaded.values)
