"""``load_collection``: read a configured collection's STAC items onto one target grid.

The target grid (``Grid``) has the collection's CRS (or the extent's UTM zone), the
collection's pixel size, and is aligned to ``grid_origin + k * resolution``, so one extent
always gives the same grid. The grid is cut into output tiles; for each (time step, tile) the
items touching the tile are read in the order of ``catalog.overlap.order_for_tile`` and, per
pixel, the first valid value wins. Only the source blocks under each tile are read
(``io.source``). Tiles are read by a small thread pool (GDAL releases the GIL), each thread
inside the same GDAL profile.

Time steps: items of one UTC day form one step labelled with that day at 00:00 UTC
(Sentinel-2: the day the item's datatake started; re-processed duplicates dropped first).
Values become float32: raw ``nodata`` -> NaN, then ``(raw + baseline offset) * scale + offset``.

Faults: unreadable assets are retried (``RetryPolicy``); with ``soft_errors`` (the share of
assets allowed to stay unreadable, default 0) each skipped asset is logged by name; beyond it
the load fails with an error naming the asset and the reason.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import groupby
from typing import Any

import numpy as np
import xarray as xr
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from openeo_airflow.catalog.config import BandConfig, CollectionConfig
from openeo_airflow.catalog.overlap import footprint, order_for_tile
from openeo_airflow.catalog.sentinel2 import (
    acquisition_day,
    boa_offset,
    drop_duplicates,
    first_raster_band,
)
from openeo_airflow.catalog.stac import StacItem, parse_datetime, search_items
from openeo_airflow.core.errors import Internal, ProcessParameterInvalid
from openeo_airflow.cube import make_cube
from openeo_airflow.io import geometry_mask
from openeo_airflow.io.datasets import OpenDatasets
from openeo_airflow.io.gdal_env import gdal_env
from openeo_airflow.io.grid import DEFAULT_TILE_SIZE, Grid, Tile, snap_grid, target_grid, tiles
from openeo_airflow.io.source import AssetError, Decoding, RetryPolicy, read_values
from openeo_airflow.sizing.model import read_threads

__all__ = [
    "Grid",
    "load_cube",
    "load_items",
    "read_band",
    "read_steps",
    "snap_grid",
    "stream_steps",
    "target_grid",
    "time_steps",
]

log = logging.getLogger(__name__)

PROCESS = "load_collection"
BBox = tuple[float, float, float, float]
# How a load finds its items: ``search_items`` for configured collections; ad-hoc sources
# (load_stac, load_result) bring their own (``catalog.adhoc``).
SearchFn = Callable[..., list[StacItem]]


@dataclass(frozen=True)
class LoadOptions:
    """How a load runs: GDAL profile, fault tolerance, tiling and threads."""

    gdal_profile: str = "local"
    soft_errors: float = 0.0
    tile_size: int = DEFAULT_TILE_SIZE
    workers: int | None = None
    sentinel2: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # A GeoJSON spatial_extent's polygons (GeoJSON text, WGS 84): pixels whose centre lies
    # outside them are NaN (``io.geometry_mask``); ``None`` for a bounding box.
    geometry: str | None = None
    # Files kept open across the reads of one evaluation (its tiles); never serialized.
    datasets: OpenDatasets | None = field(default=None, compare=False, repr=False)


def load_cube(
    cfg: CollectionConfig,
    *,
    spatial_extent: dict[str, Any] | None,
    temporal_extent: Sequence[str | None] | None,
    bands: Sequence[str] | None,
    gdal_profile: str = "local",
    properties: dict[str, Any] | None = None,
    soft_errors: float = 0.0,
    tile_size: int = DEFAULT_TILE_SIZE,
    workers: int | None = None,
    search: SearchFn = search_items,
) -> xr.DataArray:
    """Load a collection as a ``(t, bands, y, x)`` float32 cube.

    ``spatial_extent`` is an openEO bounding box ``{west, south, east, north, crs?}`` (crs:
    EPSG code or string, default EPSG:4326) or GeoJSON polygons (their bounding box is read,
    pixels outside them are NaN); ``None`` covers all matching items.
    ``temporal_extent`` is ``[start, end]`` (start inclusive, end exclusive, ``None`` open).
    ``properties`` is ``load_collection``'s metadata filter (``{property: callback}``).
    ``gdal_profile`` applies unless the collection names its own. ``soft_errors`` is the
    tolerated share (0..1) of unreadable assets. Without matching items the cube has an
    empty ``t`` dimension (still on the grid).
    """
    if not 0.0 <= soft_errors <= 1.0:
        raise ValueError(f"soft_errors must lie within 0..1, not {soft_errors}")
    items, selected, grid = resolve_load(
        cfg,
        spatial_extent=spatial_extent,
        temporal_extent=temporal_extent,
        bands=bands,
        properties=properties,
        search=search,
    )
    options = LoadOptions(
        gdal_profile=cfg.gdal_profile or gdal_profile,
        soft_errors=soft_errors,
        tile_size=tile_size,
        workers=workers,
        sentinel2=cfg.sentinel2,
        geometry=geometry_mask.geometry_text(spatial_extent),
    )
    return load_items(items, selected, grid, options=options)


def resolve_load(
    cfg: CollectionConfig,
    *,
    spatial_extent: dict[str, Any] | None,
    temporal_extent: Sequence[str | None] | None,
    bands: Sequence[str] | None,
    properties: dict[str, Any] | None = None,
    search: SearchFn = search_items,
) -> tuple[list[StacItem], list[BandConfig], Grid]:
    """What a load reads (the matching items and bands) and onto which grid; validates the
    arguments. Batch jobs call it once and then read tile by tile (``read_steps``)."""
    selected = select_bands(cfg, bands)
    extent = parse_spatial_extent(spatial_extent)
    start, end = parse_temporal_extent(temporal_extent)
    search_bbox = None
    if extent is not None:
        bbox, bbox_crs = extent
        search_bbox = transform_bounds(bbox_crs, CRS.from_epsg(4326), *bbox, densify_pts=21)
    items = search(cfg, search_bbox, start, end, properties=properties)
    return items, selected, target_grid(cfg, extent, items, selected)


def load_items(
    items: Sequence[StacItem],
    bands: Sequence[BandConfig],
    grid: Grid,
    *,
    gdal_profile: str = "local",
    options: LoadOptions | None = None,
) -> xr.DataArray:
    """Read ``items`` (sorted by datetime) onto ``grid``: one time step per UTC day."""
    opts = options or LoadOptions(gdal_profile=gdal_profile)
    steps = time_steps(items, opts.sentinel2)
    return make_cube(
        read_steps(steps, bands, grid, opts),
        times=np.array([np.datetime64(day.isoformat(), "ns") for day, _ in steps]),
        bands=[b.name for b in bands],
        transform=grid.transform,
        crs=grid.crs.to_wkt(),
    )


Steps = list[tuple[date, list[StacItem]]]


def time_steps(items: Sequence[StacItem], sentinel2: bool = False) -> Steps:
    """The items grouped into the cube's time steps (one per UTC day, duplicates dropped)."""
    items = list(items)
    day_of: Callable[[StacItem], date] = lambda item: item.datetime.date()  # noqa: E731
    if sentinel2:
        items, dropped = drop_duplicates(items)
        for item in dropped:
            log.info("Dropped %s: a newer processing of the same observation is loaded", item.id)
        day_of = acquisition_day
    days = [day_of(item) for item in items]  # once per item: the sort and grouping reuse it
    order = sorted(range(len(items)), key=lambda k: (days[k], items[k].datetime))
    return [(day, [items[k] for k in group]) for day, group in groupby(order, key=days.__getitem__)]


