"""The load and transform stages as tile-parallel work, the same code for every engine.

A stage is a driver part (prepare, then assemble and publish) around a list of tile
descriptors (small JSON dicts) that a *mapper* runs: the inline engine maps them on the
worker's threads (``ThreadMapper``), the Spark engines with
``SparkContext.parallelize(...).map(...)``. Tile functions are module level, take one
descriptor and return its ``Measurement`` as a dict, so Spark can ship them.

- load: each tile reads its window of every time step and writes it into the source's cube in
  the intermediate store (``io.store``); windows are disjoint, so tiles write in parallel.
- transform, for graphs whose processes are all local in space (a halo is fine): tiles are cut
  from the cube's first pixel; the driver evaluates the graph on a corner of a few pixels to learn
  the result's shape and creates the result cube, then each tile evaluates the whole graph on
  its sources cut to the tile plus halo and writes its piece straight into the result's
  window. When the graph's alignment (``apply_neighborhood`` chunks) rules that grid out,
  tiles follow the CRS-anchored tiling of ``processes.tiling``, write pieces of their own,
  and the driver copies them into the result one by one. Graphs with
  global processes (aggregate_spatial, ...), or whose result is not a raster on the source
  grid, run on the driver over the whole cube, as before.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from openeo_airflow.compiler.plan import Plan
from openeo_airflow.core.memory import reuse_freed_memory
from openeo_airflow.cube import cube_resolution
from openeo_airflow.engine import stages
from openeo_airflow.engine.loadplan import LoadPlan
from openeo_airflow.engine.measure import Measurement, combine, meter, sum_usage
from openeo_airflow.engine.workspace import JobWorkspace
from openeo_airflow.io.grid import Tile as GridTile
from openeo_airflow.io.grid import tiles as grid_tiles
from openeo_airflow.io.store import (
    TileWriter,
    create_cube,
    cube_sizes,
    open_cube,
    publish,
    read_cube,
    write_cube,
)
from openeo_airflow.io.store import write_tile as store_write_tile
from openeo_airflow.processes.tiling import (
    Tile,
    TilingPlan,
    evaluate_tiled,
    is_raster,
    tile_partial,
    tiling_plan,
)
from openeo_airflow.processes.tiling import tiles as crs_tiles
from openeo_airflow.sizing.model import read_threads

log = logging.getLogger(__name__)

Descriptor = dict[str, Any]
TileFn = Callable[[Descriptor], dict[str, Any]]
Mapper = Callable[[TileFn, list[Descriptor]], list[dict[str, Any]]]


def inline_mapper(fn: TileFn, descriptors: list[Descriptor]) -> list[dict[str, Any]]:
    return [fn(d) for d in descriptors]


@dataclass(frozen=True)
class ThreadMapper:
    """Tiles on ``workers`` threads of this process (the inline engine on a multi-core
    worker). Safe because tiles never share a window they write (load tiles cut the cube,
    transform tiles write their own pieces), each reading thread opens its own GDAL
    environment (``io.reader``), and numpy and GDAL release the GIL."""

    workers: int

    def __call__(self, fn: TileFn, descriptors: list[Descriptor]) -> list[dict[str, Any]]:
        workers = min(self.workers, len(descriptors))
        if workers <= 1:
            return inline_mapper(fn, descriptors)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tile") as pool:
            return list(pool.map(fn, descriptors))


def _side_by_side(mapper: Mapper, tiles: int) -> bool:
    """Whether the mapper runs several of ``tiles`` at once on this process's threads."""
    return isinstance(mapper, ThreadMapper) and mapper.workers > 1 and tiles > 1


# --- load -----------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _load_plan(path: str) -> LoadPlan:
    """One parse per worker process and source (every tile of a source needs the same plan)."""
    return LoadPlan.from_dict(json.loads(Path(path).read_text()))


def load_tile(descriptor: Descriptor) -> dict[str, Any]:
    """Read one tile of a source (every time step and band) into the staged cube, each
    window as the reader finishes it: the tile's cube is never held whole."""
    reuse_freed_memory()
    plan = _load_plan(descriptor["plan"])
    row, col, height, width = descriptor["window"]
    grid = plan.grid.window(row, col, height, width)
    steps, bands = plan.shape[:2]
    with meter() as measured, TileWriter(Path(descriptor["store"])) as writer:

        def write(step: int, band: int, tile: GridTile, values: np.ndarray) -> None:
            top, left = row + tile.row, col + tile.col
            rows = slice(top, top + tile.grid.height)
            cols = slice(left, left + tile.grid.width)
            writer.write(rows, cols, values, first_plane=step * bands + band)

        usage = plan.stream(grid, write, descriptor.get("read_workers"))
        measured.megapixels = steps * bands * height * width / 1e6
    if usage:
        measured.extra = {"usage": usage}
    return measured.to_dict()


