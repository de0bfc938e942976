"""Date processes: ``date_between``, ``date_difference`` and ``date_shift``.

Dates are RFC 3339 strings (a date ``YYYY-MM-DD`` or a date-time with a time zone); inside
callbacks over a temporal dimension they may also be ``datetime64`` labels (numpy/xarray),
computed for all labels at once. ``date_shift`` keeps the form of its input: a date stays a
date, a date-time keeps its time zone offset. Leap seconds (``23:59:60``) are read as the
next second and never returned.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from openeo_airflow.core.errors import ProcessParameterInvalid

from .registry import process
from .values import is_array

DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TIME_ONLY = re.compile(r"^\d{2}:\d{2}:\d{2}$")
UNIT_SECONDS = {
    "millisecond": 0.001,
    "second": 1.0,
    "minute": 60.0,
    "hour": 3600.0,
    "day": 86400.0,
    "week": 604800.0,
}


def parse_instant(process_id: str, name: str, value: Any) -> datetime:
    """An RFC 3339 date or date-time as an aware ``datetime`` (dates at midnight UTC)."""
    if not isinstance(value, str):
        raise ProcessParameterInvalid(
            process=process_id, parameter=name, reason=f"expected a date, got {value!r}"
        )
    text = value.strip()
    if DATE_ONLY.match(text):
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    leap = ":60" in text[16:20]
    if leap:
        text = text[:17] + "59" + text[19:]
    try:
        stamp = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError as exc:
        raise ProcessParameterInvalid(
            process=process_id, parameter=name, reason=f"'{value}' is not an RFC 3339 date"
        ) from exc
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp + timedelta(seconds=1) if leap else stamp


def format_instant(stamp: datetime, *, date_only: bool) -> str:
    if date_only:
        return stamp.date().isoformat()
    millis = stamp.microsecond // 1000
    text = stamp.strftime("%Y-%m-%dT%H:%M:%S") + (f".{millis:03d}" if millis else "")
    offset = stamp.utcoffset() or timedelta(0)
    if not offset:
        return text + "Z"
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _to_numpy_time(value: Any) -> Any:
    if is_array(value):
        return value
    stamp = parse_instant("date_between", "x", value)
    return np.datetime64(stamp.astimezone(UTC).replace(tzinfo=None), "ns")


@process("date_between")
def date_between(x: Any, min: Any, max: Any, exclude_max: Any = False) -> Any:
    if x is None:
        return None
    if any(isinstance(v, str) and TIME_ONLY.match(v) for v in (x, min, max)):
        if not all(isinstance(v, str) and TIME_ONLY.match(v) for v in (x, min, max)):
            return False
        low, high, value = min, max, x
    else:
        value, low, high = (_to_numpy_time(v) for v in (x, min, max))
    if high < low:
        return False
    inside = (value >= low) & ((value < high) if exclude_max else (value <= high))
    if isinstance(inside, xr.DataArray | np.ndarray):
        return inside.astype(np.float32)
    return bool(inside)


def _months_between(start: datetime, end: datetime) -> float:
    """Calendar months from ``start`` to ``end``, the rest as a fraction of a month."""
    whole = (end.year - start.year) * 12 + end.month - start.month
    anchor = _add_months(start, whole)
    if (end - anchor).total_seconds() < 0 < whole:
        whole -= 1
        anchor = _add_months(start, whole)
    elif (end - anchor).total_seconds() > 0 > whole:
        whole += 1
        anchor = _add_months(start, whole)
    days = calendar.monthrange(anchor.year, anchor.month)[1]
    return whole + (end - anchor).total_seconds() / (days * 86400.0)


@process("date_difference")
def date_difference(date1: Any, date2: Any, unit: Any = "second") -> float:
    start = parse_instant("date_difference", "date1", date1)
    end = parse_instant("date_difference", "date2", date2)
    if unit == "month":
        return _months_between(start, end)
    if unit == "year":
        return _months_between(start, end) / 12
    if unit not in UNIT_SECONDS:
        raise ProcessParameterInvalid(
            process="date_difference", parameter="unit", reason=f"unknown unit {unit!r}"
        )
    seconds = (end - start).total_seconds()
    result = seconds / UNIT_SECONDS[unit]
    return int(result) if float(result).is_integer() else result


def _add_months(stamp: datetime, months: int) -> datetime:
    index = stamp.year * 12 + stamp.month - 1 + months
    year, month = divmod(index, 12)
    day = min(stamp.day, calendar.monthrange(year, month + 1)[1])
    return stamp.replace(year=year, month=month + 1, day=day)


def _shift(stamp: datetime, value: int, unit: str) -> datetime:
    if unit == "month":
        return _add_months(stamp, value)
    if unit == "year":
        return _add_months(stamp, 12 * value)
    if unit not in UNIT_SECONDS:
        raise ProcessParameterInvalid(
            process="date_shift", parameter="unit", reason=f"unknown unit {unit!r}"
        )
    return stamp + timedelta(seconds=value * UNIT_SECONDS[unit])


def _shift_labels(labels: Any, value: int, unit: str) -> Any:
    index = pd.DatetimeIndex(np.asarray(labels).ravel())
    if unit in ("month", "year"):
        shifted = index + pd.DateOffset(months=value * (12 if unit == "year" else 1))
    else:
        shifted = index + pd.Timedelta(seconds=value * UNIT_SECONDS[unit])
    values = shifted.values.reshape(np.shape(labels))
    return labels.copy(data=values) if isinstance(labels, xr.DataArray) else values


@process("date_shift")
def date_shift(date: Any, value: Any, unit: Any) -> Any:
    if date is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProcessParameterInvalid(
            process="date_shift", parameter="value", reason=f"{value!r} is not an integer"
        )
    if is_array(date):
        return _shift_labels(date, value, unit)
    stamp = parse_instant("date_shift", "date", date)
    date_only = bool(DATE_ONLY.match(date.strip()))
    return format_instant(_shift(stamp, value, unit), date_only=date_only)
