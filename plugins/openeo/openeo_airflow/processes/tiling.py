"""Running a process graph tile by tile, using each process's space declaration (``space.py``).

``tiling_plan(graph)`` tells the engine what tiling a graph needs: the halo (the largest sum of
halos along a path from a source to the result), the alignment of tile sizes, and the nodes that
need the whole extent. ``evaluate_tiled(graph, sources, tile_size=...)`` runs a graph that way,
in process; it is the reference the engine's distributed execution must agree with, and the
test that tiled and untiled runs give the same result.

How it runs:

1. Tiles are squares of ``tile_size`` pixels on the grid of the first source, anchored at
   pixel index 0 of the CRS's grid (so neighbourhood chunks fall the same way in every tile),
   or at a given origin moved onto the chunks' grid (where the source files' blocks start).
2. Each global node upstream of the result, in graph order: its input is computed per tile
   (sources cut to the tile plus the halo its input needs), cut back to the tile, turned into a
   partial result (``Reduction.partial``), combined, and finished once. Without a declared
   reduction the partials are the tiles' inputs, mosaicked, and the process runs on the mosaic.
3. The result is computed per tile the same way (global nodes replaced by their value, cut to
   the tile when they are rasters) and mosaicked; a result that does not depend on any raster
   is computed once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from openeo_airflow.compiler.compile import split_process
from openeo_airflow.compiler.validate import node_references
from openeo_airflow.cube import cube_resolution

from . import registry
from .graph import Hook, Resolver, evaluate
from .space import LOCAL, NOT_LITERAL, Reduction, Space, resolve_space


def _literal(value: Any) -> Any:
    if isinstance(value, dict) and ("from_node" in value or "from_parameter" in value):
        return NOT_LITERAL
    if isinstance(value, dict) and "process_graph" not in value:
        return {k: _literal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal(v) for v in value]
    return value


def node_space(node: Mapping[str, Any]) -> Space:
    """The space declaration of one node (local for processes we do not know)."""
    entry = registry.entry(str(node.get("process_id")))
    if entry is None:
        return LOCAL
    literal = {k: _literal(v) for k, v in (node.get("arguments") or {}).items()}
    return resolve_space(entry.space, literal)


@dataclass(frozen=True)
class TilingPlan:
    """``halo``: pixels to read around each tile; ``align``: tile sizes must be a multiple of
    it; ``global_nodes``: nodes that need the whole extent, in evaluation order."""

    halo: int
    align: int
    global_nodes: list[str]
    spaces: dict[str, Space]


def _inputs(graph: Mapping[str, Any], node_id: str) -> list[str]:
    return [r for r in node_references(graph[node_id].get("arguments") or {}) if r in graph]


def _upstream(
    graph: Mapping[str, Any], target: str, stop: frozenset[str] = frozenset()
) -> list[str]:
    """Nodes ``target`` depends on (itself included), each after its inputs; the inputs of
    ``stop`` nodes (values already known) are not followed."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(node_id: str) -> None:
        if node_id in seen or node_id not in graph:
            return
        seen.add(node_id)
        if node_id == target or node_id not in stop:
            for ref in _inputs(graph, node_id):
                visit(ref)
        order.append(node_id)

    visit(target)
    return order


def _own_halo(space: Space) -> int:
    return space.halo if space.kind == "halo" else 0


def _margin(
    graph: Mapping[str, Any], spaces: Mapping[str, Space], target: str, stop: frozenset[str]
) -> int:
    """Pixels to read around a tile so that ``target`` is exact on the tile itself: a node's
    input needs the node's own halo more than the node's output needs."""
    order = _upstream(graph, target, stop)
    need = {target: 0}
    for node_id in reversed(order):  # every consumer before its inputs
        if node_id in stop and node_id != target:
            continue
        required = need.get(node_id, 0) + _own_halo(spaces.get(node_id, LOCAL))
        for ref in _inputs(graph, node_id):
            need[ref] = max(need.get(ref, 0), required)
    return max(need.values(), default=0)


def tiling_plan(process_graph: Mapping[str, Any]) -> TilingPlan:
    graph, _ = split_process(process_graph)
    result = next(k for k, n in graph.items() if n.get("result") is True)
    order = _upstream(graph, result)
    spaces = {node_id: node_space(graph[node_id]) for node_id in order}
    global_nodes = [n for n in order if spaces[n].is_global]
    halo = _margin(graph, spaces, result, frozenset(global_nodes))
    for node_id in global_nodes:
        halo = max(halo, _margin(graph, spaces, node_id, frozenset(global_nodes)))
    align = 1
    for space in spaces.values():
        align = align * space.align // math.gcd(align, space.align)
    return TilingPlan(halo=halo, align=align, global_nodes=global_nodes, spaces=spaces)


