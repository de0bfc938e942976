"""``apply_polygon``: run a process over the pixels of each polygon.

Each polygon (GeoJSON or a vector cube, reprojected into the cube's CRS) selects the pixels
whose centre it contains (``vector.pixel_mask``). The process gets, per polygon, the cube cut
to the smallest window around those pixels, with the pixels outside the polygon set to
``mask_value`` (no-data by default), and must return a cube of that shape; its values are kept
at the polygon's pixels. Pixels outside every polygon are no-data in the result. A pixel in two
polygons is the spec's ``GeometriesOverlap``, checked before the process runs at all.

Global: a polygon's sub cube may span tiles, so the engine gathers the input first.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import xarray as xr

from openeo_airflow.core.errors import ProcessParameterInvalid
from openeo_airflow.cube import cube_crs, cube_resolution

from .exceptions import process_error
from .registry import process
from .space import Global
from .specs import process_spec
from .values import callback, raster_cube
from .vector import geometries_of, pixel_mask, reproject

AREAL = ("Polygon", "MultiPolygon")


def _polygons(cube: xr.DataArray, geometries: Any) -> list[Any]:
    shapes, crs = geometries_of("apply_polygon", geometries, "geometries")
    shapes = [g for g in shapes if g is not None and not g.is_empty]
    other = sorted({g.geom_type for g in shapes if g.geom_type not in AREAL})
    if other or not shapes:
        raise ProcessParameterInvalid(
            process="apply_polygon",
            parameter="geometries",
            reason=f"expected at least one polygon and only polygons, got {other or 'none'}",
        )
    return reproject(shapes, crs, cube_crs(cube))


def _window(cube: xr.DataArray, polygon: Any) -> tuple[slice, slice, np.ndarray] | None:
    """Rows, columns and pixel mask of the smallest window holding the polygon's pixels."""
    xres, yres = cube_resolution(cube)
    left, bottom, right, top = polygon.bounds
    x, y = cube.x.values, cube.y.values
    cols = np.flatnonzero((x >= left - xres / 2) & (x <= right + xres / 2))
    rows = np.flatnonzero((y >= bottom - yres / 2) & (y <= top + yres / 2))
    if not cols.size or not rows.size:
        return None
    near = cube.isel(y=slice(rows[0], rows[-1] + 1), x=slice(cols[0], cols[-1] + 1))
    inside = pixel_mask(near, [polygon]).values
    r, c = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    if not r.size:
        return None
    inside = inside[r[0] : r[-1] + 1, c[0] : c[-1] + 1]
    row0, col0 = rows[0] + r[0], cols[0] + c[0]
    return slice(row0, row0 + inside.shape[0]), slice(col0, col0 + inside.shape[1]), inside


def _fill(mask_value: Any) -> float:
    if mask_value is None:
        return float("nan")
    if isinstance(mask_value, bool | int | float):
        return float(mask_value)
    raise ProcessParameterInvalid(
        process="apply_polygon",
        parameter="mask_value",
        reason=f"this back-end's cubes hold numbers; got {mask_value!r}",
    )


def _apply_polygon_spec() -> dict[str, Any]:
    """The spec's schema for ``geometries`` is a vector cube only, though its description
    lists GeoJSON geometries, features and collections: accept those too."""
    spec = copy.deepcopy(process_spec("apply_polygon"))
    for parameter in spec["parameters"]:
        if parameter["name"] == "geometries":
            geojson = {
                "title": "GeoJSON",
                "type": "object",
                "subtype": "geojson",
                "description": "A Polygon or MultiPolygon, a Feature with one, or a "
                "FeatureCollection of such Features.",
            }
            parameter["schema"] = [parameter["schema"], geojson]
    return spec


@process("apply_polygon", space=Global(), spec=_apply_polygon_spec())
def apply_polygon(
    data: Any, geometries: Any, process: Any, mask_value: Any = None, context: Any = None
) -> Any:
    cube = raster_cube("apply_polygon", data)
    process = callback("apply_polygon", process, "process")
    fill = _fill(mask_value)
    windows = [w for w in (_window(cube, p) for p in _polygons(cube, geometries)) if w]
    owners = np.zeros((cube.sizes["y"], cube.sizes["x"]), dtype=np.int32)
    for rows, cols, inside in windows:
        owners[rows, cols] += inside
    if (owners > 1).any():
        raise process_error(
            "apply_polygon", "GeometriesOverlap", f"{int((owners > 1).sum())} pixel(s) overlap."
        )
    others = [str(d) for d in cube.dims if d not in ("y", "x")]
    ordered = cube.transpose(*others, "y", "x")
    result = np.full(ordered.shape, np.nan)
    for rows, cols, inside in windows:
        sub = ordered.isel(y=rows, x=cols)
        masked = (
            sub.where(inside, fill)
            if sub.dtype.kind == "f"
            else sub.astype(float).where(inside, fill)
        )
        out = process(data=masked, context=context)
        if (
            not isinstance(out, xr.DataArray)
            or set(out.dims) != set(sub.dims)
            or out.transpose(*sub.dims).shape != sub.shape
        ):
            raise ProcessParameterInvalid(
                process="apply_polygon",
                parameter="process",
                reason="must return a cube with the dimensions and shape of its input",
            )
        block = result[..., rows, cols]
        result[..., rows, cols] = np.where(inside, out.transpose(*sub.dims).values, block)
    dtype = cube.dtype if cube.dtype.kind == "f" else np.float64
    return ordered.copy(data=result.astype(dtype)).transpose(*cube.dims)
