"""Reading collections onto a grid, the intermediate store and the output formats.

Real data: the decimated 29RKH Sentinel-2 COGs in ``shared/data`` (B04/B08 at 100 m, SCL at
200 m, EPSG:32629, nodata 0), referenced from small static STAC catalogs built in tmp_path.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import rasterio
import xarray as xr
import yaml
from affine import Affine
from openapi_schema_validator import OAS30Validator
from PIL import Image
from rasterio.windows import Window

from openeo_airflow.catalog.config import BandConfig, CollectionConfig
from openeo_airflow.core import libc
from openeo_airflow.core.errors import FeatureUnsupported, ProcessParameterInvalid
from openeo_airflow.cube import cube_crs, cube_resolution, cube_transform, make_cube
from openeo_airflow.io.formats import (
    OUTPUT_FORMATS,
    normalize_format,
    write_gtiff,
    write_netcdf,
    write_png_preview,
)
from openeo_airflow.io.gdal_env import PROFILES, gdal_env, gdal_options
from openeo_airflow.io.reader import load_cube, snap_grid
from openeo_airflow.io.store import (
    VALUES,
    create_cube,
    cube_sizes,
    open_cube,
    publish,
    read_cube,
    write_cube,
    write_tile,
)

RKH = Path("cogs_29RKH/S2A_29RKH_20200219_0_L2A")
ORIGIN = (199980.0, 2800020.0)  # top-left corner of the 29RKH tile (EPSG:32629)
RES = 100.0
OPENAPI = Path(__file__).resolve().parents[1].parent / "shared" / "schemas"
OPENAPI = OPENAPI / "openeo-api-1.2.0-openapi.yaml"


# --------------------------------------------------------------------------- fixtures


def utm_extent(col: int, row: int, width: int, height: int) -> dict[str, Any]:
    """An EPSG:32629 bounding box of a pixel window of the 100 m 29RKH grid."""
    x0, y0 = ORIGIN
    return {
        "west": x0 + col * RES,
        "east": x0 + (col + width) * RES,
        "north": y0 - row * RES,
        "south": y0 - (row + height) * RES,
        "crs": 32629,
    }


def read_window(path: Path, col: int, row: int, width: int, height: int) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1, window=Window(col, row, width, height))


def write_tif(path: Path, data: np.ndarray, transform: Affine) -> None:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=data.dtype.name,
        crs="EPSG:32629",
        transform=transform,
        nodata=0,
        tiled=True,
        blockxsize=256,
        blockysize=256,
    ) as dst:
        dst.write(data, 1)


def item(item_id: str, when: str, assets: dict[str, Path], base: Path) -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "bbox": [-11.98, 24.29, -10.87, 25.31],
        "geometry": None,
        "properties": {"datetime": when, "proj:epsg": 32629},
        "links": [],
        "assets": {k: {"href": os.path.relpath(p, base)} for k, p in assets.items()},
    }


@pytest.fixture(scope="module")
def rkh(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A catalog of the real 29RKH COGs (relative hrefs), plus a derived item with holes.

    Items: ``holes`` (2020-02-19 10:00, B04 = real + 1 on rows/cols 100..299 except a
    no-data square at rows/cols 150..199, elsewhere no coverage), ``real`` (2020-02-19
    11:34), ``real-0224`` and ``real-0301`` (same files on later days).
    """
    source = shared_data / RKH
    root = tmp_path_factory.mktemp("rkh")
    b04 = read_window(source / "B04.tif", 100, 100, 200, 200)
    holes = np.where(b04 > 0, b04 + 1, 0).astype(np.uint16)
    holes[50:100, 50:100] = 0
    write_tif(
        root / "holes_B04.tif",
        holes,
        Affine(RES, 0, ORIGIN[0] + 100 * RES, 0, -RES, ORIGIN[1] - 100 * RES),
    )
    real = {band: source / f"{band}.tif" for band in ("B04", "B08", "SCL")}
    items = root / "items"
    items.mkdir()
    documents = [
        item("holes", "2020-02-19T10:00:00Z", {"B04": root / "holes_B04.tif"}, items),
        item("real", "2020-02-19T11:34:25.405Z", real, items),
        item("real-0224", "2020-02-24T11:34:25Z", real, items),
        item("real-0301", "2020-03-01T11:34:25Z", real, items),
    ]
    links = []
    for document in documents:
        (items / f"{document['id']}.json").write_text(json.dumps(document))
        links.append({"rel": "item", "href": f"./items/{document['id']}.json"})
    catalog = root / "catalog.json"
    catalog.write_text(json.dumps({"type": "Catalog", "id": "rkh", "links": links}))
    cfg = CollectionConfig(
        id="RKH",
        title="29RKH",
        description="real 29RKH COGs",
        license="proprietary",
        catalog=str(catalog),
        resolution=RES,
        grid_origin=ORIGIN,
        bands=[
            BandConfig("B04", "B04", nodata=0, common_name="red"),
            BandConfig("B08", "B08", nodata=0),
            BandConfig("SCL", "SCL", nodata=0, resolution=200),
        ],
    )
    return {"cfg": cfg, "source": source, "holes": holes}