def read_steps(
    steps: Steps, bands: Sequence[BandConfig], grid: Grid, options: LoadOptions
) -> np.ndarray:
    """The ``(t, bands, y, x)`` float32 values of ``steps`` on ``grid`` (NaN: no data); a
    step may have no items (a tile that none of that day's products touches)."""
    shape = (len(steps), len(bands), grid.height, grid.width)
    if not (steps and grid.width and grid.height):
        return np.full(shape, np.nan, dtype=np.float32)
    inside = geometry_mask.inside(options.geometry, grid) if options.geometry else None
    if inside is not None and not inside.any():
        return np.full(shape, np.nan, dtype=np.float32)  # outside the polygons: nothing to read
    # Not pre-filled with NaN: each work unit writes its whole target (values or NaN), and
    # tiles skipped outside the polygons are masked below.
    data = np.empty(shape, dtype=np.float32)
    _Loader(bands, grid, options, steps, inside).run(data)
    if inside is not None:
        data[:, :, ~inside] = np.nan
    return data


# Takes one finished window (time step, band, the reader's tile of the grid, its values), on
# the reading thread that read it; the values are only valid during the call.
WindowSink = Callable[[int, int, Tile, np.ndarray], None]


def stream_steps(
    steps: Steps, bands: Sequence[BandConfig], grid: Grid, options: LoadOptions, sink: WindowSink
) -> None:
    """What ``read_steps`` reads, handed to ``sink`` one finished window (a band of one time
    step on one of the reader's tiles) at a time instead of gathered into one array: a load
    that stores its values holds each reading thread's window, not the cube. Every window of
    the grid is handed over, NaN where nothing was read."""
    if not (steps and grid.width and grid.height):
        return
    inside = geometry_mask.inside(options.geometry, grid) if options.geometry else None
    _Loader(bands, grid, options, steps, inside).run(None, sink)


