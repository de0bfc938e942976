"""Collection configuration, openEO collection metadata and static STAC catalog reading."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pystac
import pytest
import yaml
from openapi_schema_validator import OAS30Validator, oas30_format_checker

from openeo_airflow.catalog.config import (
    DEFAULT_COLLECTIONS_FILE,
    BandConfig,
    CollectionConfig,
    get_collection,
    load_collections,
)
from openeo_airflow.catalog.metadata import collection_metadata, collection_summary
from openeo_airflow.catalog.stac import read_catalog, search_items
from openeo_airflow.core.errors import CollectionNotFound

OPENAPI = Path(__file__).resolve().parents[1].parent / "shared" / "schemas"
OPENAPI = OPENAPI / "openeo-api-1.2.0-openapi.yaml"
RKH = Path("cogs_29RKH/S2A_29RKH_20200219_0_L2A")


# --------------------------------------------------------------------------- configuration


def write_yaml(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"collections": entries}), encoding="utf-8")
    return path


def minimal_entry(**extra: Any) -> dict[str, Any]:
    return {
        "id": "C1",
        "catalog": "archive/catalog.json",
        "resolution": 20,
        "bands": [{"name": "B04", "nodata": 0}, {"name": "SCL", "asset": "scl"}],
        **extra,
    }


def test_default_collections_file_expands_home() -> None:
    collections = load_collections(DEFAULT_COLLECTIONS_FILE, env={"OPENEO_AIRFLOW_HOME": "/srv/oa"})
    demo = collections["SENTINEL2_L2A_DEMO"]
    assert demo.catalog == "/srv/oa/demo-archive/catalog.json"
    assert demo.band_names == ["B02", "B03", "B04", "B08", "SCL"]
    assert demo.band("SCL").resolution == 20 and demo.band("SCL").data_type == "uint8"
    assert demo.band("B04").nodata == 0 and demo.resolution == 10


def test_default_home_comes_from_settings(tmp_path: Path) -> None:
    collections = load_collections(DEFAULT_COLLECTIONS_FILE, env={"HOME": str(tmp_path)})
    assert collections["SENTINEL2_L2A_DEMO"].catalog.endswith(
        "/.openeo-airflow/demo-archive/catalog.json"
    )


def test_relative_catalog_and_defaults(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "c.yaml", [minimal_entry()])
    cfg = load_collections(path, env={})["C1"]
    assert cfg.catalog == str(tmp_path / "archive" / "catalog.json")
    assert cfg.crs is None and cfg.grid_origin == (0.0, 0.0)
    assert cfg.band("SCL").asset == "scl" and cfg.band("B04").asset == "B04"
    assert cfg.band("SCL").nodata is None and cfg.band("B04").scale == 1.0
    assert cfg.spatial_extent == (-180.0, -90.0, 180.0, 90.0)
    assert cfg.temporal_extent == (None, None)


def test_env_expansion_urls_and_dates(tmp_path: Path) -> None:
    entries = [
        minimal_entry(id="A", catalog="${ARCHIVE}/catalog.json"),
        minimal_entry(id="B", catalog="${UNSET_VAR:-https://example.org/stac}/collection.json"),
        minimal_entry(
            id="C",
            extent={"spatial": [1, 2, 3, 4], "temporal": [datetime(2020, 1, 1), None]},
        ),
    ]
    collections = load_collections(write_yaml(tmp_path / "c.yaml", entries), env={"ARCHIVE": "/x"})
    assert collections["A"].catalog == "/x/catalog.json"
    assert collections["B"].catalog == "https://example.org/stac/collection.json"
    assert collections["C"].spatial_extent == (1.0, 2.0, 3.0, 4.0)
    assert collections["C"].temporal_extent == ("2020-01-01T00:00:00Z", None)


def test_configuration_errors(tmp_path: Path) -> None:
    unset = write_yaml(tmp_path / "a.yaml", [minimal_entry(catalog="${NOPE}/catalog.json")])
    with pytest.raises(ValueError, match="NOPE"):
        load_collections(unset, env={})
    twice = write_yaml(tmp_path / "b.yaml", [minimal_entry(), minimal_entry()])
    with pytest.raises(ValueError, match="twice"):
        load_collections(twice, env={})
    both = minimal_entry(stac_api="https://earth-search.aws.element84.com/v1")
    with pytest.raises(ValueError, match="exactly one"):
        load_collections(write_yaml(tmp_path / "c.yaml", [both]), env={})
    api = {**minimal_entry(stac_api="https://example.org/v1"), "catalog": None}
    del api["catalog"]
    with pytest.raises(ValueError, match="stac_collection"):
        load_collections(write_yaml(tmp_path / "e.yaml", [api]), env={})
    bad = minimal_entry(bands=[{"name": "B04", "resampling": "lanczos"}])
    with pytest.raises(ValueError, match="resampling"):
        load_collections(write_yaml(tmp_path / "d.yaml", [bad]), env={})


def test_get_collection_raises_openeo_error() -> None:
    collections = load_collections(DEFAULT_COLLECTIONS_FILE, env={"OPENEO_AIRFLOW_HOME": "/x"})
    assert get_collection(collections, "SENTINEL2_L2A_DEMO").id == "SENTINEL2_L2A_DEMO"
    with pytest.raises(CollectionNotFound) as error:
        get_collection(collections, "NOPE")
    assert error.value.status == 404 and "NOPE" in error.value.message


# --------------------------------------------------------------------------- metadata


@cache
def openapi_components() -> dict[str, Any]:
    if not OPENAPI.is_file():
        pytest.skip(f"openEO OpenAPI document not found at {OPENAPI}")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(OPENAPI.read_text(encoding="utf-8"), Loader=loader)["components"]


@cache
def openapi_validator(component: str) -> OAS30Validator:
    """A validator for one schema component of the openEO 1.2 OpenAPI document."""
    # Refs resolve against the whole document; $ref siblings are ignored (OpenAPI 3.0).
    schema = {"$ref": f"#/components/schemas/{component}", "components": openapi_components()}
    return OAS30Validator(schema, format_checker=oas30_format_checker)


def schema_errors(document: dict[str, Any]) -> list[str]:
    """Errors against ``collection``, plus each dimension against its discriminated schema
    (jsonschema does not apply OpenAPI discriminators)."""
    errors = [e.message for e in openapi_validator("collection").iter_errors(document)]
    for dimension in document.get("cube:dimensions", {}).values():
        component = {
            "spatial": "dimension_spatial_horizontal",
            "temporal": "dimension_temporal",
            "bands": "dimension_bands",
        }[dimension["type"]]
        errors += [e.message for e in openapi_validator(component).iter_errors(dimension)]
    return errors


def sample_configs() -> list[CollectionConfig]:
    demo = load_collections(DEFAULT_COLLECTIONS_FILE, env={"OPENEO_AIRFLOW_HOME": "/x"})
    native = CollectionConfig(
        id="NATIVE_UTM",
        title="native",
        description="CRS of the first item",
        license="CC-BY-4.0",
        catalog="/nowhere/catalog.json",
        resolution=20,
        bands=[BandConfig("VV", "vv")],
    )
    world = CollectionConfig(
        id="WORLD_UTM",
        title="world extent, UTM target",
        description="transformation clipped to the CRS's area of use",
        license="proprietary",
        catalog="/nowhere/catalog.json",
        resolution=10,
        crs="EPSG:32629",
        bands=[BandConfig("B04", "red", nodata=0, scale=0.0001)],
    )
    return [demo["SENTINEL2_L2A_DEMO"], native, world]


@pytest.mark.parametrize("cfg", sample_configs(), ids=lambda c: c.id)
def test_metadata_valid_against_openeo_and_pystac(cfg: CollectionConfig) -> None:
    full = collection_metadata(cfg)
    summary = collection_summary(cfg)
    for document in (full, summary):
        assert schema_errors(document) == []
        json.dumps(document, allow_nan=False)
        collection = pystac.Collection.from_dict(document)
        assert collection.id == cfg.id
    assert "cube:dimensions" not in summary


def test_metadata_content() -> None:
    demo, native, world = sample_configs()
    doc = collection_metadata(demo)
    dims = doc["cube:dimensions"]
    assert dims["bands"]["values"] == ["B02", "B03", "B04", "B08", "SCL"]
    assert dims["x"]["reference_system"] == 32631 and dims["x"]["step"] == 10
    assert dims["x"]["extent"][0] < dims["x"]["extent"][1]
    assert dims["t"]["extent"] == ["2023-07-02T00:00:00Z", None]
    eo = {b["name"]: b for b in doc["summaries"]["eo:bands"]}
    assert eo["B08"]["common_name"] == "nir" and eo["B08"]["center_wavelength"] == 0.842
    raster = {b["name"]: b for b in doc["summaries"]["raster:bands"]}
    assert raster["SCL"]["data_type"] == "uint8" and raster["SCL"]["nodata"] == 0
    native_dims = collection_metadata(native)["cube:dimensions"]
    assert native_dims["x"]["reference_system"] == 4326
    assert native_dims["x"]["extent"] == [-180.0, 180.0]
    world_x = collection_metadata(world)["cube:dimensions"]["x"]
    assert world_x["reference_system"] == 32629
    assert 100_000 < world_x["extent"][0] < world_x["extent"][1] < 900_000


# --------------------------------------------------------------------------- static STAC


def item_document(
    item_id: str, when: str, bbox: list[float], assets: dict[str, str], **props: Any
) -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "bbox": bbox,
        "geometry": None,
        "properties": {"datetime": when, **props},
        "links": [],
        "assets": {key: {"href": href} for key, href in assets.items()},
    }


def write_json(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def build_tree_catalog(root: Path) -> Path:
    """catalog.json -> child collection -> items (relative hrefs), plus a direct item."""
    box_a, box_b = [0.0, 0.0, 1.0, 1.0], [10.0, 10.0, 11.0, 11.0]
    write_json(
        root / "s2" / "items" / "b.json",
        item_document(
            "b", "2020-02-20T10:00:00Z", box_a, {"B04": "../data/b/B04.tif"}, **{"proj:epsg": 32629}
        ),
    )
    write_json(
        root / "s2" / "items" / "a.json",
        item_document(
            "a",
            "2020-02-20T10:00:00Z",
            box_a,
            {"B04": "/abs/B04.tif"},
            **{"proj:code": "EPSG:32630"},
        ),
    )
    far = item_document("far", "2020-02-19", box_b, {"B04": "https://example.org/far.tif"})
    far["assets"]["B04"]["proj:epsg"] = 32633
    write_json(root / "s2" / "items" / "far.json", far)
    write_json(
        root / "late.json",
        item_document("late", "2020-02-21T00:00:00+00:00", box_a, {"B04": "late.tif"}),
    )
    write_json(
        root / "s2" / "collection.json",
        {
            "type": "Collection",
            "id": "s2",
            "links": [
                {"rel": "root", "href": "../catalog.json"},
                {"rel": "item", "href": "./items/b.json"},
                {"rel": "item", "href": "items/a.json"},
                {"rel": "item", "href": "items/far.json"},
            ],
        },
    )
    return write_json(
        root / "catalog.json",
        {
            "type": "Catalog",
            "id": "root",
            "links": [
                {"rel": "self", "href": str(root / "catalog.json")},
                {"rel": "child", "href": "./s2/collection.json"},
                {"rel": "item", "href": (root / "late.json").as_uri()},
            ],
        },
    )


def catalog_config(catalog: Path | str) -> CollectionConfig:
    return CollectionConfig(
        id="T",
        title="t",
        description="d",
        license="proprietary",
        catalog=str(catalog),
        resolution=10,
        bands=[BandConfig("B04", "B04")],
    )


def test_read_catalog_resolves_hrefs_and_crs(tmp_path: Path) -> None:
    items = {item.id: item for item in read_catalog(str(build_tree_catalog(tmp_path)))}
    assert set(items) == {"a", "b", "far", "late"}
    assert items["b"].assets["B04"] == str(tmp_path / "s2" / "data" / "b" / "B04.tif")
    assert items["a"].assets["B04"] == "/abs/B04.tif"
    assert items["late"].assets["B04"] == str(tmp_path / "late.tif")
    assert items["far"].assets["B04"] == "https://example.org/far.tif"
    assert (items["a"].crs, items["b"].crs, items["far"].crs) == (
        "EPSG:32630",
        "EPSG:32629",
        "EPSG:32633",
    )
    assert items["late"].crs is None
    assert items["far"].datetime == datetime(2020, 2, 19, tzinfo=UTC)
    assert items["b"].bbox == (0.0, 0.0, 1.0, 1.0)


def test_search_items_temporal_semantics_and_order(tmp_path: Path) -> None:
    cfg = catalog_config(build_tree_catalog(tmp_path))

    def ids(**kwargs: Any) -> list[str]:
        return [item.id for item in search_items(cfg, **kwargs)]

    assert ids() == ["far", "a", "b", "late"]  # datetime, then id
    day = datetime(2020, 2, 20, 10, tzinfo=UTC)
    assert ids(start=day) == ["a", "b", "late"]  # start inclusive
    assert ids(end=day) == ["far"]  # end exclusive
    assert ids(start=datetime(2020, 2, 20), end=datetime(2020, 2, 21)) == ["a", "b"]
    assert ids(bbox_wgs84=(0.5, 0.5, 2.0, 2.0)) == ["a", "b", "late"]
    assert ids(bbox_wgs84=(9.0, 9.0, 10.5, 10.5), end=day) == ["far"]
    assert ids(bbox_wgs84=(1.0, 1.0, 2.0, 2.0)) == []  # touching edges only


def test_catalog_files_are_read_again_only_when_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openeo_airflow.catalog import stac

    catalog = str(build_tree_catalog(tmp_path))
    first = read_catalog(catalog)
    reads: list[str] = []
    read_json = stac._read_json
    monkeypatch.setattr(stac, "_read_json", lambda href: reads.append(href) or read_json(href))
    assert read_catalog(catalog) == first and reads == []
    item = item_document("a", "2020-02-22T10:00:00Z", [0.5, 0.5, 1.5, 1.5], {"B04": "new.tif"})
    write_json(tmp_path / "s2" / "items" / "a.json", item)
    items = {item.id: item for item in read_catalog(catalog)}
    assert reads == [str(tmp_path / "s2" / "items" / "a.json")]
    assert items["a"].assets["B04"] == str(tmp_path / "s2" / "items" / "new.tif")
    assert items["a"].datetime == datetime(2020, 2, 22, 10, tzinfo=UTC)


def test_feature_collection_and_geometry_bbox(tmp_path: Path) -> None:
    item = item_document("g", "2021-05-01T00:00:00Z", [], {"x": "x.tif"})
    del item["bbox"]
    item["geometry"] = {"type": "Polygon", "coordinates": [[[1, 2], [3, 2], [3, 5], [1, 2]]]}
    path = write_json(tmp_path / "fc.json", {"type": "FeatureCollection", "features": [item]})
    (parsed,) = read_catalog(str(path))
    assert parsed.bbox == (1.0, 2.0, 3.0, 5.0)
    assert parsed.assets["x"] == str(tmp_path / "x.tif")


def test_unreadable_catalog_is_an_internal_error(tmp_path: Path) -> None:
    cfg = catalog_config(tmp_path / "missing.json")
    with pytest.raises(Exception, match="Cannot read STAC document") as error:
        search_items(cfg)
    assert getattr(error.value, "code", None) == "Internal"


def test_real_earth_search_item(shared_data: Path, tmp_path: Path) -> None:
    """The original 29RKH item (absolute https hrefs) read through a local catalog."""
    original = shared_data / RKH / f"{RKH.name}.json"
    catalog = write_json(
        tmp_path / "catalog.json",
        {"type": "Catalog", "id": "c", "links": [{"rel": "item", "href": str(original)}]},
    )
    (item,) = search_items(catalog_config(catalog), (-11.5, 24.5, -11.4, 24.6))
    assert item.id == "S2A_29RKH_20200219_0_L2A" and item.crs == "EPSG:32629"
    assert item.datetime == datetime(2020, 2, 19, 11, 34, 25, 405000, tzinfo=UTC)
    assert item.assets["red"].startswith("https://sentinel-cogs.s3.us-west-2.amazonaws.com/")
    assert item.properties["s2:processing_baseline"] == "02.14"