def load(cfg: CollectionConfig, extent: dict[str, Any] | None, **kwargs: Any) -> xr.DataArray:
    kwargs.setdefault("temporal_extent", ["2020-02-19", "2020-02-20"])
    kwargs.setdefault("bands", None)
    return load_cube(cfg, spatial_extent=extent, **kwargs)


# --------------------------------------------------------------------------- reader


def test_windowed_load_equals_direct_read(rkh: dict[str, Any]) -> None:
    cfg, source = rkh["cfg"], rkh["source"]
    cube = load(
        cfg,
        utm_extent(600, 700, 40, 30),
        bands=["B08", "SCL"],
        temporal_extent=["2020-02-19T11:00:00Z", "2020-02-19T12:00:00Z"],
    )
    assert cube.dims == ("t", "bands", "y", "x") and cube.shape == (1, 2, 30, 40)
    assert cube.dtype == np.float32 and list(cube.bands.values) == ["B08", "SCL"]
    assert cube.t.values[0] == np.datetime64("2020-02-19T00:00:00", "ns")
    assert cube_crs(cube).to_epsg() == 32629 and cube_resolution(cube) == (RES, RES)
    assert cube_transform(cube) == Affine(
        RES, 0, ORIGIN[0] + 600 * RES, 0, -RES, ORIGIN[1] - 700 * RES
    )
    expected = read_window(source / "B08.tif", 600, 700, 40, 30).astype(np.float32)
    np.testing.assert_array_equal(cube.sel(bands="B08")[0].values, expected)
    # SCL (200 m) upsampled by nearest onto the 100 m grid: each pixel becomes 2 x 2.
    scl = read_window(source / "SCL.tif", 300, 350, 20, 15).astype(np.float32)
    np.testing.assert_array_equal(cube.sel(bands="SCL")[0].values, scl.repeat(2, 0).repeat(2, 1))


def test_wgs84_extent_gives_aligned_grid_of_native_pixels(rkh: dict[str, Any]) -> None:
    cfg, source = rkh["cfg"], rkh["source"]
    extent = {"west": -11.5, "south": 24.8, "east": -11.45, "north": 24.84}
    cube = load(cfg, extent, bands=["red"], temporal_extent=["2020-02-19", None])
    assert list(cube.bands.values) == ["B04"] and cube.sizes["t"] == 3
    transform = cube_transform(cube)
    col, row = (transform.c - ORIGIN[0]) / RES, (ORIGIN[1] - transform.f) / RES
    assert col == int(col) and row == int(row)  # aligned to the configured grid origin
    height, width = cube.sizes["y"], cube.sizes["x"]
    expected = read_window(source / "B04.tif", int(col), int(row), width, height)
    np.testing.assert_array_equal(cube.values[-1, 0], expected.astype(np.float32))
    # The same extent gives the same grid; a slightly larger one only adds pixels at the edges.
    again = load(cfg, {**extent, "west": -11.5001}, bands=["B04"])
    assert float(again.x[1] - cube.x[0]) % RES == 0 and float(again.y[0]) == float(cube.y[0])


