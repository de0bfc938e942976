"""The load and transform stages as tile-parallel work, the same code for every engine.

A stage is a driver part (prepare, then assemble and publish) around a list of tile
descriptors (small JSON dicts) that a *mapper* runs: the inline engine maps them in process,
the Spark engines with ``SparkContext.parallelize(...).map(...)``. Tile functions are module
level, take one descriptor and return its ``Measurement`` as a dict, so Spark can ship them.

- load: each tile reads its window of every time step and writes it into the source's Zarr
  cube; tiles are aligned to the cube's chunks, so they write disjoint chunks in parallel.
- transform, for graphs whose processes are all local in space (a halo is fine): each tile
  evaluates the whole graph on its sources cut to the tile plus halo, and writes its piece to
  its own small Zarr; the driver then copies the pieces into the result cube one by one
  (tiles follow the CRS-anchored tiling of ``processes.tiling``, whose edges need not fall on
  chunk edges). Graphs with global processes (aggregate_spatial, ...), or whose result is not
  a raster on the source grid, run on the driver over the whole cube, as before.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from openeo_airflow.compiler.plan import Plan
from openeo_airflow.cube import cube_resolution, make_cube
from openeo_airflow.engine import stages
from openeo_airflow.engine.loadplan import LoadPlan
from openeo_airflow.engine.measure import Measurement, combine, meter, sum_usage
from openeo_airflow.engine.workspace import JobWorkspace
from openeo_airflow.io.grid import tiles as grid_tiles
from openeo_airflow.io.store import create_cube, open_cube, publish, read_cube, write_cube
from openeo_airflow.io.store import write_tile as store_write_tile
from openeo_airflow.processes.graph import Resolver
from openeo_airflow.processes.tiling import (
    Tile,
    evaluate_tiled,
    is_raster,
    tile_partial,
    tiling_plan,
)
from openeo_airflow.processes.tiling import tiles as crs_tiles

log = logging.getLogger(__name__)

Descriptor = dict[str, Any]
TileFn = Callable[[Descriptor], dict[str, Any]]
Mapper = Callable[[TileFn, list[Descriptor]], list[dict[str, Any]]]


def inline_mapper(fn: TileFn, descriptors: list[Descriptor]) -> list[dict[str, Any]]:
    return [fn(d) for d in descriptors]


# --- load -----------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _load_plan(path: str) -> LoadPlan:
    """One parse per worker process and source (every tile of a source needs the same plan)."""
    return LoadPlan.from_dict(json.loads(Path(path).read_text()))


def load_tile(descriptor: Descriptor) -> dict[str, Any]:
    """Read one tile of a source (every time step and band) into the staged cube."""
    plan = _load_plan(descriptor["plan"])
    row, col, height, width = descriptor["window"]
    grid = plan.grid.window(row, col, height, width)
    with meter() as measured:
        values, usage = plan.read(grid)
        store_write_tile(
            Path(descriptor["store"]), slice(row, row + height), slice(col, col + width), values
        )
        measured.megapixels = values.size / 1e6
        del values
    if usage:
        measured.extra = {"usage": usage}
    return measured.to_dict()


def run_load(workspace: JobWorkspace, node_id: str, tile_size: int, mapper: Mapper) -> Measurement:
    started = time.perf_counter()
    plan_file = workspace.load_plan_file(node_id)
    plan = LoadPlan.from_dict(workspace.read_json(plan_file))
    target = workspace.source_cube(node_id)
    staged = create_cube(_empty_source(plan), workspace.staging(target), tile_size)
    try:
        descriptors = [
            {
                "plan": str(plan_file),
                "store": str(staged),
                "window": [t.row, t.col, t.grid.height, t.grid.width],
            }
            for t in grid_tiles(plan.grid, tile_size)
        ]
        parts = mapper(load_tile, descriptors) if plan.shape[0] else []
        publish(staged, target)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    t, b, h, w = plan.shape
    log.info(
        "Loaded %s (node %s): t=%d, bands=%d, y=%d, x=%d in %d tile(s)",
        plan.collection_id,
        node_id,
        t,
        b,
        h,
        w,
        len(parts),
    )
    measured = [Measurement.from_dict(p) for p in parts]
    total = combine(measured, time.perf_counter() - started)
    usage = sum_usage(m.extra.get("usage") for m in measured)
    if usage:
        total.extra = {"usage": usage}
    return total


def _empty_source(plan: LoadPlan) -> xr.DataArray:
    t, b, h, w = plan.shape
    cube = make_cube(
        np.broadcast_to(np.float32(np.nan), (t, b, h, w)),
        times=np.array([np.datetime64(day.isoformat(), "ns") for day, _ in plan.steps]),
        bands=plan.band_names,
        transform=plan.grid.transform,
        crs=plan.grid.crs.to_wkt(),
    )
    cube.attrs.update(plan.attrs)
    return cube


# --- transform ------------------------------------------------------------------------------------


def _resolver(workspace: JobWorkspace) -> Resolver:
    path = workspace.user_processes_file
    processes: dict[str, Any] = workspace.read_json(path) if path.exists() else {}

    def resolve(process_id: str, namespace: str | None) -> Mapping[str, Any] | None:
        return processes.get(process_id) if namespace in (None, "user") else None

    return resolve


def transform_tile(descriptor: Descriptor) -> dict[str, Any]:
    """Evaluate the graph on one tile (plus halo) and store the tile's piece of the result."""
    workspace = JobWorkspace(Path(descriptor["workspace"]))
    plan = workspace.read_plan()
    tile = Tile(*descriptor["bounds"])
    halo = int(descriptor["halo"])
    with meter() as measured:
        sources = {}
        for source in plan.sources:
            cube = open_cube(workspace.source_cube(source.node_id))
            margin = halo * max(cube_resolution(cube)) if is_raster(cube) else 0.0
            sources[source.node_id] = tile.crop(cube, margin).load()
        measured.megapixels = sum(c.size for c in sources.values()) / 1e6
        value = stages.evaluate_plan(plan, sources, _resolver(workspace))
        raster = is_raster(value)
        if raster:
            write_cube(tile.crop(value), Path(descriptor["piece"]), tile=1 << 30)
        del sources, value
    return {**measured.to_dict(), "extra": {"raster": raster}}