def read_band(href: str, band: BandConfig, grid: Grid) -> np.ndarray:
    """One asset's band on ``grid`` as float32, NaN where there is no valid data.

    Must run inside a GDAL environment (``gdal_env``).
    """
    decoding = Decoding(nodata=band.nodata, scale=band.scale, offset=band.offset)
    values = read_values(href, band, decoding, grid)
    if values is None:
        return np.full((grid.height, grid.width), np.nan, dtype=np.float32)
    return values


# (time step, tile, its item order or None outside the polygons, band)
_Unit = tuple[int, Tile, list[StacItem] | None, int]


class _Loader:
    """One load: the work list of (time step, tile) and the bookkeeping of failed assets."""

    def __init__(
        self,
        bands: Sequence[BandConfig],
        grid: Grid,
        options: LoadOptions,
        steps: list[tuple[date, list[StacItem]]],
        inside: np.ndarray | None = None,
    ) -> None:
        self.bands = list(bands)
        self.inside = inside
        self.grid = grid
        self.options = options
        self.steps = steps
        self.footprints = {item.id: footprint(item) for _, group in steps for item in group}
        # Per item and band, not per work unit (a large load has thousands of units).
        self.decodings = {
            (item.id, index): decoding_for(item, band)
            for _, group in steps
            for item in group
            for index, band in enumerate(self.bands)
            if band.asset in item.assets
        }
        self.total_assets = len(self.decodings)  # one per item and band it has
        self.failed: dict[str, str] = {}
        self.lock = threading.Lock()

    def run(self, data: np.ndarray | None, sink: WindowSink | None = None) -> None:
        """Fill ``data``, or else hand every window to ``sink`` (windows outside the
        polygons too, as NaN)."""
        # The items' order is the same for every band of a (time step, tile): decided once.
        # Windows outside the polygons are not read (None: no items to try).
        work = [
            (index, tile, order, band)
            for index, (_, group) in enumerate(self.steps)
            for tile in tiles(self.grid, self.options.tile_size)
            for order in [self._order(group, tile) if self._touches(tile) else None]
            if order is not None or sink is not None
            for band in range(len(self.bands))
        ]
        if not work:
            return
        workers = min(self.options.workers or read_threads(os.cpu_count() or 1), len(work))
        # One GDAL environment per thread, not per unit: each thread takes units in order
        # until none are left (units write disjoint parts of ``data``). After a failure no new
        # unit starts, and the failure of the earliest unit is raised, as a serial load would.
        # The calling thread reads too: one thread fewer to start, and each new thread pays
        # ~20 ms CPU on its first open (GDAL's per-thread PROJ context; bench/LOAD.md).
        queue = enumerate(work)
        errors: list[tuple[int, Exception]] = []
        if workers <= 1:
            self._drain(data, sink, queue, errors)
        else:
            with ThreadPoolExecutor(max_workers=workers - 1) as pool:
                helpers = [
                    pool.submit(self._drain, data, sink, queue, errors) for _ in range(workers - 1)
                ]
                self._drain(data, sink, queue, errors)
                for helper in helpers:
                    helper.result()  # errors outside a unit (the GDAL environment)
        if errors:
            raise min(errors, key=lambda error: error[0])[1]

    def _touches(self, tile: Tile) -> bool:
        """Whether the tile has pixels inside the polygons (always, for a bounding box)."""
        return self.inside is None or bool(self.inside[tile.rows, tile.cols].any())

    def _order(self, group: list[StacItem], tile: Tile) -> list[StacItem]:
        footprints = [self.footprints[i.id] for i in group]
        return order_for_tile(group, tile.grid.bounds, tile.grid.crs, footprints)

    def _drain(
        self,
        data: np.ndarray | None,
        sink: WindowSink | None,
        queue: Iterator[tuple[int, _Unit]],
        errors: list[tuple[int, Exception]],
    ) -> None:
        with gdal_env(self.options.gdal_profile):
            while not errors:
                with self.lock:
                    position, unit = next(queue, (-1, None))
                if unit is None:
                    return
                try:
                    self._unit(data, sink, *unit)
                except Exception as error:  # raised by run(), in unit order
                    with self.lock:
                        errors.append((position, error))

    def _unit(
        self,
        data: np.ndarray | None,
        sink: WindowSink | None,
        index: int,
        tile: Tile,
        ordered: list[StacItem] | None,
        band_index: int,
    ) -> None:
        if data is not None:
            if ordered is not None:
                self._fill(data[index, band_index, tile.rows, tile.cols], tile, ordered, band_index)
            return
        assert sink is not None
        target = np.empty((tile.grid.height, tile.grid.width), dtype=np.float32)
        if ordered is None:
            target.fill(np.nan)
        else:
            self._fill(target, tile, ordered, band_index)
            if self.inside is not None:
                target[~self.inside[tile.rows, tile.cols]] = np.nan
        sink(index, band_index, tile, target)

    def _fill(
        self, target: np.ndarray, tile: Tile, ordered: list[StacItem], band_index: int
    ) -> None:
        """One band of one output tile of one time step: first valid pixel wins."""
        band = self.bands[band_index]
        first = True
        candidates = [
            (item, href) for item in ordered if (href := item.assets.get(band.asset)) is not None
        ]
        for position, (item, href) in enumerate(candidates):
            if self._is_failed(href):
                continue
            # The first read goes straight into the cube; later ones fill its gaps.
            decoding = self.decodings[item.id, band_index]
            values = self._read(item, band, decoding, href, tile.grid, target if first else None)
            if values is None:
                continue
            if not first:
                np.copyto(target, values, where=np.isnan(target))
            first = False
            if position == len(candidates) - 1 or not np.isnan(target).any():
                break
        if first:
            target.fill(np.nan)  # nothing read: the cube is not pre-filled

    def _read(
        self,
        item: StacItem,
        band: BandConfig,
        decoding: Decoding,
        href: str,
        grid: Grid,
        out: np.ndarray | None = None,
    ) -> np.ndarray | None:
        try:
            return read_values(
                href,
                band,
                decoding,
                grid,
                retry=self.options.retry,
                out=out,
                datasets=self.options.datasets,
            )
        except AssetError as error:
            self._record_failure(item, band, error)
            return None

    def _is_failed(self, href: str) -> bool:
        with self.lock:
            return href in self.failed

    def _record_failure(self, item: StacItem, band: BandConfig, error: AssetError) -> None:
        name = f"{item.id}/{band.asset}"
        with self.lock:
            if error.href in self.failed:
                return
            self.failed[error.href] = error.reason
            tolerated = math.floor(self.options.soft_errors * self.total_assets)
            over = len(self.failed) > tolerated
        if over:
            raise Internal(
                message=(
                    f"Cannot read asset {name} ({error.href}): {error.reason}. "
                    f"{len(self.failed)} of {self.total_assets} assets unreadable; the job "
                    f"tolerates {tolerated} (soft-errors {self.options.soft_errors:g})."
                )
            ) from error
        log.warning("Skipping unreadable asset %s (%s): %s", name, error.href, error.reason)


