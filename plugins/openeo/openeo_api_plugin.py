"""Airflow plugin: serves the openEO API from Airflow's api-server under /openeo."""

from airflow.plugins_manager import AirflowPlugin

from openeo_airflow.api.app import create_app
from openeo_airflow.compiler import specs

specs.preload()


class OpenEOApiPlugin(AirflowPlugin):
    name = "openeo_api"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/openeo", "name": "openEO API"}]
