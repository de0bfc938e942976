"""Shared pieces of the load_stac / GeoJSON extent / load_result tests: one backend over the
catalogs derived from ``shared/data``, reachable both through the API (``POST /result``) and
through the batch DAG's task functions (run without Airflow, as in ``test_engines``); and the
batch load stage's tiled reads of one source (Sentinel Hub, Sentinel-1 backscatter)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xarray as xr
import yaml
from fastapi.testclient import TestClient

from openeo_airflow.airflow import tasks
from openeo_airflow.catalog.adhoc import ROOTS_ENV
from openeo_airflow.catalog.config import CollectionConfig
from openeo_airflow.compiler.plan import Source as PlanSource
from openeo_airflow.core.models import JobStatus
from openeo_airflow.engine.loadplan import prepare_load
from openeo_airflow.engine.measure import WORKER_MEMORY_ENV, Measurement
from openeo_airflow.engine.tiled import inline_mapper, run_load
from openeo_airflow.engine.workspace import JobWorkspace
from openeo_airflow.io.store import read_cube
from openeo_airflow.jobs.backend import Backend
from tests.api_support import PREFIX, USERS, bearer, build_test_collections, make_client

# The CDSE cube's whole grid (52 x 46 px at 10 m, EPSG:32631) and its first month.
CDSE_EXTENT = {"west": 587880, "south": 5684910, "east": 588340, "north": 5685430, "crs": 32631}
OCTOBER = ["2023-10-01", "2023-11-01"]


def backend_over_catalogs(
    tmp_path_factory: pytest.TempPathFactory,
    shared_data: Path,
    name: str,
    extra_collections: list[dict[str, Any]] | None = None,
    **settings: str,
) -> Iterator[tuple[Backend, Path]]:
    """The batch tasks' backend (configured through the environment, as in a worker) with
    the API's users; yields it and the folder holding the derived catalogs. ``settings`` are
    more ``OPENEO_AIRFLOW_*`` variables (``OOM_RETRIES="3"``); ``extra_collections`` more
    entries of the collections file (e.g. Sentinel Hub collections on a loopback server)."""
    root = tmp_path_factory.mktemp(name)
    catalogs = root / "catalogs"
    collections = build_test_collections(shared_data, catalogs)
    if extra_collections:
        entries = yaml.safe_load(collections.read_text())["collections"]
        collections.write_text(yaml.safe_dump({"collections": entries + extra_collections}))
    patch = pytest.MonkeyPatch()
    patch.setenv("OPENEO_AIRFLOW_HOME", str(root / "home"))
    patch.setenv("OPENEO_AIRFLOW_COLLECTIONS", str(collections))
    patch.setenv("OPENEO_AIRFLOW_SYNC_MAX_PIXELS", "5000000")
    # The 29RKH catalog's assets are the originals in shared/data, outside its catalog folder.
    patch.setenv(ROOTS_ENV, str(shared_data))
    patch.delenv(WORKER_MEMORY_ENV, raising=False)
    for name_, value in settings.items():
        patch.setenv(f"OPENEO_AIRFLOW_{name_}", value)
    tasks.backend.cache_clear()
    backend = tasks.backend()
    for user, password in USERS.items():
        backend.accounts.set_password(user, password)
    yield backend, catalogs
    tasks.backend.cache_clear()
    patch.undo()


def save(node: str, fmt: str = "netCDF") -> dict[str, Any]:
    return {
        "process_id": "save_result",
        "arguments": {"data": {"from_node": node}, "format": fmt},
        "result": True,
    }


def load_node(process_id: str, **arguments: Any) -> dict[str, Any]:
    return {"process_id": process_id, "arguments": arguments}


def graph(load: dict[str, Any], fmt: str = "netCDF") -> dict[str, Any]:
    """``load`` then ``save_result``."""
    return {"process_graph": {"load": load, "save": save("load", fmt)}}


class Api:
    """``POST /result`` as a user; answers decoded from netCDF."""

    def __init__(self, backend: Backend, user: str = "alice") -> None:
        self.client: TestClient = make_client(backend)
        self.headers = bearer(self.client, user)

    def post(self, process: dict[str, Any]) -> Any:
        return self.client.post(f"{PREFIX}/result", json={"process": process}, headers=self.headers)

    def cube(self, process: dict[str, Any]) -> xr.Dataset:
        response = self.post(process)
        assert response.status_code == 200, response.text
        return xr.open_dataset(io.BytesIO(response.content), engine="h5netcdf").load()


def backend_fixtures(name: str) -> tuple[Any, Any]:
    """A test module's fixtures ``setup`` (``backend_over_catalogs`` in a folder ``name``) and
    ``api`` (an ``Api`` on it), both module-scoped: ``setup, api = backend_fixtures("name")``."""

    @pytest.fixture(scope="module")
    def setup(
        tmp_path_factory: pytest.TempPathFactory, shared_data: Path
    ) -> Iterator[tuple[Backend, Path]]:
        yield from backend_over_catalogs(tmp_path_factory, shared_data, name)

    @pytest.fixture(scope="module")
    def api(setup: tuple[Backend, Path]) -> Api:
        return Api(setup[0])

    return setup, api


def run_job(
    backend: Backend,
    process: dict[str, Any],
    owner: str = "alice",
    options: dict[str, Any] | None = None,
) -> tuple[str, Path]:
    """Create a job and run the batch DAG's tasks one after the other, as the DAG does (a job
    the sizing fuses runs in the size task): (job id, results). ``options`` are its job
    options (default: the inline engine)."""
    job_options = {"engine": "inline"} if options is None else options
    job = backend.registry.create(owner, process, job_options=job_options)
    backend.registry.set_status(job.id, JobStatus.QUEUED)
    spec = tasks.size(job.id)
    if not (spec["fused"] and tasks.fused(job.id)):
        for node in spec["sources"]:
            tasks.load(job.id, node)
        tasks.transform(job.id)
        tasks.save(job.id)
    assert backend.registry.get(job.id).status is JobStatus.FINISHED
    return job.id, tasks.workspace(job.id).results_dir


def read_nc(results: Path) -> xr.Dataset:
    return xr.open_dataset(next(results.glob("*.nc")), engine="h5netcdf").load()


def assert_error(response: Any, code: str, *words: str) -> None:
    """An openEO error answer with ``code`` whose message names every one of ``words``."""
    assert response.status_code >= 400, response.text
    body = response.json()
    assert body["code"] == code, body
    for word in words:
        assert word in body["message"], body


def backscatter_source(
    collection_id: str,
    extent: dict[str, Any],
    period: list[str | None] | None,
    bands: list[str],
    arguments: dict[str, Any],
) -> PlanSource:
    """The planner's source for ``load_collection`` followed by ``sar_backscatter(arguments)``."""
    return PlanSource(
        node_id="load",
        process_id="load_collection",
        collection_id=collection_id,
        spatial_extent=extent,
        temporal_extent=period,
        bands=bands,
        backscatter=arguments,
    )


def load_tiled(
    source: PlanSource, cfg: CollectionConfig, root: Path, tile_size: int
) -> tuple[xr.DataArray, Measurement]:
    """The batch load stage's way: a load plan, then one read per output tile (inline)."""
    workspace = JobWorkspace(root)
    plan = prepare_load(source, cfg, "local", 0.0)
    workspace.write_json(workspace.load_plan_file(source.node_id), plan.to_dict())
    measured = run_load(workspace, source.node_id, tile_size, inline_mapper)
    return read_cube(workspace.source_cube(source.node_id)), measured
