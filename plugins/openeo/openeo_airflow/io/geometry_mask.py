"""GeoJSON ``spatial_extent`` of the load processes: the bounding box to read and the mask.

openEO 2.0 lets ``load_collection`` / ``load_stac`` / ``load_result`` take polygons instead
of a bounding box: a ``Polygon`` or ``MultiPolygon``, a ``Feature`` with one, a
``FeatureCollection`` of them (or a ``GeometryCollection``, named by ``load_result``); empty
geometries are ignored. The spec's rule for raster data: a pixel is loaded "if the point at the
pixel center intersects with the bounding box or any of the polygons"; the others become null
(NaN). So the loader reads the polygons' bounding box (which fixes the cube grid, exactly as a
bounding box extent would) and sets the pixels whose centre lies outside every polygon to NaN.

Coordinates are WGS 84 longitude/latitude (RFC 7946). The geometry travels as GeoJSON text
(``LoadOptions.geometry``) so load plans stay plain JSON and every tile masks itself: the mask
of a tile is computed on that tile's grid, which gives the same pixels as masking the whole cube.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any

import numpy as np
import shapely
import xarray as xr
from pyproj import CRS, Transformer
from rasterio.crs import CRS as RasterCRS
from rasterio.features import rasterize
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from openeo_airflow.core.errors import ProcessParameterInvalid
from openeo_airflow.cube import cube_crs, cube_transform
from openeo_airflow.io.grid import Grid

BBox = tuple[float, float, float, float]
POLYGONS = ("Polygon", "MultiPolygon")
# Straight GeoJSON edges (in lon/lat) bend in a projected grid: edges are cut into this many
# pieces of the geometry's extent before reprojection, so the mask follows them closely.
DENSIFY_PARTS = 256


def is_geojson(extent: Any) -> bool:
    """Whether a ``spatial_extent`` is GeoJSON (it has a ``type``) rather than a bounding box."""
    return isinstance(extent, dict) and "type" in extent


def parse_geojson(extent: dict[str, Any], process: str = "load_collection") -> BaseGeometry:
    """The union of the extent's polygons (WGS 84); raises ``ProcessParameterInvalid``."""
    parts = [
        part
        for geometry in _geometries(extent, process)
        if not (part := _shape(geometry, process)).is_empty
    ]
    if not parts:
        raise _invalid(process, "The GeoJSON has no non-empty Polygon or MultiPolygon.")
    union = shapely.union_all(parts)
    west, south, east, north = union.bounds
    if not all(math.isfinite(v) for v in union.bounds) or south < -90 or north > 90:
        raise _invalid(process, "GeoJSON coordinates must be longitude/latitude (WGS 84).")
    if west >= east or south >= north:
        raise _invalid(process, "The polygons have no area.")
    return union


def geometry_text(extent: Any, process: str = "load_collection") -> str | None:
    """The mask geometry of a ``spatial_extent`` as GeoJSON text (``None``: a bounding box)."""
    if not is_geojson(extent):
        return None
    return json.dumps(mapping(parse_geojson(extent, process)))


def bbox_extent(extent: dict[str, Any]) -> dict[str, Any]:
    """A bounding box ``{west, south, east, north, crs}`` for any ``spatial_extent``: the
    polygons' bounds for GeoJSON (what sizing estimates need); bounding boxes pass through."""
    if not is_geojson(extent):
        return extent
    west, south, east, north = parse_geojson(extent).bounds
    return {"west": west, "south": south, "east": east, "north": north, "crs": 4326}


def inside(geometry: str, grid: Grid) -> np.ndarray:
    """Boolean ``(height, width)``: pixels of ``grid`` whose centre intersects the geometry.

    GDAL's rasterizer decides most pixels fast (its default rule is the pixel centre); the
    pixels along the outline, where it and "intersects" (boundary included) may differ, are
    tested exactly with shapely.
    """
    shape_ = (grid.height, grid.width)
    if grid.width == 0 or grid.height == 0:
        return np.zeros(shape_, dtype=bool)
    projected = _projected(geometry, grid.crs.to_wkt())
    centre = rasterize([(projected, 1)], out_shape=shape_, transform=grid.transform, fill=0)
    touched = rasterize(
        [(projected, 1)], out_shape=shape_, transform=grid.transform, fill=0, all_touched=True
    )
    result = centre.astype(bool)
    rows, cols = np.nonzero(touched.astype(bool) & ~result)
    if rows.size:
        t = grid.transform
        xs = t.c + (cols + 0.5) * t.a  # pixel centres of a north-up grid
        ys = t.f + (rows + 0.5) * t.e
        result[rows, cols] = shapely.intersects_xy(projected, xs, ys)
    return result