def decoding_for(item: StacItem, band: BandConfig) -> Decoding:
    """How to decode ``band`` of ``item``: nodata, scale/offset and the baseline offset."""
    raster = first_raster_band(item.asset_fields.get(band.asset, {}))
    nodata = band.nodata
    if nodata is None and isinstance(raster.get("nodata"), int | float):
        nodata = float(raster["nodata"])
    scale, offset = band.scale, band.offset
    if band.scaling == "stac":
        scale = float(raster.get("scale", scale))
        offset = float(raster.get("offset", offset))
    add = boa_offset(item, band.asset) if band.harmonize else 0.0
    return Decoding(nodata=nodata, scale=scale, offset=offset, add=add)


def select_bands(cfg: CollectionConfig, bands: Sequence[str] | None) -> list[BandConfig]:
    """Band configurations in the requested order (names or common names); ``None``: all."""
    if bands is None:
        return list(cfg.bands)
    if isinstance(bands, str) or len(bands) == 0:
        raise _invalid("bands", "Give a non-empty list of band names.")
    selected = []
    for name in bands:
        match = [b for b in cfg.bands if b.name == name] or [
            b for b in cfg.bands if b.common_name == name
        ]
        if not match:
            valid = ", ".join(cfg.band_names)
            raise _invalid("bands", f"Band '{name}' does not exist in '{cfg.id}'; use {valid}.")
        selected.append(match[0])
    if len({b.name for b in selected}) != len(selected):
        raise _invalid("bands", "Bands must not be repeated.")
    return selected


