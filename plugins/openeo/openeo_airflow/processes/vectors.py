"""Vector cube processes: buffers, reprojection, points from geometries, ``filter_vector``.

They work on the vector cubes of ``vector.py`` (a ``geometry`` dimension of shapely geometries,
``crs_wkt`` on its coordinate) and accept inline GeoJSON where a vector cube is expected (as
``load_geojson`` would read it). Distances are in metres: geometries in a geographic CRS are
projected to an azimuthal equidistant projection centred on each geometry, processed there and
projected back; other CRSs use their own linear unit, converted to metres.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import shapely
import xarray as xr
from pyproj import CRS
from pyproj.exceptions import CRSError

from openeo_airflow.core.errors import ProcessParameterInvalid

from .exceptions import process_error
from .registry import process
from .values import is_number, one_of
from .vector import GEOMETRY_DIM, WGS84, geometries_of, load_geojson, reproject

Operation = Callable[[Any], Any]

# Specs of the experimental openEO 2.0 processes the spec package we load lacks (our wording).
_VECTOR = {"type": "object", "subtype": "datacube", "dimensions": [{"type": "geometry"}]}
_DATA = {"name": "data", "description": "A vector cube of the input geometries.", "schema": _VECTOR}
_GROUP = {
    "name": "group",
    "description": "`true`: one `MultiPoint` per input geometry, which keeps its values; "
    "`false`: one `Point` per label, each with the values of the geometry it came from.",
    "schema": {"type": "boolean"},
    "default": True,
    "optional": True,
}
_POINTS = {"description": "A vector cube of the points.", "schema": _VECTOR}
_UNIT_MISMATCH = {"UnitMismatch": {"message": "The CRS of the geometries has no linear unit."}}


def _spec(process_id: str, summary: str, description: str, parameters: list[Any]) -> dict[str, Any]:
    return {
        "id": process_id,
        "summary": summary,
        "description": description + " (Experimental openEO 2.0 process; this description is "
        "ours, the spec package we load does not ship one.)",
        "categories": ["cubes", "vector"],
        "experimental": True,
        "parameters": parameters,
        "returns": _POINTS,
    }


def _optional(name: str, description: str, schema: Any, default: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "schema": schema,
        "default": default,
        "optional": True,
    }


_COUNT = [{"type": "integer", "minimum": 1}, {"type": "null"}]
RANDOM_POINTS_SPEC = _spec(
    "vector_to_random_points",
    "Random points in geometries",
    "Samples random points inside polygons, along lines and among the points of each "
    "geometry: one per geometry unless `geometry_count` or `total_count` ask for more. "
    "Empty geometries get no points. The same `seed` gives the same points.",
    [
        _DATA,
        _optional("geometry_count", "At most this many points per geometry.", _COUNT, None),
        _optional(
            "total_count",
            "At most this many points in all, shared out evenly; less than the number of "
            "geometries is a `CountMismatch`.",
            _COUNT,
            None,
        ),
        _GROUP,
        _optional("seed", "Seed of the random draws.", {"type": ["integer", "null"]}, None),
    ],
) | {"exceptions": {"CountMismatch": {"message": "total_count is less than the geometries."}}}
REGULAR_POINTS_SPEC = _spec(
    "vector_to_regular_points",
    "Regularly spaced points in geometries",
    "Points `distance` metres apart: the centres of a grid of square cells starting at the "
    "upper-left corner of each polygon (its first coordinate if no centre falls inside), "
    "steps along each line from its first coordinate, and points as they are.",
    [
        _DATA,
        {
            "name": "distance",
            "description": "Spacing in metres.",
            "schema": {"type": "number", "exclusiveMinimum": 0},
        },
        _GROUP,
    ],
) | {"exceptions": _UNIT_MISMATCH}
FILTER_VECTOR_SPEC = _spec(
    "filter_vector",
    "Keep the geometries in a spatial relation",
    "Keeps the geometries of `data` that are in `relation` to the union of `geometries` "
    "(`within`: the candidate lies inside the base geometries) and drops empty ones.",
    [
        _DATA,
        {
            "name": "geometries",
            "description": "The base geometries, as a vector cube or GeoJSON.",
            "schema": [_VECTOR, {"type": "object", "subtype": "geojson"}],
        },
        _optional(
            "relation",
            "The spatial predicate, candidate against base.",
            {
                "type": "string",
                "enum": [
                    "intersects",
                    "disjoint",
                    "equals",
                    "touches",
                    "crosses",
                    "overlaps",
                    "contains",
                    "within",
                ],
            },
            "intersects",
        ),
    ],
) | {"returns": {"description": "The geometries kept, with their values.", "schema": _VECTOR}}


# --- vector cubes in, vector cubes out ------------------------------------------------------------


def vector_cube(process_id: str, value: Any, parameter: str) -> xr.DataArray:
    """``value`` as a vector cube: a vector cube as is, GeoJSON through ``load_geojson``."""
    if isinstance(value, xr.DataArray) and GEOMETRY_DIM in value.dims:
        return value
    if isinstance(value, dict) and "type" in value:
        geometries_of(process_id, value, parameter)  # a clear error for broken GeoJSON
        cube = load_geojson(value)
        if GEOMETRY_DIM in cube.dims:
            return cube
    raise ProcessParameterInvalid(
        process=process_id, parameter=parameter, reason="expected a vector cube or GeoJSON"
    )


def cube_crs(cube: xr.DataArray) -> CRS:
    return geometries_of("vector", cube, "data")[1]


def with_geometries(
    cube: xr.DataArray, geometries: list[Any], crs: CRS, rows: list[int] | None = None
) -> xr.DataArray:
    """The labels ``rows`` of ``cube`` (all by default) with new geometries in ``crs``."""
    picked = cube.isel({GEOMETRY_DIM: list(range(len(geometries))) if rows is None else rows})
    labels = np.empty(len(geometries), dtype=object)
    labels[:] = geometries
    picked = picked.assign_coords({GEOMETRY_DIM: labels})
    picked.coords[GEOMETRY_DIM].attrs.update(type="geometry", crs_wkt=crs.to_wkt())
    return picked


def _exploded(cube: xr.DataArray, points: list[list[Any]], crs: CRS) -> xr.DataArray:
    """One label per point (``group: false``), each with its source geometry's values."""
    rows = [i for i, found in enumerate(points) for _ in found]
    return with_geometries(cube, [p for found in points for p in found], crs, rows)


