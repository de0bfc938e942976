"""Geometries against raster cubes: ``mask_polygon``, ``filter_spatial``, ``aggregate_spatial``,
and vector cubes from GeoJSON (``load_geojson``).

Geometries come as GeoJSON (a geometry, a Feature, a FeatureCollection or a GeometryCollection,
in WGS 84 longitude/latitude) or as a vector cube. A vector cube is an ``xarray.DataArray`` with
a ``geometry`` dimension whose labels are shapely geometries (``crs_wkt`` in the coordinate's
attributes), possibly with more dimensions (``t``, ``bands``...).

A pixel belongs to a polygon when its centre lies inside it (GDAL's rasterisation rule); a point
or a line selects the pixels it touches.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely
import xarray as xr
from pyproj import CRS, Transformer
from rasterio.features import geometry_mask
from shapely.geometry import mapping, shape

from openeo_airflow.core.errors import ProcessParameterInvalid
from openeo_airflow.cube import cube_crs, cube_resolution, cube_transform

from .exceptions import process_error
from .registry import process
from .space import Global, Reduction
from .values import LabeledArray, as_cube, broadcast_value, canonical_order

GEOMETRY_DIM = "geometry"
PIXELS = "__pixels__"
WGS84 = CRS.from_epsg(4326)


# --- geometries -----------------------------------------------------------------------------------


def _geojson_geometries(value: dict[str, Any]) -> list[Any]:
    kind = value.get("type")
    if kind == "FeatureCollection":
        return [g for f in value.get("features") or [] for g in _geojson_geometries(f)]
    if kind == "Feature":
        return _geojson_geometries(value["geometry"]) if value.get("geometry") else []
    if kind == "GeometryCollection":
        return [g for item in value.get("geometries") or [] for g in _geojson_geometries(item)]
    return [shape(value)]


def geometries_of(process_id: str, value: Any, parameter: str) -> tuple[list[Any], CRS]:
    """Shapely geometries and their CRS from GeoJSON or a vector cube."""
    if isinstance(value, xr.DataArray) and GEOMETRY_DIM in value.dims:
        coord = value.coords[GEOMETRY_DIM]
        return list(coord.values), CRS.from_wkt(coord.attrs.get("crs_wkt", WGS84.to_wkt()))
    if isinstance(value, dict) and "type" in value:
        try:
            return _geojson_geometries(value), WGS84
        except Exception as exc:
            raise ProcessParameterInvalid(
                process=process_id, parameter=parameter, reason=f"invalid GeoJSON: {exc}"
            ) from exc
    raise ProcessParameterInvalid(
        process=process_id, parameter=parameter, reason="expected GeoJSON or a vector cube"
    )


def reproject(geometries: list[Any], source: CRS, target: CRS) -> list[Any]:
    if source == target:
        return geometries
    transformer = Transformer.from_crs(source, target, always_xy=True)
    return [
        shapely.transform(g, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))
        for g in geometries
    ]


def _in_cube_crs(process_id: str, cube: xr.DataArray, value: Any, parameter: str) -> list[Any]:
    geometries, crs = geometries_of(process_id, value, parameter)
    return reproject(geometries, crs, cube_crs(cube))


def pixel_mask(cube: xr.DataArray, geometries: list[Any]) -> xr.DataArray:
    """``True`` for pixels whose centre is inside any of ``geometries`` (in the cube's CRS)."""
    height, width = cube.sizes["y"], cube.sizes["x"]
    if not geometries or not height or not width:
        inside = np.zeros((height, width), dtype=bool)
    else:
        areal = [g for g in geometries if g.geom_type in ("Polygon", "MultiPolygon")]
        other = [g for g in geometries if g.geom_type not in ("Polygon", "MultiPolygon")]
        inside = np.zeros((height, width), dtype=bool)
        transform = cube_transform(cube)
        if areal:
            inside |= geometry_mask(areal, (height, width), transform, invert=True)
        if other:
            inside |= geometry_mask(
                other, (height, width), transform, invert=True, all_touched=True
            )
    return xr.DataArray(inside, dims=("y", "x"), coords={"y": cube.y, "x": cube.x})


def _spatial(process_id: str, cube: xr.DataArray) -> None:
    for dim in ("x", "y"):
        if dim not in cube.dims:
            raise process_error(process_id, "DimensionNotAvailable", f"'{dim}' is missing.")


# --- mask_polygon and filter_spatial --------------------------------------------------------------


@process("mask_polygon")
def mask_polygon(data: Any, mask: Any, replacement: Any = None, inside: Any = False) -> Any:
    """Replaces pixels outside the polygons (``inside: true``: inside them) by ``replacement``."""
    cube = as_cube("mask_polygon", data)
    _spatial("mask_polygon", cube)
    covered = pixel_mask(cube, _in_cube_crs("mask_polygon", cube, mask, "mask"))
    keep = ~covered if inside else covered
    fill = np.nan if replacement is None else replacement
    return canonical_order(cube.where(keep, fill))


@process("filter_spatial")
def filter_spatial(data: Any, geometries: Any) -> Any:
    """Crops to the pixels the geometries cover (their bounding box) and masks the rest."""
    cube = as_cube("filter_spatial", data)
    _spatial("filter_spatial", cube)
    shapes = _in_cube_crs("filter_spatial", cube, geometries, "geometries")
    covered = pixel_mask(cube, shapes)
    rows = np.flatnonzero(covered.any("x").values)
    cols = np.flatnonzero(covered.any("y").values)
    if not rows.size:
        return cube.isel(x=slice(0, 0), y=slice(0, 0))
    window = {"y": slice(rows[0], rows[-1] + 1), "x": slice(cols[0], cols[-1] + 1)}
    return canonical_order(cube.isel(window).where(covered.isel(window)))


# --- aggregate_spatial ----------------------------------------------------------------------------


def _covering(coords: np.ndarray, low: float, high: float, margin: float) -> slice:
    """The index range of ``coords`` (pixel centres) within ``[low, high]`` plus ``margin``."""
    hits = np.flatnonzero((coords >= low - margin) & (coords <= high + margin))
    return slice(int(hits[0]), int(hits[-1]) + 1) if hits.size else slice(0, 0)


def _pixels(cube: xr.DataArray, geometry: Any) -> xr.DataArray:
    """The cube's values at the pixels of one geometry, along a ``__pixels__`` dimension.

    Only the window around the geometry's bounds is rasterised and stacked: doing it for the
    whole cube made each geometry cost as much as the cube (50 polygons, 50 full copies)."""
    xres, yres = cube_resolution(cube)
    minx, miny, maxx, maxy = geometry.bounds
    window = {
        "x": _covering(cube.x.values, minx, maxx, abs(xres)),
        "y": _covering(cube.y.values, miny, maxy, abs(yres)),
    }
    part = cube.isel(window)
    inside = pixel_mask(part, [geometry]).values.ravel()
    stacked = part.stack({PIXELS: ("y", "x")}).drop_vars(["x", "y", PIXELS], errors="ignore")
    return stacked.isel({PIXELS: np.flatnonzero(inside)})


def _vector_cube(parts: list[xr.DataArray], geometries: list[Any], crs: CRS) -> xr.DataArray:
    labels = np.empty(len(geometries), dtype=object)
    labels[:] = geometries
    result = xr.concat(parts, dim=GEOMETRY_DIM, coords="minimal", compat="override")
    result = result.assign_coords({GEOMETRY_DIM: labels})
    result.coords[GEOMETRY_DIM].attrs.update(type="geometry", crs_wkt=crs.to_wkt())
    return result.transpose(GEOMETRY_DIM, *[d for d in result.dims if d != GEOMETRY_DIM])


def _reduce_pixels(values: xr.DataArray, reducer: Any, context: Any) -> xr.DataArray:
    result = reducer(data=LabeledArray(values, PIXELS), context=context)
    if not isinstance(result, xr.DataArray):
        result = broadcast_value(
            result,
            values.isel({PIXELS: 0}, drop=True) if values.sizes[PIXELS] else values.sum(PIXELS),
        )
    return result


def _check(cube: xr.DataArray, reducer: Any, target_dimension: Any) -> None:
    _spatial("aggregate_spatial", cube)
    if target_dimension is not None and target_dimension in cube.dims:
        raise process_error("aggregate_spatial", "TargetDimensionExists", f"'{target_dimension}'.")
    if not callable(reducer):
        raise ProcessParameterInvalid(
            process="aggregate_spatial", parameter="reducer", reason="not a process graph"
        )


def _partial(arguments: dict[str, Any]) -> list[xr.DataArray]:
    cube = as_cube("aggregate_spatial", arguments["data"])
    _spatial("aggregate_spatial", cube)
    shapes = _in_cube_crs("aggregate_spatial", cube, arguments["geometries"], "geometries")
    return [_pixels(cube, g) for g in shapes]


def _combine(partials: list[list[xr.DataArray]]) -> list[xr.DataArray]:
    return [xr.concat(parts, dim=PIXELS) for parts in zip(*partials, strict=True)]


def _finish(pixels: list[xr.DataArray], arguments: dict[str, Any]) -> xr.DataArray:
    geometries, crs = geometries_of("aggregate_spatial", arguments["geometries"], "geometries")
    reducer, context = arguments["reducer"], arguments.get("context")
    parts = [_reduce_pixels(values, reducer, context) for values in pixels]
    return _vector_cube(parts, geometries, crs)


AGGREGATE_SPATIAL = Reduction(partial=_partial, combine=_combine, finish=_finish)


@process("aggregate_spatial", space=Global(AGGREGATE_SPATIAL))
def aggregate_spatial(
    data: Any, geometries: Any, reducer: Any, target_dimension: Any = None, context: Any = None
) -> Any:
    """Reduces the pixels of each geometry (per date and band) into a vector cube.

    The result has a ``geometry`` dimension (the input geometries, in their own CRS) followed
    by the cube's other non-spatial dimensions. An empty geometry gives no-data.
    """
    cube = as_cube("aggregate_spatial", data)
    _check(cube, reducer, target_dimension)
    arguments = {"data": cube, "geometries": geometries, "reducer": reducer, "context": context}
    return _finish(_combine([_partial(arguments)]), arguments)


# --- vector cubes from GeoJSON --------------------------------------------------------------------


@process("load_geojson")
def load_geojson(data: Any, properties: Any = None) -> Any:
    """A vector cube of the GeoJSON's geometries; ``properties`` become a ``properties``
    dimension with the features' values (``null`` where a feature lacks one)."""
    geometries = geometries_of("load_geojson", data, "data")[0]
    features = data.get("features") if data.get("type") == "FeatureCollection" else [data]
    names = list(properties or [])
    if names:
        values = [[(f.get("properties") or {}).get(n) for n in names] for f in features or []]
        cube = xr.DataArray(
            np.array(values, dtype=object),
            dims=(GEOMETRY_DIM, "properties"),
            coords={"properties": names},
        )
    else:
        cube = xr.DataArray(np.full(len(geometries), np.nan), dims=(GEOMETRY_DIM,))
    return (
        _vector_cube(
            [cube.isel({GEOMETRY_DIM: i}) for i in range(len(geometries))], geometries, WGS84
        )
        if geometries
        else cube
    )


def geometry_json(value: Any) -> Any:
    """A shapely geometry as GeoJSON (for JSON results)."""
    return mapping(value)
