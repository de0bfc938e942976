"""One stage code path, three engines: the same job gives the same result inline and on
spark-local (real Spark: ``spark-submit --master local`` of the stage entrypoint, the main file
SparkApplications run on Kubernetes), on real Sentinel-2 data; a stage that runs out of memory
is re-sized and retried. The DAG's task functions run here without Airflow's scheduler."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import pytest
import rasterio
import xarray as xr

from openeo_airflow.airflow import tasks
from openeo_airflow.core.models import JobStatus
from openeo_airflow.engine import entrypoint, stages, streaming, tiled
from openeo_airflow.engine.errors import StageOutOfMemory
from openeo_airflow.jobs.backend import Backend
from tests.load_support import backend_over_catalogs, read_nc, run_job

CDSE_EXTENT = {"west": 587880, "south": 5684910, "east": 588340, "north": 5685430, "crs": 32631}
RKH_EXTENT = {"west": 209980, "south": 2750020, "east": 239980, "north": 2780020, "crs": 32629}


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Backend]:
    # Up to three re-sizings after running out of memory: Spark workers start at 250-480 MiB.
    for backend, _catalogs in backend_over_catalogs(
        tmp_path_factory, shared_data, "engines", OOM_RETRIES="3"
    ):
        yield backend


def _reducer(process_id: str) -> dict[str, Any]:
    return {
        "process_graph": {
            "r": {
                "process_id": process_id,
                "arguments": {"data": {"from_parameter": "data"}},
                "result": True,
            }
        }
    }


def cdse_ndvi_max() -> dict[str, Any]:
    """19 dates of real CDSE Sentinel-2: NDVI, cloud-masked with SCL, maximum over time."""
    return {
        "process_graph": {
            "load": {
                "process_id": "load_collection",
                "arguments": {
                    "id": "TEST_CDSE_S2",
                    "spatial_extent": CDSE_EXTENT,
                    "temporal_extent": ["2023-10-01", "2024-01-01"],
                    "bands": ["B04", "B08", "SCL"],
                },
            },
            "scl": {
                "process_id": "filter_bands",
                "arguments": {"data": {"from_node": "load"}, "bands": ["SCL"]},
            },
            "cloud": {
                "process_id": "apply",
                "arguments": {
                    "data": {"from_node": "scl"},
                    "process": {
                        "process_graph": {
                            "gt": {
                                "process_id": "gt",
                                "arguments": {"x": {"from_parameter": "x"}, "y": 7},
                                "result": True,
                            }
                        }
                    },
                },
            },
            "ndvi": {
                "process_id": "ndvi",
                "arguments": {"data": {"from_node": "load"}, "nir": "B08", "red": "B04"},
            },
            "masked": {
                "process_id": "mask",
                "arguments": {"data": {"from_node": "ndvi"}, "mask": {"from_node": "cloud"}},
            },
            "max": {
                "process_id": "reduce_dimension",
                "arguments": {
                    "data": {"from_node": "masked"},
                    "dimension": "t",
                    "reducer": _reducer("max"),
                },
            },
            "save": {
                "process_id": "save_result",
                "arguments": {"data": {"from_node": "max"}, "format": "GTiff"},
                "result": True,
            },
        }
    }


def rkh_load(bands: list[str]) -> dict[str, Any]:
    """``bands`` of the real 100 m Sentinel-2 tile 29RKH (February 2020)."""
    return {
        "process_id": "load_collection",
        "arguments": {
            "id": "TEST_29RKH_S2",
            "spatial_extent": RKH_EXTENT,
            "temporal_extent": ["2020-02-01", "2020-03-01"],
            "bands": bands,
        },
    }


def rkh_smoothed() -> dict[str, Any]:
    """A real 100 m Sentinel-2 tile: a 5x5 mean filter over four bands (a halo of 2 px)."""
    kernel = [[1] * 5 for _ in range(5)]
    return {
        "process_graph": {
            "load": rkh_load(["B02", "B03", "B04", "B08"]),
            "smooth": {
                "process_id": "apply_kernel",
                "arguments": {"data": {"from_node": "load"}, "kernel": kernel, "factor": 1 / 25},
            },
            "save": {
                "process_id": "save_result",
                "arguments": {"data": {"from_node": "smooth"}, "format": "netCDF"},
                "result": True,
            },
        }
    }


def read_tif(results: Path) -> np.ndarray:
    with rasterio.open(next(results.glob("*.tif"))) as src:
        return src.read()


@pytest.mark.timeout(600)
def test_inline_and_spark_local_agree_on_real_data(backend: Backend) -> None:
    # 128 px tiles cut the 300 x 300 px cube into 3 x 3 tiles (plus the CRS-anchored edge
    # tiles), whose 2 px halos cross every tile edge.
    _, inline = run_job(backend, rkh_smoothed(), options={"engine": "inline", "tile-size": 128})
    spark_job, spark = run_job(
        backend, rkh_smoothed(), options={"engine": "spark-local", "tile-size": 128}
    )
    x, y = read_nc(inline), read_nc(spark)
    assert x.sizes["x"] == x.sizes["y"] == 300
    compared = 0
    for name in x.data_vars:
        if x[name].dtype.kind == "f":
            assert np.isfinite(x[name].values).mean() > 0.9
            np.testing.assert_allclose(x[name].values, y[name].values, rtol=1e-5, equal_nan=True)
            compared += 1
    assert compared == 4
    job = backend.registry.get(spark_job)
    assert job.sizing["measured"]["transform"]["extra"]["tiles"] >= 9


def rkh_zonal_means() -> dict[str, Any]:
    """Mean of two bands over four polygons (in lon/lat) that cross the 128 px tile edges."""
    to_lonlat = pyproj.Transformer.from_crs(32629, 4326, always_xy=True)
    polygons = []
    for x0, y0, side in (
        (211000, 2751000, 9000),
        (222000, 2760000, 15000),
        (230000, 2752000, 8000),
        (213000, 2768000, 11000),
    ):
        ring = [(x0, y0), (x0 + side, y0), (x0 + side, y0 + side), (x0, y0 + side), (x0, y0)]
        polygons.append([list(to_lonlat.transform(x, y)) for x, y in ring])
    geometries = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {},
                "geometry": {"type": "Polygon", "coordinates": [p]},
            }
            for p in polygons
        ],
    }
    return {
        "process_graph": {
            "load": rkh_load(["B04", "B08"]),
            "zones": {
                "process_id": "aggregate_spatial",
                "arguments": {
                    "data": {"from_node": "load"},
                    "geometries": geometries,
                    "reducer": _reducer("mean"),
                },
            },
            "save": {
                "process_id": "save_result",
                "arguments": {"data": {"from_node": "zones"}, "format": "JSON"},
                "result": True,
            },
        }
    }


@pytest.mark.timeout(600)
def test_global_partials_run_on_spark_and_agree_with_inline(backend: Backend) -> None:
    # 3 x 3 tiles (plus edge tiles): the pixels under each polygon are gathered per tile in
    # Spark tasks (all but the driver's first tile) and reduced on the stage's driver.
    options = {"tile-size": 128, "fuse-stages": False}
    _, inline = run_job(backend, rkh_zonal_means(), options={**options, "engine": "inline"})
    spark_job, spark = run_job(
        backend, rkh_zonal_means(), options={**options, "engine": "spark-local"}
    )
    expected = json.loads(next(inline.glob("*.json")).read_text())
    got = json.loads(next(spark.glob("*.json")).read_text())
    values = np.asarray(expected["data"], dtype="float64")  # geometry x t x bands
    assert values.shape == (4, 1, 2) and np.isfinite(values).all()
    np.testing.assert_allclose(np.asarray(got["data"], dtype="float64"), values, rtol=1e-6)
    measured = backend.registry.get(spark_job).sizing["measured"]["transform"]["extra"]
    assert measured["partial_tiles"] >= 8


def test_inline_tiles_agree_with_one_whole_cube(backend: Backend) -> None:
    tiled_result = read_tif(run_job(backend, cdse_ndvi_max(), options={"tile-size": 64})[1])
    whole = read_tif(run_job(backend, cdse_ndvi_max(), options={"tile-size": 4096})[1])
    assert tiled_result.shape == (1, 52, 46)
    assert np.isfinite(tiled_result).sum() > 1000  # cloud-free somewhere in 19 dates
    np.testing.assert_allclose(tiled_result, whole, rtol=1e-6, equal_nan=True)


def test_the_job_records_predicted_and_measured_usage(backend: Backend) -> None:
    options = {"engine": "inline", "fuse-stages": False}
    job_id, _ = run_job(backend, cdse_ndvi_max(), options=options)
    job = backend.registry.get(job_id)
    predicted = {s["name"]: s for s in job.sizing["predicted"]["stages"]}
    measured = job.sizing["measured"]
    assert set(predicted) == set(measured) == {"load:load", "transform", "save"}
    assert measured["load:load"]["megapixels"] == pytest.approx(19 * 3 * 52 * 46 / 1e6)
    assert measured["load:load"]["bytes_read"] > 0
    assert job.usage["input_pixel"]["unit"] == "mega-pixel"
    assert job.usage["cpu"]["value"] > 0
    logs = [e.message for e in backend.registry.logs(job.id)]
    assert any(m.startswith("Measured transform:") and "predicted" in m for m in logs)


def test_a_small_job_runs_fused_with_the_same_result_as_its_stages(backend: Backend) -> None:
    staged_id, staged = run_job(backend, cdse_ndvi_max(), options={"fuse-stages": False})
    fused_id, fused = run_job(backend, cdse_ndvi_max(), options={})
    job = backend.registry.get(fused_id)
    assert job.sizing["predicted"]["fused"] is True
    assert backend.registry.get(staged_id).sizing["predicted"]["fused"] is False
    assert set(job.sizing["measured"]) == {"fused"}
    assert job.usage["input_pixel"]["value"] == pytest.approx(19 * 3 * 52 * 46 / 1e6, abs=1e-3)
    # the staged job went through the intermediate store, which is gone once it finished
    staged_measured = backend.registry.get(staged_id).sizing["measured"]
    assert set(staged_measured) == {"load:load", "transform", "save"}
    for job_id in (staged_id, fused_id):
        workspace = tasks.workspace(job_id)
        assert (workspace.results_dir).is_dir() and not workspace.intermediate_dir.exists()
    names = sorted(p.name for p in fused.glob("*.tif"))
    assert names == sorted(p.name for p in staged.glob("*.tif")) and names
    for name in names:
        with rasterio.open(fused / name) as a, rasterio.open(staged / name) as b:
            assert a.profile["crs"] == b.profile["crs"]
            assert a.transform == b.transform
            np.testing.assert_array_equal(a.read(), b.read())
    logs = [e.message for e in backend.registry.logs(job.id)]
    assert any(m.startswith("Measured fused run:") for m in logs)


def test_a_failed_save_keeps_the_result_for_its_retry(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {"engine": "inline", "fuse-stages": False}
    job = backend.registry.create("alice", cdse_ndvi_max(), job_options=options)
    backend.registry.set_status(job.id, JobStatus.QUEUED)
    for node in tasks.size(job.id)["sources"]:
        tasks.load(job.id, node)
    tasks.transform(job.id)
    written = stages.encode

    def disk_full(*_args: Any, **_kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(stages, "encode", disk_full)
    with pytest.raises(OSError, match="No space left"):
        tasks.save(job.id)
    workspace = tasks.workspace(job.id)
    # the save reads only the transform's result: the sources went while it ran
    assert workspace.result_cube.exists() and not workspace.source_cube("load").exists()
    monkeypatch.setattr(stages, "encode", written)
    tasks.save(job.id)  # Airflow's retry of the save task
    assert backend.registry.get(job.id).status is JobStatus.FINISHED
    assert any(workspace.results_dir.glob("*.tif")) and not workspace.intermediate_dir.exists()


def test_a_fused_run_out_of_memory_falls_back_to_separate_stages(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    def exhausted(workspace: Any, workers: int, tile_size: int) -> Any:
        raise MemoryError("Unable to allocate 12.0 GiB for an array")

    monkeypatch.setattr(streaming, "run_fused", exhausted)
    job_id, results = run_job(backend, cdse_ndvi_max(), options={})
    job = backend.registry.get(job_id)
    assert set(job.sizing["measured"]) == {"load:load", "transform", "save"}
    assert any(results.glob("*.tif"))
    logs = [e.message for e in backend.registry.logs(job.id)]
    assert any("fused run ran out of memory" in m for m in logs)


def test_a_memory_error_in_a_tile_is_a_stage_out_of_memory(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = backend.registry.create("alice", cdse_ndvi_max(), job_options={"engine": "inline"})
    backend.registry.set_status(job.id, JobStatus.QUEUED)
    tasks.size(job.id)

    def exhausted(descriptor: dict[str, Any]) -> dict[str, Any]:
        raise MemoryError("Unable to allocate 12.0 GiB for an array")

    monkeypatch.setattr(tiled, "load_tile", exhausted)
    with pytest.raises(StageOutOfMemory, match="load:load ran out of memory"):
        entrypoint.run_stage(tasks.workspace(job.id), "load", "load", 64, tiled.inline_mapper)
    assert entrypoint.out_of_memory_evidence("x\njava.lang.OutOfMemoryError: heap\n") == (
        "java.lang.OutOfMemoryError: heap"
    )
    assert entrypoint.out_of_memory_evidence("ValueError: bad band") == ""


def test_load_tiles_read_on_one_thread_when_they_run_side_by_side(backend: Backend) -> None:
    # What the sizing predicts a load tile holds depends on the reader's threads
    # (sizing.model.read_threads): the stage must read with those.
    job = backend.registry.create("alice", cdse_ndvi_max(), job_options={"engine": "inline"})
    backend.registry.set_status(job.id, JobStatus.QUEUED)
    tasks.size(job.id)
    seen: list[dict[str, Any]] = []

    def spark_like(fn: tiled.TileFn, descriptors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen.extend(descriptors)
        return [fn(d) for d in descriptors]

    workspace = tasks.workspace(job.id)
    tiled.run_load(workspace, "load", 32, spark_like)  # 2 x 2 tiles, as Spark tasks
    assert len(seen) == 4 and {d["read_workers"] for d in seen} == {1}
    seen.clear()
    tiled.run_load(workspace, "load", 4096, spark_like)  # one tile: the reader's default
    assert [d["read_workers"] for d in seen] == [None]

    class RecordingThreads(tiled.ThreadMapper):
        def __call__(self, fn: tiled.TileFn, descriptors: list[dict[str, Any]]) -> list[Any]:
            seen.extend(descriptors)
            return super().__call__(fn, descriptors)

    seen.clear()
    tiled.run_load(workspace, "load", 4096, RecordingThreads(3))  # one tile: the cores
    tiled.run_load(workspace, "load", 32, RecordingThreads(2))  # side by side: one each
    assert [d["read_workers"] for d in seen] == [3, 1, 1, 1, 1]


@pytest.mark.timeout(600)
def test_spark_local_recovers_from_a_too_small_size(backend: Backend) -> None:
    # 128 MiB for each of 2 Python workers is less than one needs just to start (250-480 MiB
    # measured): the first try is killed like a container over its limit; each retry gets
    # twice the memory and smaller tiles until the stage fits.
    options = {"engine": "spark-local", "executor-memoryOverhead": "256m", "executor-cores": 2}
    job = backend.registry.create("alice", cdse_ndvi_max(), job_options=options)
    backend.registry.set_status(job.id, JobStatus.QUEUED)
    tasks.size(job.id)
    tasks.load(job.id, "load")
    warnings = [e.message for e in backend.registry.logs(job.id, level="warning")]
    retries = [m for m in warnings if "ran out of memory" in m and "retrying" in m]
    assert 1 <= len(retries) <= 3, warnings
    assert all("MemoryError: worker" in m for m in retries)
    sizing = backend.registry.get(job.id).sizing
    assert sizing["predicted"]["reason"] == "load:load ran out of memory"
    assert sizing["measured"]["load:load"]["megapixels"] == pytest.approx(19 * 3 * 52 * 46 / 1e6)


def test_result_time_span_accepts_period_labels() -> None:
    # aggregate_temporal_period labels its periods with date strings: a batch job saving such
    # a cube used to fail in save with "input must have type NumPy datetime".
    from openeo_airflow.engine.stages import time_span

    assert time_span(np.array(["2023-07-01", "2023-08-01"], dtype=object)) == [
        "2023-07-01T00:00:00Z",
        "2023-08-01T00:00:00Z",
    ]
    assert time_span(np.array(["2023-07-01T10:00:00"], dtype="datetime64[ns]")) == [
        "2023-07-01T10:00:00Z",
        "2023-07-01T10:00:00Z",
    ]
    assert time_span(np.array(["first", "second"])) is None


def test_vector_cubes_pass_through_the_intermediate_store(tmp_path: Path) -> None:
    # aggregate_spatial's result (geometries x time) goes from transform to save through the
    # store, which holds no Python objects: the geometries travel as WKB.
    import shapely

    from openeo_airflow.io.store import read_cube, write_cube

    polygons = [shapely.box(0, 0, 1, 1), shapely.Point(2, 3).buffer(1)]
    cube = xr.DataArray(
        np.array([[1.0, 2.0], [3.0, np.nan]], dtype="float32"),
        dims=("geometry", "t"),
        coords={
            "geometry": ("geometry", np.array(polygons, dtype=object), {"crs_wkt": "EPSG:4326"}),
            "t": np.array(["2023-07-01", "2023-07-02"], dtype="datetime64[ns]"),
        },
    )
    back = read_cube(write_cube(cube, tmp_path / "vector.cube"))
    assert [g.equals(p) for g, p in zip(back.geometry.values, polygons, strict=True)] == [True] * 2
    assert back.geometry.attrs["crs_wkt"] == "EPSG:4326"
    np.testing.assert_array_equal(back.values, cube.values)


def test_vector_cubes_save_as_netcdf(tmp_path: Path) -> None:
    import shapely

    from openeo_airflow.io.formats import write_netcdf

    polygons = [shapely.box(0, 0, 1, 1), shapely.box(1, 1, 3, 3)]
    cube = xr.DataArray(
        np.arange(8, dtype="float32").reshape(2, 2, 2),
        dims=("geometry", "t", "bands"),
        coords={
            "geometry": ("geometry", np.array(polygons, dtype=object), {"crs_wkt": "EPSG:4326"}),
            "t": np.array(["2023-07-01", "2023-07-02"], dtype="datetime64[ns]"),
            "bands": ["B04", "B08"],
        },
    )
    with xr.open_dataset(write_netcdf(cube, tmp_path / "v.nc"), engine="h5netcdf") as saved:
        assert set(saved.data_vars) == {"B04", "B08"}
        saved_geometries = [shapely.from_wkt(g) for g in saved.geometry.values]
        assert len(saved_geometries) == 2
        assert all(g.equals(p) for g, p in zip(saved_geometries, polygons, strict=True))
        np.testing.assert_array_equal(saved.B08.values, cube.sel(bands="B08").values)
