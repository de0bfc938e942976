"""The Airflow plugin file, loaded the way Airflow's plugins manager loads it."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys

from fastapi import FastAPI

from openeo_airflow.cli.stack import PLUGINS_FOLDER


def test_loading_the_plugin_builds_the_api_only_when_the_api_server_asks_for_it() -> None:
    # Every task process loads the plugins (for their listeners); the openEO app is for the
    # api-server alone.
    path = PLUGINS_FOLDER / "openeo_api_plugin.py"
    loader = importlib.machinery.SourceFileLoader("openeo_api_plugin_test", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        loader.exec_module(module)
        plugin = module.OpenEOApiPlugin()
        assert module._openeo_app.cache_info().currsize == 0
        (entry,) = plugin.fastapi_apps
        assert isinstance(entry["app"], FastAPI) and entry["url_prefix"] == "/openeo"
        assert plugin.fastapi_apps[0]["app"] is entry["app"]  # built once
    finally:
        del sys.modules[spec.name]
