"""``load_result``: a finished batch job's result files as an ad-hoc STAC collection.

The save stage leaves the results and ``_openeo_results.json`` (format, grid, bands per file)
in the job's results folder. Here they become in-memory STAC items that ``catalog.adhoc`` loads
like any ``load_stac`` source, so the load reads them tile by tile like any archive:

- GeoTIFF: one file per time step (``openEO_YYYY-MM-DD.tif``, time from its ``datetime`` tag),
  bands as raster bands; each band is read through ``vrt://<file>?bands=i``;
- netCDF: one file, one variable per band over ``(t, y, x)``; each (time step, band) is read
  through ``vrt://NETCDF:"<file>":<band>?bands=<t + 1>``.

A result without a time dimension gets one time step at the job's first datetime (or the Unix
epoch when it has none): the loaded cube always has ``t``. Whose job it is was checked by the
job service before the folder was named in the plan.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from openeo_airflow.catalog.adhoc import AdhocSource, build_source
from openeo_airflow.catalog.stac import StacItem, parse_datetime
from openeo_airflow.core.errors import ProcessParameterInvalid

RESULT_METADATA = "_openeo_results.json"  # written by engine.stages.run_save
_DAY = re.compile(r"_(\d{4}-\d{2}-\d{2})\.tiff?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PROCESS = "load_result"


def open_results(results_dir: Path, job_id: str) -> AdhocSource:
    """The results of job ``job_id`` (in ``results_dir``) as an ad-hoc source."""
    path = Path(results_dir) / RESULT_METADATA
    if not path.is_file():
        raise _invalid(job_id, "The job has no results (did it finish?).")
    meta = json.loads(path.read_text(encoding="utf-8"))
    if not meta.get("transform"):
        raise _invalid(job_id, "The job's result is not a raster data cube.")
    fmt = str(meta.get("format"))
    files = sorted(meta.get("assets") or {})
    if fmt == "GTiff":
        items = [_tiff_item(Path(results_dir) / name, meta) for name in files]
    elif fmt == "netCDF" and files:
        items = _netcdf_items(Path(results_dir) / files[0], meta)
    else:
        raise _invalid(job_id, f"Results in format {fmt} cannot be loaded; use GTiff or netCDF.")
    if not items:
        raise _invalid(job_id, "The job's results hold no raster files.")
    document = {"title": f"Results of job {job_id}", "description": f"Results of job {job_id}"}
    return build_source(
        job_id, document, items[:1], items, process=PROCESS, parameter="id", trusted=True
    )


def _tiff_item(path: Path, meta: dict[str, Any]) -> StacItem:
    import rasterio

    with rasterio.open(path) as src:
        names = [d or f"band_{i}" for i, d in enumerate(src.descriptions, start=1)]
        tag = src.tags().get("datetime")
    day = _DAY.search(path.name)
    when = parse_datetime(tag) if tag else parse_datetime(day.group(1)) if day else _first(meta)
    if len(names) == 1:
        assets = {names[0]: str(path)}
    else:
        assets = {name: f"vrt://{path}?bands={i}" for i, name in enumerate(names, start=1)}
    return _item(path.stem, when, assets, meta)


def _netcdf_items(path: Path, meta: dict[str, Any]) -> list[StacItem]:
    import xarray as xr

    with xr.open_dataset(path, engine="h5netcdf", decode_times=True) as ds:
        names = [str(n) for n in ds.data_vars if n != "crs" and {"x", "y"} <= set(ds[n].dims)]
        times = [_utc(t) for t in ds["t"].values] if "t" in ds.dims else [_first(meta)]
    items = []
    for index, when in enumerate(times, start=1):
        assets = {name: f'vrt://NETCDF:"{path}":{name}?bands={index}' for name in names}
        items.append(_item(f"{path.stem}_{index}", when, assets, meta))
    return items


def _item(item_id: str, when: datetime, assets: dict[str, str], meta: dict[str, Any]) -> StacItem:
    a, b, c, d, e, f = (float(v) for v in meta["transform"][:6])
    return StacItem(
        id=item_id,
        datetime=when,
        bbox=tuple(float(v) for v in meta["bbox"]),  # type: ignore[arg-type]
        crs=f"EPSG:{int(meta['epsg'])}" if meta.get("epsg") else None,
        assets=assets,
        # The grid of every asset: the ad-hoc collection takes pixel size and origin from it.
        asset_fields={
            key: {
                "roles": ["data"],
                "proj:transform": [a, b, c, d, e, f],
                "proj:shape": meta["shape"],
            }
            for key in assets
        },
    )


def _first(meta: dict[str, Any]) -> datetime:
    span = meta.get("datetime")
    return parse_datetime(span[0]) if span else _EPOCH


def _utc(value: Any) -> datetime:
    import numpy as np

    text = np.datetime_as_string(np.datetime64(value, "s"))
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _invalid(job_id: str, reason: str) -> ProcessParameterInvalid:
    return ProcessParameterInvalid(
        process=PROCESS, parameter="id", reason=f"Job '{job_id}': {reason}"
    )
