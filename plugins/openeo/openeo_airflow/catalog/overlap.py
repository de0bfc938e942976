"""Which products to read for one output tile, and in which order (DESIGN section 4).

Within one time step, products of neighbouring tiles (and UTM zones) overlap. For each output
tile of the cube grid the loader reads the products in the order given here and keeps, per
pixel, the first valid value:

1. products whose footprint covers the whole output tile,
2. then products in the cube's CRS (no reprojection: native pixels),
3. then the product whose footprint centre is nearest to the tile centre,
4. then the order given (datetime, then id).

Products whose footprint does not touch the tile are not read at all. Because every product
with data at a pixel stays in the list, pixels that the preferred product lacks (outside its
swath, no-data) come from the next one: mosaics have no gaps along product borders.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from pyproj import CRS, Transformer
from shapely import Polygon, box
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from openeo_airflow.catalog.stac import BBox, StacItem

WGS84 = CRS.from_epsg(4326)


def footprint(item: StacItem) -> BaseGeometry:
    """The item's footprint in WGS 84: its geometry, else its bounding box."""
    if item.geometry:
        try:
            geometry = shape(item.geometry)
            if not geometry.is_empty:
                return geometry if geometry.is_valid else geometry.buffer(0)
        except (ValueError, TypeError, AttributeError):
            pass
    return box(*item.bbox)


def tile_polygon(bounds: BBox, crs: Any, densify: int = 8) -> Polygon:
    """An output tile's outline (in ``crs``) as a WGS 84 polygon, edges densified."""
    west, south, east, north = bounds
    steps = np.linspace(0.0, 1.0, densify + 1)[:-1]
    xs = np.concatenate(
        [
            west + (east - west) * steps,
            np.full(densify, east),
            east - (east - west) * steps,
            np.full(densify, west),
        ]
    )
    ys = np.concatenate(
        [
            np.full(densify, north),
            north - (north - south) * steps,
            np.full(densify, south),
            south + (north - south) * steps,
        ]
    )
    lon, lat = _to_wgs84(_crs_key(crs)).transform(xs, ys)
    return Polygon(zip(lon, lat, strict=True))


def order_for_tile(
    items: Sequence[StacItem],
    bounds: BBox,
    crs: Any,
    footprints: Sequence[BaseGeometry] | None = None,
) -> list[StacItem]:
    """The items touching the output tile ``bounds`` (in ``crs``), best first (see above)."""
    if not items:
        return []
    shapes = footprints if footprints is not None else [footprint(i) for i in items]
    tile = tile_polygon(bounds, crs)
    centre = tile.centroid
    cube_crs = _crs_key(crs)
    ranked: list[tuple[tuple[Any, ...], StacItem]] = []
    for index, (item, geometry) in enumerate(zip(items, shapes, strict=True)):
        if not geometry.intersects(tile):
            continue
        covers = geometry.covers(tile)
        same_crs = item.crs is not None and _crs_key(item.crs) == cube_crs
        distance = _ground_distance(centre.x, centre.y, geometry.centroid.x, geometry.centroid.y)
        ranked.append(((not covers, not same_crs, round(distance, 6), index), item))
    ranked.sort(key=lambda pair: pair[0])
    return [item for _, item in ranked]


def _ground_distance(lon0: float, lat0: float, lon1: float, lat1: float) -> float:
    """Distance in degrees of latitude (longitudes shrunk by cos(latitude))."""
    scale = math.cos(math.radians((lat0 + lat1) / 2))
    dlon = (lon1 - lon0 + 180.0) % 360.0 - 180.0
    return math.hypot(dlon * scale, lat1 - lat0)


@lru_cache(maxsize=256)
def _parsed(key: str) -> CRS:
    return CRS.from_user_input(key)


def _crs_key(crs: Any) -> str:
    """A hashable, comparable identity of a CRS (its EPSG code when it has one)."""
    return _key(crs if isinstance(crs, str) else crs.to_wkt())


@lru_cache(maxsize=256)
def _key(text: str) -> str:
    parsed = _parsed(text)
    epsg = parsed.to_epsg()
    return f"EPSG:{epsg}" if epsg is not None else parsed.to_wkt()


@lru_cache(maxsize=64)
def _to_wgs84(key: str) -> Transformer:
    return Transformer.from_crs(_parsed(key), WGS84, always_xy=True)
