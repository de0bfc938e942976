"""Sorting, cumulative and order statistics over arrays: ``sort``, ``order``, ``rearrange``,
``cummax``/``cummin``/``cumproduct``/``cumsum``, ``extrema`` and ``quantiles``.

Lists keep exact openEO semantics (``null`` is no-data, NaN a number); on a ``LabeledArray``
(a cube along one dimension) every pixel is computed at once and NaN is no-data.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import xarray as xr

from openeo_airflow.core.errors import ProcessParameterInvalid

from .arrays import as_array
from .exceptions import process_error
from .registry import process
from .values import LabeledArray, is_number, to_python

QUANTILE_DIM = "quantiles"
NEUTRAL = {"add": 0.0, "multiply": 1.0, "maximum": -np.inf, "minimum": np.inf}
EXTREMA_DIM = "extrema"


def _is_nodata(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _numbers(process_id: str, values: list[Any]) -> None:
    for value in values:
        if not is_number(value):
            raise ProcessParameterInvalid(
                process=process_id, parameter="data", reason=f"expected numbers, got {value!r}"
            )


# --- sort, order, rearrange -----------------------------------------------------------------


def _order_list(data: list[Any], asc: bool, nodata: Any) -> list[int]:
    valid = [i for i, v in enumerate(data) if not _is_nodata(v)]
    missing = [i for i, v in enumerate(data) if _is_nodata(v)]
    # a stable sort on the negated key keeps equal values in their order when descending
    valid.sort(key=(lambda i: data[i]) if asc else (lambda i: _negate(data[i])))
    if nodata is None:
        return valid
    return [*valid, *missing] if nodata else [*missing, *valid]


def _negate(value: Any) -> Any:
    return -value if is_number(value) else _Reversed(value)


class _Reversed:
    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Reversed) -> bool:
        return bool(other.value < self.value)


def _order_cube(data: LabeledArray, asc: bool, nodata: Any) -> xr.DataArray:
    """Sort positions along the dimension per pixel; no-data (NaN) first, last or dropped."""
    cube, dim = data.cube, data.dim
    axis = cube.dims.index(dim)
    values = cube.values
    missing = np.isnan(values)
    key = np.where(missing, np.inf, values if asc else -values)
    if nodata is False:
        key = np.where(missing, -np.inf, key)
    order = np.argsort(key, axis=axis, kind="stable")
    result = xr.DataArray(order.astype(float), dims=cube.dims, coords=_other_coords(cube, dim))
    if nodata is None:  # dropped: positions of no-data values become no-data at the end
        valid = (~missing).sum(axis=axis, keepdims=True)
        rank = np.arange(cube.sizes[dim]).reshape([-1 if d == dim else 1 for d in cube.dims])
        result = result.where(rank < valid)
    return result


def _other_coords(cube: xr.DataArray, dim: str) -> dict[Any, Any]:
    return {k: v for k, v in cube.coords.items() if dim not in v.dims}


@process("order")
def order(data: Any, asc: Any = True, nodata: Any = None) -> Any:
    data = as_array("order", data)
    if isinstance(data, LabeledArray):
        return LabeledArray(_order_cube(data, asc, nodata), data.dim)
    return _order_list(list(data), asc, nodata)


@process("sort")
def sort(data: Any, asc: Any = True, nodata: Any = None) -> Any:
    data = as_array("sort", data)
    if isinstance(data, LabeledArray):
        positions = _order_cube(data, asc, nodata)
        filled = positions.fillna(0).astype(int).values
        axis = data.cube.dims.index(data.dim)
        values = np.take_along_axis(data.cube.values, filled, axis=axis)
        values = np.where(np.isnan(positions.values), np.nan, values)
        result = xr.DataArray(
            values, dims=data.cube.dims, coords=_other_coords(data.cube, data.dim)
        )
        return LabeledArray(result, data.dim)
    return [data[i] for i in _order_list(list(data), asc, nodata)]


@process("rearrange")
def rearrange(data: Any, order: Any) -> Any:
    data = as_array("rearrange", data)
    if isinstance(data, LabeledArray):
        return LabeledArray(data.cube.isel({data.dim: list(order)}), data.dim)
    return [data[i] for i in order]


# --- cumulative ------------------------------------------------------------------------------


def _cumulative(process_id: str, data: Any, ignore_nodata: bool, ufunc: np.ufunc) -> Any:
    data = as_array(process_id, data)
    if isinstance(data, LabeledArray):
        cube, dim = data.cube, data.dim
        axis = cube.dims.index(dim)
        values = cube.values.astype(float)
        missing = np.isnan(values)
        if ignore_nodata:
            neutral = NEUTRAL[ufunc.__name__]
            result = ufunc.accumulate(np.where(missing, neutral, values), axis=axis)
            result = np.where(missing, np.nan, result)
        else:
            result = ufunc.accumulate(values, axis=axis)
        return LabeledArray(cube.copy(data=result), dim)
    out: list[Any] = []
    total: Any = None
    broken = False
    for value in data:
        if value is None or broken:
            out.append(None)
            broken = broken or not ignore_nodata
            continue
        _numbers(process_id, [value])
        total = value if total is None else to_python(ufunc(total, value))
        out.append(total)
    return out


@process("cummax")
def cummax(data: Any, ignore_nodata: Any = True) -> Any:
    return _cumulative("cummax", data, ignore_nodata, np.maximum)


@process("cummin")
def cummin(data: Any, ignore_nodata: Any = True) -> Any:
    return _cumulative("cummin", data, ignore_nodata, np.minimum)


@process("cumproduct")
def cumproduct(data: Any, ignore_nodata: Any = True) -> Any:
    return _cumulative("cumproduct", data, ignore_nodata, np.multiply)


@process("cumsum")
def cumsum(data: Any, ignore_nodata: Any = True) -> Any:
    return _cumulative("cumsum", data, ignore_nodata, np.add)


# --- extrema and quantiles ---------------------------------------------------------------------


def _list_values(process_id: str, data: list[Any], ignore_nodata: bool) -> list[Any] | None:
    """Values without ``null`` (``None`` if a ``null`` must make the result ``null``)."""
    if not ignore_nodata and any(v is None for v in data):
        return None
    values = [v for v in data if v is not None]
    _numbers(process_id, values)
    return values


def _new_dimension(
    cube: xr.DataArray, values: np.ndarray, dim: str, name: str, axis: int
) -> LabeledArray:
    moved = np.moveaxis(values, 0, axis)
    dims = list(cube.dims)
    dims[axis] = name
    coords = _other_coords(cube, dim)
    result = xr.DataArray(moved, dims=dims, coords=coords)
    return LabeledArray(result.rename({name: dim}) if name != dim else result, dim)


@process("extrema")
def extrema(data: Any, ignore_nodata: Any = True) -> Any:
    """``[minimum, maximum]``; a NaN in a list makes both NaN, as it is a number."""
    data = as_array("extrema", data)
    if isinstance(data, LabeledArray):
        cube, dim = data.cube, data.dim
        axis = cube.dims.index(dim)
        with np.errstate(all="ignore"):
            if ignore_nodata:
                low, high = (
                    np.fmin.reduce(cube.values, axis=axis),
                    np.fmax.reduce(cube.values, axis=axis),
                )
            else:
                low, high = cube.values.min(axis=axis), cube.values.max(axis=axis)
        stacked = (
            np.stack([low, high])
            if cube.sizes[dim]
            else np.full((2, *np.delete(cube.shape, axis)), np.nan)
        )
        return _new_dimension(cube, stacked, dim, EXTREMA_DIM, axis)
    values = _list_values("extrema", data, ignore_nodata)
    if not values:
        return [None, None]
    if any(math.isnan(v) for v in values):
        return [math.nan, math.nan]
    return [min(values), max(values)]


def _probabilities(probabilities: Any, q: Any) -> list[float]:
    if probabilities is None and q is None:
        raise process_error("quantiles", "QuantilesParameterMissing")
    if probabilities is not None and q is not None:
        raise process_error("quantiles", "QuantilesParameterConflict")
    if isinstance(probabilities, int) and not isinstance(probabilities, bool):
        q, probabilities = probabilities, None
    if probabilities is None:
        return [i / q for i in range(1, int(q))]
    probs = [float(p) for p in probabilities]
    if any(b < a for a, b in itertools.pairwise(probs)):
        raise process_error("quantiles", "AscendingProbabilitiesRequired")
    return probs


def _lerp(low: Any, high: Any, t: Any) -> Any:
    """``(1 - t) * low + t * high``, exact at ``t = 0`` even for infinite neighbours."""
    with np.errstate(all="ignore"):
        return np.where(t == 0, low, (1 - t) * low + t * high)


def quantile_kernel(values: np.ndarray, axis: int, probs: list[float], skip: bool) -> np.ndarray:
    """Sample quantiles (type 7, as numpy's default) along ``axis`` for every pixel at once."""
    ordered = np.sort(values, axis=axis)  # NaN last
    valid = np.expand_dims((~np.isnan(values)).sum(axis=axis), axis)
    has_nan = np.expand_dims(np.isnan(values).any(axis=axis), axis)
    out = []
    for p in probs:
        h = (valid - 1) * p
        lo = np.clip(np.floor(h).astype(int), 0, max(values.shape[axis] - 1, 0))
        hi = np.clip(np.ceil(h).astype(int), 0, max(values.shape[axis] - 1, 0))
        low = np.take_along_axis(ordered, lo, axis)
        high = np.take_along_axis(ordered, hi, axis)
        result = _lerp(low, high, h - np.floor(h))
        result = np.where(valid > 0, result, np.nan)
        if not skip:
            result = np.where(has_nan, np.nan, result)
        out.append(np.squeeze(result, axis))
    return np.stack(out)


@process("quantiles")
def quantiles(
    data: Any, probabilities: Any = None, q: Any = None, ignore_nodata: Any = True
) -> Any:
    probs = _probabilities(probabilities, q)
    data = as_array("quantiles", data)
    if isinstance(data, LabeledArray):
        cube, dim = data.cube, data.dim
        axis = cube.dims.index(dim)
        if cube.sizes[dim] == 0:
            stacked = np.full((len(probs), *np.delete(cube.shape, axis)), np.nan)
        else:
            stacked = quantile_kernel(cube.values.astype(float), axis, probs, ignore_nodata)
        return _new_dimension(cube, stacked, dim, QUANTILE_DIM, axis)
    values = _list_values("quantiles", data, ignore_nodata)
    if values is None or not values:
        return [None] * len(probs)
    if any(math.isnan(v) for v in values):
        return [math.nan] * len(probs)
    result = quantile_kernel(np.asarray(values, dtype=float), 0, probs, True)
    return [to_python(v) for v in result]
