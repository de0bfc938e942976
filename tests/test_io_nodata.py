"""Which pixels a read marks as no data (NaN): source nodata, NaN, masks, outside the source.

Small GeoTIFFs written here; each case reads through every path of ``io.source`` that applies
(plain window, k x k repeat, warp) and checks the NaN pattern pixel by pixel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from openeo_airflow.catalog.config import BandConfig
from openeo_airflow.io.gdal_env import gdal_env
from openeo_airflow.io.grid import Grid
from openeo_airflow.io.reader import read_band
from openeo_airflow.io.source import _missing

UTM = CRS.from_epsg(32629)
X0, Y0 = 500000.0, 6000000.0


def write(path: Path, values: np.ndarray, res: float, **profile: object) -> str:
    height, width = values.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype=values.dtype,
        crs=UTM,
        transform=Affine(res, 0, X0, 0, -res, Y0),
        **profile,
    ) as dst:
        dst.write(values, 1)
        if "mask" in path.name:
            dst.write_mask(values != 7)  # an internal mask instead of a nodata value
    return str(path)


def grid(col: int, row: int, width: int, height: int, res: float = 10.0) -> Grid:
    return Grid(UTM, Affine(res, 0, X0 + col * res, 0, -res, Y0 - row * res), width, height)


def read(href: str, target: Grid, nodata: float | None = None) -> np.ndarray:
    with gdal_env("local"), rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        return read_band(href, BandConfig("b", "b", nodata=nodata), target)


@pytest.fixture
def values() -> np.ndarray:
    return np.arange(64, dtype=np.uint8).reshape(8, 8) % 10  # 0 and 7 occur, as data


def test_nodata_value_of_the_file_and_of_the_band(tmp_path: Path, values: np.ndarray) -> None:
    href = write(tmp_path / "nodata.tif", values, 10, nodata=0)
    got = read(href, grid(0, 0, 8, 8))
    np.testing.assert_array_equal(np.isnan(got), values == 0)
    # The band's nodata wins over the file's.
    got = read(href, grid(0, 0, 8, 8), nodata=7)
    np.testing.assert_array_equal(np.isnan(got), values == 7)
    np.testing.assert_array_equal(got[values == 0], 0)


def test_float_source_nan_and_nodata(tmp_path: Path, values: np.ndarray) -> None:
    floats = values.astype(np.float32)
    floats[0, :3] = np.nan
    href = write(tmp_path / "float.tif", floats, 10, nodata=7)
    got = read(href, grid(0, 0, 8, 8))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(floats) | (floats == 7))


def test_internal_mask_without_nodata(tmp_path: Path, values: np.ndarray) -> None:
    href = write(tmp_path / "mask.tif", values, 10)
    got = read(href, grid(0, 0, 8, 8))
    np.testing.assert_array_equal(np.isnan(got), values == 7)  # 0 stays data
    # 20 m pixels on the 10 m grid (the k x k repeat), shifted by one pixel.
    coarse = write(tmp_path / "mask20.tif", values, 20)
    got = read(coarse, grid(1, 1, 14, 14))
    fine = values.repeat(2, 0).repeat(2, 1)[1:15, 1:15]
    np.testing.assert_array_equal(np.isnan(got), fine == 7)


def test_grid_partly_outside_the_source(tmp_path: Path, values: np.ndarray) -> None:
    for name, nodata in (("mask.tif", None), ("nodata.tif", 0)):
        href = write(tmp_path / name, values, 10, nodata=nodata)
        got = read(href, grid(-2, 5, 6, 6))  # 2 columns west of and 3 rows below the file
        expected = np.ones((6, 6), dtype=bool)
        expected[:3, 2:] = values[5:, :4] == (7 if nodata is None else 0)
        np.testing.assert_array_equal(np.isnan(got), expected)


def test_warped_read_marks_outside_and_nodata(tmp_path: Path, values: np.ndarray) -> None:
    # 4 m pixels (not a whole fraction of 10 m): the warp path (nearest), partly outside; no
    # pixel centre falls on a source pixel edge.
    target = Grid(UTM, Affine(4, 0, X0 - 7, 0, -4, Y0 + 7), 24, 24)
    source_index = ((np.arange(24) + 0.5) * 4 - 7) // 10
    r, c = np.meshgrid(source_index.astype(int), source_index.astype(int), indexing="ij")
    inside = (r >= 0) & (r < 8) & (c >= 0) & (c < 8)
    for name, nodata in (("mask.tif", None), ("nodata.tif", 0)):
        href = write(tmp_path / name, values, 10, nodata=nodata)
        got = read(href, target)
        missing = values[r.clip(0, 7), c.clip(0, 7)] == (7 if nodata is None else 0)
        np.testing.assert_array_equal(np.isnan(got), ~inside | missing)


def test_missing_combines_nan_nodata_and_outside() -> None:
    raw = np.array([[1.0, np.nan], [3.0, 4.0]], dtype=np.float32)
    outside = np.array([[False, False], [False, True]])
    assert _missing(np.array([[1, 2]], dtype=np.uint8), None, None) is None
    np.testing.assert_array_equal(_missing(raw, 3.0, None), [[False, True], [True, False]])
    np.testing.assert_array_equal(_missing(raw, float("nan"), outside), [[0, 1], [0, 1]])
    np.testing.assert_array_equal(
        _missing(np.array([[0, 5]], dtype=np.uint16), 0, np.array([[False, True]])), [[1, 1]]
    )
