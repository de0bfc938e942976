"""Jobs run tile by tile straight from the archive, without an intermediate store: synchronous
requests and the batch jobs the sizing fuses.

Small sources (under ``STREAM_WHOLE_MB``; more for graphs with global processes) are read
whole through their ``LoadPlan`` and the graph runs on them at once. Larger ones become lazy
cubes, whose tiles (plus halo) read just their window when loaded: tiles start where the
files' blocks start, and each reading thread keeps the files it opened. With the files kept
open that costs about what reading them whole costs, at a fraction of the memory
(bench/tiled_reads.py). ``processes.tiling.evaluate_tiled`` evaluates the graph per tile on a
few threads (GDAL decoding and numpy arithmetic release the GIL), combines the partial results
of global processes and mosaics the result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from openeo_airflow.compiler.plan import Plan
from openeo_airflow.engine import stages
from openeo_airflow.engine.loadplan import LoadPlan
from openeo_airflow.engine.measure import Measurement, meter, sum_usage
from openeo_airflow.engine.workspace import JobWorkspace
from openeo_airflow.io.datasets import OpenDatasets
from openeo_airflow.io.store import index_window
from openeo_airflow.processes.graph import Resolver
from openeo_airflow.processes.tiling import evaluate_tiled, tiling_plan
from openeo_airflow.sizing.model import (
    STREAM_WHOLE_MB,
    read_threads,
    stream_read_tile,
    stream_tile_size,
    whole_read,
)

log = logging.getLogger(__name__)

READ_TILE = 2048  # the largest read tile without a sized tile (a synchronous request)


class _PlanArray(BackendArray):
    """The values of a load plan, read window by window when xarray indexes them."""

    def __init__(
        self,
        plan: LoadPlan,
        workers: int | None,
        usage: list[dict[str, Any]],
        datasets: OpenDatasets | None = None,
    ) -> None:
        self.plan = plan
        self.workers = workers
        self.datasets = datasets
        self.shape = plan.shape
        self.dtype = np.dtype(np.float32)
        self.usage = usage  # what the reads report, appended (atomic under the GIL)

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self._read
        )

    def _read(self, key: tuple[int | slice, ...]) -> np.ndarray:
        steps, bands, y, x = key
        top, height, pick_y = index_window(y, self.shape[2])
        left, width, pick_x = index_window(x, self.shape[3])
        if height == 0 or width == 0:
            empty = np.empty((*self.shape[:2], height, width), dtype=np.float32)
            return empty[steps, bands][..., pick_y, pick_x]
        values, usage = self.plan.read(
            self.plan.grid.window(top, left, height, width), self.workers, self.datasets
        )
        if usage:
            self.usage.append(usage)
        return values[steps, bands][..., pick_y, pick_x]


def lazy_source(
    plan: LoadPlan,
    workers: int | None = None,
    usage: list[dict[str, Any]] | None = None,
    datasets: OpenDatasets | None = None,
) -> xr.DataArray:
    """The cube ``plan`` loads, read only where it is indexed (and then, every time); what
    the reads report (Sentinel Hub processing units) is appended to ``usage``. The archive
    files stay open in ``datasets`` when given (its owner closes them)."""
    template = plan.empty_cube()
    usage = [] if usage is None else usage
    data = indexing.LazilyIndexedArray(_PlanArray(plan, workers, usage, datasets))
    return xr.DataArray(
        xr.Variable(template.dims, data), coords=template.coords, attrs=template.attrs
    )


def evaluate_streamed(
    plan: Plan,
    loads: Mapping[str, LoadPlan],
    *,
    workers: int,
    resolver: Resolver | None = None,
    whole_mb: float | None = None,
    tile_size: int | None = None,
    read_tile: int | None = None,
) -> tuple[Any, list[dict[str, Any]]]:
    """The graph's value, evaluated tile by tile on ``workers`` threads; also the usage the
    reads reported (Sentinel Hub processing units).

    Sources smaller than ``whole_mb`` together (by default ``sizing.model.whole_read``:
    ``STREAM_WHOLE_MB``, more with global processes) are read whole first, each file opened
    once, and the graph runs on the whole cube at once (``tile_size`` forces tiles of it; so
    do sources of ``STREAM_WHOLE_MB`` or more without global processes). Larger sources are read
    and evaluated per tile of ``read_tile`` px (by default ``read_tile_for(loads)``): each
    reading thread keeps the files open, and tiles start on the files' blocks."""
    shapes = [load.shape for load in loads.values()]
    input_mb = sum(float(np.prod(shape)) for shape in shapes) * 4 / 2**20
    usage: list[dict[str, Any]] = []
    global_nodes = bool(tiling_plan(plan.process_graph).global_nodes)
    whole = whole_read(input_mb, global_nodes) if whole_mb is None else input_mb < whole_mb
    _log_loads(loads, whole)
    if whole:
        sources = {}
        for node_id, load in loads.items():
            values, used = load.read(load.grid, read_threads(workers))
            sources[node_id] = load.empty_cube().copy(data=values)
            usage += [used] if used else []
        small = tile_size is None and input_mb < STREAM_WHOLE_MB
        if small or global_nodes:
            # In memory, global processes run best on the whole cube (their per-tile
            # partials are for sources that do not fit); and below STREAM_WHOLE_MB the
            # tiles' own cost outweighs what the second core gives.
            return stages.evaluate_plan(plan, sources, resolver), usage
        height = max((shape[2] for shape in shapes), default=0)
        width = max((shape[3] for shape in shapes), default=0)
        tile_size = tile_size or stream_tile_size(height, width, workers)
        return _evaluate_tiles(plan, sources, tile_size, workers, resolver), usage
    # The tiles are the parallel unit: each reads its window on one thread, and each thread
    # keeps the files it opened for its next tiles. Tiles cut where the files' blocks start
    # decode each block once (read_tile is a multiple of the block).
    read_tile = read_tile or read_tile_for(loads)
    origin = next(iter(loads.values())).block_origin() if loads else None
    with OpenDatasets() as datasets:
        sources = {n: lazy_source(load, 1, usage, datasets) for n, load in loads.items()}
        return _evaluate_tiles(plan, sources, read_tile, workers, resolver, origin), usage


