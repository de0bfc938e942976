"""``load_stac`` of any STAC document: a static Collection, a single Item (``file://``), a STAC
API collection on loopback; through ``POST /result`` and through the batch tasks, on the real
Sentinel-2 data of ``shared/data``, giving exactly what ``load_collection`` of the same archive
gives. Bad URLs are openEO errors naming the parameter ``url``; local files outside the allowed
folders are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from bench.stac_api import StacApi
from rasterio.warp import transform_bounds

from openeo_airflow.catalog.adhoc import ROOTS_ENV, allowed_roots, check_href, open_stac
from openeo_airflow.core.errors import ProcessParameterInvalid
from openeo_airflow.jobs.backend import Backend
from tests.load_support import (
    CDSE_EXTENT,
    OCTOBER,
    Api,
    assert_error,
    backend_fixtures,
    graph,
    load_node,
    read_nc,
    run_job,
)

setup, api = backend_fixtures("load-stac")


def cdse_args(**extra: Any) -> dict[str, Any]:
    return {
        "spatial_extent": CDSE_EXTENT,
        "temporal_extent": OCTOBER,
        "bands": ["B04", "B08", "SCL"],
        **extra,
    }


def collection_graph() -> dict[str, Any]:
    return graph(load_node("load_collection", id="TEST_CDSE_S2", **cdse_args()))


def test_a_static_collection_loads_like_load_collection(
    api: Api, setup: tuple[Backend, Path]
) -> None:
    catalog = setup[1] / "cdse" / "catalog.json"
    by_stac = api.cube(graph(load_node("load_stac", url=str(catalog), **cdse_args())))
    expected = api.cube(collection_graph())
    assert by_stac.sizes == expected.sizes == {"t": 6, "y": 52, "x": 46}
    for band in ("B04", "B08", "SCL"):
        np.testing.assert_array_equal(by_stac[band].values, expected[band].values)
    assert np.isfinite(by_stac["B04"].values).all()


def test_a_single_item_by_file_url_on_its_native_grid(
    api: Api, setup: tuple[Backend, Path], shared_data: Path
) -> None:
    item = next((setup[1] / "29rkh" / "items").glob("*.json"))
    box = {"west": 209980, "south": 2770020, "east": 219980, "north": 2780020, "crs": 32629}
    cube = api.cube(
        graph(load_node("load_stac", url=item.as_uri(), spatial_extent=box, bands=["B04", "SCL"]))
    )
    assert cube.sizes == {"t": 1, "y": 100, "x": 100}  # the item's 100 m grid
    # Exactly the file's pixels: the grid is aligned to the asset's proj:transform.
    with rasterio.open(shared_data / "cogs_29RKH/S2A_29RKH_20200219_0_L2A/B04.tif") as src:
        row, col = src.index(209980 + 50, 2780020 - 50)  # the first pixel's centre
        window = ((row, row + 100), (col, col + 100))
        raw = src.read(1, window=window).astype("float32")
    raw[raw == 0] = np.nan
    np.testing.assert_array_equal(cube["B04"].values[0], raw)


def test_a_stac_api_collection_is_searched_with_the_extent(
    api: Api, setup: tuple[Backend, Path]
) -> None:
    folder = setup[1] / "cdse"
    items = [_absolute(p) for p in sorted((folder / "items").glob("*.json"))]
    with StacApi(folder / "catalog.json", items) as server:
        by_api = api.cube(graph(load_node("load_stac", url=server.collection_url, **cdse_args())))
    expected = api.cube(collection_graph())
    np.testing.assert_array_equal(by_api["B08"].values, expected["B08"].values)
    assert by_api.sizes["t"] == 6


def test_batch_job_loads_stac_like_load_collection(setup: tuple[Backend, Path]) -> None:
    backend, catalogs = setup
    url = str(catalogs / "cdse" / "catalog.json")
    _, by_stac = run_job(backend, graph(load_node("load_stac", url=url, **cdse_args())))
    _, expected = run_job(backend, collection_graph())
    x, y = read_nc(by_stac), read_nc(expected)
    assert x.sizes == y.sizes
    np.testing.assert_array_equal(x["SCL"].values, y["SCL"].values)
    plan = json.loads((by_stac.parent / "stages" / "load-load.json").read_text())
    assert plan["collection_id"] == url and plan["stats"]["items"] == 6


def test_multiband_assets_become_bands_selected_by_eo_name(tmp_path: Path) -> None:
    data = np.arange(2 * 4 * 5, dtype="uint16").reshape(2, 4, 5) + 1
    transform = Affine(10, 0, 500000, 0, -10, 5000040)
    tif = tmp_path / "rgb.tif"
    profile = {"driver": "GTiff", "count": 2, "height": 4, "width": 5, "dtype": "uint16"}
    with rasterio.open(tif, "w", crs="EPSG:32631", transform=transform, **profile) as dst:
        dst.write(data)
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "two-bands",
        "bbox": list(transform_bounds("EPSG:32631", "EPSG:4326", 500000, 5000000, 500050, 5000040)),
        "geometry": None,
        "properties": {"datetime": "2023-01-02T10:00:00Z", "proj:epsg": 32631},
        "assets": {
            "image": {
                "href": "rgb.tif",
                "roles": ["data"],
                "proj:transform": list(transform)[:6],
                "eo:bands": [{"name": "red"}, {"name": "nir", "common_name": "nir"}],
                "raster:bands": [{"scale": 0.5}, {"scale": 2.0}],
            }
        },
        "links": [],
    }
    path = tmp_path / "item.json"
    path.write_text(json.dumps(item))
    source = open_stac(str(path), (str(tmp_path),))
    assert source.config.band_names == ["red", "nir"]
    from openeo_airflow.io.reader import load_cube

    cube = load_cube(
        source.config,
        spatial_extent={
            "west": 500000,
            "south": 5000000,
            "east": 500050,
            "north": 5000040,
            "crs": 32631,
        },
        temporal_extent=None,
        bands=source.bands(["nir", "red"]),
        search=source.search,
    )
    assert list(cube.bands.values) == ["nir", "red"]
    np.testing.assert_array_equal(cube.sel(bands="red").values[0], data[0] * 0.5)
    np.testing.assert_array_equal(cube.sel(bands="nir").values[0], data[1] * 2.0)


def test_local_files_only_under_allowed_folders(tmp_path: Path) -> None:
    allowed = tmp_path / "stac"
    allowed.mkdir()
    roots = allowed_roots([], env={ROOTS_ENV: f"{allowed}, s3://bucket/prefix/"})
    assert check_href(str(allowed / "a.json"), roots, "load_stac", "url")
    assert check_href("s3://bucket/prefix/x.tif", roots, "load_stac", "url")
    assert check_href("https://example.org/c.json", roots, "load_stac", "url")
    for bad in ("/etc/passwd", f"{allowed}/../secret.json", "s3://other/x.tif", "relative.json"):
        with pytest.raises(ProcessParameterInvalid) as error:
            check_href(bad, roots, "load_stac", "url")
        assert error.value.params["parameter"] == "url"


def test_a_catalog_cannot_point_at_files_outside_the_roots(tmp_path: Path) -> None:
    (tmp_path / "stac").mkdir()
    catalog = {
        "type": "Catalog",
        "id": "c",
        "stac_version": "1.0.0",
        "description": "",
        "links": [{"rel": "item", "href": "/etc/passwd"}],
    }
    path = tmp_path / "stac" / "catalog.json"
    path.write_text(json.dumps(catalog))
    with pytest.raises(ProcessParameterInvalid, match="may not be read"):
        open_stac(str(path), (str(tmp_path / "stac"),))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("/etc/passwd", "may not be read"),
        ("http://127.0.0.1:9/catalog.json", "cannot be read"),
        ("NOT_STAC", "is not a STAC"),
    ],
)
def test_bad_urls_are_refused_naming_the_parameter(
    api: Api, setup: tuple[Backend, Path], url: str, reason: str
) -> None:
    if url == "NOT_STAC":
        path = setup[1] / "cdse" / "not-stac.json"
        path.write_text(json.dumps({"hello": "world"}))
        url = str(path)
    response = api.post(graph(load_node("load_stac", url=url, **cdse_args())))
    assert_error(response, "ProcessParameterInvalid", "'url'", "load_stac", reason)


def test_a_batch_job_with_an_unreadable_url_fails_with_the_reason(
    setup: tuple[Backend, Path],
) -> None:
    backend = setup[0]
    with pytest.raises(ProcessParameterInvalid, match="'url'"):
        run_job(backend, graph(load_node("load_stac", url="/etc/passwd", **cdse_args())))


def _absolute(path: Path) -> dict[str, Any]:
    """An item with asset hrefs made absolute (the STAC API serves them as file:// URLs)."""
    item = json.loads(path.read_text())
    for asset in item["assets"].values():
        asset["href"] = str((path.parent / asset["href"]).resolve())
    return item
