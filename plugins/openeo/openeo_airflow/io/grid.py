"""The cube's target grid (CRS + affine + size, like odc-geo's GeoBox) and its output tiles."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from openeo_airflow.catalog.config import BandConfig, CollectionConfig
from openeo_airflow.catalog.stac import StacItem

BBox = tuple[float, float, float, float]
DEFAULT_TILE_SIZE = 2048


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

    @property
    def resolution(self) -> tuple[float, float]:
        return abs(self.transform.a), abs(self.transform.e)

    def window(self, row_off: int, col_off: int, height: int, width: int) -> Grid:
        """The sub-grid of a pixel window (e.g. one processing tile)."""
        return Grid(self.crs, self.transform @ Affine.translation(col_off, row_off), width, height)


@dataclass(frozen=True)
class Tile:
    """One output tile: its pixel window in the cube grid and its own sub-grid."""

    row: int
    col: int
    grid: Grid

    @property
    def rows(self) -> slice:
        return slice(self.row, self.row + self.grid.height)

    @property
    def cols(self) -> slice:
        return slice(self.col, self.col + self.grid.width)


def tiles(grid: Grid, size: int = DEFAULT_TILE_SIZE) -> Iterator[Tile]:
    """The grid cut into ``size`` x ``size`` tiles (smaller at the right and bottom edges)."""
    for row in range(0, grid.height, size):
        for col in range(0, grid.width, size):
            height, width = min(size, grid.height - row), min(size, grid.width - col)
            yield Tile(row, col, grid.window(row, col, height, width))


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


def target_grid(
    cfg: CollectionConfig,
    extent: tuple[BBox, CRS] | None,
    items: Sequence[StacItem],
    bands: Sequence[BandConfig],
) -> Grid:
    """The cube grid covering ``extent`` (or all ``items``) in the collection's target CRS."""
    crs = target_crs(cfg, extent, items, bands)
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


def target_crs(
    cfg: CollectionConfig,
    extent: tuple[BBox, CRS] | None,
    items: Sequence[StacItem],
    bands: Sequence[BandConfig],
) -> CRS:
    """The cube's CRS.

    ``cfg.crs`` when configured; else the UTM zone of the extent's centre when an item is in
    it (products of neighbouring zones are reprojected into it); else the first item's CRS;
    else (no items) the extent's projected CRS or its UTM zone.
    """
    if cfg.crs:
        return CRS.from_user_input(cfg.crs)
    wgs84 = CRS.from_epsg(4326)
    if extent is not None:
        west, south, east, north = transform_bounds(extent[1], wgs84, *extent[0])
    else:
        west, south, east, north = cfg.spatial_extent
    centre_zone = utm_crs((west + east) / 2, (south + north) / 2)
    if items:
        codes = {item.crs for item in items if item.crs}
        for code in sorted(codes):
            if CRS.from_user_input(code) == centre_zone:
                return centre_zone
        first = items[0]
        if first.crs:
            return CRS.from_user_input(first.crs)
        for band in bands:
            if band.asset in first.assets:
                with rasterio.open(first.assets[band.asset]) as src:
                    return src.crs
    if extent is not None and not extent[1].is_geographic:
        return extent[1]
    return centre_zone


def utm_crs(lon: float, lat: float) -> CRS:
    """The WGS 84 / UTM zone CRS of a point."""
    zone = min(60, max(1, int((lon + 180) // 6) + 1))
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)
