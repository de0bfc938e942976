"""The benchmark workloads as openEO process graphs, built with the openEO Python client.

This module imports only the standard library and ``openeo``: the peer (openEO local
processing) runs it in its own virtual environment. A workload is built from a ``load``
function so that the same graph reads ``load_collection`` on our backend and ``load_stac``
on the peer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

EPSG = 32629
# Centre of the benchmark archive (bench/archive.py), on the 20 m grid.
CENTRE = (510180.0, 5889840.0)
SIZES_KM = {"small": 1.0, "large": 16.0}
SCALING_KM = (1.0, 2.0, 4.0, 8.0, 16.0)
CLOUD_CLASSES = (3, 8, 9, 10)
KERNEL = [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
KERNEL_FACTOR = 1 / 16
N_POLYGONS = 50

Loader = Callable[[list[str], dict[str, Any], list[str]], Any]


@dataclass(frozen=True)
class Workload:
    id: str
    title: str
    bands: tuple[str, ...]
    period: tuple[str, str]
    output: str  # "raster" (GeoTIFF) or "table" (polygon x time means)


WORKLOADS = {
    "W1": Workload(
        "W1", "cloud-masked NDVI max composite", ("B04", "B08", "SCL"),
        ("2022-07-01", "2022-08-01"), "raster",
    ),
    "W2": Workload(
        "W2", "monthly mean NDVI (aggregate_temporal_period)", ("B04", "B08", "SCL"),
        ("2022-01-01", "2023-01-01"), "raster",
    ),
    "W3": Workload(
        "W3", "aggregate_spatial mean NDVI over 50 polygons", ("B04", "B08"),
        ("2022-07-01", "2022-08-01"), "table",
    ),
    "W4": Workload(
        "W4", "3x3 apply_kernel on B08 (one date)", ("B08",),
        ("2022-07-06", "2022-07-07"), "raster",
    ),
}  # fmt: skip


def extent(side_km: float) -> dict[str, Any]:
    """A square of ``side_km`` around the archive's centre, in EPSG:32629, on 20 m edges."""
    half = round(side_km * 500.0 / 20.0) * 20.0
    cx, cy = CENTRE
    return {"west": cx - half, "south": cy - half, "east": cx + half, "north": cy + half,
            "crs": EPSG}  # fmt: skip


def build(workload: str, load: Loader, side_km: float, polygons: dict | None = None) -> Any:
    """The workload's openEO data cube (not yet saved), reading through ``load``."""
    spec = WORKLOADS[workload]
    cube = load(list(spec.bands), extent(side_km), list(spec.period))
    if workload in ("W1", "W2"):
        scl = cube.band("SCL")
        cloudy = scl == CLOUD_CLASSES[0]
        for value in CLOUD_CLASSES[1:]:
            cloudy = cloudy | (scl == value)
        ndvi = cube.ndvi(nir="B08", red="B04").mask(cloudy)
        if workload == "W1":
            return ndvi.reduce_dimension(dimension=_time_dimension(cube), reducer="max")
        return ndvi.aggregate_temporal_period(period="month", reducer="mean")
    if workload == "W3":
        if polygons is None:
            raise ValueError("W3 needs polygons")
        ndvi = cube.ndvi(nir="B08", red="B04")
        return ndvi.aggregate_spatial(geometries=polygons, reducer="mean")
    if workload == "W4":
        return cube.apply_kernel(kernel=KERNEL, factor=KERNEL_FACTOR)
    raise KeyError(workload)


def _time_dimension(cube: Any) -> str:
    """The cube's temporal dimension name ("t" on openEO backends, "time" on the peer)."""
    try:
        return str(cube.metadata.temporal_dimension.name)
    except Exception:
        return "t"
