"""Climatology: ``climatological_normal`` and ``anomaly``.

``climatological_normal`` averages (no-data ignored) every label of the climatology period
``[first year, last year]`` that falls in the same period of the year. Labels, always the full
set: ``day`` ``001``-``365``, ``month`` ``01``-``12``, ``season`` ``djf|mam|jja|son``,
``tropical-season`` ``ndjfma|mjjaso``, ``climatology-period`` one label of that name. A period
without data is no-data.

Decisions the spec leaves open:

- Day of year counts on a 365-day calendar: in leap years 29 February joins day ``059``
  (28 February) and the days after it keep their month and day (1 March is ``060``).
- A season across the turn of the year (``djf``, ``ndjfma``) is taken from the months before
  the first year when the cube has a label in each of them; otherwise the first year's part of
  it is dropped. The season that starts in the last year is never used.
- The spec asks for a cube that spans the climatology period; one that covers part of it gives
  the normals of what is there, one with no date in it is an error naming
  ``climatology_period``.
- ``anomaly`` subtracts, for each temporal label of ``data``, the normal of the label's period.
  Labels may be the period labels of ``aggregate_temporal_period`` (``2020-01``) or dates; a
  label whose period has no normal gives no-data.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from openeo_airflow.core.errors import ProcessParameterInvalid

from .registry import process
from .specs import process_spec
from .values import as_cube, one_of, temporal_dimension, to_datetime64

SEASONS = {
    "season": ("djf", "mam", "jja", "son"),
    "tropical-season": ("ndjfma", "mjjaso"),
}
# Months a season across the turn of the year starts before its year (Dec; Nov and Dec).
SEASON_LEAD = {"season": 1, "tropical-season": 2}
NORMAL_LABELS = {
    "day": [f"{d:03d}" for d in range(1, 366)],
    "month": [f"{m:02d}" for m in range(1, 13)],
    **{name: list(labels) for name, labels in SEASONS.items()},
    "climatology-period": ["climatology-period"],
}
SINGLE = ("climatology-period", "single-period")


# --- periods of dates -------------------------------------------------------------------------


def _day_of_365(times: pd.DatetimeIndex) -> np.ndarray:
    day = np.asarray(times.dayofyear)
    return day - (np.asarray(times.is_leap_year) & (day >= 60))


def _season(months: np.ndarray, period: str) -> np.ndarray:
    names = np.array(SEASONS[period])
    lead = SEASON_LEAD[period]
    length = 12 // len(names)
    return names[((months - 1 + lead) % 12) // length]


def period_labels(times: pd.DatetimeIndex, period: str) -> np.ndarray:
    """The normal's label of each date for ``period`` (any period ``anomaly`` knows)."""
    years = np.asarray(times.year)
    if period == "hour":
        return np.char.zfill(np.asarray(times.hour).astype(str), 2)
    if period == "day":
        return np.char.zfill(_day_of_365(times).astype(str), 3)
    if period == "week":
        return np.char.zfill(np.asarray(times.isocalendar().week).astype(str), 2)
    if period == "dekad":
        dekad = (np.asarray(times.month) - 1) * 3 + np.minimum((np.asarray(times.day) - 1) // 10, 2)
        return np.char.zfill((dekad + 1).astype(str), 2)
    if period == "month":
        return np.char.zfill(np.asarray(times.month).astype(str), 2)
    if period in SEASONS:
        return _season(np.asarray(times.month), period)
    if period == "year":
        return np.char.zfill(years.astype(str), 4)
    if period == "decade":
        return np.char.zfill((years // 10 * 10).astype(str), 4)
    if period == "decade-ad":
        return np.char.zfill(((years - 1) // 10 * 10 + 1).astype(str), 4)
    return np.full(len(times), "climatology-period")


def _dates(process_id: str, cube: xr.DataArray, dim: str) -> pd.DatetimeIndex:
    try:
        return pd.DatetimeIndex([to_datetime64(v) for v in cube.coords[dim].values])
    except (TypeError, ValueError) as exc:
        raise ProcessParameterInvalid(
            process=process_id,
            parameter="data",
            reason=f"the labels of the temporal dimension '{dim}' must be dates: {exc}",
        ) from exc


# --- climatological_normal --------------------------------------------------------------------


def _years(value: Any) -> tuple[int, int]:
    try:
        first, last = (int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ProcessParameterInvalid(
            process="climatological_normal",
            parameter="climatology_period",
            reason=f"expected two years [first, last], got {value!r}",
        ) from exc
    if first > last:
        raise ProcessParameterInvalid(
            process="climatological_normal",
            parameter="climatology_period",
            reason=f"the first year {first} is after the last year {last}",
        )
    return first, last


def _in_climatology(times: pd.DatetimeIndex, period: str, first: int, last: int) -> np.ndarray:
    """Which dates count, seasons across the turn of the year handled as the module says."""
    lead = SEASON_LEAD.get(period, 0)
    shifted = times + pd.DateOffset(months=lead) if lead else times
    years = np.asarray(shifted.year)
    keep = (years >= first) & (years <= last)
    if lead:
        before = [(first - 1, 13 - m) for m in range(1, lead + 1)]
        present = {(int(y), int(m)) for y, m in zip(times.year, times.month, strict=True)}
        if not all(month in present for month in before):
            first_season = (years == first) & (
                np.asarray(shifted.month) <= 12 // len(SEASONS[period])
            )
            keep &= ~first_season
    return keep


def _normal_spec() -> dict[str, Any]:
    """The installed (openEO 1.x) spec gives the years as texts, openEO 2.0 as integers:
    accept both, so graphs written for either version validate."""
    spec = copy.deepcopy(process_spec("climatological_normal"))
    for parameter in spec["parameters"]:
        if parameter["name"] == "climatology_period":
            years = {"type": "integer", "subtype": "year"}
            integers = {"type": "array", "minItems": 2, "maxItems": 2, "items": years}
            parameter["schema"] = [parameter["schema"], integers]
    return spec


@process("climatological_normal", spec=_normal_spec())
def climatological_normal(
    data: Any,
    period: Any,
    climatology_period: Any = ["1981", "2010"],  # noqa: B006 (spec default)
) -> Any:
    """The mean of each period of the year over the climatology period (see the module)."""
    cube = as_cube("climatological_normal", data)
    dim = temporal_dimension("climatological_normal", cube, None)
    period = one_of("climatological_normal", "period", period, NORMAL_LABELS)
    first, last = _years(climatology_period)
    times = _dates("climatological_normal", cube, dim)
    keep = _in_climatology(times, period, first, last)
    if not keep.any():
        raise ProcessParameterInvalid(
            process="climatological_normal",
            parameter="climatology_period",
            reason=f"the data has no dates in the years {first} to {last}",
        )
    labels = period_labels(times, period)
    values = cube.astype(np.float32) if cube.dtype.kind in "iub" else cube
    empty = xr.full_like(values.isel({dim: 0}, drop=True), np.nan)
    parts = []
    for label in NORMAL_LABELS[period]:
        positions = np.flatnonzero(keep & (labels == label))
        parts.append(
            values.isel({dim: positions}).mean(dim, skipna=True) if positions.size else empty
        )
    result = xr.concat(parts, dim=dim, coords="minimal", compat="override")
    result = result.assign_coords({dim: NORMAL_LABELS[period]})
    result.coords[dim].attrs["type"] = "temporal"
    return result.transpose(*cube.dims)


# --- anomaly ----------------------------------------------------------------------------------

LABEL_PATTERNS = {
    "hour": re.compile(r"^\d{4}-\d{2}-\d{2}-(\d{2})$"),
    "day": re.compile(r"^(\d{4})-(\d{3})$"),
    "week": re.compile(r"^\d{4}-(\d{2})$"),
    "dekad": re.compile(r"^\d{4}-(\d{2})$"),
    "month": re.compile(r"^\d{4}-(\d{2})$"),
    "season": re.compile(r"^\d{4}-(djf|mam|jja|son)$"),
    "tropical-season": re.compile(r"^\d{4}-(ndjfma|mjjaso)$"),
    "year": re.compile(r"^(\d{4})$"),
    "decade": re.compile(r"^(\d{3}0)$"),
    "decade-ad": re.compile(r"^(\d{3}1)$"),
}
# Digits of the normals' labels, for normals labelled with integers (1 for January).
WIDTHS = {"hour": 2, "day": 3, "week": 2, "dekad": 2, "month": 2}
WIDTHS.update({"year": 4, "decade": 4, "decade-ad": 4})


def _period_of_label(label: Any, period: str) -> str:
    """The normal's label for one temporal label of ``data``."""
    if isinstance(label, str):
        match = LABEL_PATTERNS[period].match(label)
        if match and period == "day":
            date = pd.Timestamp(int(match[1]), 1, 1) + pd.Timedelta(days=int(match[2]) - 1)
            return str(period_labels(pd.DatetimeIndex([date]), "day")[0])
        if match:
            return match[1]
    try:
        date = to_datetime64(label)
    except (TypeError, ValueError) as exc:
        raise ProcessParameterInvalid(
            process="anomaly",
            parameter="data",
            reason=f"the temporal label {label!r} is neither a date nor a '{period}' label",
        ) from exc
    return str(period_labels(pd.DatetimeIndex([date]), period)[0])


def _normal_label(label: Any, period: str) -> str:
    if isinstance(label, int | np.integer) and period in WIDTHS:
        return f"{int(label):0{WIDTHS[period]}d}"
    if isinstance(label, np.datetime64 | pd.Timestamp) and period in (
        "year",
        "decade",
        "decade-ad",
    ):
        return f"{pd.Timestamp(label).year:04d}"
    return str(label)


def _positions(
    cube: xr.DataArray, dim: str, normals: xr.DataArray, ndim: str, period: str
) -> np.ndarray:
    """For each temporal label of ``data``, the position of its normal (-1: none)."""
    count = normals.sizes[ndim]
    if period in SINGLE:
        if count != 1:
            raise ProcessParameterInvalid(
                process="anomaly",
                parameter="normals",
                reason=f"period '{period}' needs exactly one normal, got {count}",
            )
        return np.zeros(cube.sizes[dim], dtype=int)
    known = {_normal_label(v, period): i for i, v in enumerate(normals.coords[ndim].values)}
    labels = cube.coords[dim].values
    if np.issubdtype(labels.dtype, np.datetime64):
        wanted = list(period_labels(pd.DatetimeIndex(labels), period))
    else:
        wanted = [_period_of_label(v, period) for v in labels]
    return np.array([known.get(str(w), -1) for w in wanted], dtype=int)


def _normals_like(cube: xr.DataArray, dim: str, normals: xr.DataArray, ndim: str) -> np.ndarray:
    """The normals' values, their other dimensions checked against and ordered like ``data``'s
    (missing ones as axes of length 1), the temporal one first."""
    extra = [d for d in normals.dims if d != ndim and d not in cube.dims]
    if extra:
        raise ProcessParameterInvalid(
            process="anomaly", parameter="normals", reason=f"dimensions {extra} are not in 'data'"
        )
    others = [d for d in cube.dims if d != dim]
    try:
        xr.align(
            cube.isel({dim: 0}, drop=True),
            normals.isel({ndim: 0}, drop=True),
            join="exact",
            exclude=[d for d in others if d not in normals.dims],
        )
    except ValueError as exc:
        raise ProcessParameterInvalid(
            process="anomaly",
            parameter="normals",
            reason=f"the labels of its other dimensions differ from those of 'data': {exc}",
        ) from exc
    present = [d for d in others if d in normals.dims]
    values = normals.transpose(ndim, *present).values
    shape = [normals.sizes[ndim]] + [cube.sizes[d] if d in normals.dims else 1 for d in others]
    return values.reshape(shape)


@process("anomaly")
def anomaly(data: Any, normals: Any, period: Any) -> Any:
    """``data`` minus the normal of each temporal label's period (see the module)."""
    cube = as_cube("anomaly", data)
    reference = as_cube("anomaly", normals, "normals")
    if period not in LABEL_PATTERNS and period not in SINGLE:
        raise ProcessParameterInvalid(
            process="anomaly", parameter="period", reason=f"unknown period {period!r}"
        )
    dim = temporal_dimension("anomaly", cube, None)
    ndim = temporal_dimension("anomaly", reference, None)
    if not reference.sizes[ndim]:
        raise ProcessParameterInvalid(
            process="anomaly", parameter="normals", reason="the normals have no temporal labels"
        )
    positions = _positions(cube, dim, reference, ndim, str(period))
    normal_values = _normals_like(cube, dim, reference, ndim)
    ordered = cube.transpose(dim, ...)
    values = ordered.values
    dtype = np.result_type(values.dtype, normal_values.dtype, np.float32)
    result = np.empty(values.shape, dtype=dtype)
    # One pass over the data, a period at a time: no copy of the normals per label.
    for position in np.unique(positions):
        at = positions == position
        result[at] = values[at] - normal_values[position] if position >= 0 else np.nan
    return ordered.copy(data=result).transpose(*cube.dims)
