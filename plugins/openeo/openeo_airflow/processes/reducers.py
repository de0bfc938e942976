"""Reducers (statistics and aggregation) and ``array_element``.

``data`` is either a Python list (openEO array; ``None`` is null, NaN is a number) or a
``LabeledArray`` (the values of a cube along one dimension, inside ``reduce_dimension``), which
is reduced along that dimension for all pixels at once. On cubes NaN is no-data: with
``ignore_nodata`` (the default) it is skipped, and a pixel without valid values gives NaN.
The kernels never warn (no "All-NaN slice" or "Mean of empty slice" RuntimeWarnings).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from openeo_airflow.core.errors import ProcessParameterInvalid

from .arrays import same_value
from .exceptions import process_error
from .registry import process
from .values import (
    LabeledArray,
    LabeledList,
    is_array,
    is_number,
    label_position,
    label_to_json,
    stack_list,
    to_python,
)

Kernel = Callable[[np.ndarray, int, bool], np.ndarray]


def _out_dtype(values: np.ndarray) -> np.dtype[Any]:
    return values.dtype if values.dtype.kind == "f" else np.dtype(np.float64)


def _valid_count(values: np.ndarray, axis: int, skip: bool) -> np.ndarray:
    if skip:
        return np.asarray((~np.isnan(values)).sum(axis=axis))
    return np.full(np.delete(values.shape, axis), values.shape[axis])


def _product(values: np.ndarray, axis: int, skip: bool) -> np.ndarray:
    data = np.where(np.isnan(values), 1.0, values) if skip else values
    total = np.prod(data, axis=axis, dtype=np.float64)
    return np.where(_valid_count(values, axis, skip) > 0, total, np.nan)


def _sum_and_count(values: np.ndarray, axis: int, skip: bool) -> tuple[np.ndarray, np.ndarray]:
    """The float64 sum of the valid values along ``axis`` (0 where none is) and their count."""
    if skip and values.dtype.kind == "f" and _adds_slice_by_slice(values, axis):
        return _sum_slices(np.moveaxis(values, axis, 0))
    data = np.where(np.isnan(values), 0.0, values) if skip else values
    return np.asarray(np.sum(data, axis=axis, dtype=np.float64)), _valid_count(values, axis, skip)


def _adds_slice_by_slice(values: np.ndarray, axis: int) -> bool:
    """Whether numpy sums along ``axis`` one whole slice after the other (not pairwise, as it
    does along the innermost axis), so that ``_sum_slices`` gives the very same floats."""
    inner = int(np.prod(values.shape[axis + 1 :]))
    return values.flags.c_contiguous and inner > 1


def _sum_slices(slices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of the non-NaN values over the first axis, without the NaN-free copy of
    the cube (which cost more than the sum). numpy's sum starts from 0.0, so skipping a NaN
    gives the same float as adding the 0 that replaced it."""
    total = np.zeros(slices.shape[1:], np.float64)
    count = np.zeros(slices.shape[1:], np.int_)
    valid = np.empty(slices.shape[1:], bool)
    for part in slices:
        np.logical_not(np.isnan(part, out=valid), out=valid)
        np.add(total, part, out=total, where=valid)
        count += valid
    return total, count


def _max(values: np.ndarray, axis: int, skip: bool) -> np.ndarray:
    return (np.fmax if skip else np.maximum).reduce(values, axis=axis)


def _min(values: np.ndarray, axis: int, skip: bool) -> np.ndarray:
    return (np.fmin if skip else np.minimum).reduce(values, axis=axis)


# ``_sum_and_count`` returns new arrays: they are finished in place.


def _sum(values: np.ndarray, axis: int, skip: bool) -> np.ndarray:
    total, count = _sum_and_count(values, axis, skip)
    np.copyto(total, np.nan, where=count == 0)
    return total


def _mean(values: np.ndarray, axis: int, skip: bool) -> np.ndarray:
    total, count = _sum_and_count(values, axis, skip)
    np.divide(total, count, out=total)
    np.copyto(total, np.nan, where=count == 0)
    return total


def _variance(values: np.ndarray, axis: int, skip: bool) -> np.ndarray:
    """Sample variance (n - 1 in the denominator); fewer than two values give NaN."""
    count = _valid_count(values, axis, skip)
    mean = np.expand_dims(_mean(values, axis, skip), axis)
    deviation = values - mean.astype(_out_dtype(values), copy=False)  # no float64 cube copy
    squares = np.where(np.isnan(values), 0.0, deviation**2) if skip else deviation**2
    return squares.sum(axis=axis) / np.where(count > 1, count - 1, np.nan)