# --- metres -------------------------------------------------------------------------------------


def _metre_factor(process_id: str, crs: CRS, parameter: str) -> float:
    """Metres per unit of a projected CRS's axes."""
    axis = crs.axis_info[0] if crs.axis_info else None
    factor = axis.unit_conversion_factor if axis is not None else None
    if not factor or (axis is not None and axis.unit_name in ("degree", "radian")):
        raise process_error(
            process_id,
            "UnitMismatch",
            f"'{parameter}' is in metres, but the geometries' CRS has no linear unit; "
            "use vector_reproject() to a projected CRS first.",
        )
    return float(factor)


def in_metres(process_id: str, geometry: Any, crs: CRS, parameter: str, fn: Operation) -> Any:
    """``fn(geometry)`` computed in metres, the result in ``crs`` again.

    Geographic geometries go through an azimuthal equidistant projection centred on the
    geometry (distances from its centre are exact, and a local geometry barely distorts).
    """
    if geometry.is_empty:
        return fn(geometry)
    if crs.is_geographic:
        centre = reproject([geometry.centroid], crs, WGS84)[0]
        local = CRS.from_proj4(
            f"+proj=aeqd +lat_0={centre.y} +lon_0={centre.x} +datum=WGS84 +units=m +no_defs"
        )
        projected = reproject([geometry], crs, local)[0]
        return _back(fn(projected), local, crs)
    factor = _metre_factor(process_id, crs, parameter)
    if factor == 1.0:
        return fn(geometry)
    scaled = shapely.transform(geometry, lambda xy: xy * factor)
    return _map(fn(scaled), lambda g: shapely.transform(g, lambda xy: xy / factor))


def _back(result: Any, local: CRS, crs: CRS) -> Any:
    return _map(result, lambda g: reproject([g], local, crs)[0])


def _map(result: Any, fn: Operation) -> Any:
    return [fn(g) for g in result] if isinstance(result, list) else fn(result)


# --- vector_buffer and vector_reproject -----------------------------------------------------------


@process("vector_buffer")
def vector_buffer(geometries: Any, distance: Any) -> Any:
    """Grows (or with a negative distance shrinks) every geometry by ``distance`` metres.

    Results are polygons; empty geometries stay empty, and shrinking may empty a polygon.
    """
    if not is_number(distance) or distance == 0 or not math.isfinite(distance):
        raise ProcessParameterInvalid(
            process="vector_buffer",
            parameter="distance",
            reason=f"expected a finite number other than 0, got {distance!r}",
        )
    cube = vector_cube("vector_buffer", geometries, "geometries")
    shapes, crs = geometries_of("vector_buffer", cube, "geometries")

    def buffer(geometry: Any) -> Any:
        return geometry if geometry.is_empty else geometry.buffer(float(distance))

    return with_geometries(
        cube, [in_metres("vector_buffer", g, crs, "distance", buffer) for g in shapes], crs
    )


