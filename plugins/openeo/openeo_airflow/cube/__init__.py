"""The raster data cube model shared by the loader, the processes and the writers.

A cube is an ``xarray.DataArray`` whose dimensions are a subset of ``("t", "bands", "y", "x")``
in that order (processes may add others, e.g. after ``add_dimension``):

- ``t``: ``datetime64[ns]`` labels; ``bands``: string labels;
- ``y`` / ``x``: pixel-centre coordinates in the cube's CRS, ``y`` descending;
- a scalar coordinate ``spatial_ref`` whose attrs hold ``crs_wkt`` and the pixel size
  (``resolution``: ``[xres, yres]``, both positive). Coordinates travel through xarray
  arithmetic, so the grid survives processes that drop attrs.
- no-data is NaN (cubes are floating point; loaders convert integer sources).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from affine import Affine
from pyproj import CRS

DIMS = ("t", "bands", "y", "x")


def make_cube(
    data: np.ndarray,
    *,
    times: Sequence[np.datetime64] | np.ndarray,
    bands: Sequence[str],
    transform: Affine,
    crs: str | CRS,
) -> xr.DataArray:
    """Wrap a ``(t, bands, y, x)`` array on the grid given by a north-up affine transform."""
    _, _, height, width = data.shape
    xres, yres = transform.a, -transform.e
    x = transform.c + (np.arange(width) + 0.5) * xres
    y = transform.f - (np.arange(height) + 0.5) * yres
    return xr.DataArray(
        data,
        dims=DIMS,
        coords={
            "t": np.asarray(times, dtype="datetime64[ns]"),
            "bands": list(bands),
            "y": y,
            "x": x,
            "spatial_ref": spatial_ref(crs, (xres, yres)),
        },
    )


def spatial_ref(crs: str | CRS, resolution: tuple[float, float]) -> xr.DataArray:
    return xr.DataArray(
        0,
        attrs={
            "crs_wkt": CRS.from_user_input(crs).to_wkt(),
            "resolution": [float(resolution[0]), float(resolution[1])],
        },
    )


def cube_crs(cube: xr.DataArray) -> CRS:
    return CRS.from_wkt(cube.coords["spatial_ref"].attrs["crs_wkt"])


def cube_resolution(cube: xr.DataArray) -> tuple[float, float]:
    xres, yres = cube.coords["spatial_ref"].attrs["resolution"]
    return float(xres), float(yres)


def cube_transform(cube: xr.DataArray) -> Affine:
    """Affine transform of the cube's top-left pixel corner."""
    xres, yres = cube_resolution(cube)
    x0 = float(cube.x[0]) - xres / 2
    y0 = float(cube.y[0]) + yres / 2
    return Affine(xres, 0.0, x0, 0.0, -yres, y0)
