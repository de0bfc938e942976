"""Temporal aggregation (``aggregate_temporal``, ``aggregate_temporal_period``) and
``reduce_spatial``.

The reducer runs once per interval (or period), on the cube seen along the temporal dimension
restricted to that interval, for all pixels at once; an interval without labels gives no-data.
Period labels follow the openEO 1.x convention: ``YYYY-MM-DD-HH`` (hour), ``YYYY-DDD`` (day of
year), ``YYYY-WW`` (ISO week, in its ISO year), ``YYYY-DD`` (dekad 01-36), ``YYYY-MM``,
``YYYY-djf|mam|jja|son`` (a season is named after the year of its first month: December 2023
to February 2024 is ``2023-djf``), ``YYYY-ndjfma|mjjaso`` (likewise), ``YYYY``, ``YYY0`` (decade)
and
``YYY1`` (decade-ad). Every period between the first and the last is present, empty ones as
no-data.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from openeo_airflow.core.errors import ProcessParameterInvalid

from .exceptions import process_error
from .registry import process
from .space import Global
from .values import (
    LabeledArray,
    as_cube,
    broadcast_value,
    callback,
    canonical_order,
    check_reduced,
    temporal_dimension,
    to_datetime64,
)

TIME_OF_DAY = re.compile(r"^\d{2}:\d{2}:\d{2}$")


def _reduce(
    cube: xr.DataArray, dim: str, positions: np.ndarray, reducer: Any, context: Any
) -> xr.DataArray:
    part = cube.isel({dim: _selection(positions)})
    template = cube.isel({dim: 0}, drop=True) if cube.sizes[dim] else None
    result = reducer(data=LabeledArray(part, dim), context=context)
    check_reduced("aggregate_temporal", result, dim, "pixel")
    if not isinstance(result, xr.DataArray) and template is not None:
        result = broadcast_value(result, template)
    return result


def _selection(positions: np.ndarray) -> slice | np.ndarray:
    """Consecutive positions (the usual case: labels in time order) as a slice, which selects
    a view of the cube instead of a copy."""
    if positions.size and np.array_equal(np.diff(positions), np.ones(positions.size - 1)):
        return slice(int(positions[0]), int(positions[-1]) + 1)
    return positions


def _aggregate(
    cube: xr.DataArray,
    dim: str,
    groups: list[np.ndarray],
    labels: list[Any],
    reducer: Any,
    context: Any,
) -> xr.DataArray:
    reducer = callback("aggregate_temporal", reducer, "reducer")
    parts = [_reduce(cube, dim, positions, reducer, context) for positions in groups]
    if not parts:
        return cube.isel({dim: []})
    result = xr.concat(parts, dim=dim, coords="minimal", compat="override")
    result = result.assign_coords({dim: labels})
    result.coords[dim].attrs["type"] = "temporal"
    order = [d for d in cube.dims if d in result.dims]
    return canonical_order(result.transpose(*order))


# --- aggregate_temporal --------------------------------------------------------------------------


def _seconds_of_day(text: str) -> int:
    h, m, s = (int(v) for v in text.split(":"))
    return h * 3600 + m * 60 + s


def _interval_positions(times: pd.DatetimeIndex, start: Any, end: Any) -> np.ndarray:
    if isinstance(start, str) and TIME_OF_DAY.match(start):
        seconds = times.hour * 3600 + times.minute * 60 + times.second
        low, high = _seconds_of_day(start), _seconds_of_day(end)
        inside = (
            (seconds >= low) & (seconds < high)
            if low <= high
            else (seconds >= low) | (seconds < high)
        )
        return np.flatnonzero(inside)
    keep = np.ones(len(times), dtype=bool)
    if start is not None:
        keep &= times >= to_datetime64(start)
    if end is not None:
        keep &= times < to_datetime64(end)
    return np.flatnonzero(keep)


def _check_interval(start: Any, end: Any) -> None:
    if start is None or end is None:
        return
    if isinstance(start, str) and TIME_OF_DAY.match(start):
        return
    if to_datetime64(end) <= to_datetime64(start):
        raise process_error("aggregate_temporal", "TemporalExtentEmpty", f"[{start}, {end}].")


def _label(value: Any) -> Any:
    if isinstance(value, str) and not TIME_OF_DAY.match(value):
        try:
            return to_datetime64(value)
        except (TypeError, ValueError):
            return value
    return value


@process("aggregate_temporal")
def aggregate_temporal(
    data: Any,
    intervals: Any,
    reducer: Any,
    labels: Any = None,
    dimension: Any = None,
    context: Any = None,
) -> Any:
    cube = as_cube("aggregate_temporal", data)
    dim = temporal_dimension("aggregate_temporal", cube, dimension)
    for interval in intervals:
        _check_interval(interval[0], interval[1])
    if labels:
        if len(labels) != len(intervals):
            raise ProcessParameterInvalid(
                process="aggregate_temporal", parameter="labels", reason="one label per interval"
            )
        names = list(labels)
    else:
        names = [interval[0] for interval in intervals]
        if len({str(n) for n in names}) != len(names):
            raise process_error("aggregate_temporal", "DistinctDimensionLabelsRequired")
    times = pd.DatetimeIndex(cube.indexes[dim])
    groups = [_interval_positions(times, start, end) for start, end in intervals]
    values = [_label(n) for n in names]
    if not all(isinstance(v, np.datetime64) for v in values):
        values = [str(n) for n in names]
    return _aggregate(cube, dim, groups, values, reducer, context)


# --- aggregate_temporal_period -------------------------------------------------------------------


def _dekad(stamp: datetime) -> int:
    return (stamp.month - 1) * 3 + min((stamp.day - 1) // 10, 2) + 1


PeriodKey = Callable[[datetime], tuple[int, ...]]

PERIODS: dict[
    str,
    tuple[
        PeriodKey, Callable[[tuple[int, ...]], str], Callable[[tuple[int, ...]], tuple[int, ...]]
    ],
] = {}


def _period(
    name: str,
    key: PeriodKey,
    label: Callable[[tuple[int, ...]], str],
    step: Callable[[tuple[int, ...]], tuple[int, ...]],
) -> None:
    PERIODS[name] = (key, label, step)


def _next_day(key: tuple[int, ...]) -> tuple[int, ...]:
    following = datetime(key[0], 1, 1) + timedelta(days=key[1])
    return (following.year, following.timetuple().tm_yday)


def _next_week(key: tuple[int, ...]) -> tuple[int, ...]:
    monday = datetime.fromisocalendar(key[0], key[1], 1) + timedelta(weeks=1)
    iso = monday.isocalendar()
    return (iso.year, iso.week)


def _next_in_year(count: int) -> Callable[[tuple[int, ...]], tuple[int, ...]]:
    return lambda key: (key[0] + 1, 1) if key[1] >= count else (key[0], key[1] + 1)


def _next_hour(key: tuple[int, ...]) -> tuple[int, ...]:
    following = datetime(key[0], key[1], key[2], key[3]) + timedelta(hours=1)
    return (following.year, following.month, following.day, following.hour)


_period(
    "hour",
    lambda t: (t.year, t.month, t.day, t.hour),
    lambda k: f"{k[0]:04d}-{k[1]:02d}-{k[2]:02d}-{k[3]:02d}",
    _next_hour,
)
_period(
    "day", lambda t: (t.year, t.timetuple().tm_yday), lambda k: f"{k[0]:04d}-{k[1]:03d}", _next_day
)
_period(
    "week", lambda t: tuple(t.isocalendar()[:2]), lambda k: f"{k[0]:04d}-{k[1]:02d}", _next_week
)
_period(
    "dekad", lambda t: (t.year, _dekad(t)), lambda k: f"{k[0]:04d}-{k[1]:02d}", _next_in_year(36)
)
SEASON_NAMES = {12: "djf", 3: "mam", 6: "jja", 9: "son", 11: "ndjfma", 5: "mjjaso"}


def _first_month(t: datetime, months: int, first: int) -> tuple[int, ...]:
    """``(year, month)`` of the start of the ``months``-long season ``t`` is in; seasons
    start at month ``first`` (and every ``months`` after it)."""
    offset = (t.month - first) % months
    index = t.year * 12 + t.month - 1 - offset
    return (index // 12, index % 12 + 1)


def _add_months(months: int) -> Callable[[tuple[int, ...]], tuple[int, ...]]:
    def step(key: tuple[int, ...]) -> tuple[int, ...]:
        index = key[0] * 12 + key[1] - 1 + months
        return (index // 12, index % 12 + 1)

    return step


_period("month", lambda t: (t.year, t.month), lambda k: f"{k[0]:04d}-{k[1]:02d}", _add_months(1))
_period(
    "season",
    lambda t: _first_month(t, 3, 12),
    lambda k: f"{k[0]:04d}-{SEASON_NAMES[k[1]]}",
    _add_months(3),
)
_period(
    "tropical-season",
    lambda t: _first_month(t, 6, 11),
    lambda k: f"{k[0]:04d}-{SEASON_NAMES[k[1]]}",
    _add_months(6),
)
_period("year", lambda t: (t.year,), lambda k: f"{k[0]:04d}", lambda k: (k[0] + 1,))
_period("decade", lambda t: (t.year // 10 * 10,), lambda k: f"{k[0]:04d}", lambda k: (k[0] + 10,))
_period(
    "decade-ad",
    lambda t: ((t.year - 1) // 10 * 10 + 1,),
    lambda k: f"{k[0]:04d}",
    lambda k: (k[0] + 10,),
)


@process("aggregate_temporal_period")
def aggregate_temporal_period(
    data: Any, period: Any, reducer: Any, dimension: Any = None, context: Any = None
) -> Any:
    cube = as_cube("aggregate_temporal_period", data)
    dim = temporal_dimension("aggregate_temporal_period", cube, dimension)
    if period not in PERIODS:
        raise ProcessParameterInvalid(
            process="aggregate_temporal_period",
            parameter="period",
            reason=f"unknown period {period!r}",
        )
    key_of, label_of, step = PERIODS[period]
    times = pd.DatetimeIndex(cube.indexes[dim])
    keys = [key_of(t.to_pydatetime()) for t in times]
    groups: list[np.ndarray] = []
    labels: list[str] = []
    if keys:
        key, last = min(keys), max(keys)
        while key <= last:
            groups.append(np.array([i for i, k in enumerate(keys) if k == key], dtype=int))
            labels.append(label_of(key))
            key = step(key)
    return _aggregate(cube, dim, groups, labels, reducer, context)


# --- reduce_spatial ------------------------------------------------------------------------------

SPATIAL_STACK = "__spatial__"


@process("reduce_spatial", space=Global())
def reduce_spatial(data: Any, reducer: Any, context: Any = None) -> Any:
    """Reduces ``x`` and ``y`` together: the reducer sees every pixel of each band/date."""
    cube = as_cube("reduce_spatial", data)
    for dim in ("x", "y"):
        if dim not in cube.dims:
            raise process_error("reduce_spatial", "DimensionNotAvailable", f"'{dim}' is missing.")
    stacked = cube.stack({SPATIAL_STACK: ("y", "x")}).drop_vars(
        ["x", "y", SPATIAL_STACK], errors="ignore"
    )
    result = reducer(data=LabeledArray(stacked, SPATIAL_STACK), context=context)
    if not isinstance(result, xr.DataArray):
        result = broadcast_value(result, stacked.isel({SPATIAL_STACK: 0}, drop=True))
    return canonical_order(result)