def parse_spatial_extent(extent: dict[str, Any] | None) -> tuple[BBox, CRS] | None:
    """An openEO bounding box as ((west, south, east, north), CRS); validates it."""
    if extent is None:
        return None
    if not isinstance(extent, dict):
        raise _invalid("spatial_extent", "Expected a bounding box object.")
    if geometry_mask.is_geojson(extent):
        # Polygons: the cube covers their bounding box; read_steps masks the rest.
        bounds = geometry_mask.parse_geojson(extent).bounds
        return (bounds[0], bounds[1], bounds[2], bounds[3]), CRS.from_epsg(4326)
    try:
        west, south, east, north = (float(extent[k]) for k in ("west", "south", "east", "north"))
    except (KeyError, TypeError, ValueError):
        raise _invalid("spatial_extent", "Needs numeric west, south, east and north.") from None
    crs = _parse_crs(extent.get("crs"))
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise _invalid("spatial_extent", "Bounds must be finite numbers.")
    if west >= east or south >= north:
        raise _invalid("spatial_extent", "West must be less than east and south less than north.")
    if crs.is_geographic and (south < -90 or north > 90):
        raise _invalid("spatial_extent", "Latitudes must lie within -90..90.")
    return (west, south, east, north), crs


def parse_temporal_extent(
    extent: Sequence[str | None] | None,
) -> tuple[datetime | None, datetime | None]:
    """openEO ``[start, end]`` (dates or date-times, ``None`` for open) as UTC datetimes."""
    if extent is None:
        return None, None
    if isinstance(extent, str) or len(extent) != 2:
        raise _invalid("temporal_extent", "Expected [start, end].")
    try:
        start, end = (None if v is None else parse_datetime(str(v)) for v in extent)
    except ValueError as error:
        raise _invalid("temporal_extent", f"Not a date or date-time: {error}.") from None
    if start is not None and end is not None and start >= end:
        raise _invalid("temporal_extent", "The end must be later than the start.")
    return start, end


def _parse_crs(value: Any) -> CRS:
    if value is None:
        return CRS.from_epsg(4326)
    try:
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return CRS.from_epsg(int(value))
        return CRS.from_user_input(value)
    except Exception as error:
        raise _invalid("spatial_extent", f"Unknown crs {value!r}: {error}") from None


def _invalid(parameter: str, reason: str) -> ProcessParameterInvalid:
    return ProcessParameterInvalid(process=PROCESS, parameter=parameter, reason=reason)