def read_tile_for(loads: Mapping[str, LoadPlan], tile: int = READ_TILE) -> int:
    """The tile sources too large to read whole are read in: a block multiple of about
    ``STREAM_MIN_TILE`` px, at most ``tile`` (the sized one)."""
    block = max((load.stats.block_size for load in loads.values()), default=1)
    return stream_read_tile(block, tile)


def _evaluate_tiles(
    plan: Plan,
    sources: dict[str, xr.DataArray],
    tile_size: int,
    workers: int,
    resolver: Resolver | None,
    origin: tuple[float, float] | None = None,
) -> Any:
    return evaluate_tiled(
        plan.process_graph,
        sources,
        tile_size=tile_size,
        hooks={"save_result": stages.pass_data_on},
        resolver=resolver,
        workers=workers,
        origin=origin,
    )


def _log_loads(loads: Mapping[str, LoadPlan], whole: bool) -> None:
    for load in loads.values():
        t, b, h, w = load.shape
        log.info(
            "Loaded %s (node %s): t=%d, bands=%d, y=%d, x=%d, %s",
            load.collection_id,
            load.node_id,
            t,
            b,
            h,
            w,
            "read whole" if whole else "read tile by tile",
        )


def run_fused(workspace: JobWorkspace, workers: int, tile_size: int) -> Measurement:
    """A job's three stages in one task, tile by tile from the archive to the result in
    memory, then saved as the save stage does, without the intermediate store; sources too
    large to read whole are read per ``tile_size`` tile (the sized one)."""
    started = time.perf_counter()
    plan = workspace.read_plan()
    loads = {
        s.node_id: LoadPlan.from_dict(workspace.read_json(workspace.load_plan_file(s.node_id)))
        for s in plan.sources
    }
    tiling = tiling_plan(plan.process_graph)
    with meter() as measured:
        result, usage = evaluate_streamed(
            plan,
            loads,
            workers=workers,
            resolver=workspace.resolver(),
            read_tile=read_tile_for(loads, tile_size),
        )
        if not isinstance(result, xr.DataArray):
            result = xr.DataArray(np.asarray(result, dtype="float32"))
        measured.megapixels = sum(float(np.prod(load.shape)) for load in loads.values()) / 1e6
        files = stages.run_save(plan, workspace, result)
    measured.seconds = time.perf_counter() - started
    measured.extra = {
        "fused": True,
        "streamed": True,
        "workers": workers,
        "halo": tiling.halo,
        "global_nodes": len(tiling.global_nodes),
        "files": [f.name for f in files],
    }
    if usage:
        measured.extra["usage"] = sum_usage(usage)
    return measured
