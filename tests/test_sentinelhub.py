"""Sentinel Hub collections against a loopback server speaking the Process API protocol.

The server (an ``http.server`` thread) implements the OAuth client-credentials token endpoint,
the Catalog API search and ``/api/v1/process``; it answers with GeoTIFFs cut from the real
WorldCereal patch (tile 31UDS, EPSG:32631): Sentinel-2 L2A reflectance at 10 m and
Sentinel-1 sigma0 (stored in dB, served in linear power). The DEM-based S1 bands it serves
(``localIncidenceAngle``, ``scatteringArea``) are constants: only their plumbing is tested.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from rasterio.io import MemoryFile
from rasterio.warp import Resampling, reproject

from openeo_airflow.catalog.config import BandConfig, CollectionConfig, SentinelHubConfig
from openeo_airflow.compiler.compile import compile_plan
from openeo_airflow.compiler.plan import Plan
from openeo_airflow.core.errors import InfrastructureBusy, ProcessParameterUnsupported
from openeo_airflow.engine.planning import shape_job
from openeo_airflow.engine.stages import evaluate_plan
from openeo_airflow.io.backscatter import DigitalElevationModelInvalid
from openeo_airflow.io.sar import BACKSCATTER_ATTR
from openeo_airflow.io.sentinelhub import USAGE_ATTR, load_sentinelhub
from openeo_airflow.processes import registry
from tests.load_support import backscatter_source, load_tiled

WC = "worldcereal_31UDS"
S1_FILE = "S1_GRD-ASCENDING_20m_00002806639B424A_32631_2017-08-01_2018-11-30.nc"
S2_FILE = "S2_L2A_10m_00002806639B424A_32631_2017-08-01_2018-11-30.nc"
TOKEN_PATH = "/oauth/token"
EXTENT = {"west": 501360, "south": 5629040, "east": 502000, "north": 5629680, "crs": 32631}
CLIENT_ID, CLIENT_SECRET = "openeo-airflow-test", "s3cr3t-do-not-log"


class Source:
    """One real data set the server cuts answers from: ``{band: (t, y, x) array}``."""

    def __init__(self, path: Path, decode: Any) -> None:
        with xr.open_dataset(path, mask_and_scale=path.name.startswith("S2")) as ds:
            self.times = ds.timestamp.values.astype("datetime64[s]")
            self.bands = {name: decode(ds[name].values.astype(np.float64)) for name in ds.data_vars}
            x, y = ds.x.values, ds.y.values
        res = float(x[1] - x[0])
        self.transform = Affine(res, 0, x[0] - res / 2, 0, -res, y[0] + res / 2)

    def day_index(self, day: str) -> int | None:
        days = [str(t)[:10] for t in self.times]
        return days.index(day) if day in days else None


def s1_linear(db_e4: np.ndarray) -> np.ndarray:
    db = np.where(db_e4 == 0, np.nan, db_e4 * 1e-4)
    return np.asarray(10 ** (db / 10))


class ShServer:
    """The loopback Sentinel Hub: records every request, scripts failures."""

    def __init__(self, shared: Path) -> None:
        self.sources = {
            "sentinel-1-grd": Source(shared / WC / S1_FILE, s1_linear),
            "sentinel-2-l2a": Source(shared / WC / S2_FILE, lambda v: v),
        }
        self.process_bodies: list[dict[str, Any]] = []
        self.process_tokens: list[str] = []
        self.token_forms: list[dict[str, list[str]]] = []
        self.tokens: dict[str, float] = {}  # token -> server-side expiry
        self.token_lifetime = 3600.0  # what the server enforces
        self.expires_in = 3600  # what it tells the client
        self.failures: list[tuple[int, dict[str, str]]] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> ShServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def config(self, collection: str, **more: Any) -> SentinelHubConfig:
        return SentinelHubConfig(
            data_collection=collection,
            base_url=self.url,
            token_url=self.url + TOKEN_PATH,
            client_id_env="TEST_SH_CLIENT_ID",
            client_secret_env="TEST_SH_CLIENT_SECRET",
            **more,
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == TOKEN_PATH:
                    return self.reply(*server.token(urllib.parse.parse_qs(body.decode())))
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if not server.valid(token):
                    return self.reply(401, {"error": {"status": 401, "reason": "Unauthorized"}})
                request = json.loads(body)
                if self.path.startswith("/api/v1/catalog/1.0.0/search"):
                    return self.reply(200, server.search(request))
                if self.path == "/api/v1/process":
                    return self.reply(*server.process(request, token))
                return self.reply(404, {"error": "not found"})

            def reply(
                self, status: int, payload: Any, headers: dict[str, str] | None = None
            ) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                kind = "image/tiff" if isinstance(payload, bytes) else "application/json"
                server.statuses.append(status)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def token(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.token_forms.append(form)
            ok = form.get("grant_type") == ["client_credentials"] and form.get("client_id") == [
                CLIENT_ID
            ]
            if not ok or form.get("client_secret") != [CLIENT_SECRET]:
                return 401, {"error": "invalid_client"}
            token = f"token-{len(self.token_forms)}"
            self.tokens[token] = time.time() + self.token_lifetime
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}

    def valid(self, token: str) -> bool:
        with self.lock:
            return self.tokens.get(token, 0) > time.time()

    def search(self, request: dict[str, Any]) -> dict[str, Any]:
        source = self.sources[request["collections"][0]]
        start, end = (np.datetime64(v.rstrip("Z")) for v in request["datetime"].split("/"))
        features = [
            {"type": "Feature", "properties": {"datetime": f"{t}Z"}}
            for t in source.times
            if start <= t < end
        ]
        return {"type": "FeatureCollection", "features": features, "context": {}}

    def process(
        self, request: dict[str, Any], token: str
    ) -> tuple[int, Any, dict[str, str]] | tuple[int, Any]:
        with self.lock:
            if self.failures:
                status, headers = self.failures.pop(0)
                return status, {"error": {"status": status, "reason": "scripted"}}, headers
            self.process_bodies.append(request)
            self.process_tokens.append(token)
        data = request["input"]["data"][0]
        source = self.sources[data["type"]]
        index = source.day_index(data["dataFilter"]["timeRange"]["from"][:10])
        bands = re.search(r"bands: \[([^\]]*)\]", request["evalscript"])
        names = re.findall(r'"(\w+)"', bands.group(1)) if bands else []
        width, height = request["output"]["width"], request["output"]["height"]
        west, south, east, north = request["input"]["bounds"]["bbox"]
        transform = Affine((east - west) / width, 0, west, 0, -(north - south) / height, north)
        epsg = int(request["input"]["bounds"]["properties"]["crs"].rsplit("/", 1)[1])
        layers = []
        for name in names:
            if name == "dataMask":
                continue
            values = np.full((height, width), np.nan, dtype=np.float32)
            if name in source.bands and index is not None:
                reproject(
                    source.bands[name][index].astype(np.float32),
                    values,
                    src_transform=source.transform,
                    src_crs="EPSG:32631",
                    dst_transform=transform,
                    dst_crs=f"EPSG:{epsg}",
                    resampling=Resampling.nearest,
                    src_nodata=np.nan,
                    dst_nodata=np.nan,
                )
            elif index is not None:
                values[:] = 35.0  # DEM-based bands: constant stand-ins
            layers.append(values)
        outputs = re.search(r"output: \{[^}]*bands: (\d+)", request["evalscript"])
        if outputs and int(outputs.group(1)) > len(layers):  # dataMask is an output band
            layers.insert(names.index("dataMask"), np.isfinite(layers[0]).astype(np.float32))
        profile = {"driver": "GTiff", "dtype": "float32", "width": width, "height": height}
        profile.update(count=len(layers), crs=f"EPSG:{epsg}", transform=transform)
        with MemoryFile() as memory:
            with memory.open(**profile) as dst:
                dst.write(np.stack(layers))
            return 200, memory.read(), {"x-processingunits-spent": "1.5"}


@pytest.fixture
def server(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ShServer]:
    monkeypatch.setenv("TEST_SH_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("TEST_SH_CLIENT_SECRET", CLIENT_SECRET)
    # oauthlib refuses plain-HTTP token endpoints unless told otherwise: loopback only.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    with ShServer(shared_data) as running:
        yield running


def s2_collection(server: ShServer, **sh: Any) -> CollectionConfig:
    bands = [
        BandConfig("B04", "B04", units="REFLECTANCE"),
        BandConfig("B08", "B08", units="REFLECTANCE"),
    ]
    return CollectionConfig(
        id="SENTINEL2_L2A_SH",
        title="S2",
        description="S2",
        license="proprietary",
        catalog=None,
        resolution=10,
        crs="EPSG:32631",
        bands=bands,
        sentinelhub=server.config("SENTINEL2_L2A", **sh),
    )


def s1_collection(server: ShServer, **sh: Any) -> CollectionConfig:
    bands = [
        BandConfig("VV", "VV", units="LINEAR_POWER"),
        BandConfig("VH", "VH", units="LINEAR_POWER"),
    ]
    return CollectionConfig(
        id="SENTINEL1_GRD_SH",
        title="S1",
        description="S1",
        license="proprietary",
        catalog=None,
        resolution=10,
        crs="EPSG:32631",
        bands=bands,
        sentinelhub=server.config("SENTINEL1_IW", **sh),
    )


EVALSCRIPT_S2 = """//VERSION=3
function setup() {
  return {
    input: [{bands: ["B04", "B08", "dataMask"], units: ["REFLECTANCE", "REFLECTANCE", "DN"]}],
    output: {id: "default", bands: 2, sampleType: "FLOAT32"}
  };
}
function evaluatePixel(s) {
  return [(s.dataMask === 0 ? NaN : s.B04), (s.dataMask === 0 ? NaN : s.B08)];
}
"""


def test_request_body_values_and_usage(
    server: ShServer, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = s2_collection(server)
    cube = load_sentinelhub(
        cfg, spatial_extent=EXTENT, temporal_extent=["2017-08-01", "2017-08-20"], bands=None
    )
    bodies = sorted(
        server.process_bodies,
        key=lambda b: b["input"]["data"][0]["dataFilter"]["timeRange"]["from"],
    )  # one request per day, sent in parallel
    assert bodies[0] == {
        "input": {
            "bounds": {
                "bbox": [501360.0, 5629040.0, 502000.0, 5629680.0],
                "properties": {"crs": "http://www.opengis.net/def/crs/EPSG/0/32631"},
            },
            "data": [
                {
                    "type": "sentinel-2-l2a",
                    "dataFilter": {
                        "timeRange": {
                            "from": "2017-08-04T00:00:00Z",
                            "to": "2017-08-05T00:00:00Z",
                        },
                        "mosaickingOrder": "mostRecent",
                    },
                }
            ],
        },
        "evalscript": EVALSCRIPT_S2,
        "output": {
            "width": 64,
            "height": 64,
            "responses": [{"identifier": "default", "format": {"type": "image/tiff"}}],
        },
    }
    assert len(server.process_bodies) == 2  # 2017-08-04 and 2017-08-14
    assert server.token_forms[0]["client_id"] == [CLIENT_ID]
    assert [str(t)[:10] for t in cube.t.values] == ["2017-08-04", "2017-08-14"]
    assert cube.dims == ("t", "bands", "y", "x") and cube.dtype == np.float32
    assert cube.attrs[USAGE_ATTR]["sentinelhub"]["value"] == pytest.approx(3.0)
    with xr.open_dataset(shared_data / WC / S2_FILE) as ds:
        expected = ds.B08.sel(timestamp="2017-08-14").values.squeeze()
    np.testing.assert_allclose(cube.sel(bands="B08").values[1], expected, rtol=1e-6)
    assert CLIENT_SECRET not in caplog.text


def test_large_areas_split_into_requests_within_the_limit(server: ShServer) -> None:
    whole = load_sentinelhub(
        s2_collection(server),
        spatial_extent=EXTENT,
        temporal_extent=["2017-08-04", "2017-08-05"],
        bands=["B04"],
    )
    server.process_bodies.clear()
    split = load_sentinelhub(
        s2_collection(server, max_pixels=25),
        spatial_extent=EXTENT,
        temporal_extent=["2017-08-04", "2017-08-05"],
        bands=["B04"],
    )
    sizes = sorted((b["output"]["width"], b["output"]["height"]) for b in server.process_bodies)
    assert sizes == sorted((w, h) for w in (25, 25, 14) for h in (25, 25, 14))
    assert all(max(size) <= 25 for size in sizes)
    boxes = {tuple(b["input"]["bounds"]["bbox"]) for b in server.process_bodies}
    assert (501360.0, 5629430.0, 501610.0, 5629680.0) in boxes  # the top-left chunk
    xr.testing.assert_equal(whole, split)


def test_429_then_success_waits_as_told(server: ShServer) -> None:
    server.failures = [(429, {"Retry-After": "700"})]  # milliseconds, the service's unit
    started = time.monotonic()
    with pytest.warns(Warning, match="rate limit"):
        cube = load_sentinelhub(
            s2_collection(server),
            spatial_extent=EXTENT,
            temporal_extent=["2017-08-04", "2017-08-05"],
            bands=["B04"],
        )
    assert time.monotonic() - started >= 0.7
    assert server.statuses.count(429) == 1 and len(server.process_bodies) == 1
    assert np.isfinite(cube.values).all()
    # Persisting 429s end in a clear "busy" error, not a hang.
    server.failures = [(429, {"Retry-After": "10"})] * 3
    with pytest.raises(InfrastructureBusy), pytest.warns(Warning):
        load_sentinelhub(
            s2_collection(server, max_retries=2),
            spatial_extent=EXTENT,
            temporal_extent=["2017-08-04", "2017-08-05"],
            bands=["B04"],
        )


def test_expired_token_is_renewed(server: ShServer) -> None:
    server.token_lifetime = 1.0  # the server expires tokens earlier than it announced
    cfg = s2_collection(server)

    def load() -> xr.DataArray:
        return load_sentinelhub(
            cfg,
            spatial_extent=EXTENT,
            temporal_extent=["2017-08-04", "2017-08-05"],
            bands=["B04"],
        )

    load()
    assert len(server.token_forms) == 1
    time.sleep(1.2)
    cube = load()
    assert 401 in server.statuses
    assert len(server.token_forms) == 2
    assert server.process_tokens == ["token-1", "token-2"]
    assert np.isfinite(cube.values).all()


def test_token_near_expiry_is_renewed_before_use(server: ShServer) -> None:
    server.expires_in = 60  # inside the session's 120 s renewal margin: renew before each use
    load_sentinelhub(
        s2_collection(server),
        spatial_extent=EXTENT,
        temporal_extent=["2017-08-04", "2017-08-05"],
        bands=["B04"],
    )
    assert 401 not in server.statuses
    assert len(server.token_forms) >= 2  # catalog search + process request: one each at least
    assert server.process_tokens[-1] == f"token-{len(server.token_forms)}"


def test_sar_backscatter_mapped_onto_processing_options(server: ShServer) -> None:
    cfg = s1_collection(server)
    arguments = {
        "coefficient": "gamma0-terrain",
        "mask": True,
        "local_incidence_angle": True,
        "options": {"speckleFilter": {"type": "LEE", "windowSizeX": 5, "windowSizeY": 5}},
    }
    cube = load_sentinelhub(
        cfg,
        spatial_extent=EXTENT,
        temporal_extent=["2017-08-01", "2017-08-03"],
        bands=None,
        backscatter=arguments,
    )
    data = server.process_bodies[0]["input"]["data"][0]
    assert data["type"] == "sentinel-1-grd"
    assert data["dataFilter"] == {
        "timeRange": {"from": "2017-08-01T00:00:00Z", "to": "2017-08-02T00:00:00Z"},
        "mosaickingOrder": "mostRecent",
        "acquisitionMode": "IW",
        "polarization": "DV",
        "resolution": "HIGH",
    }
    assert data["processing"] == {
        "backCoeff": "GAMMA0_TERRAIN",
        "orthorectify": True,
        "demInstance": "COPERNICUS_30",
        "speckleFilter": {"type": "LEE", "windowSizeX": 5, "windowSizeY": 5},
    }
    script = server.process_bodies[0]["evalscript"]
    assert '"VV", "VH", "dataMask", "localIncidenceAngle"' in script
    assert list(cube.bands.values) == ["VV", "VH", "mask", "local_incidence_angle"]
    assert set(np.unique(cube.sel(bands="mask").values)) <= {0.0, 1.0}

    def refused(kind: type[Exception], word: str, **args: Any) -> None:
        with pytest.raises(kind, match=word):
            load_sentinelhub(
                cfg,
                spatial_extent=EXTENT,
                temporal_extent=["2017-08-01", "2017-08-03"],
                bands=None,
                backscatter=args,
            )

    refused(ProcessParameterUnsupported, "'coefficient'", coefficient="sigma0-terrain")
    refused(ProcessParameterUnsupported, "'coefficient'", coefficient=None)
    refused(ProcessParameterUnsupported, "'noise_removal'", noise_removal=False)
    refused(
        ProcessParameterUnsupported, "'ellipsoid_incidence_angle'", ellipsoid_incidence_angle=True
    )
    refused(ProcessParameterUnsupported, "'options.despeckle'", options={"despeckle": 1})
    refused(DigitalElevationModelInvalid, "'elevation_model'", elevation_model="SRTM_1")


def write_s2_archive(shared: Path, root: Path, days: list[str]) -> str:
    """A static STAC catalog of float32 GeoTIFFs cut from the WorldCereal S2 patch."""
    links = []
    with xr.open_dataset(shared / WC / S2_FILE) as ds:
        x, y = ds.x.values, ds.y.values
        transform = Affine(10, 0, x[0] - 5, 0, -10, y[0] + 5)
        for day in days:
            step = ds.sel(timestamp=day)
            assets = {}
            for band in ("B04", "B08"):
                path = root / f"{day}_{band}.tif"
                with rasterio.open(
                    path,
                    "w",
                    driver="GTiff",
                    dtype="float32",
                    width=len(x),
                    height=len(y),
                    count=1,
                    crs="EPSG:32631",
                    transform=transform,
                    nodata=float("nan"),
                ) as dst:
                    dst.write(step[band].values.squeeze().astype(np.float32), 1)
                assets[band] = {"href": str(path)}
            item = {
                "type": "Feature",
                "stac_version": "1.0.0",
                "id": f"S2_{day}",
                "bbox": [3.0, 50.7, 3.1, 50.9],
                "geometry": None,
                "links": [],
                "properties": {"datetime": f"{day}T10:53:28Z", "proj:epsg": 32631},
                "assets": assets,
            }
            (root / f"{day}.json").write_text(json.dumps(item))
            links.append({"rel": "item", "href": f"./{day}.json"})
    catalog = {
        "type": "Catalog",
        "id": "s2",
        "stac_version": "1.0.0",
        "description": "t",
        "links": links,
    }
    (root / "catalog.json").write_text(json.dumps(catalog))
    return str(root / "catalog.json")


def test_merge_s1_backscatter_with_s2(server: ShServer, shared_data: Path, tmp_path: Path) -> None:
    s2 = CollectionConfig(
        id="S2",
        title="S2",
        description="S2",
        license="proprietary",
        catalog=write_s2_archive(shared_data, tmp_path, ["2017-08-04", "2017-08-14"]),
        resolution=10,
        crs="EPSG:32631",
        bands=[BandConfig("B04", "B04"), BandConfig("B08", "B08")],
    )
    s1 = s1_collection(server)
    collections = {"S1": s1, "S2": s2}
    period = ["2017-08-01", "2017-08-15"]
    graph = {
        "s1": {
            "process_id": "load_collection",
            "arguments": {
                "id": "S1",
                "spatial_extent": EXTENT,
                "temporal_extent": period,
                "bands": ["VV", "VH"],
            },
        },
        "sar": {
            "process_id": "sar_backscatter",
            "arguments": {"data": {"from_node": "s1"}, "coefficient": "sigma0-ellipsoid"},
        },
        "s2": {
            "process_id": "load_collection",
            "arguments": {
                "id": "S2",
                "spatial_extent": EXTENT,
                "temporal_extent": period,
                "bands": ["B04", "B08"],
            },
        },
        "merge": {
            "process_id": "merge_cubes",
            "arguments": {"cube1": {"from_node": "sar"}, "cube2": {"from_node": "s2"}},
            "result": True,
        },
    }
    plan = compile_plan(
        graph,
        known_processes=registry.specs(),
        collections={k: c.band_names for k, c in collections.items()},
    )
    loads = shape_job(plan, collections, "local", {}).loads  # what sync and fused runs read
    cubes = {p.node_id: p.empty_cube().copy(data=p.read(p.grid)[0]) for p in loads}
    assert cubes["s1"].sizes["x"] == cubes["s2"].sizes["x"] == 64
    merged = evaluate_plan(plan, cubes)
    assert list(merged.bands.values) == ["VV", "VH", "B04", "B08"]
    assert merged.dims == ("t", "bands", "y", "x")
    for loaded in cubes.values():  # the same cube model from both loaders
        assert loaded.dims == ("t", "bands", "y", "x") and loaded.dtype == np.float32
        assert loaded.spatial_ref.attrs == cubes["s2"].spatial_ref.attrs
    s1_days = {str(t)[:10] for t in cubes["s1"].t.values}
    assert {str(t)[:10] for t in merged.t.values} == s1_days | {"2017-08-04", "2017-08-14"}
    on_s2_day = merged.sel(t="2017-08-14")
    assert np.isfinite(on_s2_day.sel(bands="B08")).all()
    with xr.open_dataset(shared_data / WC / S2_FILE) as ds:
        np.testing.assert_allclose(
            on_s2_day.sel(bands="B04").values.squeeze(),
            ds.B04.sel(timestamp="2017-08-14").values.squeeze(),
            rtol=1e-6,
        )
    vv = merged.sel(bands="VV").dropna("t", how="all")
    assert vv.sizes["t"] == len(s1_days) and 0 < float(vv.median()) < 1  # linear sigma0


def test_the_sync_size_check_needs_no_stac_catalog(server: ShServer) -> None:
    # A Sentinel Hub collection has no STAC catalog to count dates in: the synchronous limit
    # assumes one observation per day of the temporal extent, and sends nothing.
    from openeo_airflow.compiler.plan import Plan, Source
    from openeo_airflow.core.errors import ProcessGraphComplexity
    from openeo_airflow.engine.sync import check_size

    cfg = s2_collection(server)
    source = Source(
        node_id="load",
        process_id="load_collection",
        collection_id=cfg.id,
        spatial_extent=EXTENT,
        temporal_extent=["2017-08-01", "2017-08-11"],
        bands=["B04"],
    )
    plan = Plan(process_graph={}, result_node="load", sources=[source], output=None)
    pixels = 64 * 64 * 11  # 640 m at 10 m, one band, 11 days
    check_size(plan, {cfg.id: cfg}, max_pixels=pixels + 200)
    with pytest.raises(ProcessGraphComplexity, match="synchronous processing is limited"):
        check_size(plan, {cfg.id: cfg}, max_pixels=pixels // 2)
    assert server.process_bodies == []


def test_batch_loads_per_tile_as_the_whole_cube(server: ShServer, tmp_path: Path) -> None:
    cfg = s1_collection(server)
    period: list[str | None] = ["2017-08-01", "2017-08-06"]
    arguments = {"coefficient": "sigma0-ellipsoid", "mask": True}
    source = backscatter_source(cfg.id, EXTENT, period, ["VV", "VH"], arguments)
    whole = load_sentinelhub(
        cfg, spatial_extent=EXTENT, temporal_extent=period, bands=None, backscatter=arguments
    )
    whole_requests = len(server.process_bodies)
    server.process_bodies.clear()
    tiled, measured = load_tiled(source, cfg, tmp_path, tile_size=24)
    # 64 x 64 px in 24 px tiles: 3 x 3 tiles, each its own request per day.
    sizes = {(b["output"]["width"], b["output"]["height"]) for b in server.process_bodies}
    assert sizes == {(w, h) for w in (24, 16) for h in (24, 16)}
    assert len(server.process_bodies) == 9 * whole_requests
    assert {b["input"]["data"][0]["processing"]["backCoeff"] for b in server.process_bodies} == {
        "SIGMA0_ELLIPSOID"
    }
    assert tiled.attrs[BACKSCATTER_ATTR] == "sigma0_ellipsoid"
    assert list(tiled.bands.values) == ["VV", "VH", "mask"]
    assert np.isfinite(tiled.values).mean() > 0.5
    np.testing.assert_allclose(tiled.values, whole.values, rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(tiled.x.values, whole.x.values)
    np.testing.assert_array_equal(tiled.t.values, whole.t.values)
    assert measured.extra["usage"]["sentinelhub"]["value"] == pytest.approx(
        1.5 * len(server.process_bodies)
    )
    # The sizing sees a tileable source with the service's days as its time steps.
    node = {"process_id": "load_collection", "arguments": {"id": cfg.id}, "result": True}
    plan = Plan(process_graph={"load": node}, result_node="load", sources=[source], output=None)
    shape = shape_job(plan, {cfg.id: cfg}, "local", {})
    assert [load.node_id for load in shape.loads] == ["load"]
    assert (shape.sources[0].steps, shape.sources[0].bands) == (whole.sizes["t"], 3)
    assert (shape.sources[0].height, shape.sources[0].width) == (64, 64)
