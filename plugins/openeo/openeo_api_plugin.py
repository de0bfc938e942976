"""Airflow plugin: serves the openEO API from Airflow's api-server under /openeo."""

from functools import cache
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from openeo_airflow.api.app import create_app
from openeo_airflow.compiler import specs

specs.preload()


@cache
def _openeo_app() -> dict[str, Any]:
    return {"app": create_app(), "url_prefix": "/openeo", "name": "openEO API"}


class OpenEOApiPlugin(AirflowPlugin):
    name = "openeo_api"

    # Every task process loads the plugins too (for their listeners), and building the app's
    # routes took 0.1 s of each task's start (py-spy): only the api-server asks for the app.
    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return [_openeo_app()]