# --- tiles ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    """A tile's bounds in CRS units: ``x`` from left to right, ``y`` from bottom to top."""

    left: float
    right: float
    bottom: float
    top: float

    def crop(self, cube: xr.DataArray, margin: float = 0.0) -> xr.DataArray:
        """The pixels of ``cube`` whose centre is in the tile widened by ``margin``."""
        x, y = cube.x.values, cube.y.values
        keep_x = np.flatnonzero((x >= self.left - margin) & (x < self.right + margin))
        keep_y = np.flatnonzero((y >= self.bottom - margin) & (y < self.top + margin))
        return cube.isel(x=_as_slice(keep_x), y=_as_slice(keep_y))


def _as_slice(indices: np.ndarray) -> np.ndarray | slice:
    """A run of consecutive indices as a slice: a view of the cube instead of a copy, and a
    plain window for a lazily read source."""
    if indices.size and indices[-1] - indices[0] == indices.size - 1:
        return slice(int(indices[0]), int(indices[-1]) + 1)
    return indices


def is_raster(value: Any) -> bool:
    return isinstance(value, xr.DataArray) and {"x", "y"} <= set(value.dims)


def tiles(
    grid: xr.DataArray, tile_size: int, origin: tuple[float, float] = (0.0, 0.0)
) -> list[list[Tile]]:
    """Rows (top to bottom) of tiles covering ``grid``, anchored at ``origin`` (CRS units; by
    default the CRS grid's origin): tile edges fall ``tile_size`` pixels apart from there."""
    xres, yres = cube_resolution(grid)
    step_x, step_y = tile_size * xres, tile_size * yres
    shift_x, shift_y = origin[0] % step_x, origin[1] % step_y
    x, y = grid.x.values - shift_x, grid.y.values - shift_y
    if not x.size or not y.size:
        return []
    # By pixel centres, as ``Tile.crop`` cuts: an edge may fall inside a pixel (a grid whose
    # pixels do not start on the anchor), and that pixel goes to the tile holding its centre.
    first_col = math.floor(x.min() / step_x)
    last_col = math.floor(x.max() / step_x)
    first_row = math.floor(y.min() / step_y)
    last_row = math.floor(y.max() / step_y)
    rows = []
    for row in range(last_row, first_row - 1, -1):
        bottom = shift_y + row * step_y
        cells = []
        for col in range(first_col, last_col + 1):
            left = shift_x + col * step_x
            cells.append(Tile(left, left + step_x, bottom, bottom + step_y))
        rows.append(cells)
    return rows


def _anchor(
    origin: tuple[float, float] | None, align: int, resolution: tuple[float, float]
) -> tuple[float, float]:
    """``origin`` moved back onto the grid of the graph's alignment from the CRS origin (where
    neighbourhood chunks fall), so that tile edges fall on both."""
    if origin is None:
        return (0.0, 0.0)
    if align == 1:
        return origin
    (x, y), (xres, yres) = origin, resolution
    return x - x % (align * xres), y - y % (align * yres)


def mosaic(rows: list[list[xr.DataArray]]) -> xr.DataArray:
    """Tiles (rows top to bottom, each left to right) back into one cube."""
    strips = [xr.concat(row, dim="x", coords="minimal", compat="override") for row in rows]
    return xr.concat(strips, dim="y", coords="minimal", compat="override")


# --- tiled evaluation -----------------------------------------------------------------------------


PartialsMapper = Callable[[str, list["Tile"]], list[Any]]


