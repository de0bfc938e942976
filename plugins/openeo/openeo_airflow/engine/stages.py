"""What every engine shares around the graph: evaluating it on loaded sources, the result's
format, and writing the result files and their metadata into the job's workspace (the fused
and synchronous runs of ``streaming``, and the staged runs of ``tiled``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from pyproj import Transformer

from openeo_airflow.compiler.plan import Plan
from openeo_airflow.cube import cube_crs, cube_transform
from openeo_airflow.engine.workspace import RESULT_METADATA, JobWorkspace
from openeo_airflow.io.formats import media_type, normalize_format, write_gtiff, write_netcdf
from openeo_airflow.io.store import open_cube
from openeo_airflow.processes.graph import Resolver, evaluate
from openeo_airflow.processes.inline import dumps
from openeo_airflow.sizing.resources import validate_job_options

log = logging.getLogger(__name__)

DEFAULT_FORMAT = "GTiff"
JSON_FORMAT = "JSON"


def soft_error_ratio(job_options: Mapping[str, Any]) -> float:
    """The ``soft-errors`` job option: the share of unreadable inputs a job may skip (checked
    as every job option is, so synchronous requests get the same message as batch jobs)."""
    return float(validate_job_options(dict(job_options)).get("soft-errors", 0.0))


def pass_data_on(args: dict[str, Any], _node_id: str) -> Any:
    """A hook for ``save_result`` where the stage itself writes the result: its data."""
    return args["data"]


def evaluate_plan(
    plan: Plan, sources: Mapping[str, xr.DataArray], resolver: Resolver | None = None
) -> Any:
    """The value of the graph's result (a cube or any other value) on already loaded sources;
    ``save_result`` passes its data on. ``resolver`` finds the user-defined processes called."""

    def from_sources(_args: dict[str, Any], node_id: str) -> xr.DataArray:
        return sources[node_id]

    return evaluate(
        plan.process_graph,
        hooks={
            "load_collection": from_sources,
            "load_stac": from_sources,
            "load_result": from_sources,
            "save_result": pass_data_on,
        },
        resolver=resolver,
    )


def transform(
    plan: Plan, sources: Mapping[str, xr.DataArray], resolver: Resolver | None = None
) -> xr.DataArray:
    """The graph's result as a cube, for the intermediate store of batch jobs."""
    result = evaluate_plan(plan, sources, resolver)
    if not isinstance(result, xr.DataArray):
        result = xr.DataArray(np.asarray(result, dtype="float32"))
    return result


def output_format(plan: Plan) -> tuple[str, dict[str, Any]]:
    if plan.output is None:
        return DEFAULT_FORMAT, {}
    return normalize_format(plan.output.format), plan.output.options


def result_format(plan: Plan, result: Any) -> tuple[str, dict[str, Any]]:
    """The graph's save_result format; without one, GTiff for a raster cube and JSON for any
    other value (a number, an array, a vector cube)."""
    raster = isinstance(result, xr.DataArray) and {"x", "y"} <= set(result.dims)
    if plan.output is None and not raster:
        return JSON_FORMAT, {}
    return output_format(plan)


def encode(cube: Any, fmt: str, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    if fmt == JSON_FORMAT:
        path = directory / "openEO.json"
        path.write_bytes(dumps(cube))
        return [path]
    if fmt == "netCDF":
        return [write_netcdf(cube, directory / "openEO.nc")]
    return write_gtiff(cube, directory, "openEO")


def run_save(plan: Plan, workspace: JobWorkspace, cube: xr.DataArray | None = None) -> list[Path]:
    """Write the job's results (``cube``, or the transform's result in the store) and their
    metadata into the workspace."""
    if cube is None:
        # Opened lazily: GeoTIFFs are written one time step at a time, so only that step is read.
        cube = open_cube(workspace.result_cube)
    fmt, _options = output_format(plan)
    files = encode(cube, fmt, workspace.results_dir)
    metadata = result_metadata(cube, fmt, files)
    (workspace.results_dir / RESULT_METADATA).write_text(json.dumps(metadata))
    log.info("Saved %d file(s) as %s", len(files), fmt)
    return files


def time_span(labels: np.ndarray) -> list[str] | None:
    """The first and last time label as RFC 3339 strings; labels may be datetimes or the date
    strings of ``aggregate_temporal_period`` ("2023-07-01"); ``None`` when they are neither."""
    try:
        times = pd.to_datetime(np.asarray(labels)[[0, -1]].astype(str), utc=True)
    except (ValueError, TypeError):
        return None
    return [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in times]


def result_metadata(cube: xr.DataArray, fmt: str, files: list[Path]) -> dict[str, Any]:
    """What the STAC results document needs: extent, grid and one entry per file."""
    meta: dict[str, Any] = {"format": fmt, "assets": {}}
    if "t" in cube.dims and cube.sizes["t"]:
        span = time_span(cube.t.values)
        if span:
            meta["datetime"] = span
    if {"x", "y"} <= set(cube.dims) and "spatial_ref" in cube.coords:
        crs = cube_crs(cube)
        transform = cube_transform(cube)
        width, height = cube.sizes["x"], cube.sizes["y"]
        x0, y1 = transform.c, transform.f
        x1, y0 = x0 + width * transform.a, y1 + height * transform.e
        to_wgs84 = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        west, south, east, north = to_wgs84.transform_bounds(x0, y0, x1, y1)
        meta.update(
            bbox=[west, south, east, north],
            epsg=crs.to_epsg(),
            shape=[height, width],
            transform=list(transform)[:6],
        )
    bands = [str(b) for b in cube.bands.values] if "bands" in cube.dims else []
    for path in files:
        meta["assets"][path.name] = {
            "type": media_type(fmt),
            "roles": ["data"],
            "bands": bands,
            "file_size": path.stat().st_size,
        }
    return meta