def test_nodata_scale_offset_and_outside_coverage(rkh: dict[str, Any]) -> None:
    cfg = rkh["cfg"]
    scaled = replace(cfg, bands=[BandConfig("B04", "B04", nodata=0, scale=0.0001, offset=-0.1)])
    # Rows/cols 140..159: straddles the holes item's no-data square (150..199).
    cube = load(
        scaled,
        utm_extent(140, 140, 20, 20),
        temporal_extent=["2020-02-19T09:00:00Z", "2020-02-19T11:00:00Z"],
    )
    values = cube.values[0, 0]
    raw = rkh["holes"][40:60, 40:60].astype(np.float32)
    expected = np.where(raw == 0, np.nan, raw * np.float32(0.0001) + np.float32(-0.1))
    np.testing.assert_array_equal(values, expected)
    assert np.isnan(values[10:, 10:]).all() and not np.isnan(values[:10, :]).any()
    # Outside every item's raster (west of the tile): NaN, not zero.
    edge = load(cfg, utm_extent(-5, 10, 10, 4), bands=["B04"])
    assert np.isnan(edge.values[0, 0, :, :5]).all() and not np.isnan(edge.values[0, 0, :, 5:]).any()


def test_first_valid_pixel_of_the_day_wins(rkh: dict[str, Any]) -> None:
    cfg, source = rkh["cfg"], rkh["source"]
    cube = load(cfg, utm_extent(140, 140, 20, 20), bands=["B04", "B08"])
    assert cube.sizes["t"] == 1  # two items on 2020-02-19 form one time step
    real = read_window(source / "B04.tif", 140, 140, 20, 20).astype(np.float32)
    holes = rkh["holes"][40:60, 40:60].astype(np.float32)
    np.testing.assert_array_equal(cube.values[0, 0], np.where(holes > 0, holes, real))
    np.testing.assert_array_equal(
        cube.values[0, 1], read_window(source / "B08.tif", 140, 140, 20, 20).astype(np.float32)
    )


def test_temporal_extent_semantics(rkh: dict[str, Any]) -> None:
    cfg = rkh["cfg"]
    extent = utm_extent(10, 10, 4, 4)

    def days(temporal: list[str | None] | None) -> list[str]:
        cube = load(cfg, extent, bands=["B08"], temporal_extent=temporal)
        return [str(t)[:10] for t in cube.t.values]

    assert days(None) == ["2020-02-19", "2020-02-24", "2020-03-01"]
    assert days(["2020-02-24T11:34:25Z", "2020-03-01T11:34:25Z"]) == ["2020-02-24"]
    assert days(["2020-02-20", None]) == ["2020-02-24", "2020-03-01"]
    assert days([None, "2020-02-24"]) == ["2020-02-19"]
    empty = load(cfg, extent, temporal_extent=["2021-01-01", "2022-01-01"])
    assert empty.shape == (0, 3, 4, 4) and cube_crs(empty).to_epsg() == 32629


def test_reprojection_onto_another_crs(rkh: dict[str, Any]) -> None:
    cfg, source = rkh["cfg"], rkh["source"]
    webmerc = replace(cfg, crs="EPSG:3857", grid_origin=(0.0, 0.0))
    cube = load(
        webmerc, {"west": -11.5, "south": 24.8, "east": -11.45, "north": 24.84}, bands=["SCL"]
    )
    assert cube_crs(cube).to_epsg() == 3857 and cube_transform(cube).c % RES == 0
    values = cube.values[0, 0]
    assert not np.isnan(values).any()
    with rasterio.open(source / "SCL.tif") as src:
        classes = set(np.unique(src.read(1)).tolist())
    assert set(np.unique(values).tolist()) <= classes  # nearest: no invented classes


