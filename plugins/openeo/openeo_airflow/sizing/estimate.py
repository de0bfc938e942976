"""Volume estimates from a source's extent and the collection's grid (pure)."""

from __future__ import annotations

from typing import Any

from pyproj import CRS, Geod, Transformer

_GEOD = Geod(ellps="WGS84")


def extent_wgs84(extent: dict[str, Any]) -> tuple[float, float, float, float]:
    """An openEO bounding box as (west, south, east, north) in degrees."""
    crs = extent.get("crs") or 4326
    west, south, east, north = (float(extent[k]) for k in ("west", "south", "east", "north"))
    if CRS.from_user_input(crs).to_epsg() == 4326:
        return west, south, east, north
    transformer = Transformer.from_crs(CRS.from_user_input(crs), "EPSG:4326", always_xy=True)
    return transformer.transform_bounds(west, south, east, north)


def area_m2(bbox_wgs84: tuple[float, float, float, float]) -> float:
    west, south, east, north = bbox_wgs84
    lons = [west, east, east, west]
    lats = [south, south, north, north]
    area, _ = _GEOD.polygon_area_perimeter(lons, lats)
    return abs(area)


def pixel_count(
    bbox_wgs84: tuple[float, float, float, float], resolution_m: float, bands: int, dates: int
) -> int:
    return int(area_m2(bbox_wgs84) / (resolution_m * resolution_m)) * max(bands, 1) * max(dates, 1)
