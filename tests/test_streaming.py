"""Jobs evaluated tile by tile straight from the archive (engine.streaming): lazy sources read
only the windows they are cut to, and threaded, tiled evaluation gives exactly the result of
evaluating the whole cube at once, on real Sentinel-2 data."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import xarray as xr

from openeo_airflow.engine import stages, streaming
from openeo_airflow.engine.loadplan import LoadPlan
from openeo_airflow.engine.planning import shape_job
from openeo_airflow.io.datasets import OpenDatasets
from openeo_airflow.io.grid import Grid
from openeo_airflow.io.store import index_window
from openeo_airflow.jobs.backend import Backend
from openeo_airflow.sizing.model import (
    STREAM_MAX_TILE,
    STREAM_MIN_TILE,
    STREAM_WHOLE_MB,
    stream_tile_size,
)
from tests.test_engines import cdse_ndvi_max, rkh_smoothed


def _loads(backend: Backend, process: dict[str, Any]) -> tuple[Any, dict[str, LoadPlan]]:
    plan = backend.jobs.compile("alice", process)
    loads = shape_job(plan, backend.collections, backend.settings.gdal_profile, {}).loads
    return plan, {load.node_id: load for load in loads}


def _files(load: LoadPlan) -> set[str]:
    assets = {band.asset for band in load.bands}
    return {
        href
        for _, group in load.steps
        for item in group
        for asset, href in item.assets.items()
        if asset in assets
    }


def _whole(plan: Any, loads: dict[str, LoadPlan]) -> Any:
    cubes = {n: p.empty_cube().copy(data=p.read(p.grid)[0]) for n, p in loads.items()}
    return stages.evaluate_plan(plan, cubes)


class _Reads:
    """Records the windows ``LoadPlan.read`` is asked for, and on which threads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.windows: list[tuple[int, int]] = []
        self.threads: set[str] = set()
        self.datasets: list[OpenDatasets] = []
        original = LoadPlan.read

        def read(
            plan: LoadPlan,
            grid: Grid,
            workers: int | None = None,
            datasets: OpenDatasets | None = None,
        ) -> Any:
            self.windows.append((grid.height, grid.width))
            self.threads.add(threading.current_thread().name)
            if datasets is not None and datasets not in self.datasets:
                self.datasets.append(datasets)
            return original(plan, grid, workers, datasets)

        monkeypatch.setattr(LoadPlan, "read", read)


def test_window_of_basic_indices() -> None:
    assert index_window(3, 10) == (3, 1, 0)
    assert index_window(-1, 10) == (9, 1, 0)
    assert index_window(slice(2, 5), 10) == (2, 3, slice(None))
    assert index_window(slice(5, 2), 10)[1] == 0
    first, count, pick = index_window(slice(1, 9, 3), 10)  # 1, 4, 7
    assert (first, count) == (1, 7) and list(pick) == [0, 3, 6]


def test_stream_tiles_give_every_worker_two_or_more_equal_ones() -> None:
    assert stream_tile_size(5000, 5000, 2) == 1000  # 5 x 5, none cut short
    assert stream_tile_size(1600, 1600, 2) == 800  # 2 x 2 halves, not 1024 + 576
    assert stream_tile_size(1600, 1600, 4) == 534  # 3 x 3 (the last 532)
    assert stream_tile_size(900, 900, 2) == 450
    assert stream_tile_size(3000, 700, 2) == 750  # the longer side decides: 4 x 1
    assert stream_tile_size(100, 100, 4) == 100  # too small to cut: one tile
    for height, width, workers in ((5490, 5490, 2), (1600, 1200, 2), (2100, 2100, 8)):
        size = stream_tile_size(height, width, workers)
        assert STREAM_MIN_TILE // 2 < size <= STREAM_MAX_TILE
        parts = -(-max(height, width) // size)
        assert max(height, width) - (parts - 1) * size > size - parts  # no short remainder


def test_a_lazy_source_reads_only_the_window_it_is_cut_to(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, loads = _loads(backend, cdse_ndvi_max())
    plan = loads["load"]
    whole = plan.read(plan.grid)[0]
    reads = _Reads(monkeypatch)
    lazy = streaming.lazy_source(plan, workers=1)
    assert reads.windows == []  # making it reads nothing
    piece = lazy.isel(y=slice(10, 20), x=slice(5, 30), t=slice(2, 4)).load()
    assert reads.windows == [(10, 25)]
    np.testing.assert_array_equal(piece.values, whole[2:4, :, 10:20, 5:30])
    strided = lazy.isel(x=slice(0, 40, 7), bands=1).load()
    np.testing.assert_array_equal(strided.values, whole[:, 1, :, 0:40:7])
    assert strided.sizes["x"] == 6 and list(strided.x.values) == list(lazy.x.values[0:40:7])


@pytest.mark.parametrize("whole_mb", [0.0, STREAM_WHOLE_MB])
@pytest.mark.parametrize("graph", [cdse_ndvi_max, rkh_smoothed])
def test_tiled_threaded_evaluation_equals_the_whole_cube(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, graph: Any, whole_mb: float
) -> None:
    # whole_mb 0: every source read per tile (with its halo for the 5x5 kernel); otherwise
    # read whole and evaluated in tiles of it. Tiles of 16 px cut both cubes into many.
    plan, loads = _loads(backend, graph())
    expected = _whole(plan, loads)
    reads = _Reads(monkeypatch)
    value, usage = streaming.evaluate_streamed(
        plan, loads, workers=2, whole_mb=whole_mb, tile_size=16, read_tile=16
    )
    assert isinstance(value, xr.DataArray) and usage == []
    assert value.dims == expected.dims and value.shape == expected.shape
    np.testing.assert_array_equal(value.values, expected.values)
    np.testing.assert_array_equal(value.x.values, expected.x.values)
    np.testing.assert_array_equal(value.y.values, expected.y.values)
    if whole_mb == 0.0:
        assert len(reads.windows) > 4 and max(h for h, _ in reads.windows) <= 16 + 2 * 2
        assert len(reads.threads - {"MainThread"}) == 2  # the first tile, then both workers
        # Each reading thread opened each file once, not once per tile; all closed at the end.
        [datasets] = reads.datasets
        files = sum(len(_files(load)) for load in loads.values())
        tiles = len(reads.windows) // len(loads)
        assert files <= datasets.opened <= files * len(reads.threads) < files * tiles
        assert datasets.closed
    else:
        assert len(reads.windows) == len(loads)  # each source once, whole
