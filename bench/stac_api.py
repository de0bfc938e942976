"""A tiny read-only STAC API on loopback over the benchmark archive (for the peer's load_stac).

openEO local processing's ``load_stac`` only searches STAC APIs (a static catalog fails with
"DoesNotConformTo ITEM_SEARCH"), so the harness serves the archive's items through the
endpoints pystac-client needs: landing page, ``/conformance``, ``/collections``,
``/collections/{id}``, ``/collections/{id}/items`` and ``/search`` (GET and POST; filters
``collections``, ``bbox``, ``datetime``; one page). Asset hrefs are absolute ``file://`` paths.
Standard library only; bound to 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
JSON = "application/json"
GEOJSON = "application/geo+json"


class StacApi:
    """Serve one static collection (our layout) as a STAC API; use as a context manager."""

    def __init__(self, catalog: Path, items: Iterable[dict[str, Any]]) -> None:
        self.collection = json.loads(Path(catalog).read_text())
        self.items = [self._file_hrefs(item) for item in items]
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    def __enter__(self) -> StacApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                parsed = urllib.parse.urlparse(self.path)
                query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query).items()}
                self._answer(*api.route(parsed.path.rstrip("/") or "/", query))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                path = urllib.parse.urlparse(self.path).path.rstrip("/")
                if path != "/search":
                    self._answer(404, {"code": "NotFound"})
                    return
                self._answer(200, api.search(body))

            def _answer(self, status: int, document: dict[str, Any]) -> None:
                data = json.dumps(document).encode()
                self.send_response(status)
                kind = GEOJSON if document.get("type") == "FeatureCollection" else JSON
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def collection_url(self) -> str:
        return f"{self.url}/collections/{self.collection['id']}"

    # ------------------------------------------------------------------ routing

    def route(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        cid = self.collection["id"]
        if path == "/":
            return 200, self.landing()
        if path == "/conformance":
            return 200, {"conformsTo": CONFORMANCE}
        if path == "/collections":
            return 200, {"collections": [self.collection_doc()], "links": []}
        if path == f"/collections/{cid}":
            return 200, self.collection_doc()
        if path == f"/collections/{cid}/items":
            return 200, self.search({**query, "collections": [cid]})
        if path.startswith(f"/collections/{cid}/items/"):
            wanted = path.rsplit("/", 1)[-1]
            for item in self.items:
                if item["id"] == wanted:
                    return 200, self._linked(item)
        if path == "/search":
            return 200, self.search(query)
        return 404, {"code": "NotFound", "description": path}

    def landing(self) -> dict[str, Any]:
        return {
            "type": "Catalog",
            "stac_version": "1.0.0",
            "id": "openeo-airflow-bench",
            "title": "openeo-airflow benchmark archive (read-only, loopback)",
            "description": "Benchmark archive served for openEO local processing",
            "conformsTo": CONFORMANCE,
            "links": [
                {"rel": "self", "href": f"{self.url}/", "type": JSON},
                {"rel": "root", "href": f"{self.url}/", "type": JSON},
                {"rel": "conformance", "href": f"{self.url}/conformance", "type": JSON},
                {"rel": "data", "href": f"{self.url}/collections", "type": JSON},
                {"rel": "child", "href": self.collection_url, "type": JSON},
                {"rel": "search", "href": f"{self.url}/search", "type": GEOJSON,
                 "method": "GET"},
                {"rel": "search", "href": f"{self.url}/search", "type": GEOJSON,
                 "method": "POST"},
            ],
        }  # fmt: skip

    def collection_doc(self) -> dict[str, Any]:
        doc = {k: v for k, v in self.collection.items() if k != "links"}
        doc["links"] = [
            {"rel": "self", "href": self.collection_url, "type": JSON},
            {"rel": "root", "href": f"{self.url}/", "type": JSON},
            {"rel": "parent", "href": f"{self.url}/", "type": JSON},
            {"rel": "items", "href": f"{self.collection_url}/items", "type": GEOJSON},
        ]
        return doc

    def search(self, params: dict[str, Any]) -> dict[str, Any]:
        collections = params.get("collections")
        if isinstance(collections, str):
            collections = collections.split(",")
        bbox = params.get("bbox")
        if isinstance(bbox, str):
            bbox = [float(v) for v in bbox.split(",")]
        start, end = _interval(params.get("datetime"))
        features = []
        for item in self.items:
            if collections and item["collection"] not in collections:
                continue
            if bbox and not _intersects(item["bbox"], bbox):
                continue
            when = _parse(item["properties"]["datetime"])
            if (start and when < start) or (end and when > end):
                continue
            features.append(self._linked(item))
        return {
            "type": "FeatureCollection",
            "features": features,
            "numberMatched": len(features),
            "numberReturned": len(features),
            "links": [{"rel": "root", "href": f"{self.url}/", "type": JSON}],
        }

    def _linked(self, item: dict[str, Any]) -> dict[str, Any]:
        out = dict(item)
        out["links"] = [
            {"rel": "self", "href": f"{self.collection_url}/items/{item['id']}", "type": GEOJSON},
            {"rel": "collection", "href": self.collection_url, "type": JSON},
            {"rel": "root", "href": f"{self.url}/", "type": JSON},
        ]
        return out

    @staticmethod
    def _file_hrefs(item: dict[str, Any]) -> dict[str, Any]:
        item = json.loads(json.dumps(item))
        for asset in item["assets"].values():
            asset["href"] = Path(asset["href"]).resolve().as_uri()
        return item


def _parse(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _interval(value: Any) -> tuple[datetime | None, datetime | None]:
    if not value:
        return None, None
    parts = value if isinstance(value, list) else str(value).split("/")
    if len(parts) == 1:
        moment = _parse(parts[0])
        return moment, moment
    bounds = [None if p in ("", "..", None) else _parse(p) for p in parts[:2]]
    return bounds[0], bounds[1]


def _intersects(a: list[float], b: list[float]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]
