"""Synchronous processing (``POST /result``): the batch jobs' fused run, in memory, with a size
limit, answered as one file."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from openeo_airflow.catalog.config import CollectionConfig
from openeo_airflow.catalog.stac import search_items
from openeo_airflow.compiler.plan import Plan, Source
from openeo_airflow.core.errors import NoDataAvailable, ProcessGraphComplexity
from openeo_airflow.core.memory import release_freed_memory, reuse_freed_memory
from openeo_airflow.engine import stages
from openeo_airflow.engine.planning import shape_job
from openeo_airflow.engine.sources import resolve_source
from openeo_airflow.engine.streaming import evaluate_streamed
from openeo_airflow.io.formats import media_type
from openeo_airflow.io.geometry_mask import bbox_extent
from openeo_airflow.io.reader import SearchFn
from openeo_airflow.processes.graph import Resolver
from openeo_airflow.sizing.estimate import extent_wgs84, pixel_count
from openeo_airflow.sizing.resources import validate_job_options

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncResult:
    content: bytes
    media_type: str
    filename: str


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def estimate_source_pixels(
    source: Source, config: CollectionConfig, search: SearchFn = search_items
) -> int | None:
    """Pixels a source will load, or ``None`` when it is unbounded (no spatial extent).

    An ad-hoc source (``search`` is its own) without spatial extent is bounded by its items."""
    start, end = (source.temporal_extent or [None, None])[:2]
    if not source.spatial_extent:
        if search is search_items:
            return None
        found = search(config, None, _time(start), _time(end), properties=source.properties)
        if not found:
            return 0
        boxes = [item.bbox for item in found]
        bbox: tuple[float, float, float, float] = (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )
    else:
        bbox = extent_wgs84(bbox_extent(source.spatial_extent))
    if config.sentinelhub is not None:
        # No STAC catalog to count the dates in: at most one observation per day.
        first, last = _time(start), _time(end)
        dates = (last - first).days + 1 if first and last else 366
    else:
        items = search(config, bbox, _time(start), _time(end), properties=source.properties)
        dates = len({item.datetime.date() for item in items})
    bands = len(source.bands) if source.bands else len(config.bands)
    # An ad-hoc collection (load_stac) may be on a lon/lat grid: its pixel size in metres.
    metres = config.resolution * (111_320.0 if _geographic(config.crs) else 1.0)
    return pixel_count(bbox, metres, bands, dates)


def _geographic(crs: str | None) -> bool:
    from pyproj import CRS

    return crs is not None and CRS.from_user_input(crs).is_geographic


def check_size(plan: Plan, collections: Mapping[str, CollectionConfig], max_pixels: int) -> None:
    total = 0
    for source in plan.sources:
        resolved = resolve_source(source, collections)  # load_stac / load_result included
        pixels = estimate_source_pixels(resolved.source, resolved.config, resolved.search)
        if pixels is None:
            raise ProcessGraphComplexity(
                f"Node '{source.node_id}' loads '{source.collection_id}' without a spatial "
                "extent, too large for synchronous processing. Set spatial_extent or use a "
                "batch job."
            )
        total += pixels
    if total > max_pixels:
        raise ProcessGraphComplexity(
            f"The request would load about {total:,} pixels; synchronous processing is limited "
            f"to {max_pixels:,}. Use a batch job for this area and period."
        )


def execute(
    plan: Plan,
    collections: Mapping[str, CollectionConfig],
    *,
    gdal_profile: str,
    max_pixels: int,
    job_options: Mapping[str, Any] | None = None,
    resolver: Resolver | None = None,
    workers: int = 1,
) -> SyncResult:
    """Run ``plan`` tile by tile from the archive (``workers`` threads), the result in one file."""
    check_size(plan, collections, max_pixels)
    options = validate_job_options(dict(job_options or {}))
    reuse_freed_memory()
    try:
        return _execute(plan, collections, gdal_profile, options, resolver, workers)
    finally:
        release_freed_memory()  # the api-server lives on: its memory goes back between requests


def _execute(
    plan: Plan,
    collections: Mapping[str, CollectionConfig],
    gdal_profile: str,
    options: dict[str, Any],
    resolver: Resolver | None,
    workers: int,
) -> SyncResult:
    loads = shape_job(plan, collections, gdal_profile, options).loads
    result, _usage = evaluate_streamed(
        plan, {load.node_id: load for load in loads}, workers=workers, resolver=resolver
    )
    fmt, _options = stages.result_format(plan, result)
    with tempfile.TemporaryDirectory(prefix="openeo-sync-") as tmp:
        files = stages.encode(result, fmt, Path(tmp))
        if not files:
            raise NoDataAvailable()
        if len(files) != 1:
            raise ProcessGraphComplexity(
                f"The result has {len(files)} files (one per date); synchronous processing "
                "returns one file. Reduce the time dimension, choose netCDF, or use a batch job."
            )
        return SyncResult(
            content=files[0].read_bytes(),
            media_type=media_type(fmt),
            filename=files[0].name,
        )
