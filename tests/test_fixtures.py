"""The test fixtures themselves: derived catalogs, the demo archive and the NDVI reference."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
import yaml
from affine import Affine
from rasterio.warp import transform as warp_transform

from openeo_airflow.demo.archive import (
    DEMO_COLLECTION_ID,
    MARKER_NAME,
    demo_bbox_wgs84,
    generate_demo_archive,
    write_cog,
)
from tests.fixtures import reference
from tests.fixtures.shared_catalogs import (
    CDSE_BANDS,
    CDSE_COLLECTION_ID,
    CDSE_NETCDF,
    RKH_COLLECTION_ID,
    build_29rkh_catalog,
    build_cdse_catalog,
    collections_yaml,
)

COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
CONFIG_KEYS = ["id", "title", "description", "license", "catalog", "crs", "resolution"]


# --------------------------------------------------------------------------- helpers


def check_catalog(catalog: Path, *, collection_id: str, absolute_hrefs: bool) -> list[pystac.Item]:
    """Structural STAC checks of our static layout; returns the items (read with pystac)."""
    raw = json.loads(catalog.read_text())
    assert raw["type"] == "Collection" and raw["stac_version"] == "1.0.0"
    assert raw["id"] == collection_id
    for key in ("description", "license", "extent"):
        assert raw[key]
    rels = [link["rel"] for link in raw["links"]]
    assert "root" in rels and "self" in rels
    item_links = [link for link in raw["links"] if link["rel"] == "item"]
    assert item_links
    for link in item_links:
        assert link["href"].startswith("./items/") and link["href"].endswith(".json")
        assert link["type"] == "application/json"

    collection = pystac.Collection.from_file(str(catalog))
    assert collection.id == collection_id
    items = list(collection.get_items())
    assert len(items) == len(item_links)
    ((west, south, east, north),) = raw["extent"]["spatial"]["bbox"]
    start, end = raw["extent"]["temporal"]["interval"][0]
    for link in item_links:
        item_path = catalog.parent / link["href"]
        item_raw = json.loads(item_path.read_text())
        pystac.Item.from_dict(item_raw)  # parses structurally
        check_item(item_raw, item_path, absolute_hrefs=absolute_hrefs)
        bbox = item_raw["bbox"]
        assert west <= bbox[0] and south <= bbox[1] and bbox[2] <= east and bbox[3] <= north
        assert start <= item_raw["properties"]["datetime"] <= end
    return items


def check_item(item: dict[str, Any], path: Path, *, absolute_hrefs: bool) -> None:
    assert item["type"] == "Feature"
    assert item["geometry"]["type"] == "Polygon"
    west, south, east, north = item["bbox"]
    assert -180 <= west < east <= 180 and -90 <= south < north <= 90
    props = item["properties"]
    assert props["datetime"].endswith("Z")
    assert isinstance(props["proj:epsg"], int)
    assert 0 <= props["eo:cloud_cover"] <= 100
    assert {"B04", "B08", "SCL"} <= set(item["assets"])
    for key, asset in item["assets"].items():
        assert asset["type"] == COG_TYPE and asset["roles"] == ["data"]
        href = asset["href"]
        assert Path(href).is_absolute() == absolute_hrefs
        if not absolute_hrefs:
            assert href == f"../data/{item['id']}/{key}.tif"
        file = (path.parent / href).resolve()
        assert file.is_file(), file
        with rasterio.open(file) as src:
            assert src.crs.to_epsg() == props["proj:epsg"]
            assert asset["proj:shape"] == [src.height, src.width]
            assert Affine(*asset["proj:transform"]) == src.transform
            assert src.nodata == 0
            assert src.dtypes[0] == ("uint8" if key == "SCL" else "uint16")
            assert src.block_shapes[0] in ((256, 256), (512, 512))
            assert src.profile["compress"] == "deflate"
            centre = src.xy(src.height // 2, src.width // 2)
            (lon,), (lat,) = warp_transform(src.crs, "EPSG:4326", [centre[0]], [centre[1]])
            assert west <= lon <= east and south <= lat <= north


def check_config(dest: Path, *, collection_id: str, crs: str, resolution: float) -> dict[str, Any]:
    config = yaml.safe_load(collections_yaml(dest).read_text())
    (entry,) = config["collections"]
    assert [key for key in entry if key != "grid_origin"] == [*CONFIG_KEYS, "bands"]
    assert entry["id"] == collection_id and entry["crs"] == crs
    assert entry["resolution"] == resolution
    assert (dest / entry["catalog"]).resolve() == (dest / "catalog.json").resolve()
    for band in entry["bands"]:
        assert list(band) == ["name", "asset", "nodata"] and band["nodata"] == 0
    return entry


def read_assets(catalog: Path) -> dict[str, np.ndarray]:
    out = {}
    for item_path in sorted((catalog.parent / "items").glob("*.json")):
        item = json.loads(item_path.read_text())
        for key, asset in item["assets"].items():
            with rasterio.open((item_path.parent / asset["href"]).resolve()) as src:
                out[f"{item['id']}/{key}"] = src.read(1)
    return out


# --------------------------------------------------------------------------- the reference


def test_reference_imports_nothing_from_the_backend() -> None:
    tree = ast.parse(Path(reference.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        assert not any(name.startswith("openeo_airflow") for name in names)


def test_reference_ndvi_mask_and_composite_rules() -> None:
    red = np.array([[100, 0, 500, 300, 200, 200, 200]], dtype=np.uint16)
    nir = np.array([[300, 0, 500, 100, 800, 800, 800]], dtype=np.uint16)
    scl = np.array([[4, 4, 5, 6, 3, 9, 7]], dtype=np.uint8)
    out = reference.masked_ndvi(red, nir, scl)
    assert out.dtype == np.float32
    expected = [0.5, np.nan, 0.0, -0.5, np.nan, np.nan, 0.6]
    np.testing.assert_array_equal(out[0], np.array(expected, dtype=np.float32))
    # NaN where the denominator is 0, even without nodata handling.
    assert np.isnan(reference.ndvi(np.array([0]), np.array([0])))[0]
    for masked in (0, 3, 8, 9, 10):
        assert reference.invalid_mask(red[:, :1], nir[:, :1], np.array([[masked]]))[0, 0]
    for kept in (1, 2, 4, 5, 6, 7, 11):
        assert not reference.invalid_mask(red[:, :1], nir[:, :1], np.array([[kept]]))[0, 0]
    stack = np.array([[np.nan, 0.2, np.nan], [np.nan, 0.7, -0.1]], dtype=np.float32)
    np.testing.assert_array_equal(
        reference.max_composite(stack), np.array([np.nan, 0.7, -0.1], dtype=np.float32)
    )


def test_reference_bbox_window_and_scl_nearest(tmp_path: Path) -> None:
    """SCL at 20 m is sampled at each 10 m pixel centre; bbox selects pixel centres."""
    t10 = Affine(10, 0, 1000, 0, -10, 2000)
    t20 = Affine(20, 0, 1000, 0, -20, 2000)
    red = np.full((8, 8), 100, dtype=np.uint16)
    nir = np.full((8, 8), 300, dtype=np.uint16)
    scl = np.array([[4, 9, 4, 4], [4, 4, 3, 4], [4, 4, 4, 0], [10, 4, 4, 4]], dtype=np.uint8)
    write_cog(tmp_path / "B04.tif", red, transform=t10, epsg=32631, categorical=False)
    write_cog(tmp_path / "B08.tif", nir, transform=t10, epsg=32631, categorical=False)
    write_cog(tmp_path / "SCL.tif", scl, transform=t20, epsg=32631, categorical=True)
    acq = reference.Acquisition(tmp_path / "B04.tif", tmp_path / "B08.tif", tmp_path / "SCL.tif")
    full = reference.reference_ndvi_max([acq])
    expected_masked = np.isin(np.repeat(np.repeat(scl, 2, 0), 2, 1), (0, 3, 8, 9, 10))
    np.testing.assert_array_equal(np.isnan(full.ndvi_max), expected_masked)
    # A bbox on 10 m edges but off the 20 m grid: rows 1..4, cols 3..6.
    part = reference.reference_ndvi_max([acq], (1030, 1950, 1070, 1990))
    assert part.ndvi_max.shape == (4, 4)
    assert part.transform == Affine(10, 0, 1030, 0, -10, 1990)
    np.testing.assert_array_equal(np.isnan(part.ndvi_max), expected_masked[1:5, 3:7])
    assert np.nanmax(part.ndvi_max) == np.float32(0.5)


# --------------------------------------------------------------------------- shared-data catalogs


def test_29rkh_catalog(shared_data: Path, tmp_path: Path) -> None:
    catalog = build_29rkh_catalog(shared_data, tmp_path)
    assert catalog == tmp_path / "catalog.json"
    (item,) = check_catalog(catalog, collection_id=RKH_COLLECTION_ID, absolute_hrefs=True)
    assert item.id == "S2A_29RKH_20200219_0_L2A"
    assert item.properties["datetime"] == "2020-02-19T11:34:25.405000Z"
    assert item.assets["B04"].extra_fields["proj:shape"] == [1098, 1098]
    assert item.assets["SCL"].extra_fields["proj:shape"] == [549, 549]
    entry = check_config(
        tmp_path, collection_id=RKH_COLLECTION_ID, crs="EPSG:32629", resolution=100
    )
    assert entry["grid_origin"] == [199980, 2800020]
    # The reference over it: one date, clouds and cirrus masked.
    ref = reference.reference_ndvi_max(reference.acquisitions_from_catalog(catalog))
    assert ref.ndvi_max.shape == (1098, 1098)
    assert 0.01 < np.isnan(ref.ndvi_max).mean() < 0.2


def test_cdse_catalog_preserves_grid_and_values(shared_data: Path, tmp_path: Path) -> None:
    catalog = build_cdse_catalog(shared_data, tmp_path)
    items = check_catalog(catalog, collection_id=CDSE_COLLECTION_ID, absolute_hrefs=False)
    assert len(items) == 19
    check_config(tmp_path, collection_id=CDSE_COLLECTION_ID, crs="EPSG:32631", resolution=10)
    items.sort(key=lambda i: i.properties["datetime"])
    assert items[0].properties["datetime"] == "2023-10-02T00:00:00Z"
    assert items[-1].properties["datetime"] == "2023-12-31T00:00:00Z"
    nc = shared_data / CDSE_NETCDF
    for band in CDSE_BANDS:
        # An independent read of the source: GDAL's netCDF driver, not xarray.
        with rasterio.open(f"netcdf:{nc}:S2-L2A-{band}") as src:
            source = src.read()
            source_transform = src.transform
            assert src.crs.to_epsg() == 32631
        assert source_transform == Affine(10, 0, 587880, 0, -10, 5685430)
        for index, item in enumerate(items):
            href = item.assets[band].get_absolute_href()
            assert href is not None
            with rasterio.open(href) as cog:
                assert cog.transform == source_transform
                written = cog.read(1)
            assert written.shape == (52, 46)
            np.testing.assert_array_equal(written.astype(np.int64), source[index].astype(np.int64))


def test_reference_from_catalog_equals_reference_from_netcdf(
    shared_data: Path, tmp_path: Path
) -> None:
    catalog = build_cdse_catalog(shared_data, tmp_path)
    bbox = (587900.0, 5685000.0, 588100.0, 5685200.0)
    window = ("2023-10-05", "2023-12-27")
    acquisitions = reference.acquisitions_from_catalog(catalog, start=window[0], end=window[1])
    assert len(acquisitions) == 17
    from_cogs = reference.reference_ndvi_max(acquisitions, bbox)
    from_nc = reference.reference_ndvi_max_from_netcdf(
        shared_data / CDSE_NETCDF, bbox, start=window[0], end=window[1]
    )
    assert from_cogs.ndvi_max.shape == (20, 20)
    assert from_cogs.transform == from_nc.transform == Affine(10, 0, 587900, 0, -10, 5685200)
    assert from_cogs.datetimes == from_nc.datetimes
    np.testing.assert_array_equal(from_cogs.ndvi, from_nc.ndvi)
    # The autumn series is very cloudy, yet the clear dates fill the whole box.
    assert not np.isnan(from_cogs.ndvi_max).any()


# --------------------------------------------------------------------------- the demo archive


@pytest.fixture(scope="module")
def demo_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_demo_archive(tmp_path_factory.mktemp("demo") / "archive")


def test_demo_archive_is_valid_stac(demo_catalog: Path) -> None:
    items = check_catalog(demo_catalog, collection_id=DEMO_COLLECTION_ID, absolute_hrefs=False)
    assert len(items) == 6
    raw = json.loads(demo_catalog.read_text())
    assert raw["generated"] is True and "GENERATED" in raw["description"]
    assert all(item.properties["generated"] is True for item in items)
    days = sorted(item.properties["datetime"][:10] for item in items)
    assert days[0] == "2023-07-02" and days[-1] == "2023-07-27"
    check_config(
        demo_catalog.parent, collection_id=DEMO_COLLECTION_ID, crs="EPSG:32631", resolution=10
    )
    for item in items:
        with rasterio.open(item.assets["B04"].get_absolute_href() or "") as src:
            assert (src.width, src.height) == (512, 512)
            assert src.transform == Affine(10, 0, 600000, 0, -10, 5650000)
            assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert src.overviews(1)
        with rasterio.open(item.assets["SCL"].get_absolute_href() or "") as src:
            assert (src.width, src.height) == (256, 256)


def test_demo_archive_looks_like_sentinel2(demo_catalog: Path) -> None:
    acquisitions = reference.acquisitions_from_catalog(demo_catalog)
    classes: set[int] = set()
    cloudy = []
    for acq in acquisitions:
        with rasterio.open(acq.scl) as src:
            scl = src.read(1)
        classes |= {int(v) for v in np.unique(scl)}
        cloudy.append(np.isin(scl, (3, 8, 9, 10)).mean())
        with rasterio.open(acq.nir) as src:
            nir = src.read(1)
        valid = nir[nir > 0]
        assert 100 < np.median(valid) < 6000
    assert {0, 3, 4, 5, 6, 8, 9, 10} <= classes
    assert max(cloudy) > 0.2
    composite = reference.reference_ndvi_max(acquisitions)
    # The masked composite is nearly complete although every date but one is quite cloudy.
    assert np.isnan(composite.ndvi_max).mean() < 0.03
    assert np.isnan(composite.ndvi).mean(axis=(1, 2)).max() > 0.2
    assert 0.4 < np.nanmean(composite.ndvi_max) < 0.9
    assert np.nanmin(composite.ndvi_max) < 0  # water


def test_demo_bbox_is_inside_the_generated_area() -> None:
    bbox = demo_bbox_wgs84()
    assert bbox["crs"] == 4326 and bbox["west"] < bbox["east"] and bbox["south"] < bbox["north"]
    xs, ys = warp_transform(
        "EPSG:4326",
        "EPSG:32631",
        [bbox["west"], bbox["east"], bbox["east"], bbox["west"]],
        [bbox["north"], bbox["north"], bbox["south"], bbox["south"]],
    )
    assert min(xs) >= 600000 + 512 and max(xs) <= 600000 + 4608
    assert min(ys) >= 5650000 - 4608 and max(ys) <= 5650000 - 512
    assert max(xs) - min(xs) > 3500 and max(ys) - min(ys) > 3500


def test_demo_archive_is_deterministic(tmp_path: Path) -> None:
    first = read_assets(generate_demo_archive(tmp_path / "a", size=128, dates=3, seed=7))
    second = read_assets(generate_demo_archive(tmp_path / "b", size=128, dates=3, seed=7))
    other = read_assets(generate_demo_archive(tmp_path / "c", size=128, dates=3, seed=8))
    assert len(first) == 3 * 5 and first.keys() == second.keys() == other.keys()
    for key, data in first.items():
        assert data.tobytes() == second[key].tobytes(), key
    assert any(not np.array_equal(data, other[key]) for key, data in first.items())


def test_demo_archive_is_idempotent(tmp_path: Path) -> None:
    dest = tmp_path / "demo"
    catalog = generate_demo_archive(dest, size=64, dates=2, seed=1)
    files = sorted(p for p in dest.rglob("*") if p.is_file())
    stamps = {p: p.stat().st_mtime_ns for p in files}
    assert generate_demo_archive(dest, size=64, dates=2, seed=1) == catalog
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    # Other parameters rewrite the archive in place, leaving no stale items behind.
    generate_demo_archive(dest, size=64, dates=1, seed=1)
    assert json.loads((dest / MARKER_NAME).read_text())["dates"] == 1
    assert len(list((dest / "items").glob("*.json"))) == 1
    assert len(list((dest / "data").iterdir())) == 1
    # A half-written archive (no marker) is regenerated.
    (dest / MARKER_NAME).unlink()
    generate_demo_archive(dest, size=64, dates=1, seed=1)
    assert (dest / MARKER_NAME).is_file()


def test_demo_archive_rejects_bad_parameters(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_demo_archive(tmp_path, size=33)
    with pytest.raises(ValueError):
        generate_demo_archive(tmp_path, dates=0)
