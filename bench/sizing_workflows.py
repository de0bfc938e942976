"""The sizing benchmark's workflows as openEO process graphs (built offline with the openEO
Python client, no connection), on the benchmark archive (bench/archive.py, EPSG:32629).

Four reuse the end-to-end workloads (bench/workloads.py: W1 NDVI max composite, W2 monthly
``aggregate_temporal_period``, W3 ``aggregate_spatial`` over 50 polygons, W4 ``apply_kernel``);
three are added here: ``apply_neighborhood`` (chunks of 256 px with a 16 px overlap), a
``merge_cubes`` of two loads, and a Python UDF (``run_udf`` inside ``apply``).

No Sentinel-1 collection is readable offline (``SENTINEL1_GRD`` in the default collections
reaches the CDSE archive, which needs network access and credentials), so the merge workflow
merges two *Sentinel-2* loads of the benchmark archive with different bands (B04 and B08, two
sources, two load stages, one ``merge_cubes``) rather than S1 with S2.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.archive import COLLECTION_ID
from bench.polygons import write_polygons
from bench.workloads import KERNEL, KERNEL_FACTOR, WORKLOADS, build, extent

JULY = ["2022-07-01", "2022-08-01"]

UDF_CODE = """
from openeo.udf import XarrayDataCube


def apply_datacube(cube: XarrayDataCube, context: dict) -> XarrayDataCube:
    array = cube.get_array()
    return XarrayDataCube(array * 0.5 + 0.5)
"""


def _load(bands: list[str], spatial_extent: dict[str, Any], temporal_extent: list[str]) -> Any:
    from openeo.rest.datacube import DataCube

    return DataCube.load_collection(
        COLLECTION_ID,
        connection=None,
        spatial_extent=spatial_extent,
        temporal_extent=temporal_extent,
        bands=bands,
    )


def _neighborhood(side_km: float, _polygons: dict | None) -> Any:
    cube = _load(["B04", "B08"], extent(side_km), JULY).ndvi(nir="B08", red="B04")
    px = [{"dimension": d, "value": 256, "unit": "px"} for d in ("x", "y")]
    overlap = [{"dimension": d, "value": 16, "unit": "px"} for d in ("x", "y")]
    smoothed = cube.apply_neighborhood(
        process=lambda data: data.apply_kernel(kernel=KERNEL, factor=KERNEL_FACTOR),
        size=px,
        overlap=overlap,
    )
    return smoothed.reduce_dimension(dimension="t", reducer="mean")


def _merge(side_km: float, _polygons: dict | None) -> Any:
    red = _load(["B04"], extent(side_km), JULY)
    nir = _load(["B08"], extent(side_km), JULY)
    merged = red.merge_cubes(nir)
    return merged.ndvi(nir="B08", red="B04").reduce_dimension(dimension="t", reducer="max")


def _udf(side_km: float, _polygons: dict | None) -> Any:
    import openeo

    cube = _load(["B04", "B08"], extent(side_km), JULY).ndvi(nir="B08", red="B04")
    scaled = cube.apply(process=openeo.UDF(UDF_CODE, runtime="Python"))
    return scaled.reduce_dimension(dimension="t", reducer="max")


def _workload(workload: str) -> Callable[[float, dict | None], Any]:
    def builder(side_km: float, polygons: dict | None) -> Any:
        return build(workload, _load, side_km, polygons)

    return builder


@dataclass(frozen=True)
class Workflow:
    id: str
    title: str
    builder: Callable[[float, dict | None], Any]
    fmt: str
    polygons: bool = False


WORKFLOWS = {
    "ndvi_max": Workflow("ndvi_max", WORKLOADS["W1"].title, _workload("W1"), "GTiff"),
    "temporal_period": Workflow(
        "temporal_period", WORKLOADS["W2"].title + ", 28 dates", _workload("W2"), "netCDF"
    ),
    "neighborhood": Workflow(
        "neighborhood",
        "NDVI, apply_neighborhood(apply_kernel 3x3; 256 px, overlap 16), mean over t",
        _neighborhood,
        "GTiff",
    ),
    "apply_kernel": Workflow("apply_kernel", WORKLOADS["W4"].title, _workload("W4"), "GTiff"),
    "aggregate_spatial": Workflow(
        "aggregate_spatial", WORKLOADS["W3"].title, _workload("W3"), "netCDF", polygons=True
    ),
    "merge_cubes": Workflow(
        "merge_cubes",
        "merge_cubes of two S2 loads (B04 | B08; no S1 offline), NDVI max",
        _merge,
        "GTiff",
    ),
    "udf": Workflow("udf", "NDVI, run_udf in apply (x*0.5+0.5), max over t", _udf, "GTiff"),
}


def process_graph(workflow: Workflow, side_km: float, scratch: Path) -> dict[str, Any]:
    """The workflow's process graph (``{"process_graph": ...}``) over a square of ``side_km``."""
    polygons = None
    if workflow.polygons:
        path = write_polygons(side_km, scratch / f"polygons_{side_km:g}km.geojson")
        polygons = json.loads(path.read_text())
    cube = workflow.builder(side_km, polygons)
    return {"process_graph": cube.save_result(format=workflow.fmt).flat_graph()}
