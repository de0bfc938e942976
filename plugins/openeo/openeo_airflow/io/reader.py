"""``load_collection``: read a configured collection's STAC items onto one target grid.

The target grid (``Grid``) has the collection's CRS (or the first item's), the collection's
pixel size, and is aligned to ``grid_origin + k * resolution``, so one extent always gives
the same grid. Each (item, band) is read through a ``WarpedVRT`` onto that grid, so only the
source blocks under the grid are fetched; when the source grid already matches, a plain
window read is used. Items of one UTC day form one time step (labelled with that day at
00:00 UTC); within a day the first valid pixel wins, in item order (datetime, then id).
Values become float32: raw ``nodata`` -> NaN, then ``raw * scale + offset``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any

import numpy as np
import rasterio
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from openeo_airflow.catalog.config import BandConfig, CollectionConfig
from openeo_airflow.catalog.stac import StacItem, parse_datetime, search_items
from openeo_airflow.core.errors import FeatureUnsupported, ProcessParameterInvalid
from openeo_airflow.cube import make_cube
from openeo_airflow.io.gdal_env import gdal_env

PROCESS = "load_collection"
BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid: CRS, affine transform of the top-left corner, and size."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def bounds(self) -> BBox:
        west, north = self.transform.c, self.transform.f
        return (
            west,
            north + self.height * self.transform.e,
            west + self.width * self.transform.a,
            north,
        )

    def window(self, row_off: int, col_off: int, height: int, width: int) -> Grid:
        """The sub-grid of a pixel window (e.g. one processing tile)."""
        return Grid(self.crs, self.transform @ Affine.translation(col_off, row_off), width, height)


def load_cube(
    cfg: CollectionConfig,
    *,
    spatial_extent: dict[str, Any] | None,
    temporal_extent: Sequence[str | None] | None,
    bands: Sequence[str] | None,
    gdal_profile: str = "local",
) -> xr.DataArray:
    """Load a collection as a ``(t, bands, y, x)`` float32 cube.

    ``spatial_extent`` is an openEO bounding box ``{west, south, east, north, crs?}`` (crs:
    EPSG code or string, default EPSG:4326); ``None`` covers all matching items.
    ``temporal_extent`` is ``[start, end]`` (start inclusive, end exclusive, ``None`` open).
    Without matching items the cube has an empty ``t`` dimension (still on the grid).
    """
    selected = select_bands(cfg, bands)
    extent = parse_spatial_extent(spatial_extent)
    start, end = parse_temporal_extent(temporal_extent)
    search_bbox = None
    if extent is not None:
        bbox, bbox_crs = extent
        search_bbox = transform_bounds(bbox_crs, CRS.from_epsg(4326), *bbox, densify_pts=21)
    items = search_items(cfg, search_bbox, start, end)
    grid = target_grid(cfg, extent, items, selected)
    return load_items(items, selected, grid, gdal_profile=gdal_profile)


def load_items(
    items: Sequence[StacItem],
    bands: Sequence[BandConfig],
    grid: Grid,
    *,
    gdal_profile: str = "local",
) -> xr.DataArray:
    """Read ``items`` (sorted by datetime) onto ``grid``: one time step per UTC day."""
    days: list[np.datetime64] = []
    slices: list[np.ndarray] = []
    with gdal_env(gdal_profile):
        for day, group in groupby(items, key=lambda item: item.datetime.date()):
            days.append(np.datetime64(day.isoformat(), "ns"))
            slices.append(_mosaic_day(list(group), bands, grid))
    shape = (len(days), len(bands), grid.height, grid.width)
    data = np.stack(slices) if slices else np.empty(shape, dtype=np.float32)
    return make_cube(
        data,
        times=np.array(days, dtype="datetime64[ns]"),
        bands=[b.name for b in bands],
        transform=grid.transform,
        crs=grid.crs.to_wkt(),
    )


def read_band(href: str, band: BandConfig, grid: Grid) -> np.ndarray:
    """One asset's band on ``grid`` as float32, NaN where there is no valid data.

    Must run inside a GDAL environment (``gdal_env``).
    """
    with rasterio.open(href) as src:
        nodata = band.nodata if band.nodata is not None else src.nodata
        raw, valid = _read_raw(src, nodata, band, grid)
    values = raw.astype(np.float32)
    if band.scale != 1.0 or band.offset != 0.0:
        values = values * np.float32(band.scale) + np.float32(band.offset)
    values[~valid] = np.nan
    return values


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
    if "type" in extent:
        raise FeatureUnsupported(
            "load_collection: a GeoJSON spatial_extent is not supported yet; "
            "give a bounding box {west, south, east, north, crs}."
        )
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


def target_grid(
    cfg: CollectionConfig,
    extent: tuple[BBox, CRS] | None,
    items: Sequence[StacItem],
    bands: Sequence[BandConfig],
) -> Grid:
    """The cube grid covering ``extent`` (or all ``items``) in the collection's target CRS."""
    crs = _target_crs(cfg, extent, items, bands)
    if extent is not None:
        bbox, bbox_crs = extent
    elif items:
        bbox_crs = CRS.from_epsg(4326)
        boxes = np.array([item.bbox for item in items])
        bbox = (boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max())
    else:
        return Grid(crs, Affine(cfg.resolution, 0, 0, 0, -cfg.resolution, 0), 0, 0)
    if bbox_crs != crs:
        bbox = transform_bounds(bbox_crs, crs, *bbox, densify_pts=21)
    return snap_grid(bbox, crs, cfg.resolution, cfg.grid_origin)