def parse_crs(process_id: str, value: Any, parameter: str) -> CRS:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ProcessParameterInvalid(
            process=process_id,
            parameter=parameter,
            reason=f"expected an EPSG code or a WKT2 string, got {value!r}",
        )
    try:
        return CRS.from_epsg(value) if isinstance(value, int) else CRS.from_wkt(value)
    except CRSError as exc:
        raise ProcessParameterInvalid(
            process=process_id, parameter=parameter, reason=f"unknown CRS {value!r}: {exc}"
        ) from exc


@process("vector_reproject")
def vector_reproject(data: Any, projection: Any, dimension: Any = None) -> Any:
    """The geometries in another CRS; the values and other dimensions stay as they are."""
    cube = vector_cube("vector_reproject", data, "data")
    if dimension is not None and dimension != GEOMETRY_DIM:
        raise process_error(
            "vector_reproject",
            "DimensionNotAvailable",
            f"'{dimension}' is not a geometry dimension (it has '{GEOMETRY_DIM}').",
        )
    target = parse_crs("vector_reproject", projection, "projection")
    shapes, crs = geometries_of("vector_reproject", cube, "data")
    return with_geometries(cube, reproject(shapes, crs, target), target)


# --- points from geometries -----------------------------------------------------------------------


def _random_in(geometry: Any, count: int, rng: np.random.Generator) -> list[Any]:
    """``count`` distinct random points of ``geometry`` (fewer for a few input points)."""
    kind = geometry.geom_type
    if geometry.is_empty or count <= 0:
        return []
    if kind in ("Point", "MultiPoint"):
        points = list(getattr(geometry, "geoms", [geometry]))
        chosen = rng.choice(len(points), size=min(count, len(points)), replace=False)
        return [points[i] for i in sorted(chosen)]
    if kind in ("LineString", "MultiLineString", "LinearRing"):
        line = shapely.line_merge(geometry) if kind == "MultiLineString" else geometry
        positions = rng.uniform(0, geometry.length, count)
        if line.geom_type == "LineString":
            return list(shapely.line_interpolate_point(line, positions))
        parts = list(line.geoms)
        ends = np.cumsum([p.length for p in parts])
        index = np.minimum(np.searchsorted(ends, positions, side="right"), len(parts) - 1)
        starts = ends - [p.length for p in parts]
        return [
            shapely.line_interpolate_point(parts[i], pos - starts[i])
            for i, pos in zip(index, positions, strict=True)
        ]
    if kind == "GeometryCollection":
        return _random_in(shapely.union_all(list(geometry.geoms)), count, rng)
    # Areal: uniform draws in the bounding box, kept when inside, until there are enough.
    left, bottom, right, top = geometry.bounds
    shapely.prepare(geometry)
    found: list[Any] = []
    while len(found) < count:
        batch = max(2 * (count - len(found)), 16)
        xy = np.column_stack([rng.uniform(left, right, batch), rng.uniform(bottom, top, batch)])
        candidates = shapely.points(xy)
        found.extend(candidates[shapely.contains(geometry, candidates)][: count - len(found)])
    return found