def _sd(values: np.ndarray, axis: int, skip: bool) -> np.ndarray:
    return np.sqrt(_variance(values, axis, skip))


def _median(values: np.ndarray, axis: int, skip: bool) -> np.ndarray:
    ordered = np.sort(values, axis=axis)  # NaN sorts last
    count = _valid_count(values, axis, skip)
    lower = np.expand_dims(np.maximum((count - 1) // 2, 0), axis)
    upper = np.expand_dims(np.maximum(count // 2, 0), axis)
    low = np.take_along_axis(ordered, lower, axis).squeeze(axis).astype(np.float64)
    high = np.take_along_axis(ordered, upper, axis).squeeze(axis).astype(np.float64)
    median = np.where(count > 0, (low + high) / 2, np.nan)
    if not skip and values.dtype.kind == "f":
        median = np.where(np.isnan(values).any(axis=axis), np.nan, median)
    return median


def _first(values: np.ndarray, axis: int, skip: bool) -> np.ndarray:
    if not skip:
        return np.take(values, 0, axis=axis)
    position = np.expand_dims((~np.isnan(values)).argmax(axis=axis), axis)
    return np.take_along_axis(values, position, axis).squeeze(axis)


def _last(values: np.ndarray, axis: int, skip: bool) -> np.ndarray:
    return _first(np.flip(values, axis=axis), axis, skip)


def _kernel(kernel: Kernel, skip: bool) -> Callable[..., np.ndarray]:
    def run(values: np.ndarray, axis: int, **_: Any) -> np.ndarray:
        dtype = _out_dtype(values)
        if values.shape[axis] == 0:
            return np.full(np.delete(values.shape, axis), np.nan, dtype=dtype)
        with np.errstate(all="ignore"):
            return np.asarray(kernel(values, axis, skip)).astype(dtype, copy=False)

    return run


def _as_labeled(process_id: str, data: Any) -> LabeledArray | list[Any]:
    if isinstance(data, list) and any(is_array(v) for v in data):
        return stack_list(data)
    if isinstance(data, LabeledArray | list):
        return data
    if isinstance(data, xr.DataArray):
        reason = "got a data cube; reduce it with reduce_dimension() and use this as reducer"
    else:
        reason = f"expected an array, got {data!r}"
    raise ProcessParameterInvalid(process=process_id, parameter="data", reason=reason)


def _reduce_list(process_id: str, data: list[Any], kernel: Kernel, ignore_nodata: bool) -> Any:
    if not ignore_nodata and any(v is None for v in data):
        return None
    values = [v for v in data if v is not None]
    if not values:
        return None
    for value in values:
        if not is_number(value):
            raise ProcessParameterInvalid(
                process=process_id, parameter="data", reason=f"expected numbers, got {value!r}"
            )
    with np.errstate(all="ignore"):
        result = kernel(np.asarray(values, dtype=np.float64), 0, False)
    return to_python(result)


def _reduce(process_id: str, data: Any, kernel: Kernel, ignore_nodata: bool) -> Any:
    data = _as_labeled(process_id, data)
    if isinstance(data, list):
        return _reduce_list(process_id, data, kernel, ignore_nodata)
    return data.cube.reduce(_kernel(kernel, ignore_nodata), dim=data.dim)


@process("max")
def max_(data: Any, ignore_nodata: bool = True) -> Any:
    return _reduce("max", data, _max, ignore_nodata)


@process("min")
def min_(data: Any, ignore_nodata: bool = True) -> Any:
    return _reduce("min", data, _min, ignore_nodata)


@process("mean")
def mean(data: Any, ignore_nodata: bool = True) -> Any:
    return _reduce("mean", data, _mean, ignore_nodata)


@process("median")
def median(data: Any, ignore_nodata: bool = True) -> Any:
    return _reduce("median", data, _median, ignore_nodata)


@process("sum")
def sum_(data: Any, ignore_nodata: bool = True) -> Any:
    return _reduce("sum", data, _sum, ignore_nodata)


@process("product")
def product(data: Any, ignore_nodata: bool = True) -> Any:
    return _reduce("product", data, _product, ignore_nodata)


@process("sd")
def sd(data: Any, ignore_nodata: bool = True) -> Any:
    return _reduce("sd", data, _sd, ignore_nodata)


@process("variance")
def variance(data: Any, ignore_nodata: bool = True) -> Any:
    return _reduce("variance", data, _variance, ignore_nodata)


@process("first")
def first(data: Any, ignore_nodata: bool = True) -> Any:
    data = _as_labeled("first", data)
    if isinstance(data, list):
        items = [v for v in data if v is not None] if ignore_nodata else data
        return items[0] if items else None
    return data.cube.reduce(_kernel(_first, ignore_nodata), dim=data.dim)


@process("last")
def last(data: Any, ignore_nodata: bool = True) -> Any:
    data = _as_labeled("last", data)
    if isinstance(data, list):
        items = [v for v in data if v is not None] if ignore_nodata else data
        return items[-1] if items else None
    return data.cube.reduce(_kernel(_last, ignore_nodata), dim=data.dim)


def _is_valid(value: Any) -> bool:
    return value is not None and (not is_number(value) or bool(np.isfinite(value)))


@process("count")
def count(data: Any, condition: Any = None, context: Any = None) -> Any:
    """Valid (finite) values by default, all with ``condition=true``, else where it is true.

    The condition callback receives the value as ``x`` (and as ``element``, its name in openEO
    processes 2.0). On cubes the count is float32, like every cube.
    """
    data = _as_labeled("count", data)
    if condition is False:
        raise ProcessParameterInvalid(
            process="count", parameter="condition", reason="false is not a valid value"
        )
    if isinstance(data, list):
        if condition is None:
            return sum(1 for v in data if _is_valid(v))
        if condition is True:
            return len(data)
        return sum(1 for v in data if condition(x=v, element=v, context=context) is True)
    cube, dim = data.cube, data.dim
    if condition is None:
        counted = np.isfinite(cube)
    elif condition is True:
        counted = xr.ones_like(cube, dtype=bool)
    else:
        counted = condition(x=cube, element=cube, context=context) == 1
        if not isinstance(counted, xr.DataArray):
            counted = xr.full_like(cube, bool(counted), dtype=bool)
    return counted.sum(dim=dim).astype(np.float32)


# --- array_element --------------------------------------------------------------------------


def _element_position(data: Any, index: Any, label: Any) -> int | None:
    if index is None and label is None:
        raise process_error("array_element", "ArrayElementParameterMissing")
    if index is not None and label is not None:
        raise process_error("array_element", "ArrayElementParameterConflict")
    if label is not None:
        if isinstance(data, LabeledList):
            return next((i for i, v in enumerate(data.labels) if same_value(v, label)), None)
        if not isinstance(data, LabeledArray) or data.dim not in data.cube.indexes:
            raise process_error("array_element", "ArrayNotLabeled")
        return label_position(pd.Index(data.cube.indexes[data.dim]), label)
    size = len(data) if isinstance(data, list) else data.cube.sizes[data.dim]
    if not isinstance(index, int) or isinstance(index, bool):
        raise ProcessParameterInvalid(
            process="array_element", parameter="index", reason=f"{index!r} is not an integer"
        )
    return index if 0 <= index < size else None


@process("array_element")
def array_element(
    data: Any, index: Any = None, label: Any = None, return_nodata: bool = False
) -> Any:
    """One element; inside a reducer, the cube at that band/date (the dimension dropped)."""
    if not isinstance(data, LabeledArray | list):
        raise ProcessParameterInvalid(
            process="array_element", parameter="data", reason=f"expected an array, got {data!r}"
        )
    position = _element_position(data, index, label)
    if position is None:
        if return_nodata:
            return None
        wanted = f"label {label!r}" if label is not None else f"index {index!r}"
        labels = data.labels() if isinstance(data, LabeledArray) else getattr(data, "labels", None)
        detail = f"No element with {wanted}" + (f"; labels: {_show(labels)}" if labels else "")
        raise process_error("array_element", "ArrayElementNotAvailable", detail + ".")
    if isinstance(data, list):
        return data[position]
    element = data.cube.isel({data.dim: position}, drop=True)
    return to_python(element.values) if element.ndim == 0 else element


def _show(labels: list[Any]) -> str:
    return ", ".join(str(label_to_json(v)) for v in labels)