def mask_cube(cube: xr.DataArray, geometry: str | None) -> xr.DataArray:
    """``cube`` with the pixels outside ``geometry`` set to NaN (for loaders that read whole
    cubes, e.g. Sentinel Hub and on-the-fly backscatter)."""
    if geometry is None or not {"x", "y"} <= set(cube.dims):
        return cube
    transform = cube_transform(cube)
    crs = RasterCRS.from_wkt(cube_crs(cube).to_wkt())
    grid = Grid(crs, transform, cube.sizes["x"], cube.sizes["y"])
    keep = xr.DataArray(inside(geometry, grid), dims=("y", "x"))
    return cube.where(keep)


@lru_cache(maxsize=32)
def _projected(geometry: str, crs_wkt: str) -> BaseGeometry:
    """The geometry densified in lon/lat and reprojected into the grid's CRS (cached: every
    tile and band of a load masks with the same geometry)."""
    geom = shape(json.loads(geometry))
    target = CRS.from_wkt(crs_wkt)
    if target.to_epsg() == 4326:
        return geom
    west, south, east, north = geom.bounds
    geom = shapely.segmentize(geom, max(east - west, north - south) / DENSIFY_PARTS)
    transformer = Transformer.from_crs("EPSG:4326", target, always_xy=True)
    projected = shapely.transform(geom, lambda xy: np.column_stack(transformer.transform(*xy.T)))
    return projected if projected.is_valid else shapely.make_valid(projected)


def _geometries(extent: dict[str, Any], process: str) -> list[dict[str, Any]]:
    kind = extent.get("type")
    if kind in POLYGONS:
        return [extent]
    if kind == "Feature":
        geometry = extent.get("geometry")
        if geometry is None:
            return []
        _require_polygons(geometry, process)
        return [geometry]
    if kind == "FeatureCollection":
        features = extent.get("features")
        if not isinstance(features, list):
            raise _invalid(process, "A FeatureCollection needs a 'features' list.")
        found = []
        for feature in features:
            if not isinstance(feature, dict) or feature.get("type") != "Feature":
                raise _invalid(process, "Every member of 'features' must be a Feature.")
            found += _geometries(feature, process)
        return found
    if kind == "GeometryCollection":
        members = extent.get("geometries")
        if not isinstance(members, list):
            raise _invalid(process, "A GeometryCollection needs a 'geometries' list.")
        for member in members:
            _require_polygons(member, process)
        return list(members)
    raise _invalid(
        process,
        f"GeoJSON type {kind!r} is not supported: give a Polygon, MultiPolygon, Feature or "
        "FeatureCollection of polygons, or a bounding box {west, south, east, north, crs}.",
    )


def _require_polygons(geometry: Any, process: str) -> None:
    if not isinstance(geometry, dict) or geometry.get("type") not in POLYGONS:
        kind = geometry.get("type") if isinstance(geometry, dict) else type(geometry).__name__
        raise _invalid(process, f"Only Polygon and MultiPolygon geometries, not {kind!r}.")


def _shape(geometry: dict[str, Any], process: str) -> BaseGeometry:
    try:
        geom = shape(geometry)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as error:
        raise _invalid(process, f"Invalid GeoJSON geometry: {error}.") from None
    except shapely.errors.GEOSException as error:
        raise _invalid(process, f"Invalid GeoJSON geometry: {error}.") from None
    # Self-intersecting rings are common in hand-drawn polygons: repair, do not refuse.
    return geom if geom.is_valid else shapely.make_valid(geom)


def _invalid(process: str, reason: str) -> ProcessParameterInvalid:
    return ProcessParameterInvalid(process=process, parameter="spatial_extent", reason=reason)