def _read_workers(mapper: Mapper, tiles: int) -> int | None:
    """Reading threads per tile (``sizing.model.read_threads``): one when several tiles run
    at once (on this worker's threads, or as Spark tasks on the executors' cores), else the
    worker's cores (``None``: the reader's default, from the machine's)."""
    if isinstance(mapper, ThreadMapper):
        return read_threads(mapper.workers, tiles)
    spark = mapper is not inline_mapper
    return 1 if spark and tiles > 1 else None


def run_load(workspace: JobWorkspace, node_id: str, tile_size: int, mapper: Mapper) -> Measurement:
    started = time.perf_counter()
    plan_file = workspace.load_plan_file(node_id)
    plan = LoadPlan.from_dict(workspace.read_json(plan_file))
    target = workspace.source_cube(node_id)
    staged = create_cube(plan.empty_cube(), workspace.staging(target))
    try:
        windows = [
            (t.row, t.col, t.grid.height, t.grid.width) for t in grid_tiles(plan.grid, tile_size)
        ]
        descriptors = [
            {
                "plan": str(plan_file),
                "store": str(staged),
                "window": list(window),
                "read_workers": _read_workers(mapper, len(windows)),
            }
            for window in windows
        ]
        parts, mapping = _map_tiles(mapper, load_tile, descriptors if plan.shape[0] else [])
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
    total = _stage_total(parts, mapping, mapper, started)
    usage = sum_usage(p.extra.get("usage") for p in parts)
    if usage:
        total.extra = {"usage": usage}
    return total


# --- transform ------------------------------------------------------------------------------------


def _tile_sources(
    workspace: JobWorkspace, plan: Plan, tile: Tile, halo: int
) -> dict[str, xr.DataArray]:
    """The stored sources cut to ``tile`` plus ``halo`` pixels, in memory."""
    sources = {}
    for source in plan.sources:
        cube = open_cube(workspace.source_cube(source.node_id))
        margin = halo * max(cube_resolution(cube)) if is_raster(cube) else 0.0
        sources[source.node_id] = tile.crop(cube, margin).load()
    return sources


def transform_tile(descriptor: Descriptor) -> dict[str, Any]:
    """Evaluate the graph on one tile (plus halo) and write the tile's piece of the result:
    into its ``window`` of the ``result`` cube, or else into a ``piece`` cube of its own.
    ``fits`` is false (nothing written) when the piece is not a raster on the result's grid."""
    reuse_freed_memory()
    workspace = JobWorkspace(Path(descriptor["workspace"]))
    plan = workspace.read_plan()
    tile = Tile(*descriptor["bounds"])
    with meter() as measured:
        sources = _tile_sources(workspace, plan, tile, int(descriptor["halo"]))
        measured.megapixels = sum(c.size for c in sources.values()) / 1e6
        value = stages.evaluate_plan(plan, sources, workspace.resolver())
        fits = is_raster(value)
        if fits and "result" in descriptor:
            fits = _write_piece(Path(descriptor["result"]), descriptor["window"], tile.crop(value))
        elif fits:
            write_cube(tile.crop(value), Path(descriptor["piece"]))
        del sources, value
    return {**measured.to_dict(), "extra": {"fits": fits}}


def _write_piece(result: Path, window: list[int], piece: xr.DataArray) -> bool:
    """Write ``piece`` at ``window`` (top row, left column) of the ``result`` cube, a window
    no other tile writes; ``False`` when it is not that cube's grid there."""
    row, col = window
    cube = open_cube(result)
    rows, cols = (
        slice(row, row + piece.sizes.get("y", 0)),
        slice(col, col + piece.sizes.get("x", 0)),
    )
    if not _same_grid(piece, cube.isel(y=rows, x=cols)):
        return False
    store_write_tile(result, rows, cols, piece.values)
    return True


def _same_grid(piece: xr.DataArray, expected: xr.DataArray) -> bool:
    """Same dimensions, shape, type and labels (coordinates within rounding in x and y)."""
    if piece.dims != expected.dims or piece.shape != expected.shape:
        return False
    if piece.dtype != expected.dtype:
        return False
    for dim in piece.dims:
        a, b = piece[dim].values, expected[dim].values
        if not (np.allclose(a, b) if dim in ("x", "y") else np.array_equal(a, b)):
            return False
    return True


