"""The demo job: a cloud-masked NDVI maximum composite, submitted through the openEO client."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from openeo_airflow.cli.stack import StackConfig
from openeo_airflow.demo.archive import DEMO_COLLECTION_ID, demo_bbox_wgs84
from openeo_airflow.io.formats import write_png_preview

DEMO_USER = ("demo", "demo-password")
# Scene classification classes treated as unusable: cloud shadow, medium/high cloud, cirrus.
CLOUD_CLASSES = (3, 8, 9, 10)


def ndvi_max_composite(
    connection: Any, collection_id: str, spatial_extent: dict[str, Any], temporal_extent: list[str]
) -> Any:
    """The demo graph, written as users write it with the openEO client."""
    cube = connection.load_collection(
        collection_id,
        spatial_extent=spatial_extent,
        temporal_extent=temporal_extent,
        bands=["B04", "B08", "SCL"],
    )
    scl = cube.band("SCL")
    cloudy = (scl == CLOUD_CLASSES[0]) | (scl == CLOUD_CLASSES[1])
    for value in CLOUD_CLASSES[2:]:
        cloudy = cloudy | (scl == value)
    ndvi = cube.ndvi(nir="B08", red="B04")
    return ndvi.mask(cloudy).reduce_dimension(dimension="t", reducer="max")


def run_demo(config: StackConfig, output: Path | None) -> Path:
    import openeo

    user, password = DEMO_USER
    out_dir = (output or config.home / "demo-output").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    connection = openeo.connect(config.openeo_url).authenticate_basic(user, password)
    result = ndvi_max_composite(
        connection, DEMO_COLLECTION_ID, demo_bbox_wgs84(), ["2023-07-01", "2023-08-01"]
    ).save_result("GTiff")
    started = time.monotonic()
    job = result.create_job(title="openeo-airflow demo: cloud-free NDVI maximum")
    job.start_and_wait(print=lambda *a, **k: None, max_poll_interval=2)
    elapsed = time.monotonic() - started
    job.get_results().download_files(out_dir)
    tif = next(out_dir.glob("*.tif"))
    png = tif.with_suffix(".png")
    write_png_preview(tif, png)
    print(f"Batch job {job.job_id} finished in {elapsed:.1f} s")
    print(f"Result GeoTIFF: {tif}")
    print(f"Preview PNG:    {png}", flush=True)
    return tif