def test_load_errors(rkh: dict[str, Any]) -> None:
    cfg = rkh["cfg"]
    with pytest.raises(ProcessParameterInvalid) as error:
        load(cfg, utm_extent(0, 0, 2, 2), bands=["B04", "B99"])
    assert error.value.params["parameter"] == "bands"
    assert error.value.params["process"] == "load_collection"
    assert "B99" in error.value.message and "B04, B08, SCL" in error.value.message
    bad_extents: list[dict[str, Any]] = [
        {"west": 10, "east": 5, "south": 0, "north": 1},
        {"west": 0, "east": 1, "south": 2, "north": 1},
        {"west": 0, "east": 1, "south": -91, "north": 1},
        {"west": 0, "east": 1, "south": 0},
        {"west": 0, "east": 1, "south": 0, "north": 1, "crs": "EPSG:999999"},
    ]
    for extent in bad_extents:
        with pytest.raises(ProcessParameterInvalid) as error:
            load(cfg, extent)
        assert error.value.params["parameter"] == "spatial_extent"
    for temporal in (["2020-02-20", "2020-02-19"], ["tomorrow", None], ["2020-01-01"]):
        with pytest.raises(ProcessParameterInvalid) as error:
            load(cfg, utm_extent(0, 0, 2, 2), temporal_extent=temporal)
        assert error.value.params["parameter"] == "temporal_extent"
    # GeoJSON extents are supported (test_geojson_extent.py); an empty polygon is invalid.
    with pytest.raises(ProcessParameterInvalid) as error:
        load(cfg, {"type": "Polygon", "coordinates": []})
    assert error.value.params["parameter"] == "spatial_extent"


def test_snap_grid_is_stable() -> None:
    from rasterio.crs import CRS

    grid = snap_grid((105.0, 195.0, 295.0, 405.0), CRS.from_epsg(32631), 10.0)
    assert grid.transform == Affine(10, 0, 100, 0, -10, 410) and (grid.width, grid.height) == (
        20,
        22,
    )
    exact = snap_grid((100.0, 200.0, 300.0, 400.0), CRS.from_epsg(32631), 10.0)
    assert (exact.width, exact.height) == (20, 20) and exact.bounds == (100, 200, 300, 400)
    tile = exact.window(5, 10, 4, 3)
    assert tile.bounds == (200.0, 310.0, 230.0, 350.0)