def run_transform(workspace: JobWorkspace, tile_size: int, mapper: Mapper) -> Measurement:
    started = time.perf_counter()
    plan = workspace.read_plan()
    tiling = tiling_plan(plan.process_graph)
    grid = next(
        (c for s in plan.sources if is_raster(c := open_cube(workspace.source_cube(s.node_id)))),
        None,
    )
    if grid is not None and tile_size >= max(grid.sizes["y"], grid.sizes["x"]):
        return _run_in_one(workspace, plan, started)
    if tiling.global_nodes or grid is None:
        return _run_whole(
            workspace, plan, tile_size, started, "the graph has global processes", mapper
        )
    size = -(-tile_size // tiling.align) * tiling.align
    rows = crs_tiles(grid, size)
    pieces_dir = workspace.root / "intermediate" / "pieces"
    shutil.rmtree(pieces_dir, ignore_errors=True)
    descriptors = [
        {
            "workspace": str(workspace.root),
            "bounds": [tile.left, tile.right, tile.bottom, tile.top],
            "halo": tiling.halo,
            "piece": str(pieces_dir / f"{r}-{c}.zarr"),
        }
        for r, row in enumerate(rows)
        for c, tile in enumerate(row)
    ]
    try:
        parts = [Measurement.from_dict(p) for p in mapper(transform_tile, descriptors)]
        if not all(p.extra.get("raster") for p in parts):
            return _run_whole(workspace, plan, tile_size, started, "the result is not a raster")
        with meter() as assembling:
            done = _assemble(workspace, grid, descriptors, size)
        if not done:
            return _run_whole(
                workspace, plan, tile_size, started, "the result is not on the source grid"
            )
    finally:
        shutil.rmtree(pieces_dir, ignore_errors=True)
    log.info("Transformed in %d tile(s) of %d px (halo %d)", len(parts), size, tiling.halo)
    total = combine([*parts, assembling], time.perf_counter() - started)
    total.extra = {"tiles": len(parts), "assemble_seconds": round(assembling.seconds, 3)}
    return total


def _assemble(
    workspace: JobWorkspace, grid: xr.DataArray, descriptors: list[Descriptor], size: int
) -> bool:
    """Copy the tiles' pieces into the result cube (one at a time: pieces may share chunks).
    ``False`` when the pieces are not the source grid cut into tiles."""
    pieces = [open_cube(Path(d["piece"])) for d in descriptors]
    first = pieces[0]
    x, y = grid.x.values, grid.y.values
    windows = []
    for descriptor, piece in zip(descriptors, pieces, strict=True):
        left, right, bottom, top = descriptor["bounds"]
        cols = np.flatnonzero((x >= left) & (x < right))
        rows = np.flatnonzero((y >= bottom) & (y < top))
        same_grid = (
            piece.dims == first.dims
            and piece.sizes["x"] == cols.size
            and piece.sizes["y"] == rows.size
            and all(piece.sizes[d] == first.sizes[d] for d in piece.dims if d not in ("x", "y"))
            and np.allclose(piece.x.values, x[cols])
            and np.allclose(piece.y.values, y[rows])
        )
        if not same_grid:
            return False
        windows.append((slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)))
    coords = {
        name: coord for name, coord in first.coords.items() if not ({"x", "y"} & set(coord.dims))
    }
    template = xr.DataArray(
        np.broadcast_to(np.zeros((), first.dtype), _full_shape(first, y.size, x.size)),
        dims=first.dims,
        coords={**coords, "x": x, "y": y},
        attrs=first.attrs,
        name=first.name,
    )
    target = workspace.result_cube
    staged = create_cube(template, workspace.staging(target), size)
    try:
        for piece, (rows_slice, cols_slice) in zip(pieces, windows, strict=True):
            store_write_tile(staged, rows_slice, cols_slice, piece.values)
        publish(staged, target)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return True


