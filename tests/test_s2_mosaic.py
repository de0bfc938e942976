"""Pixel-level Sentinel-2 mosaics: overlapping products in two UTM zones, duplicates, offsets.

Products are cut from the real 29RKH tile (``shared/data/cogs_29RKH``, B04 at 100 m and SCL
at 200 m, EPSG:32629) the way neighbouring Sentinel-2 tiles overlap:

- ``east``: columns 300..899 of rows 300..599, in its native UTM 29 grid;
- ``west``: columns 0..599 of the same rows, resampled (nearest) into UTM 28 — a tile of the
  neighbouring zone, as the real 28R tiles overlap the 29R ones west of 12 W;

both products of one datatake. The overlap (columns 300..599) holds the same observation in
two grids. Every expected value is computed independently with ``rasterio.warp.reproject``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window

from openeo_airflow.catalog.config import BandConfig, CollectionConfig
from openeo_airflow.catalog.overlap import tile_polygon
from openeo_airflow.io.reader import load_cube

RKH = Path("cogs_29RKH/S2A_29RKH_20200219_0_L2A")
ORIGIN = (199980.0, 2800020.0)
RES = 100.0
ROWS = (300, 600)
EAST_COLS = (300, 900)
WEST_COLS = (0, 600)
UTM29, UTM28 = CRS.from_epsg(32629), CRS.from_epsg(32628)
SENSING = "20200219T112111"


def window_transform(col: int, row: int, res: float = RES) -> Affine:
    return Affine(res, 0, ORIGIN[0] + col * RES, 0, -res, ORIGIN[1] - row * RES)


def write(path: Path, data: np.ndarray, transform: Affine, crs: CRS) -> Path:
    profile = {
        "driver": "GTiff",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": 0,
        "tiled": True,
        "blockxsize": 128,
        "blockysize": 128,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


def cut(source: Path, band: str, cols: tuple[int, int], factor: int = 1) -> np.ndarray:
    with rasterio.open(source / f"{band}.tif") as src:
        r0, r1 = ROWS[0] // factor, ROWS[1] // factor
        c0, c1 = cols[0] // factor, cols[1] // factor
        return np.asarray(src.read(1, window=Window(c0, r0, c1 - c0, r1 - r0)))


def to_zone(data: np.ndarray, transform: Affine, res: float) -> tuple[np.ndarray, Affine]:
    """``data`` (UTM 29) resampled with nearest into a UTM 28 grid aligned like S2 tiles."""
    height, width = data.shape
    bounds = (
        transform.c,
        transform.f - height * res,
        transform.c + width * res,
        transform.f,
    )
    west, south, east, north = transform_bounds(UTM29, UTM28, *bounds, densify_pts=51)
    x0 = np.floor((west + 20) / res) * res - 20
    y1 = np.ceil((north - 20) / res) * res + 20
    out_w = int(np.ceil((east - x0) / res))
    out_h = int(np.ceil((y1 - south) / res))
    target = Affine(res, 0, x0, 0, -res, y1)
    out = np.zeros((out_h, out_w), dtype=data.dtype)
    reproject(
        data,
        out,
        src_transform=transform,
        src_crs=UTM29,
        src_nodata=0,
        dst_transform=target,
        dst_crs=UTM28,
        dst_nodata=0,
        resampling=Resampling.nearest,
    )
    return out, target


def footprint(cols: tuple[int, int]) -> dict[str, Any]:
    """The WGS 84 outline of the original pixels ``cols`` x ``ROWS`` (the valid data)."""
    x0, y0 = ORIGIN
    bounds = (x0 + cols[0] * RES, y0 - ROWS[1] * RES, x0 + cols[1] * RES, y0 - ROWS[0] * RES)
    polygon = tile_polygon(bounds, UTM29, densify=16)
    return {"type": "Polygon", "coordinates": [list(map(list, polygon.exterior.coords))]}


def product(
    tile: str,
    epsg: int,
    cols: tuple[int, int],
    assets: dict[str, Path],
    baseline: str = "0214",
    generated: str = "20200219T123947",
) -> dict[str, Any]:
    name = f"S2A_MSIL2A_{SENSING}_N{baseline}_R037_T{tile}_{generated}"
    geometry = footprint(cols)
    lons = [p[0] for p in geometry["coordinates"][0]]
    lats = [p[1] for p in geometry["coordinates"][0]]
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": name,
        "bbox": [min(lons), min(lats), max(lons), max(lats)],
        "geometry": geometry,
        "properties": {
            "datetime": "2020-02-19T11:34:25Z",
            "proj:epsg": epsg,
            "s2:product_uri": f"{name}.SAFE",
            "s2:processing_baseline": f"{baseline[:2]}.{baseline[2:]}",
        },
        "links": [],
        "assets": {key: {"href": str(path)} for key, path in assets.items()},
    }


def catalog(root: Path, documents: list[dict[str, Any]]) -> str:
    root.mkdir(parents=True, exist_ok=True)
    collection = {"type": "FeatureCollection", "features": documents}
    path = root / "items.json"
    path.write_text(json.dumps(collection))
    return str(path)


def config(href: str, crs: str, **extra: Any) -> CollectionConfig:
    bands = [
        BandConfig("B04", "B04", nodata=0, harmonize=True),
        BandConfig("SCL", "SCL", nodata=0, resolution=200),
    ]
    return CollectionConfig(
        id="S2",
        title="S2",
        description="cut from 29RKH",
        license="proprietary",
        catalog=href,
        resolution=RES,
        bands=bands,
        crs=crs,
        grid_origin=(-20.0, 20.0),
        sentinel2=True,
        **extra,
    )


@pytest.fixture(scope="module")
def pair(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    source = shared_data / RKH
    root = tmp_path_factory.mktemp("s2pair")
    east_b04 = cut(source, "B04", EAST_COLS)
    east_scl = cut(source, "SCL", EAST_COLS, factor=2)
    west_b04, west_t = to_zone(cut(source, "B04", WEST_COLS), window_transform(0, ROWS[0]), RES)
    west_scl, west_t2 = to_zone(
        cut(source, "SCL", WEST_COLS, factor=2), window_transform(0, ROWS[0], 2 * RES), 2 * RES
    )
    files = {
        "east_B04": write(root / "east_B04.tif", east_b04, window_transform(300, 300), UTM29),
        "east_SCL": write(
            root / "east_SCL.tif", east_scl, window_transform(300, 300, 2 * RES), UTM29
        ),
        "west_B04": write(root / "west_B04.tif", west_b04, west_t, UTM28),
        "west_SCL": write(root / "west_SCL.tif", west_scl, west_t2, UTM28),
    }
    east = product("29RKH", 32629, EAST_COLS, {"B04": files["east_B04"], "SCL": files["east_SCL"]})
    west = product("28RGQ", 32628, WEST_COLS, {"B04": files["west_B04"], "SCL": files["west_SCL"]})
    with rasterio.open(source / "B04.tif") as src:
        truth = src.read(1, window=Window(0, ROWS[0], 900, ROWS[1] - ROWS[0]))
    return {
        "root": root,
        "files": files,
        "east": east,
        "west": west,
        "truth": truth,
        "catalog": catalog(root / "pair", [east, west]),
    }


def extent(crs: CRS, cols: tuple[int, int] = (0, 900)) -> dict[str, Any]:
    x0, y0 = ORIGIN
    bounds = (x0 + cols[0] * RES, y0 - ROWS[1] * RES, x0 + cols[1] * RES, y0 - ROWS[0] * RES)
    west, south, east, north = transform_bounds(UTM29, crs, *bounds)
    return {"west": west, "south": south, "east": east, "north": north, "crs": crs.to_epsg()}


def warp_to(path: Path, cube: Any) -> np.ndarray:
    """Exact nearest-neighbour resampling of the file onto the cube's grid (independent of
    GDAL's warper): each cube pixel centre is transformed with pyproj into the file's CRS and
    takes the value of the file pixel it falls in (NaN outside or on no-data)."""
    crs = CRS.from_wkt(cube.spatial_ref.attrs["crs_wkt"])
    xs, ys = np.meshgrid(cube.x.values, cube.y.values)
    with rasterio.open(path) as src:
        data, transform, src_crs = src.read(1), src.transform, src.crs
    sx, sy = Transformer.from_crs(crs, src_crs, always_xy=True).transform(xs, ys)
    cols = np.floor((sx - transform.c) / transform.a).astype(int)
    rows = np.floor((sy - transform.f) / transform.e).astype(int)
    inside = (cols >= 0) & (cols < data.shape[1]) & (rows >= 0) & (rows < data.shape[0])
    out = np.full(xs.shape, np.nan, dtype=np.float32)
    out[inside] = data[rows[inside], cols[inside]]
    out[out == 0] = np.nan
    return out


def load(cfg: CollectionConfig, crs: CRS, **kwargs: Any) -> Any:
    return load_cube(
        cfg,
        spatial_extent=extent(crs),
        temporal_extent=["2020-02-19", "2020-02-20"],
        bands=kwargs.pop("bands", ["B04"]),
        **kwargs,
    )


@pytest.mark.parametrize("tile_size", [64, 2048])
def test_mosaic_in_utm29_has_no_gaps_and_native_pixels(
    pair: dict[str, Any], tile_size: int
) -> None:
    cube = load(config(pair["catalog"], "EPSG:32629"), UTM29, tile_size=tile_size, workers=2)
    assert cube.sizes["t"] == 1  # both products of the datatake form one time step
    values = cube.values[0, 0]
    assert values.shape == (300, 900)
    east = warp_to(pair["files"]["east_B04"], cube)
    west = warp_to(pair["files"]["west_B04"], cube)
    # No gaps, in particular not along the products' borders (columns 300 and 600); no-data
    # only on the outer edge of the west product, where the cube grid's pixels straddle it.
    assert not np.isnan(values[1:-1, 1:-1]).any()
    assert np.isnan(values).sum() <= (np.isnan(east) & np.isnan(west)).sum() + 4
    # Each pixel comes from one of the products, correctly placed in the cube's grid (GDAL's
    # transformation is approximated to 1/1000 pixel: a nearest pick may flip on 0.1 %).
    valid = ~np.isnan(values)
    assert (np.isclose(values, east) | np.isclose(values, west))[valid].mean() > 0.999
    # West of the east product only the reprojected UTM 28 product has data.
    assert np.mean(values[1:-1, 1:300] == west[1:-1, 1:300]) > 0.999
    # Deep inside the east product (tiles it covers, in the cube's CRS): native pixels.
    truth = pair["truth"].astype(np.float32)
    np.testing.assert_array_equal(values[:, 400:], truth[:, 400:])
    # And the reprojected part agrees with the original observation almost everywhere.
    assert np.mean(values[:, :300] == truth[:, :300]) > 0.9


def test_mosaic_in_utm28_reprojects_the_other_zone(pair: dict[str, Any]) -> None:
    cfg = config(pair["catalog"], "EPSG:32628")
    cube = load(cfg, UTM28, tile_size=64)
    values = cube.values[0, 0]
    east = warp_to(pair["files"]["east_B04"], cube)
    west = warp_to(pair["files"]["west_B04"], cube)
    union = ~np.isnan(east) | ~np.isnan(west)
    # Valid wherever either product has data (up to the products' outermost pixels, where
    # GDAL's approximate per-tile transform may round the other way); nothing invented.
    valid = ~np.isnan(values)
    assert (valid != union).sum() <= 0.001 * union.sum()
    picked = np.isclose(values, east) | np.isclose(values, west)
    assert picked[valid & union].mean() > 0.999
    # Tiles inside the UTM 28 product's footprint read its native pixels.
    inside = ~np.isnan(west)
    inside[:, west.shape[1] // 2 :] = False  # left half: covered by the UTM 28 product only
    np.testing.assert_array_equal(values[inside], west[inside])


def test_scl_at_20m_aligned_on_the_10m_grid(pair: dict[str, Any]) -> None:
    cube = load(config(pair["catalog"], "EPSG:32629"), UTM29, bands=["SCL"])
    values = cube.values[0, 0]
    assert not np.isnan(values[1:-1, 1:-1]).any()
    assert set(np.unique(values[~np.isnan(values)]).tolist()) <= set(range(1, 12))
    # Each 200 m SCL pixel covers 2 x 2 cube pixels in the native part.
    native = values[:, 400:]
    np.testing.assert_array_equal(native[0::2, 0::2], native[1::2, 1::2])


def test_reprocessed_duplicate_is_dropped_and_baseline_offset_harmonised(
    pair: dict[str, Any],
) -> None:
    files, root = pair["files"], pair["root"]
    with rasterio.open(files["east_B04"]) as src:
        raw, transform = src.read(1), src.transform
    # The newer processing (baseline 04.00) stores DN + 1000; the older one is marked +7 so
    # that reading it by mistake shows.
    newer = write(
        root / "new_B04.tif", np.where(raw > 0, raw + 1000, 0).astype(np.uint16), transform, UTM29
    )
    older = write(
        root / "old_B04.tif", np.where(raw > 0, raw + 7, 0).astype(np.uint16), transform, UTM29
    )
    documents = [
        product("29RKH", 32629, EAST_COLS, {"B04": older}),
        product("29RKH", 32629, EAST_COLS, {"B04": newer}, "0400", "20230101T000000"),
    ]
    cfg = config(catalog(root / "dup", documents), "EPSG:32629")
    cube = load(cfg, UTM29)
    values = cube.values[0, 0][:, 300:]
    np.testing.assert_array_equal(values, pair["truth"][:, 300:].astype(np.float32))
    # Without harmonisation the 04.00 values keep their +1000.
    plain = replace(cfg, bands=[BandConfig("B04", "B04", nodata=0)])
    shifted = load(plain, UTM29).values[0, 0][:, 300:]
    np.testing.assert_array_equal(shifted, pair["truth"][:, 300:].astype(np.float32) + 1000)
