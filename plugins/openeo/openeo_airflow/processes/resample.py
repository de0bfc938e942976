"""Resampling: ``resample_spatial``, ``resample_cube_spatial`` (GDAL warping through rasterio)
and ``resample_cube_temporal`` (nearest label in time).

Spatial resampling produces a new grid from the whole extent, so it is declared ``Global``
(the engine gathers its input); the temporal one is local in space.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from affine import Affine
from pyproj import CRS
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject

from openeo_airflow.core.errors import ProcessParameterInvalid
from openeo_airflow.cube import cube_crs, cube_resolution, cube_transform, spatial_ref

from .exceptions import process_error
from .registry import process
from .space import Global
from .values import as_cube, canonical_order, temporal_dimension

METHODS = {
    "near": Resampling.nearest,
    "bilinear": Resampling.bilinear,
    "cubic": Resampling.cubic,
    "cubicspline": Resampling.cubic_spline,
    "lanczos": Resampling.lanczos,
    "average": Resampling.average,
    "mode": Resampling.mode,
    "max": Resampling.max,
    "min": Resampling.min,
    "med": Resampling.med,
    "q1": Resampling.q1,
    "q3": Resampling.q3,
    "sum": Resampling.sum,
    "rms": Resampling.rms,
}


def _method(process_id: str, method: Any) -> Resampling:
    if method not in METHODS:
        raise ProcessParameterInvalid(
            process=process_id, parameter="method", reason=f"unknown method {method!r}"
        )
    return METHODS[method]


def _spatial(process_id: str, cube: xr.DataArray) -> None:
    for dim in ("x", "y"):
        if dim not in cube.dims:
            raise ProcessParameterInvalid(
                process=process_id, parameter="data", reason=f"dimension '{dim}' is missing"
            )


def warp(
    cube: xr.DataArray, crs: CRS, transform: Affine, shape: tuple[int, int], method: Resampling
) -> xr.DataArray:
    """``cube`` on the grid ``(crs, transform, shape)``, slice by slice; NaN stays no-data."""
    ordered = cube.transpose(..., "y", "x")
    source = np.asarray(
        ordered.values, dtype=np.float32 if cube.dtype == np.float32 else np.float64
    )
    lead = source.shape[:-2]
    flat = source.reshape((-1, *source.shape[-2:]))
    target = np.full((flat.shape[0], *shape), np.nan, dtype=flat.dtype)
    src_crs, src_transform = cube_crs(cube), cube_transform(cube)
    for i in range(flat.shape[0]):
        reproject(
            flat[i],
            target[i],
            src_transform=src_transform,
            src_crs=src_crs,
            src_nodata=np.nan,
            dst_transform=transform,
            dst_crs=crs,
            dst_nodata=np.nan,
            resampling=method,
        )
    height, width = shape
    x = transform.c + (np.arange(width) + 0.5) * transform.a
    y = transform.f + (np.arange(height) + 0.5) * transform.e
    coords = {
        k: v
        for k, v in ordered.coords.items()
        if not {"x", "y"} & set(v.dims) and k != "spatial_ref"
    }
    coords |= {
        "x": x,
        "y": y,
        "spatial_ref": spatial_ref(crs, (abs(transform.a), abs(transform.e))),
    }
    result = xr.DataArray(target.reshape((*lead, height, width)), dims=ordered.dims, coords=coords)
    return canonical_order(result.transpose(*cube.dims))


def _resolution(value: Any) -> tuple[float, float] | None:
    if value in (None, 0, [], [0, 0]):
        return None
    if isinstance(value, int | float):
        return float(value), float(value)
    if isinstance(value, list) and len(value) == 2:
        return float(value[0]), float(value[1])
    raise ProcessParameterInvalid(
        process="resample_spatial", parameter="resolution", reason=f"invalid resolution {value!r}"
    )


CORNERS = ("upper-left", "upper-right", "lower-left", "lower-right")


def _aligned(
    transform: Affine, shape: tuple[int, int], bounds: tuple[float, ...], align: Any
) -> Affine:
    """``transform`` moved so that the grid meets the extent at the ``align`` corner."""
    left, bottom, right, top = bounds
    rows, cols = shape
    x0 = right - cols * transform.a if "right" in align else left
    y0 = bottom - rows * transform.e if "lower" in align else top
    return Affine(transform.a, 0, x0, 0, transform.e, y0)


@process("resample_spatial", space=Global())
def resample_spatial(
    data: Any,
    resolution: Any = 0,
    projection: Any = None,
    method: Any = "near",
    align: Any = "upper-left",
) -> Any:
    """Warps to ``projection`` (an EPSG code or WKT/PROJ text; ``null``: keep) at
    ``resolution`` (in the target CRS's units; 0: keep, or GDAL's estimate after reprojecting).
    The new grid starts at the ``align`` corner of the extent (default: upper left)."""
    if align not in CORNERS:
        raise ProcessParameterInvalid(
            process="resample_spatial", parameter="align", reason=f"one of {', '.join(CORNERS)}"
        )
    cube = as_cube("resample_spatial", data)
    _spatial("resample_spatial", cube)
    source_crs = cube_crs(cube)
    try:
        crs = source_crs if projection is None else CRS.from_user_input(projection)
    except Exception as exc:
        raise ProcessParameterInvalid(
            process="resample_spatial", parameter="projection", reason=str(exc)
        ) from exc
    width, height = cube.sizes["x"], cube.sizes["y"]
    transform = cube_transform(cube)
    left, top = transform.c, transform.f
    right, bottom = left + width * transform.a, top + height * transform.e
    wanted = _resolution(resolution)
    if crs == source_crs:
        xres, yres = wanted or cube_resolution(cube)
        new = Affine(xres, 0, left, 0, -yres, top)
        shape = (
            max(round((top - bottom) / yres), 1),
            max(round((right - left) / xres), 1),
        )
    else:
        new, cols, rows = calculate_default_transform(
            source_crs,
            crs,
            width,
            height,
            left=left,
            bottom=bottom,
            right=right,
            top=top,
            resolution=wanted,
        )
        shape = (rows, cols)
        left, top = new.c, new.f
        right, bottom = left + cols * new.a, top + rows * new.e
    new = _aligned(new, shape, (left, bottom, right, top), align)
    return warp(cube, crs, new, shape, _method("resample_spatial", method))


@process("resample_cube_spatial", space=Global())
def resample_cube_spatial(data: Any, target: Any, method: Any = "near") -> Any:
    """Warps ``data`` onto the grid (CRS, resolution, extent) of ``target``."""
    cube = as_cube("resample_cube_spatial", data)
    other = as_cube("resample_cube_spatial", target, "target")
    _spatial("resample_cube_spatial", cube)
    _spatial("resample_cube_spatial", other)
    shape = (other.sizes["y"], other.sizes["x"])
    result = warp(
        cube,
        cube_crs(other),
        cube_transform(other),
        shape,
        _method("resample_cube_spatial", method),
    )
    return result.assign_coords(x=other.x.values, y=other.y.values)


@process("resample_cube_temporal")
def resample_cube_temporal(
    data: Any, target: Any, dimension: Any = None, valid_within: Any = None
) -> Any:
    """For each temporal label of ``target``, the values at the nearest label of ``data``
    (the earlier one on a tie); farther away than ``valid_within`` days gives no-data."""
    cube = as_cube("resample_cube_temporal", data)
    other = as_cube("resample_cube_temporal", target, "target")
    if dimension is not None and (dimension not in cube.dims or dimension not in other.dims):
        raise process_error("resample_cube_temporal", "DimensionNotAvailable", f"'{dimension}'.")
    dims = (
        [dimension]
        if dimension is not None
        else [
            str(d)
            for d in cube.dims
            if d in other.dims
            and str(d) == temporal_dimension("resample_cube_temporal", cube, None)
        ]
    )
    if not dims:
        raise process_error("resample_cube_temporal", "DimensionMismatch")
    result = cube
    for dim in dims:
        source = pd.DatetimeIndex(result.indexes[dim])
        wanted = pd.DatetimeIndex(other.indexes[dim])
        if not len(source):
            raise process_error("resample_cube_temporal", "DimensionMismatch", "No labels.")
        gaps = np.abs(wanted.values[:, None] - source.values[None, :])
        nearest = gaps.argmin(axis=1)
        picked = result.isel({dim: nearest}).assign_coords({dim: wanted.values})
        if valid_within is not None:
            limit = np.timedelta64(int(float(valid_within) * 86400), "s")
            ok = gaps[np.arange(len(wanted)), nearest] <= limit
            picked = picked.where(xr.DataArray(ok, dims=dim, coords={dim: wanted.values}))
        result = picked
    return result