def _raster_source(workspace: JobWorkspace, plan: Plan) -> tuple[Path, dict[str, int]] | None:
    """The first stored source that is a raster: its path and sizes (the sizes decide whether
    to tile; building the cube, coordinates and all, waits until it does)."""
    for source in plan.sources:
        path = workspace.source_cube(source.node_id)
        sizes = cube_sizes(path)
        if {"y", "x"} <= set(sizes):
            return path, sizes
    return None


def run_transform(workspace: JobWorkspace, tile_size: int, mapper: Mapper) -> Measurement:
    started = time.perf_counter()
    plan = workspace.read_plan()
    tiling = tiling_plan(plan.process_graph)
    raster = _raster_source(workspace, plan)
    if raster is not None and tile_size >= max(raster[1]["y"], raster[1]["x"]):
        return _run_in_one(workspace, plan, started)
    if tiling.global_nodes or raster is None:
        return _run_whole(
            workspace, plan, tile_size, started, "the graph has global processes", mapper
        )
    grid = open_cube(raster[0])
    size = -(-tile_size // tiling.align) * tiling.align
    rows = chunk_tiles(grid, size, tiling.align)
    if rows is None:
        return _run_pieces(workspace, plan, grid, size, tile_size, started, mapper)
    with meter() as probing:
        template = _result_template(workspace, plan, grid, rows[0][0], tiling)
    if template is None:
        return _run_whole(
            workspace, plan, tile_size, started, "the result is not a raster on the source grid"
        )
    target = workspace.result_cube
    staged = create_cube(template, workspace.staging(target))
    descriptors = [
        {
            "workspace": str(workspace.root),
            "bounds": [tile.left, tile.right, tile.bottom, tile.top],
            "halo": tiling.halo,
            "result": str(staged),
            "window": [r * size, c * size],
        }
        for r, row in enumerate(rows)
        for c, tile in enumerate(row)
    ]
    try:
        parts, mapping = _map_tiles(mapper, transform_tile, descriptors)
        if not all(p.extra.get("fits") for p in parts):
            return _run_whole(
                workspace, plan, tile_size, started, "the tiles' results differ in shape"
            )
        publish(staged, target)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    log.info("Transformed in %d tile(s) of %d px (halo %d)", len(parts), size, tiling.halo)
    total = _stage_total(parts, mapping, mapper, started, probing)
    total.extra = {"tiles": len(parts), "probe_seconds": round(probing.seconds, 3)}
    return total


def chunk_tiles(grid: xr.DataArray, size: int, align: int) -> list[list[Tile]] | None:
    """Rows (top to bottom) of ``size`` px tiles from the cube's first pixel, so that tiles cut
    the sources and the result into disjoint windows. ``None`` when the cube's first pixel is
    off the CRS grid's multiples of ``align``: the graph's neighbourhood chunks
    (``apply_neighborhood``) would cross tiles."""
    xres, yres = cube_resolution(grid)
    left, top = float(grid.x[0]) - xres / 2, float(grid.y[0]) + yres / 2
    if align > 1 and (round(left / xres) % align or round(top / yres) % align):
        return None
    step_x, step_y = size * xres, size * yres
    return [
        [
            Tile(
                left + c * step_x, left + (c + 1) * step_x, top - (r + 1) * step_y, top - r * step_y
            )
            for c in range(-(-grid.sizes["x"] // size))
        ]
        for r in range(-(-grid.sizes["y"] // size))
    ]


def _result_template(
    workspace: JobWorkspace, plan: Plan, grid: xr.DataArray, first: Tile, tiling: TilingPlan
) -> xr.DataArray | None:
    """The result cube's dimensions, labels and type (its values are never read), from the
    graph evaluated on the first ``align`` x ``align`` pixels (plus the halo), so the tiles
    can write into one cube; ``None`` when the result is not a raster on the source grid."""
    xres, yres = cube_resolution(grid)
    corner = Tile(
        first.left, first.left + tiling.align * xres, first.top - tiling.align * yres, first.top
    )
    sources = _tile_sources(workspace, plan, corner, tiling.halo)
    value = stages.evaluate_plan(plan, sources, workspace.resolver())
    if not is_raster(value):
        return None
    piece, expected = corner.crop(value), corner.crop(grid)
    if piece.sizes["x"] != expected.sizes["x"] or piece.sizes["y"] != expected.sizes["y"]:
        return None
    if not (np.allclose(piece.x, expected.x) and np.allclose(piece.y, expected.y)):
        return None
    return _template(piece, grid)


def _template(piece: xr.DataArray, grid: xr.DataArray) -> xr.DataArray:
    """A cube like ``piece`` over the whole of ``grid`` (values never read)."""
    x, y = grid.x.values, grid.y.values
    coords = {
        name: coord for name, coord in piece.coords.items() if not ({"x", "y"} & set(coord.dims))
    }
    shape = tuple(
        y.size if d == "y" else x.size if d == "x" else piece.sizes[d] for d in piece.dims
    )
    return xr.DataArray(
        np.broadcast_to(np.zeros((), piece.dtype), shape),
        dims=piece.dims,
        coords={**coords, "x": x, "y": y},
        attrs=piece.attrs,
        name=piece.name,
    )


def _map_tiles(
    mapper: Mapper, fn: TileFn, descriptors: list[Descriptor]
) -> tuple[list[Measurement], Measurement]:
    """The tiles' measurements, and the mapping's own as this process saw it."""
    with meter() as mapping:
        parts = [Measurement.from_dict(p) for p in mapper(fn, descriptors)]
    return parts, mapping


def _stage_total(
    tiles: list[Measurement],
    mapping: Measurement,
    mapper: Mapper,
    started: float,
    driver: Measurement | None = None,
) -> Measurement:
    """A stage's measurement from its tiles and the ``driver``'s own work beside them."""
    if _side_by_side(mapper, len(tiles)):
        # Tiles ran side by side in this process: each tile's CPU time and memory peak (the
        # process's) include the others', so the mapping's own figures count, once.
        megapixels = sum(t.megapixels for t in tiles)
        tiles = [dataclasses.replace(mapping, megapixels=megapixels, pieces=len(tiles))]
    return combine([*tiles, *([driver] if driver else [])], time.perf_counter() - started)


def _run_pieces(
    workspace: JobWorkspace,
    plan: Plan,
    grid: xr.DataArray,
    size: int,
    tile_size: int,
    started: float,
    mapper: Mapper,
) -> Measurement:
    """Tiles anchored at the CRS grid (``processes.tiling``) when the cube's first pixel is
    not: each tile writes its own piece, which the driver copies into the result cube one at
    a time."""
    tiling = tiling_plan(plan.process_graph)
    pieces_dir = workspace.intermediate_dir / "pieces"
    shutil.rmtree(pieces_dir, ignore_errors=True)
    descriptors = [
        {
            "workspace": str(workspace.root),
            "bounds": [tile.left, tile.right, tile.bottom, tile.top],
            "halo": tiling.halo,
            "piece": str(pieces_dir / f"{r}-{c}.cube"),
        }
        for r, row in enumerate(crs_tiles(grid, size))
        for c, tile in enumerate(row)
    ]
    try:
        parts, mapping = _map_tiles(mapper, transform_tile, descriptors)
        if not all(p.extra.get("fits") for p in parts):
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
    total = _stage_total(parts, mapping, mapper, started, assembling)
    total.extra = {"tiles": len(parts), "assemble_seconds": round(assembling.seconds, 3)}
    return total


def _assemble(
    workspace: JobWorkspace, grid: xr.DataArray, descriptors: list[Descriptor], size: int
) -> bool:
    """Copy the tiles' pieces into the result cube, one at a time.
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
    target = workspace.result_cube
    staged = create_cube(_template(first, grid), workspace.staging(target))
    try:
        for piece, (rows_slice, cols_slice) in zip(pieces, windows, strict=True):
            store_write_tile(staged, rows_slice, cols_slice, piece.values)
        publish(staged, target)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return True


def _run_in_one(workspace: JobWorkspace, plan: Plan, started: float) -> Measurement:
    """The whole extent fits one tile: evaluate it at once (no pieces to assemble)."""
    with meter() as measured:
        cubes = {s.node_id: read_cube(workspace.source_cube(s.node_id)) for s in plan.sources}
        measured.megapixels = sum(c.size for c in cubes.values()) / 1e6
        write_cube(stages.transform(plan, cubes, workspace.resolver()), workspace.result_cube)
    measured.seconds = time.perf_counter() - started
    measured.extra = {"tiles": 1}
    return measured


def partial_tile(descriptor: Descriptor) -> dict[str, Any]:
    """One tile's partial result of a global process (e.g. the pixels under each polygon for
    aggregate_spatial), computed from the stored sources; the driver combines them."""
    reuse_freed_memory()
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
            resolver=workspace.resolver(),
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
            resolver=workspace.resolver(),
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


# --- save -----------------------------------------------------------------------------------------


def run_save(workspace: JobWorkspace) -> Measurement:
    with meter() as measured:
        files = stages.run_save(workspace.read_plan(), workspace)
    measured.extra = {"files": [f.name for f in files]}
    return measured