def _full_shape(piece: xr.DataArray, height: int, width: int) -> tuple[int, ...]:
    return tuple(height if d == "y" else width if d == "x" else piece.sizes[d] for d in piece.dims)


def _run_in_one(workspace: JobWorkspace, plan: Plan, started: float) -> Measurement:
    """The whole extent fits one tile: evaluate it at once (no pieces to assemble)."""
    with meter() as measured:
        cubes = {s.node_id: read_cube(workspace.source_cube(s.node_id)) for s in plan.sources}
        measured.megapixels = sum(c.size for c in cubes.values()) / 1e6
        write_cube(stages.transform(plan, cubes, _resolver(workspace)), workspace.result_cube)
    measured.seconds = time.perf_counter() - started
    measured.extra = {"tiles": 1}
    return measured


def partial_tile(descriptor: Descriptor) -> dict[str, Any]:
    """One tile's partial result of a global process (e.g. the pixels under each polygon for
    aggregate_spatial), computed from the stored sources; the driver combines them."""
    workspace = JobWorkspace(Path(descriptor["workspace"]))
    plan = workspace.read_plan()
    with meter() as measured:
        cubes = {s.node_id: open_cube(workspace.source_cube(s.node_id)) for s in plan.sources}
        partial = tile_partial(
            plan.process_graph,
            cubes,
            descriptor["node"],
            Tile(*descriptor["bounds"]),
            tile_size=int(descriptor["tile_size"]),
            hooks={"save_result": stages.pass_data_on},
            resolver=_resolver(workspace),
        )
    return {**measured.to_dict(), "partial": partial}