def _counts(process_id: str, n: int, geometry_count: Any, total_count: Any) -> list[int]:
    for name, value in (("geometry_count", geometry_count), ("total_count", total_count)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ProcessParameterInvalid(
                process=process_id,
                parameter=name,
                reason=f"expected an integer of at least 1 or null, got {value!r}",
            )
    if total_count is not None and total_count < n:
        raise process_error(
            process_id,
            "CountMismatch",
            f"total_count is {total_count}, less than the {n} geometries.",
        )
    if total_count is None:
        return [geometry_count or 1] * n
    # The total shared out evenly, the first geometries taking the remainder.
    share = [total_count // n + (1 if i < total_count % n else 0) for i in range(n)]
    return share if geometry_count is None else [min(s, geometry_count) for s in share]


@process("vector_to_random_points", spec=RANDOM_POINTS_SPEC)
def vector_to_random_points(
    data: Any,
    geometry_count: Any = None,
    total_count: Any = None,
    group: Any = True,
    seed: Any = None,
) -> Any:
    """Random points inside each geometry (along lines, among points); one per geometry
    unless ``geometry_count`` / ``total_count`` say more. The same ``seed``, the same points."""
    process_id = "vector_to_random_points"
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ProcessParameterInvalid(
            process=process_id, parameter="seed", reason=f"expected an integer, got {seed!r}"
        )
    cube = vector_cube(process_id, data, "data")
    shapes, crs = geometries_of(process_id, cube, "data")
    counts = _counts(process_id, len(shapes), geometry_count, total_count)
    rng = np.random.default_rng(seed)
    points = [
        in_metres(process_id, g, crs, "data", partial(_random_in, count=c, rng=rng))
        for g, c in zip(shapes, counts, strict=True)
    ]
    return _points_cube(process_id, cube, shapes, points, crs, group)


def _regular_in(geometry: Any, distance: float) -> list[Any]:
    kind = geometry.geom_type
    if geometry.is_empty:
        return []
    if kind == "Point":
        return [geometry]
    if kind in ("MultiPoint", "MultiLineString", "GeometryCollection"):
        return [p for part in geometry.geoms for p in _regular_in(part, distance)]
    if kind in ("LineString", "LinearRing"):
        steps = np.arange(0.0, geometry.length + distance * 1e-9, distance)
        return list(shapely.line_interpolate_point(geometry, steps))
    # Areal: the centres of a grid of `distance` cells from the upper-left corner.
    left, bottom, right, top = geometry.bounds
    xs = np.arange(left + distance / 2, right, distance)
    ys = np.arange(top - distance / 2, bottom, -distance)
    grid = shapely.points(np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2))
    inside = list(grid[shapely.contains(geometry, grid)]) if grid.size else []
    return inside or [shapely.points(shapely.get_coordinates(geometry)[0])]


@process("vector_to_regular_points", spec=REGULAR_POINTS_SPEC)
def vector_to_regular_points(data: Any, distance: Any, group: Any = True) -> Any:
    """Points ``distance`` metres apart: the centres of a grid over polygons, steps along
    lines from their first coordinate, and points as they are."""
    process_id = "vector_to_regular_points"
    if not is_number(distance) or not distance > 0 or not math.isfinite(distance):
        raise ProcessParameterInvalid(
            process=process_id,
            parameter="distance",
            reason=f"expected a positive number of metres, got {distance!r}",
        )
    cube = vector_cube(process_id, data, "data")
    shapes, crs = geometries_of(process_id, cube, "data")
    points = [
        in_metres(process_id, g, crs, "distance", lambda m: _regular_in(m, float(distance)))
        for g in shapes
    ]
    return _points_cube(process_id, cube, shapes, points, crs, group)


def _points_cube(
    process_id: str,
    cube: xr.DataArray,
    shapes: list[Any],
    points: list[list[Any]],
    crs: CRS,
    group: Any,
) -> xr.DataArray:
    if not isinstance(group, bool):
        raise ProcessParameterInvalid(
            process=process_id, parameter="group", reason=f"expected a boolean, got {group!r}"
        )
    if not group:
        return _exploded(cube, points, crs)
    grouped = [
        shapely.multipoints(found) if found else shape
        for shape, found in zip(shapes, points, strict=True)
    ]
    return with_geometries(cube, grouped, crs)


# --- filter_vector --------------------------------------------------------------------------------

RELATIONS: dict[str, Callable[[Any, Any], Any]] = {
    # candidate (data) against the union of the base geometries
    "intersects": shapely.intersects,
    "disjoint": shapely.disjoint,
    "equals": shapely.equals,
    "touches": shapely.touches,
    "crosses": shapely.crosses,
    "overlaps": shapely.overlaps,
    "contains": shapely.contains,
    "within": shapely.within,
}


@process("filter_vector", spec=FILTER_VECTOR_SPEC)
def filter_vector(data: Any, geometries: Any, relation: Any = "intersects") -> Any:
    """The geometries of ``data`` that stand in ``relation`` to the union of ``geometries``
    (``within``: candidates inside the base; ``contains``: candidates holding the base).
    Empty candidates are dropped."""
    process_id = "filter_vector"
    relation = one_of(process_id, "relation", relation, RELATIONS)
    cube = vector_cube(process_id, data, "data")
    candidates, crs = geometries_of(process_id, cube, "data")
    base, base_crs = geometries_of(process_id, geometries, "geometries")
    union = shapely.union_all(reproject(base, base_crs, crs))
    keep = [
        i
        for i, g in enumerate(candidates)
        if not g.is_empty and bool(RELATIONS[relation](g, union))
    ]
    return with_geometries(cube, [candidates[i] for i in keep], crs, keep)