class _TiledRun:
    def __init__(
        self,
        graph: dict[str, Any],
        sources: Mapping[str, Any],
        tile_size: int,
        hooks: Mapping[str, Hook],
        resolver: Resolver | None,
        arguments: dict[str, Any],
        map_partials: PartialsMapper | None = None,
        workers: int = 1,
        origin: tuple[float, float] | None = None,
    ) -> None:
        self.graph, self.hooks, self.resolver, self.arguments = graph, hooks, resolver, arguments
        self.map_partials = map_partials
        self.workers = workers
        self.sources = frozenset(sources)
        self.known: dict[str, Any] = dict(sources)
        self.plan = tiling_plan(graph)
        self.rows: list[list[Tile]] = []
        self.grid = next((v for v in sources.values() if is_raster(v)), None)
        if self.grid is not None:
            size = -(-max(tile_size, 1) // self.plan.align) * self.plan.align
            anchor = _anchor(origin, self.plan.align, cube_resolution(self.grid))
            self.rows = tiles(self.grid, size, anchor)

    def _map(self, fn: Callable[[Tile], Any], tiles: list[Tile]) -> list[Any]:
        """``fn`` on every tile, in order; on ``workers`` threads (numpy and GDAL release the
        GIL, so tiles overlap their reads and their arithmetic)."""
        if self.workers <= 1 or len(tiles) <= 1:
            return [fn(tile) for tile in tiles]
        with ThreadPoolExecutor(min(self.workers, len(tiles))) as pool:
            return list(pool.map(fn, tiles))

    def _graph_for(self, target: str, stop: frozenset[str]) -> dict[str, Any]:
        wanted = set(_upstream(self.graph, target, stop))
        nodes = {k: dict(v) for k, v in self.graph.items() if k in wanted}
        for node_id, node in nodes.items():
            node.pop("result", None)
            if node_id in stop:  # its value is known: no inputs to evaluate
                node["arguments"] = {}
        nodes[target]["result"] = True
        return nodes

    def _run(self, target: str, tile: Tile | None, halo: int, extra: Mapping[str, Hook]) -> Any:
        def value_of(node_id: str) -> Hook:
            value = self.known[node_id]
            if tile is not None and is_raster(value):
                value = tile.crop(value, halo * max(cube_resolution(value)))
            if isinstance(value, xr.DataArray):
                # Sources may be opened lazily (a stored cube): read just this piece, once.
                value = value.load()
            return lambda _args, _node: value

        stop = frozenset(k for k in self.known if k != target)
        node_hooks: dict[str, Hook] = {k: value_of(k) for k in stop if k in self.graph}
        node_hooks.update(extra)
        return evaluate(
            self._graph_for(target, stop),
            arguments=self.arguments,
            hooks=self.hooks,
            node_hooks=node_hooks,
            resolver=self.resolver,
        )

    def _tiled(self, target: str) -> bool:
        """Whether ``target`` depends on a raster known on the tiles' grid (and CRS)."""
        if self.grid is None:
            return False
        stop = frozenset(k for k in self.known if k != target)
        upstream = set(_upstream(self.graph, target, stop)) - {target}
        rasters = [self.known[k] for k in upstream if k in self.known and is_raster(self.known[k])]
        same_crs = all(_crs_wkt(r) == _crs_wkt(self.grid) for r in rasters)
        return bool(rasters) and same_crs

    def _margin(self, target: str) -> int:
        stop = frozenset(k for k in self.known if k != target)
        return _margin(self.graph, self.plan.spaces, target, stop)

    def partial(self, node_id: str, tile: Tile, reduction: Reduction) -> tuple[Any, dict[str, Any]]:
        """One tile's partial result of the global node ``node_id``, and the node's arguments
        on that tile (what ``finish`` needs besides the partials)."""
        arguments: dict[str, Any] = {}

        def partial(args: dict[str, Any], _node: str) -> Any:
            arguments.update(args)
            return reduction.partial(
                {k: tile.crop(v) if is_raster(v) else v for k, v in args.items()}
            )

        return self._run(node_id, tile, self._margin(node_id), {node_id: partial}), arguments

    def _from_sources(self, node_id: str) -> bool:
        """Whether ``node_id`` needs only the sources (no global value computed before it):
        then a tile's partial can be computed anywhere the sources can be opened."""
        stop = frozenset(k for k in self.known if k != node_id)
        return all(
            k in self.sources for k in _upstream(self.graph, node_id, stop) if k in self.known
        )

    def global_value(self, node_id: str) -> Any:
        if not self._tiled(node_id):
            return self._run(node_id, None, 0, {})
        widths = [len(row) for row in self.rows]
        space = self.plan.spaces[node_id]
        reduction = space.reduction or gather(node_id, self.graph[node_id], widths)
        flat = [tile for row in self.rows for tile in row]
        # The first tile here also gives the arguments; a declared reduction's partials are
        # plain data, so the other tiles may run elsewhere (``map_partials``: Spark tasks).
        first, arguments = self.partial(node_id, flat[0], reduction)
        rest = flat[1:]
        if self.map_partials and space.reduction and rest and self._from_sources(node_id):
            partials = [first, *self.map_partials(node_id, rest)]
        else:
            partials = [first, *self._map(lambda t: self.partial(node_id, t, reduction)[0], rest)]
        return reduction.finish(reduction.combine(partials), arguments)

    def result(self) -> Any:
        result = next(k for k, n in self.graph.items() if n.get("result") is True)
        for node_id in self.plan.global_nodes:
            if node_id not in self.known:
                self.known[node_id] = self.global_value(node_id)
        if result in self.known:
            return self.known[result]
        if not self._tiled(result):
            return self._run(result, None, 0, {})
        halo = self._margin(result)
        flat = [tile for row in self.rows for tile in row]
        if not flat:  # an empty grid: nothing to cut
            return self._run(result, None, 0, {})
        first = self._run(result, flat[0], halo, {})
        if not is_raster(first):
            return first  # not spatial: the same for every tile
        rest = self._map(lambda t: t.crop(self._run(result, t, halo, {})), flat[1:])
        pieces = [flat[0].crop(first), *rest]
        rows, start = [], 0
        for row in self.rows:
            rows.append(pieces[start : start + len(row)])
            start += len(row)
        return mosaic(rows)


def _crs_wkt(cube: xr.DataArray) -> Any:
    ref = cube.coords.get("spatial_ref")
    return ref.attrs.get("crs_wkt") if ref is not None else None


def gather(node_id: str, node: Mapping[str, Any], widths: list[int]) -> Reduction:
    """The default reduction of a global process: mosaic the tiles' inputs (``widths``: tiles
    per row), then run the process once on the mosaic."""
    process_id = str(node.get("process_id"))
    fn = registry.get(process_id)

    def combine(partials: list[dict[str, Any]]) -> dict[str, Any]:
        combined = dict(partials[0]) if partials else {}
        for name, value in combined.items():
            if is_raster(value):
                flat = [p[name] for p in partials]
                rows, start = [], 0
                for width in widths:
                    rows.append(flat[start : start + width])
                    start += width
                combined[name] = mosaic(rows)
        return combined

    def finish(combined: dict[str, Any], _arguments: dict[str, Any]) -> Any:
        if fn is None:
            raise ValueError(f"Node '{node_id}': process '{process_id}' is not implemented")
        return fn(**combined)

    return Reduction(partial=lambda arguments: dict(arguments), combine=combine, finish=finish)


def evaluate_tiled(
    process_graph: Mapping[str, Any],
    sources: Mapping[str, Any],
    *,
    tile_size: int,
    hooks: Mapping[str, Hook] | None = None,
    resolver: Resolver | None = None,
    arguments: dict[str, Any] | None = None,
    map_partials: PartialsMapper | None = None,
    workers: int = 1,
    origin: tuple[float, float] | None = None,
) -> Any:
    """Evaluate a graph tile by tile; ``sources`` gives the value of source nodes by node id
    (e.g. the loaded cube of each ``load_collection``, or a lazy cube that reads the window
    it is cut to). ``map_partials(node_id, tiles)``, when given, computes the partials of a
    global node with a declared reduction on those tiles (in order) elsewhere, each with
    ``tile_partial``; ``workers``: threads that evaluate tiles at once; ``origin``: a point
    tile edges should fall on (e.g. where the source files' blocks start, so that a lazy
    source's tiles decode each block once), kept on the graph's alignment."""
    graph, scope = split_process(process_graph)
    scope.update(arguments or {})
    run = _TiledRun(
        graph,
        sources,
        tile_size,
        dict(hooks or {}),
        resolver,
        scope,
        map_partials,
        workers,
        origin,
    )
    return run.result()


def tile_partial(
    process_graph: Mapping[str, Any],
    sources: Mapping[str, Any],
    node_id: str,
    tile: Tile,
    *,
    tile_size: int,
    hooks: Mapping[str, Hook] | None = None,
    resolver: Resolver | None = None,
) -> Any:
    """The partial result of the global node ``node_id`` on one tile (what ``map_partials``
    computes per tile, e.g. in a Spark task that opened the stored sources)."""
    graph, scope = split_process(process_graph)
    run = _TiledRun(graph, sources, tile_size, dict(hooks or {}), resolver, scope)
    reduction = run.plan.spaces[node_id].reduction
    if reduction is None:
        raise ValueError(f"Node '{node_id}' has no declared reduction to compute per tile")
    return run.partial(node_id, tile, reduction)[0]