def _run_whole(
    workspace: JobWorkspace,
    plan: Plan,
    tile_size: int,
    started: float,
    why: str,
    mapper: Mapper = inline_mapper,
) -> Measurement:
    """The transform driven from this stage's driver, for graphs the tiles cannot run alone
    (global processes, results off the source grid). Still tile by tile: sources stay on disk
    and are read per tile; the per-tile partial results of global processes (e.g. the pixels
    under each polygon for aggregate_spatial) are computed by the mapper (Spark tasks) and
    combined here, so memory follows the partials and one tile rather than the whole input."""
    log.info("Transform combines per-tile results on this stage's driver: %s", why)
    parts: list[Measurement] = []

    def map_partials(node_id: str, tiles: list[Tile]) -> list[Any]:
        descriptors = [
            {
                "workspace": str(workspace.root),
                "node": node_id,
                "bounds": [t.left, t.right, t.bottom, t.top],
                "tile_size": tile_size,
            }
            for t in tiles
        ]
        results = mapper(partial_tile, descriptors)
        parts.extend(Measurement.from_dict(r) for r in results)
        return [r["partial"] for r in results]

    with meter() as measured:
        cubes = {s.node_id: open_cube(workspace.source_cube(s.node_id)) for s in plan.sources}
        measured.megapixels = sum(c.size for c in cubes.values()) / 1e6
        result = evaluate_tiled(
            plan.process_graph,
            cubes,
            tile_size=tile_size,
            hooks={"save_result": stages.pass_data_on},
            resolver=_resolver(workspace),
            # inline, the tiles would run in this process anyway: no need to reopen sources
            map_partials=None if mapper is inline_mapper else map_partials,
        )
        if not isinstance(result, xr.DataArray):
            result = xr.DataArray(np.asarray(result, dtype="float32"))
        write_cube(result, workspace.result_cube)
    total = combine([measured, *parts], time.perf_counter() - started)
    total.megapixels = measured.megapixels
    total.extra = {"tiles": 0, "driver": why, "partial_tiles": len(parts)}
    return total


# --- fused ----------------------------------------------------------------------------------------


def run_fused(workspace: JobWorkspace) -> Measurement:
    """A small job's three stages in one process and in memory, for jobs the sizing fuses: each
    source read whole through its load plan (the loader the tiles use), the graph evaluated
    as the single-tile transform does, the result saved as the save stage does, without the
    intermediate store."""
    started = time.perf_counter()
    plan = workspace.read_plan()
    usage: list[dict[str, Any]] = []
    with meter() as measured:
        cubes = {}
        for source in plan.sources:
            load_plan = LoadPlan.from_dict(
                workspace.read_json(workspace.load_plan_file(source.node_id))
            )
            values, used = load_plan.read(load_plan.grid)
            cubes[source.node_id] = _empty_source(load_plan).copy(data=values)
            usage.append(used)
            t, b, h, w = load_plan.shape
            log.info(
                "Loaded %s (node %s): t=%d, bands=%d, y=%d, x=%d, in memory",
                load_plan.collection_id,
                source.node_id,
                t,
                b,
                h,
                w,
            )
        measured.megapixels = sum(c.size for c in cubes.values()) / 1e6
        result = stages.transform(plan, cubes, _resolver(workspace))
        del cubes
        files = stages.run_save(plan, workspace, result)
    measured.seconds = time.perf_counter() - started
    measured.extra = {"tiles": 1, "fused": True, "files": [f.name for f in files]}
    if any(usage):
        measured.extra["usage"] = sum_usage(usage)
    return measured


# --- save -----------------------------------------------------------------------------------------


def run_save(workspace: JobWorkspace) -> Measurement:
    with meter() as measured:
        files = stages.run_save(workspace.read_plan(), workspace)
    measured.extra = {"files": [f.name for f in files]}
    return measured
