"""``ndvi``/``normalized_difference`` on float cubes divide in place: same floats and metadata."""

from __future__ import annotations

import numpy as np
import xarray as xr

from openeo_airflow.processes.indices import ndvi, normalized_difference


def _cube() -> xr.DataArray:
    values = np.array([[[3, 1, 0, np.nan], [2, -1, 0, 5]]], np.float32)  # t, bands, x
    return xr.DataArray(
        values,
        dims=("t", "bands", "x"),
        coords={"bands": ["B04", "B08"], "spatial_ref": xr.DataArray(0, attrs={"crs": "w"})},
        name="cube",
        attrs={"kept": 1},
    )


def test_ndvi_is_nan_where_the_sum_is_zero_and_keeps_float32_and_metadata() -> None:
    out = ndvi(_cube(), nir="B08", red="B04")
    np.testing.assert_array_equal(
        out.values, [[np.float32(-1) / np.float32(5), np.nan, np.nan, np.nan]]
    )
    assert out.dtype == np.float32 and out.dims == ("t", "x")
    assert out.name == "cube" and out.attrs == {"kept": 1}
    assert out.coords["spatial_ref"].attrs == {"crs": "w"}


def test_normalized_difference_of_cubes_with_other_names_and_dtypes() -> None:
    cube = _cube()
    x = cube.sel(bands="B08", drop=True).rename("x").astype(np.float64)
    y = cube.sel(bands="B04", drop=True)
    out = normalized_difference(x, y)
    assert out.dtype == np.float64 and out.name is None
    with np.errstate(all="ignore"):
        expected = (x.values - y.values) / (x.values + y.values)
    expected[(x.values + y.values) == 0] = np.nan
    np.testing.assert_array_equal(out.values, expected)