def snap_grid(
    bbox: BBox, crs: CRS, resolution: float, origin: tuple[float, float] = (0.0, 0.0)
) -> Grid:
    """The smallest grid of ``origin + k * resolution`` pixel edges that covers ``bbox``."""
    eps = 1e-6
    x0, y0 = origin
    west, south, east, north = bbox
    col0 = math.floor((west - x0) / resolution + eps)
    col1 = math.ceil((east - x0) / resolution - eps)
    row_top = math.ceil((north - y0) / resolution - eps)
    row_bottom = math.floor((south - y0) / resolution + eps)
    transform = Affine(
        resolution, 0, x0 + col0 * resolution, 0, -resolution, y0 + row_top * resolution
    )
    return Grid(crs, transform, max(1, col1 - col0), max(1, row_top - row_bottom))


def _mosaic_day(items: list[StacItem], bands: Sequence[BandConfig], grid: Grid) -> np.ndarray:
    out = np.full((len(bands), grid.height, grid.width), np.nan, dtype=np.float32)
    for index, band in enumerate(bands):
        target = out[index]
        for item in items:
            href = item.assets.get(band.asset)
            if href is None:
                continue
            values = read_band(href, band, grid)
            empty = np.isnan(target)
            target[empty] = values[empty]
            if not np.isnan(target).any():
                break
    return out


def _read_raw(
    src: Any, nodata: float | None, band: BandConfig, grid: Grid
) -> tuple[np.ndarray, np.ndarray]:
    """Raw values on ``grid`` and a validity mask."""
    offset = _aligned_offset(src, grid)
    if offset is not None:
        raw, inside = _read_aligned(src, nodata, grid, *offset)
    else:
        options: dict[str, Any] = {
            "crs": grid.crs,
            "transform": grid.transform,
            "width": grid.width,
            "height": grid.height,
            "resampling": Resampling[band.resampling],
        }
        if nodata is not None:
            options.update(src_nodata=nodata, nodata=nodata)
        else:
            options["add_alpha"] = True
        with WarpedVRT(src, **options) as vrt:
            raw = vrt.read(1)
            inside = vrt.read_masks(1) > 0
    if nodata is not None:
        inside &= ~np.isnan(raw) if math.isnan(nodata) else raw != nodata
    if raw.dtype.kind == "f":
        inside &= ~np.isnan(raw)
    return raw, inside


def _aligned_offset(src: Any, grid: Grid) -> tuple[int, int] | None:
    """(row, col) of the grid's origin in source pixels when the grids coincide, else None."""
    s, g = src.transform, grid.transform
    if (
        (s.b, s.d, g.b, g.d) != (0, 0, 0, 0)
        or not math.isclose(s.a, g.a)
        or not math.isclose(s.e, g.e)
    ):
        return None
    col, row = (g.c - s.c) / s.a, (g.f - s.f) / s.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6 or src.crs != grid.crs:
        return None
    return round(row), round(col)


def _read_aligned(
    src: Any, nodata: float | None, grid: Grid, row: int, col: int
) -> tuple[np.ndarray, np.ndarray]:
    """A plain window read of the part of the grid inside the source."""
    fill = nodata if nodata is not None else 0
    raw = np.full((grid.height, grid.width), fill, dtype=src.dtypes[0])
    inside = np.zeros((grid.height, grid.width), dtype=bool)
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + grid.height, src.height), min(col + grid.width, src.width)
    if r0 < r1 and c0 < c1:
        window = Window(c0, r0, c1 - c0, r1 - r0)
        target = (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))
        raw[target] = src.read(1, window=window)
        inside[target] = src.read_masks(1, window=window) > 0 if nodata is None else True
    return raw, inside


def _target_crs(
    cfg: CollectionConfig,
    extent: tuple[BBox, CRS] | None,
    items: Sequence[StacItem],
    bands: Sequence[BandConfig],
) -> CRS:
    """cfg.crs; else the first item's CRS; else (no items) the extent's projected CRS or UTM."""
    if cfg.crs:
        return CRS.from_user_input(cfg.crs)
    if items:
        first = items[0]
        if first.crs:
            return CRS.from_user_input(first.crs)
        for band in bands:
            if band.asset in first.assets:
                with rasterio.open(first.assets[band.asset]) as src:
                    return src.crs
    if extent is not None and not extent[1].is_geographic:
        return extent[1]
    west, south, east, north = (
        transform_bounds(extent[1], CRS.from_epsg(4326), *extent[0])
        if extent is not None
        else cfg.spatial_extent
    )
    zone = min(60, int((((west + east) / 2) + 180) // 6) + 1)
    return CRS.from_epsg((32600 if (south + north) >= 0 else 32700) + zone)


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
