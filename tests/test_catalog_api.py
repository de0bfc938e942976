"""STAC API collections: a real pystac-client search against a read-only STAC API on loopback.

The server (standard library, 127.0.0.1) serves real STAC items — the 13 dates of tile 35MNM
(``site2``) and the real Earth Search item of 29RKH, whose COGs are in ``shared/data`` — with
landing page, conformance, ``/collections/{id}`` and a paged ``POST /search`` implementing
``bbox``, ``datetime``, CQL2-JSON ``filter`` and the ``query`` extension. It records every
search body, so the tests see what was pushed into the search.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from openeo_airflow.catalog.config import BandConfig, CollectionConfig, load_collections
from openeo_airflow.catalog.properties import evaluate, parse_properties
from openeo_airflow.catalog.stac import parse_datetime, search_items
from openeo_airflow.core.errors import FeatureUnsupported, InfrastructureBusy
from openeo_airflow.io.reader import load_cube
from tests.api_support import JsonHandler

RKH = Path("cogs_29RKH/S2A_29RKH_20200219_0_L2A")
CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#filter",
    "https://api.stacspec.org/v1.0.0/item-search#query",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
]
CQL2 = {"=": "eq", "<>": "neq", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}
OPS = {
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
}


class StacApi:
    """Items of one collection behind a paged ``/search``; ``bodies`` records each search."""

    def __init__(self, collection: str, items: list[dict[str, Any]], page: int = 5) -> None:
        self.collection, self.items, self.page = collection, items, page
        self.bodies: list[dict[str, Any]] = []
        self.url = ""

    def __enter__(self) -> StacApi:
        api = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0].rstrip("/") or "/"
                if path == "/":
                    self.answer(200, api.landing())
                elif path == "/conformance":
                    self.answer(200, {"conformsTo": CONFORMANCE})
                elif path == f"/collections/{api.collection}":
                    self.answer(200, {"type": "Collection", "id": api.collection, "links": []})
                else:
                    self.answer(404, {"code": "NotFound", "description": path})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path.rstrip("/") != "/search":
                    self.answer(404, {"code": "NotFound"})
                    return
                api.bodies.append(body)
                self.answer(200, api.search(body))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def landing(self) -> dict[str, Any]:
        return {
            "type": "Catalog",
            "id": "loopback",
            "description": "test STAC API",
            "stac_version": "1.0.0",
            "conformsTo": CONFORMANCE,
            "links": [
                {"rel": "self", "href": f"{self.url}/", "type": "application/json"},
                {"rel": "root", "href": f"{self.url}/", "type": "application/json"},
                {
                    "rel": "search",
                    "href": f"{self.url}/search",
                    "method": "POST",
                    "type": "application/geo+json",
                },
                {"rel": "conformance", "href": f"{self.url}/conformance"},
            ],
        }

    def search(self, body: dict[str, Any]) -> dict[str, Any]:
        matches = [item for item in self.items if self.matches(item, body)]
        start = int(body.get("token") or 0)
        limit = min(int(body.get("limit") or self.page), self.page)
        page = matches[start : start + limit]
        links = []
        if start + limit < len(matches):
            links.append(
                {
                    "rel": "next",
                    "href": f"{self.url}/search",
                    "method": "POST",
                    "body": {**body, "token": str(start + limit)},
                    "merge": False,
                }
            )
        return {
            "type": "FeatureCollection",
            "features": page,
            "links": links,
            "numberMatched": len(matches),
        }

    def matches(self, item: dict[str, Any], body: dict[str, Any]) -> bool:
        props = item["properties"]
        if body.get("collections") and self.collection not in body["collections"]:
            return False
        if body.get("bbox"):
            w, s, e, n = body["bbox"]
            bw, bs, be, bn = item["bbox"]
            if not (bw < e and w < be and bs < n and s < bn):
                return False
        if body.get("datetime"):
            start, end = body["datetime"].split("/")
            when = parse_datetime(props["datetime"])
            if start not in ("", "..") and when < parse_datetime(start):
                return False
            if end not in ("", "..") and when > parse_datetime(end):
                return False
        for prop, terms in (body.get("query") or {}).items():
            if prop not in props or not all(OPS[op](props[prop], v) for op, v in terms.items()):
                return False
        return body.get("filter") is None or self.cql2(body["filter"], props)

    def cql2(self, expr: dict[str, Any], props: dict[str, Any]) -> bool:
        if expr["op"] == "and":
            return all(self.cql2(arg, props) for arg in expr["args"])
        prop, value = expr["args"][0]["property"], expr["args"][1]
        return prop in props and OPS[CQL2[expr["op"]]](props[prop], value)


def callback(process: str, **args: Any) -> dict[str, Any]:
    arguments = {"x": {"from_parameter": "value"}, **args}
    return {"process_graph": {"p": {"process_id": process, "arguments": arguments, "result": True}}}


def api_config(url: str, collection: str, **extra: Any) -> CollectionConfig:
    return CollectionConfig(
        id="API",
        title="API",
        description="loopback STAC API",
        license="proprietary",
        catalog=None,
        stac_api=url,
        stac_collection=collection,
        resolution=100,
        bands=[BandConfig("B04", "red", nodata=0), BandConfig("SCL", "scl", nodata=0)],
        **extra,
    )


@pytest.fixture(scope="module")
def site2(shared_data: Path) -> list[dict[str, Any]]:
    document = json.loads((shared_data / "stac_items/site2.geojson").read_text())
    return list(document["features"])


@pytest.fixture
def api(site2: list[dict[str, Any]]) -> Iterator[StacApi]:
    with StacApi("sentinel-2-l2a", site2) as server:
        yield server


# --------------------------------------------------------------------------- search


def test_search_pages_through_a_stac_api(api: StacApi, site2: list[dict[str, Any]]) -> None:
    items = search_items(api_config(api.url, "sentinel-2-l2a"), (26.9, -8.3, 28.1, -7.2))
    assert len(items) == 13 and len(api.bodies) >= 3  # pages of at most 5
    assert [i.datetime for i in items] == sorted(i.datetime for i in items)
    assert items[0].assets["B04"].startswith("https://") and items[0].crs == "EPSG:32735"
    assert api.bodies[0]["collections"] == ["sentinel-2-l2a"]
    assert api.bodies[0]["bbox"] == [26.9, -8.3, 28.1, -7.2]


def test_temporal_extent_end_is_exclusive(api: StacApi) -> None:
    cfg = api_config(api.url, "sentinel-2-l2a")
    start = datetime(2020, 7, 6, tzinfo=UTC)
    end = datetime(2020, 7, 16, 8, 6, 9, 24000, tzinfo=UTC)  # exactly the 07-16 item's time
    items = search_items(cfg, None, start, end)
    assert [str(i.datetime.date()) for i in items] == ["2020-07-06", "2020-07-11"]
    assert api.bodies[-1]["datetime"] == "2020-07-06T00:00:00Z/2020-07-16T08:06:09.024000Z"


def test_cloud_cover_filter_is_pushed_into_the_search_as_cql2(api: StacApi) -> None:
    cfg = api_config(api.url, "sentinel-2-l2a")
    props = {"eo:cloud_cover": callback("lte", y=1)}
    items = search_items(cfg, None, properties=props)
    assert all(i.properties["eo:cloud_cover"] <= 1 for i in items) and len(items) == 7
    assert api.bodies[0]["filter"] == {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 1]}
    assert api.bodies[0]["filter-lang"] == "cql2-json"


def test_between_and_query_extension(api: StacApi) -> None:
    cfg = api_config(api.url, "sentinel-2-l2a", filter_lang="query")
    props = {"eo:cloud_cover": callback("between", min=1, max=10)}
    items = search_items(cfg, None, properties=props)
    assert sorted(round(i.properties["eo:cloud_cover"], 2) for i in items) == [
        1.04,
        1.21,
        5.86,
        6.48,
    ]
    assert api.bodies[0]["query"] == {"eo:cloud_cover": {"gte": 1, "lte": 10}}


def test_untranslatable_callbacks_are_checked_on_the_items(api: StacApi) -> None:
    cfg = api_config(api.url, "sentinel-2-l2a")
    platform = {
        "process_graph": {
            "a": {
                "process_id": "text_ends",
                "arguments": {
                    "data": {"from_parameter": "value"},
                    "pattern": "2b",
                    "case_sensitive": False,
                },
            },
            "n": {"process_id": "not", "arguments": {"x": {"from_node": "a"}}, "result": True},
        }
    }
    props = {"platform": platform, "eo:cloud_cover": callback("lt", y=5)}
    items = search_items(cfg, None, properties=props)
    assert {i.properties["platform"] for i in items} == {"Sentinel-2A"}
    assert all(i.properties["eo:cloud_cover"] < 5 for i in items) and len(items) == 4
    # Only the translatable comparison was sent; the rest ran locally.
    assert api.bodies[0]["filter"] == {"op": "<", "args": [{"property": "eo:cloud_cover"}, 5]}


def test_a_server_that_ignores_the_filter_still_gives_the_right_items(
    site2: list[dict[str, Any]],
) -> None:
    class Careless(StacApi):
        def matches(self, item: dict[str, Any], body: dict[str, Any]) -> bool:
            return super().matches(item, {**body, "filter": None})

    with Careless("sentinel-2-l2a", site2) as server:
        props = {"eo:cloud_cover": callback("gt", y=20)}
        items = search_items(api_config(server.url, "sentinel-2-l2a"), None, properties=props)
    assert sorted(str(i.datetime.date()) for i in items) == ["2020-07-01", "2020-07-11"]


def test_unreachable_api_is_a_service_error() -> None:
    with StacApi("x", []) as server:
        url = server.url
    with pytest.raises(InfrastructureBusy, match="could not be searched") as raised:
        search_items(api_config(url, "x"))
    assert raised.value.status == 503


# --------------------------------------------------------------------------- properties


def test_property_callbacks_translate_and_evaluate() -> None:
    terms = parse_properties(
        {
            "eo:cloud_cover": callback("between", min=0, max=50, exclude_max=True),
            "sat:relative_orbit": {
                "process_graph": {
                    "e": {
                        "process_id": "eq",
                        "arguments": {"x": 78, "y": {"from_parameter": "value"}},
                        "result": True,
                    }
                }
            },
        }
    )
    assert terms.cql2() == {
        "op": "and",
        "args": [
            {"op": ">=", "args": [{"property": "eo:cloud_cover"}, 0]},
            {"op": "<", "args": [{"property": "eo:cloud_cover"}, 50]},
            {"op": "=", "args": [{"property": "sat:relative_orbit"}, 78]},
        ],
    }
    assert terms.matches({"eo:cloud_cover": 10, "sat:relative_orbit": 78})
    assert not terms.matches({"eo:cloud_cover": 50, "sat:relative_orbit": 78})
    assert not terms.matches({"sat:relative_orbit": 78})  # missing property: no match
    graph = callback("array_contains", data=["a", "b"])["process_graph"]
    graph["p"]["arguments"] = {"data": ["S2A", "S2B"], "value": {"from_parameter": "value"}}
    assert evaluate(graph, "S2B") is True and evaluate(graph, "S2C") is False
    with pytest.raises(FeatureUnsupported, match="sqrt"):
        evaluate(callback("sqrt")["process_graph"], 4)


# --------------------------------------------------------------------------- load


@pytest.fixture(scope="module")
def rkh_items(shared_data: Path) -> list[dict[str, Any]]:
    """The real Earth Search 29RKH item (local COG hrefs) on three days, cloudy on one."""
    folder = shared_data / RKH
    document = json.loads((folder / f"{RKH.name}.json").read_text())
    items = []
    for day, cloud in (("19", 4.05), ("24", 80.0), ("29", 2.0)):
        item = json.loads(json.dumps(document))
        item["id"] = f"S2A_29RKH_202002{day}_0_L2A"
        item["properties"]["datetime"] = f"2020-02-{day}T11:34:25Z"
        item["properties"]["eo:cloud_cover"] = cloud
        item["links"] = []
        item["assets"] = {k: item["assets"][k] for k in ("red", "scl")}
        item["assets"]["red"]["href"] = str(folder / "B04.tif")  # the decimated COGs
        item["assets"]["scl"]["href"] = str(folder / "SCL.tif")
        items.append(item)
    return items


def test_load_collection_through_a_stac_api(
    rkh_items: list[dict[str, Any]], shared_data: Path
) -> None:
    with StacApi("sentinel-2-l2a", rkh_items) as server:
        cfg = api_config(server.url, "sentinel-2-l2a", grid_origin=(199980.0, 2800020.0))
        cube = load_cube(
            cfg,
            spatial_extent={
                "west": 209980,
                "east": 214980,
                "south": 2780020,
                "north": 2785020,
                "crs": 32629,
            },
            temporal_extent=["2020-02-01", "2020-03-01"],
            bands=["B04"],
            properties={"eo:cloud_cover": callback("lt", y=50)},
        )
    assert [str(t)[:10] for t in cube.t.values] == ["2020-02-19", "2020-02-29"]
    with rasterio.open(shared_data / RKH / "B04.tif") as src:
        expected = src.read(1, window=Window(100, 150, 50, 50)).astype(np.float32)
    np.testing.assert_array_equal(cube.values[0, 0], expected)
    np.testing.assert_array_equal(cube.values[1, 0], expected)


def test_stac_api_collections_in_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "collections:\n"
        "  - id: ES\n"
        "    stac_api: ${ES_URL:-https://earth-search.aws.element84.com/v1}\n"
        "    stac_collection: sentinel-2-c1-l2a\n"
        "    filter_lang: query\n"
        "    sentinel2: true\n"
        "    gdal_profile: aws-s3\n"
        "    resolution: 10\n"
        "    bands: [{name: B04, asset: red, nodata: 0, harmonize: true}]\n"
    )
    cfg = load_collections(path, env={})["ES"]
    assert cfg.catalog is None and cfg.stac_api == "https://earth-search.aws.element84.com/v1"
    assert cfg.filter_lang == "query" and cfg.sentinel2 and cfg.gdal_profile == "aws-s3"
    assert cfg.band("B04").harmonize and cfg.band("B04").asset == "red"


def test_default_collections_include_real_archives() -> None:
    from openeo_airflow.catalog.config import DEFAULT_COLLECTIONS_FILE

    collections = load_collections(DEFAULT_COLLECTIONS_FILE, env={"OPENEO_AIRFLOW_HOME": "/x"})
    cdse, es, s1 = (
        collections[k] for k in ("SENTINEL2_L2A", "SENTINEL2_L2A_EARTH_SEARCH", "SENTINEL1_GRD")
    )
    assert cdse.stac_api == "https://stac.dataspace.copernicus.eu/v1" and cdse.sentinel2
    assert cdse.gdal_profile == "cdse-s3" and cdse.band("B04").asset == "B04_10m"
    assert cdse.band("B04").harmonize and not cdse.band("SCL").overviews
    assert es.stac_collection == "sentinel-2-c1-l2a" and es.filter_lang == "query"
    assert s1.stac_collection == "sentinel-1-grd" and s1.band_names == ["VV", "VH"]
    env = {"OPENEO_AIRFLOW_HOME": "/x", "CDSE_STAC_URL": "http://127.0.0.1:9/v1"}
    assert load_collections(DEFAULT_COLLECTIONS_FILE, env=env)["SENTINEL2_L2A"].stac_api == (
        "http://127.0.0.1:9/v1"
    )
