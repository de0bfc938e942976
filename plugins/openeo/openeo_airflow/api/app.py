"""The openEO API application: one FastAPI app, mounted in Airflow's api-server or on its own."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from openeo_airflow import __version__
from openeo_airflow.api import (
    routes_general,
    routes_jobs,
    routes_process_graphs,
    routes_products,
    routes_sync,
)
from openeo_airflow.api.errors import install_error_handlers
from openeo_airflow.core.settings import load_settings
from openeo_airflow.jobs.backend import Backend

VERSION_PREFIX = "/1.2"


def lazy_backend() -> Callable[[], Backend]:
    """Build the backend on first use: importing the plugin must not touch settings or the DB."""
    lock = threading.Lock()
    holder: list[Backend] = []

    def provide() -> Backend:
        if not holder:
            with lock:
                if not holder:
                    holder.append(Backend(load_settings()))
        return holder[0]

    return provide


def lazy_pool() -> Callable[[int], ThreadPoolExecutor]:
    lock = threading.Lock()
    holder: list[ThreadPoolExecutor] = []

    def provide(workers: int) -> ThreadPoolExecutor:
        if not holder:
            with lock:
                if not holder:
                    holder.append(
                        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openeo-sync")
                    )
        return holder[0]

    return provide


def create_app(backend_provider: Callable[[], Backend] | None = None) -> FastAPI:
    app = FastAPI(
        title="openeo-airflow",
        version=__version__,
        description="openEO API 1.2 backed by Apache Airflow",
        docs_url="/docs",
        openapi_url="/openapi.json",
        redirect_slashes=False,
    )
    app.state.backend_provider = backend_provider or lazy_backend()
    app.state.sync_pool = lazy_pool()
    app.state.version_prefix = VERSION_PREFIX
    # Browser clients (the openEO Web Editor) call the API from another origin.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["Location", "OpenEO-Identifier", "OpenEO-Costs", "Link"],
    )
    install_error_handlers(app)
    app.include_router(routes_general.well_known)
    routers = (
        routes_general.router,
        routes_jobs.router,
        routes_sync.router,
        routes_process_graphs.router,
        routes_products.router,
    )
    for router in routers:
        app.include_router(router, prefix=VERSION_PREFIX)
    return app
