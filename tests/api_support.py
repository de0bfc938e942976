"""An in-process API client over a real backend (SQLite registry, real catalogs) for API tests.

Airflow is not running here: these tests cover what the API answers by itself. Everything that
goes through Airflow is tested end to end against the real local stack (test_e2e.py).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import uvicorn
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from openeo_airflow.api.app import create_app
from openeo_airflow.core.settings import load_settings
from openeo_airflow.jobs.backend import Backend
from openeo_airflow.processes import registry
from tests.fixtures.shared_catalogs import (
    build_29rkh_catalog,
    build_cdse_catalog,
    collections_yaml,
)

PREFIX = "/openeo/1.2"
USERS = {"alice": "alice-pw", "bob": "bob-pw"}


def build_test_collections(shared_data: Path, dest: Path) -> Path:
    """One collections file with the catalogs derived from ../shared/data."""
    entries = []
    for name, builder in (("29rkh", build_29rkh_catalog), ("cdse", build_cdse_catalog)):
        folder = dest / name
        builder(shared_data, folder)
        config = yaml.safe_load(collections_yaml(folder).read_text())
        for entry in config["collections"]:
            catalog = Path(entry["catalog"])
            entry["catalog"] = str(
                catalog if catalog.is_absolute() else (folder / catalog).resolve()
            )
            entries.append(entry)
    path = dest / "collections.yaml"
    path.write_text(yaml.safe_dump({"collections": entries}))
    return path


def make_backend(
    home: Path,
    collections: Path,
    airflow_url: str = "http://127.0.0.1:9",
    **settings_env: str,
) -> Backend:
    settings = load_settings(
        {
            "OPENEO_AIRFLOW_HOME": str(home),
            "OPENEO_AIRFLOW_COLLECTIONS": str(collections),
            "OPENEO_AIRFLOW_AIRFLOW_URL": airflow_url,
            "OPENEO_AIRFLOW_SYNC_MAX_PIXELS": "5000000",
            **{f"OPENEO_AIRFLOW_{k.upper()}": v for k, v in settings_env.items()},
        }
    )
    backend = Backend(settings)
    for user, password in USERS.items():
        backend.accounts.set_password(user, password)
    return backend


def mounted_app(backend: Backend) -> FastAPI:
    """The app mounted under /openeo, as Airflow's api-server mounts the plugin."""
    host = FastAPI()
    host.mount("/openeo", create_app(lambda: backend))
    return host


def make_client(backend: Backend) -> TestClient:
    return TestClient(mounted_app(backend), raise_server_exceptions=False)


@contextmanager
def served(backend: Backend) -> Iterator[str]:
    """The API served by uvicorn on a loopback port, for clients that need a real URL (the
    openEO client, STAC readers); yields the API's URL (``.../openeo/1.2``)."""
    server = uvicorn.Server(
        uvicorn.Config(mounted_app(backend), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the API did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/openeo/1.2"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler for a loopback stand-in of another service (Airflow's REST API):
    JSON answers, no request log."""

    def answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def http_served(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` served by a thread on a loopback port; yields the server's URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def implementation(process_id: str) -> Any:
    """The function the API runs for ``process_id``."""
    function = registry.get(process_id)
    assert function is not None, process_id
    return function


def basic_header(user: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def bearer(client: TestClient, user: str) -> dict[str, str]:
    response = client.get(f"{PREFIX}/credentials/basic", headers=basic_header(user, USERS[user]))
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer basic//{response.json()['access_token']}"}