def test_gdal_profiles() -> None:
    assert set(PROFILES) >= {"local", "cloudferro-s3", "tsystems-s3", "aws-s3"}
    assert gdal_options("cloudferro-s3")["AWS_VIRTUAL_HOSTING"] == "FALSE"
    assert gdal_options("aws-s3")["GDAL_HTTP_MERGE_CONSECUTIVE_RANGES"] == "YES"
    with gdal_env("tsystems-s3") as env:
        options = env.options
    assert options["AWS_S3_ENDPOINT"] == "obs.eu-de.otc.t-systems.com"
    assert options["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    with pytest.raises(ValueError, match="aws-s3, cdse-s3, cloudferro-s3, https, local, tsys"):
        gdal_env("azure")


# --------------------------------------------------------------------------- store


@pytest.fixture(scope="module")
def real_cube(rkh: dict[str, Any]) -> xr.DataArray:
    """Three dates, B04/B08/SCL, 300 x 260 px with NaN on the west edge."""
    return load(rkh["cfg"], utm_extent(-20, 200, 300, 260), temporal_extent=None)


def test_store_round_trip_is_exact(real_cube: xr.DataArray, tmp_path: Path) -> None:
    assert np.isnan(real_cube.values).any()
    path = write_cube(real_cube, tmp_path / "stage" / "load.cube")
    back = read_cube(path)
    xr.testing.assert_identical(back, real_cube)
    assert back.dtype == np.float32 and back.bands.dtype == real_cube.bands.dtype
    assert back.coords["spatial_ref"].attrs == real_cube.coords["spatial_ref"].attrs
    # Opened, it is read where it is indexed: windows, steps and picks read back equal too.
    opened = open_cube(path)
    assert not isinstance(opened.variable._data, np.ndarray)
    tile = opened.isel(y=slice(128, 256), x=slice(0, 128)).values
    np.testing.assert_array_equal(tile, real_cube.values[:, :, 128:256, :128])
    rows = opened.isel(t=1, bands=[0, 2], y=slice(10, 20)).values
    np.testing.assert_array_equal(rows, real_cube.values[1, [0, 2], 10:20, :])
    picked = opened.isel(bands=2, y=slice(5, 60, 7), x=33).values
    np.testing.assert_array_equal(picked, real_cube.values[:, 2, 5:60:7, 33])
    # a window off the left edge, read as whole rows and cut
    middle = opened.isel(t=[0, 2], y=slice(7, 250), x=slice(101, 229)).values
    np.testing.assert_array_equal(middle, real_cube.values[[0, 2], :, 7:250, 101:229])
    xr.testing.assert_identical(opened.load(), real_cube)


@pytest.mark.parametrize("tile_width", [128, None], ids=["windows", "whole rows"])
def test_tiles_fill_a_created_cube_in_parallel(
    real_cube: xr.DataArray, tmp_path: Path, tile_width: int | None
) -> None:
    staged = create_cube(real_cube, tmp_path / ".staged")
    height, width = real_cube.sizes["y"], real_cube.sizes["x"]
    step = tile_width or width
    rows = [slice(r, r + 100) for r in range(0, height, 100)]
    cols = [slice(c, c + step) for c in range(0, width, step)]
    windows = [(r, c) for r in rows for c in cols]
    with ThreadPoolExecutor(3) as pool:
        list(
            pool.map(
                lambda w: write_tile(staged, w[0], w[1], real_cube.values[:, :, w[0], w[1]]),
                windows,
            )
        )
    back = read_cube(publish(staged, tmp_path / "cube"))
    xr.testing.assert_identical(back, real_cube)
    assert not staged.exists()


def test_a_created_cube_has_its_blocks_set_aside(real_cube: xr.DataArray, tmp_path: Path) -> None:
    """Where the filesystem can (Linux, not a network one), the tiles then only copy."""
    staged = create_cube(real_cube, tmp_path / ".staged")
    stat = os.stat(staged / VALUES)
    if libc.function("fallocate") is None:
        pytest.skip("the C library has no fallocate")
    assert stat.st_blocks * 512 >= real_cube.values.nbytes
    assert cube_sizes(staged) == dict(real_cube.sizes)


@pytest.mark.parametrize(
    ("shape", "rows", "cols"),
    [
        ((2, 1100, 300), slice(3, 1090), slice(10, 50)),  # narrow gaps: > 512 rows per plane
        ((1, 40, 20000), slice(5, 30), slice(100, 110)),  # wide gaps: a read per row
        ((3, 50, 60), slice(0, 50), slice(0, 60)),  # whole rows: one read per plane
    ],
    ids=["narrow gaps", "wide gaps", "whole rows"],
)
def test_a_stored_window_reads_back_exactly(
    tmp_path: Path, shape: tuple[int, ...], rows: slice, cols: slice
) -> None:
    values = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    cube = xr.DataArray(values, dims=("t", "y", "x"))
    stored = open_cube(write_cube(cube, tmp_path / "c.cube"))
    np.testing.assert_array_equal(stored[:, rows, cols].values, values[:, rows, cols])
    np.testing.assert_array_equal(stored[-1, rows, cols.start].values, values[-1, rows, cols.start])


def test_store_round_trips_reduced_cubes(real_cube: xr.DataArray, tmp_path: Path) -> None:
    reduced = real_cube.max("t").rename("ndvi_max")
    xr.testing.assert_identical(read_cube(write_cube(reduced, tmp_path / "r.cube")), reduced)
    empty = real_cube.isel(t=slice(0, 0))
    xr.testing.assert_identical(read_cube(write_cube(empty, tmp_path / "e.cube")), empty)
    mask = real_cube > 1000
    xr.testing.assert_identical(read_cube(write_cube(mask, tmp_path / "m.cube")), mask)
    window = open_cube(tmp_path / "m.cube").isel(y=slice(30, 90), x=slice(70, 170))
    xr.testing.assert_identical(window.load(), mask.isel(y=slice(30, 90), x=slice(70, 170)))


def test_store_write_is_atomic(real_cube: xr.DataArray, tmp_path: Path) -> None:
    path = tmp_path / "result.cube"
    first = real_cube.isel(t=[0])
    write_cube(first, path)
    second = real_cube.isel(t=[1, 2])
    write_cube(second, path)  # a retried stage replaces the previous cube
    xr.testing.assert_identical(read_cube(path), second)
    broken = second.assign_attrs(unserialisable={1, 2})
    with pytest.raises(TypeError):
        write_cube(broken, path)
    xr.testing.assert_identical(read_cube(path), second)  # the old cube is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.cube"]  # no leftovers


# --------------------------------------------------------------------------- formats


def test_output_formats_match_openeo_schema() -> None:
    if not OPENAPI.is_file():
        pytest.skip(f"openEO OpenAPI document not found at {OPENAPI}")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document = yaml.load(OPENAPI.read_text(encoding="utf-8"), Loader=loader)
    schema = {"$ref": "#/components/schemas/file_format", "components": document["components"]}
    validator = OAS30Validator(schema)
    for name, entry in OUTPUT_FORMATS.items():
        assert [e.message for e in validator.iter_errors(entry)] == [], name
    assert set(OUTPUT_FORMATS) == {"GTiff", "netCDF", "JSON"}


def test_format_names() -> None:
    assert normalize_format("json") == "JSON"
    for name in ("GTiff", "gtiff", "GeoTIFF", "tiff"):
        assert normalize_format(name) == "GTiff"
    for name in ("netCDF", "NetCDF", "nc"):
        assert normalize_format(name) == "netCDF"
    with pytest.raises(ProcessParameterInvalid) as error:
        normalize_format("JPEG")
    assert error.value.params["process"] == "save_result"
    assert error.value.params["parameter"] == "format"
    assert "GTiff" in error.value.message and "netCDF" in error.value.message


def test_gtiff_per_date_round_trip(real_cube: xr.DataArray, tmp_path: Path) -> None:
    paths = write_gtiff(real_cube, tmp_path, "openEO")
    assert [p.name for p in paths] == [
        "openEO_2020-02-19.tif",
        "openEO_2020-02-24.tif",
        "openEO_2020-03-01.tif",
    ]
    with rasterio.open(paths[1]) as src:
        assert src.descriptions == ("B04", "B08", "SCL")
        assert src.dtypes == ("float32",) * 3 and np.isnan(src.nodata)
        assert src.crs.to_epsg() == 32629 and src.transform == cube_transform(real_cube)
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.profile["tiled"] and src.tags()["datetime"] == "2020-02-24T00:00:00Z"
        np.testing.assert_array_equal(src.read(), real_cube.values[1])


def test_gtiff_without_time_is_a_cog(rkh: dict[str, Any], tmp_path: Path) -> None:
    cube = load(
        rkh["cfg"],
        utm_extent(0, 0, 1098, 1098),
        bands=["B04"],
        temporal_extent=["2020-02-19T11:00:00Z", "2020-02-20"],
    )
    (path,) = write_gtiff(cube.isel(t=0), tmp_path, "red")
    assert path.name == "red.tif"
    with rasterio.open(path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
        # At most 4 x 4 tiles: read whole faster than overviews are built.
        assert src.block_shapes == [(512, 512)] and src.overviews(1) == []
        np.testing.assert_array_equal(src.read(1), cube.values[0, 0])
    with pytest.raises(FeatureUnsupported):
        write_gtiff(cube.expand_dims(level=[1]), tmp_path, "bad")


def test_gtiff_larger_than_4_by_4_tiles_has_overviews(tmp_path: Path) -> None:
    values = np.random.default_rng(0).random((1, 1, 600, 2100), dtype=np.float32)
    cube = make_cube(
        values,
        times=[np.datetime64("2022-07-01")],
        bands=["B08"],
        transform=Affine(10, 0, 500000, 0, -10, 5900000),
        crs="EPSG:32629",
    ).isel(t=0)
    (path,) = write_gtiff(cube, tmp_path, "wide")
    with rasterio.open(path) as src:
        assert src.overviews(1) == [2, 4, 8]
        np.testing.assert_array_equal(src.read(1), values[0, 0])


def test_netcdf_round_trip(real_cube: xr.DataArray, tmp_path: Path) -> None:
    path = write_netcdf(real_cube, tmp_path / "out" / "openEO.nc")
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert sorted(map(str, ds.data_vars)) == ["B04", "B08", "SCL", "crs"]
        assert ds["crs"].attrs["grid_mapping_name"] == "transverse_mercator"
        assert ds["B04"].attrs["grid_mapping"] == "crs" and ds["B04"].dims == ("t", "y", "x")
        assert ds["x"].attrs["standard_name"] == "projection_x_coordinate"
        np.testing.assert_array_equal(ds["t"].values, real_cube.t.values)
        np.testing.assert_array_equal(ds["x"].values, real_cube.x.values)
        np.testing.assert_array_equal(ds["y"].values, real_cube.y.values)
        for band in ("B04", "B08", "SCL"):
            np.testing.assert_array_equal(ds[band].values, real_cube.sel(bands=band).values)
            assert ds[band].dtype == np.float32
            assert ds[band].encoding["zlib"] and ds[band].encoding["shuffle"]
    # netCDF-C (GDAL's netCDF driver) reads the compressed variables too.
    with rasterio.open(f"netcdf:{path}:B08") as src:
        np.testing.assert_array_equal(src.read(), real_cube.sel(bands="B08").values)


def test_netcdf_values_in_partial_chunks_round_trip(tmp_path: Path) -> None:
    # 700 x 1100 px: chunks of 512 px leave partial ones at the bottom and right edges, which
    # are compressed on threads and stored whole (padded).
    values = np.random.default_rng(1).random((2, 1, 700, 1100), dtype=np.float32)
    values[0, 0, 600:, 1000:] = np.nan
    cube = make_cube(
        values,
        times=np.array(["2022-07-01", "2022-07-06"], dtype="datetime64[ns]"),
        bands=["NDVI"],
        transform=Affine(10, 0, 500000, 0, -10, 5900000),
        crs="EPSG:32629",
    )
    path = write_netcdf(cube, tmp_path / "big.nc")
    with h5py.File(path) as file:
        assert file["NDVI"].chunks == (1, 512, 512)
        assert file["NDVI"].compression == "gzip" and file["NDVI"].shuffle
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        np.testing.assert_array_equal(ds["NDVI"].values, values[:, 0])
    with rasterio.open(f"netcdf:{path}:NDVI") as src:
        np.testing.assert_array_equal(src.read(), values[:, 0])


def test_png_preview(real_cube: xr.DataArray, tmp_path: Path) -> None:
    (tif,) = write_gtiff(real_cube.isel(t=0), tmp_path, "raw")
    png = write_png_preview(tif, tmp_path / "raw.png")
    with Image.open(png) as image:
        assert image.mode == "RGBA" and image.size == (300, 260)
        rgba = np.asarray(image)
    nan = np.isnan(real_cube.values[0, 0])
    assert (rgba[..., 3][nan] == 0).all() and (rgba[..., 3][~nan] == 255).all()
    assert len(np.unique(rgba[~nan][:, :3], axis=0)) > 20  # stretched, not flat
    # Index-like values use the fixed -1..1 ramp: -1 red, 0 yellow-ish, 1 green.
    index = np.array([[[[-1.0, 0.0, 1.0, np.nan]]]], dtype=np.float32)
    ndvi = make_cube(
        index,
        times=np.array(["2020-01-01"], dtype="datetime64[ns]"),
        bands=["NDVI"],
        transform=Affine(10, 0, 0, 0, -10, 10),
        crs="EPSG:32631",
    )
    (tif,) = write_gtiff(ndvi.isel(t=0), tmp_path, "ndvi")
    with Image.open(write_png_preview(tif, tmp_path / "ndvi.png")) as image:
        pixels = np.asarray(image)[0]
    assert pixels[0, 0] > 150 and pixels[0, 1] < 100  # red
    assert pixels[2, 1] > 80 and pixels[2, 0] < 50  # green
    assert pixels[1, 0] > 200 and pixels[1, 1] > 200  # pale yellow
    assert pixels[3, 3] == 0
