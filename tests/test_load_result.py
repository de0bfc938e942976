"""``load_result``: a finished batch job's results (GeoTIFF per date, or netCDF) loaded as a cube
by job id, through ``POST /result`` and in another batch job; they equal what the first job
loaded (real CDSE Sentinel-2). Only the owner's finished jobs: another user's job is not found,
an unfinished one is refused, each error naming the parameter ``id``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

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

BANDS = ["B04", "B08"]


setup, api = backend_fixtures("load-result")


def collection(fmt: str) -> dict[str, Any]:
    source = load_node(
        "load_collection",
        id="TEST_CDSE_S2",
        spatial_extent=CDSE_EXTENT,
        temporal_extent=OCTOBER,
        bands=BANDS,
    )
    return graph(source, fmt)


@pytest.fixture(scope="module")
def jobs(setup: tuple[Backend, Path]) -> dict[str, str]:
    """One finished job of alice per result format."""
    return {fmt: run_job(setup[0], collection(fmt))[0] for fmt in ("GTiff", "netCDF")}


@pytest.mark.parametrize("fmt", ["GTiff", "netCDF"])
def test_results_load_back_as_the_cube_they_were(api: Api, jobs: dict[str, str], fmt: str) -> None:
    loaded = api.cube(graph(load_node("load_result", id=jobs[fmt])))
    original = api.cube(collection("netCDF"))
    assert loaded.sizes == original.sizes == {"t": 6, "y": 52, "x": 46}
    np.testing.assert_array_equal(loaded.t.values, original.t.values)
    for band in BANDS:
        np.testing.assert_array_equal(loaded[band].values, original[band].values)


def test_extent_and_bands_limit_the_result(api: Api, jobs: dict[str, str]) -> None:
    box = {"west": 587880, "south": 5685230, "east": 588080, "north": 5685430, "crs": 32631}
    loaded = api.cube(
        graph(
            load_node(
                "load_result",
                id=jobs["GTiff"],
                spatial_extent=box,
                temporal_extent=["2023-10-10", "2023-11-01"],
                bands=["B08"],
            )
        )
    )
    assert loaded.sizes == {"t": 4, "y": 20, "x": 20}
    assert list(loaded.data_vars) == ["B08", "crs"] or "B04" not in loaded


def test_a_batch_job_loads_another_jobs_results(setup: tuple[Backend, Path], jobs: dict) -> None:
    _, results = run_job(setup[0], graph(load_node("load_result", id=jobs["netCDF"])))
    first = read_nc(setup[0].settings.jobs_dir / jobs["netCDF"] / "results")
    second = read_nc(results)
    for band in BANDS:
        np.testing.assert_array_equal(second[band].values, first[band].values)


def test_another_users_job_is_not_found(setup: tuple[Backend, Path], jobs: dict) -> None:
    response = Api(setup[0], "bob").post(graph(load_node("load_result", id=jobs["GTiff"])))
    assert_error(response, "JobNotFound", "'id'", jobs["GTiff"])


def test_an_unfinished_job_is_refused(api: Api, setup: tuple[Backend, Path]) -> None:
    job = setup[0].registry.create("alice", collection("GTiff"))
    response = api.post(graph(load_node("load_result", id=job.id)))
    assert_error(response, "JobNotFinished", "'id'", "created")


def test_an_unknown_job_is_not_found(api: Api) -> None:
    response = api.post(graph(load_node("load_result", id="no-such-job")))
    assert_error(response, "JobNotFound", "'id'", "no-such-job")
