"""Array processes: creating, modifying, searching, filtering and applying over arrays.

Each process takes ``data`` in one of two forms:

- a Python list (a ``LabeledList`` when labeled): openEO arrays with exact scalar semantics
  (``null`` and NaN are different things);
- a ``LabeledArray`` (inside ``reduce_dimension``/``apply_dimension``: the cube seen along one
  dimension): computed for all pixels at once, NaN being no-data. Results that are arrays stay
  ``LabeledArray``s along the same dimension.

Ordering processes (``sort``, ``order``, ``rearrange``, cumulative and statistics over arrays)
are in ``ordering.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

from openeo_airflow.core.errors import ProcessParameterInvalid

from .exceptions import process_error
from .registry import process
from .values import (
    LabeledArray,
    LabeledList,
    is_array,
    is_number,
    label_position,
    stack_list,
    to_datetime64,
    to_python,
)

ArrayValue = list[Any] | LabeledArray


def as_array(process_id: str, data: Any, parameter: str = "data") -> ArrayValue:
    """``data`` as a list or a ``LabeledArray`` (a list holding cubes becomes one)."""
    if isinstance(data, list) and any(is_array(v) for v in data):
        return stack_list(data)
    if isinstance(data, LabeledArray | list):
        return data
    raise ProcessParameterInvalid(
        process=process_id, parameter=parameter, reason=f"expected an array, got {data!r}"
    )


def labels_of(data: ArrayValue) -> list[Any] | None:
    """The labels of a labeled array, ``None`` for an unlabeled one."""
    if isinstance(data, LabeledList):
        return data.labels
    if isinstance(data, LabeledArray):
        return [to_python(v) for v in data.labels()] if data.dim in data.cube.coords else None
    return None


def same_value(a: Any, b: Any) -> bool:
    """openEO equality of two array elements: same type family and value; null is never equal."""
    if a is None or b is None or isinstance(a, list | dict) or isinstance(b, list | dict):
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) and is_number(b):
        return bool(a == b)
    return type(a) is type(b) and a == b


def _positions(cube: xr.DataArray, dim: str) -> xr.DataArray:
    return xr.DataArray(np.arange(cube.sizes[dim]), dims=dim)


def _label_values(cube: xr.DataArray, dim: str) -> xr.DataArray:
    if dim in cube.coords:
        return xr.DataArray(cube.coords[dim].values, dims=dim)
    return _positions(cube, dim)


def _call_each(data: list[Any], fn: Callable[..., Any], context: Any) -> list[Any]:
    labels = data.labels if isinstance(data, LabeledList) else [None] * len(data)
    return [
        to_python(fn(x=value, index=i, label=labels[i], context=context))
        for i, value in enumerate(data)
    ]


def _callable(process_id: str, value: Any, parameter: str) -> Callable[..., Any]:
    if not callable(value):
        raise ProcessParameterInvalid(
            process=process_id, parameter=parameter, reason="expected a process graph"
        )
    return value


# --- creating ----------------------------------------------------------------------------------


@process("array_create")
def array_create(data: Any = None, repeat: Any = 1) -> Any:
    if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
        raise ProcessParameterInvalid(
            process="array_create", parameter="repeat", reason="must be an integer >= 1"
        )
    items = list(data or [])
    if any(is_array(v) for v in items):
        stacked = stack_list(items)
        return LabeledArray(xr.concat([stacked.cube] * repeat, dim=stacked.dim), stacked.dim)
    return items * repeat


@process("array_create_labeled")
def array_create_labeled(data: Any, labels: Any) -> Any:
    if len(data) != len(labels):
        raise process_error(
            "array_create_labeled",
            "ArrayLengthMismatch",
            f"{len(data)} values, {len(labels)} labels.",
        )
    return LabeledList(data, labels)


@process("array_append")
def array_append(data: Any, value: Any, label: Any = None) -> Any:
    data = as_array("array_append", data)
    labels = labels_of(data)
    if label is not None and labels is None:
        raise process_error("array_append", "ArrayNotLabeled")
    if labels is not None and label is not None and label in labels:
        raise process_error("array_append", "LabelExists", f"Label: {label!r}.")
    if isinstance(data, LabeledArray):
        new_label = label if label is not None else data.cube.sizes[data.dim]
        return _concat_labeled(data, [value], [new_label] if labels is not None else None)
    if labels is not None:
        return LabeledList([*data, value], [*labels, label if label is not None else len(data)])
    return [*data, value]


def _concat_labeled(
    data: LabeledArray, values: list[Any], labels: list[Any] | None
) -> LabeledArray:
    template = data.cube.isel({data.dim: 0}, drop=True)
    parts = [data.cube.drop_vars(data.dim, errors="ignore")]
    for value in values:
        part = (
            value
            if isinstance(value, xr.DataArray)
            else xr.full_like(template, np.nan if value is None else value, dtype=float)
        )
        parts.append(part.expand_dims(data.dim))
    joined = xr.concat(parts, dim=data.dim, coords="minimal", compat="override", join="override")
    if labels is not None and data.dim in data.cube.coords:
        joined = joined.assign_coords({data.dim: [*data.cube.coords[data.dim].values, *labels]})
    else:
        joined = joined.drop_vars(data.dim, errors="ignore")
    return LabeledArray(joined, data.dim)


@process("array_concat")
def array_concat(array1: Any, array2: Any) -> Any:
    first, second = (
        as_array("array_concat", array1, "array1"),
        as_array("array_concat", array2, "array2"),
    )
    labels1, labels2 = labels_of(first), labels_of(second)
    if isinstance(first, LabeledArray) or isinstance(second, LabeledArray):
        return _concat_cubes(first, second, labels1, labels2)
    if labels1 is not None and labels2 is not None:
        if set(labels1) & set(labels2):
            raise process_error("array_concat", "ArrayLabelConflict")
        return LabeledList([*first, *second], [*labels1, *labels2])
    return [*first, *second]


def _concat_cubes(
    first: ArrayValue, second: ArrayValue, labels1: Any, labels2: Any
) -> LabeledArray:
    a = first if isinstance(first, LabeledArray) else None
    b = second if isinstance(second, LabeledArray) else None
    dim = (a or b).dim  # type: ignore[union-attr]
    if a is None:
        return _prepend(first, b)  # type: ignore[arg-type]
    if b is None:
        return _concat_labeled(a, list(second), None)  # type: ignore[arg-type]
    other = b.cube.rename({b.dim: dim}) if b.dim != dim else b.cube
    keep_labels = labels1 is not None and labels2 is not None and not set(labels1) & set(labels2)
    if not keep_labels:
        other = other.drop_vars(dim, errors="ignore")
        joined = xr.concat([a.cube.drop_vars(dim, errors="ignore"), other], dim=dim)
    else:
        joined = xr.concat([a.cube, other], dim=dim)
    return LabeledArray(joined, dim)


def _prepend(values: list[Any], data: LabeledArray) -> LabeledArray:
    flipped = LabeledArray(data.cube.isel({data.dim: slice(None, None, -1)}), data.dim)
    joined = _concat_labeled(flipped, list(reversed(values)), None)
    return LabeledArray(joined.cube.isel({data.dim: slice(None, None, -1)}), data.dim)


@process("array_modify")
def array_modify(data: Any, values: Any, index: Any, length: Any = 0) -> Any:
    """Replace ``length`` elements from ``index`` on by ``values`` (0: insert, [] : remove)."""
    data = as_array("array_modify", data)
    size = data.cube.sizes[data.dim] if isinstance(data, LabeledArray) else len(data)
    if not isinstance(index, int) or index < 0 or index > size:
        raise process_error("array_modify", "ArrayElementNotAvailable", f"Index {index!r}.")
    if isinstance(data, LabeledArray):
        dim = data.dim
        head = LabeledArray(
            data.cube.isel({dim: slice(0, index)}).drop_vars(dim, errors="ignore"), dim
        )
        tail = data.cube.isel({dim: slice(index + length, None)}).drop_vars(dim, errors="ignore")
        return _concat_cubes(
            _concat_cubes(head, list(values or []), None, None), LabeledArray(tail, dim), None, None
        )
    return [*data[:index], *values, *data[index + length :]]


# --- inspecting --------------------------------------------------------------------------------


@process("array_labels")
def array_labels(data: Any) -> list[Any]:
    data = as_array("array_labels", data)
    labels = labels_of(data)
    if labels is not None:
        return labels
    return list(range(data.cube.sizes[data.dim] if isinstance(data, LabeledArray) else len(data)))


@process("array_find_label")
def array_find_label(data: Any, label: Any) -> Any:
    data = as_array("array_find_label", data)
    labels = labels_of(data)
    if labels is None:
        return None
    if isinstance(data, LabeledArray):
        import pandas as pd

        return label_position(pd.Index(data.cube.indexes[data.dim]), label)
    matches = [i for i, v in enumerate(labels) if same_value(v, label)]
    return matches[0] if matches else None


@process("array_contains")
def array_contains(data: Any, value: Any) -> Any:
    data = as_array("array_contains", data)
    if isinstance(data, LabeledArray):
        if value is None or not (is_number(value) or is_array(value)):
            return False
        return (data.cube == value).any(dim=data.dim).astype(np.float32)
    return any(same_value(v, value) for v in data)


@process("array_find")
def array_find(data: Any, value: Any, reverse: Any = False) -> Any:
    """Index of the first (``reverse``: last) element equal to ``value``; ``null`` if none."""
    data = as_array("array_find", data)
    if isinstance(data, LabeledArray):
        if value is None or not (is_number(value) or is_array(value)):
            return xr.full_like(data.cube.isel({data.dim: 0}, drop=True), np.nan, dtype=float)
        found = data.cube == value
        size = data.cube.sizes[data.dim]
        if reverse:
            found = found.isel({data.dim: slice(None, None, -1)})
        position = found.argmax(dim=data.dim).astype(float)
        if reverse:
            position = size - 1 - position
        return position.where(found.any(dim=data.dim))
    order = range(len(data) - 1, -1, -1) if reverse else range(len(data))
    return next((i for i in order if same_value(data[i], value)), None)


# --- applying and filtering --------------------------------------------------------------------


@process("array_apply")
def array_apply(data: Any, process: Any, context: Any = None) -> Any:
    """Applies ``process`` to each element (``x``, with its ``index`` and ``label``)."""
    fn = _callable("array_apply", process, "process")
    data = as_array("array_apply", data)
    if isinstance(data, LabeledArray):
        cube, dim = data.cube, data.dim
        result = fn(
            x=cube, index=_positions(cube, dim), label=_label_values(cube, dim), context=context
        )
        if not isinstance(result, xr.DataArray):
            result = xr.full_like(cube, np.nan if result is None else result, dtype=float)
        return LabeledArray(result.transpose(*cube.dims), dim)
    results = _call_each(data, fn, context)
    return LabeledList(results, data.labels) if isinstance(data, LabeledList) else results


@process("array_filter")
def array_filter(data: Any, condition: Any, context: Any = None) -> Any:
    """Keeps the elements for which ``condition`` is true.

    On a cube the kept elements differ from pixel to pixel: they are moved to the front of the
    dimension (in their order) and the rest is no-data; the dimension shrinks to the largest
    number of kept elements (labels are kept only when every pixel keeps the same ones).
    """
    fn = _callable("array_filter", condition, "condition")
    data = as_array("array_filter", data)
    if isinstance(data, LabeledArray):
        return _filter_cube(data, fn, context)
    keep = [result is True for result in _call_each(data, fn, context)]
    values = [v for v, k in zip(data, keep, strict=True) if k]
    if isinstance(data, LabeledList):
        return LabeledList(values, [label for label, k in zip(data.labels, keep, strict=True) if k])
    return values


def _filter_cube(data: LabeledArray, fn: Callable[..., Any], context: Any) -> LabeledArray:
    cube, dim = data.cube, data.dim
    keep = fn(x=cube, index=_positions(cube, dim), label=_label_values(cube, dim), context=context)
    keep = xr.DataArray(keep) if not isinstance(keep, xr.DataArray) else keep
    keep = (
        (keep == 1).broadcast_like(cube)
        if dim not in keep.dims or keep.ndim < cube.ndim
        else keep == 1
    )
    keep = keep.transpose(*cube.dims)
    axis = cube.dims.index(dim)
    mask = keep.values
    if _uniform(mask, axis):
        selected = np.flatnonzero(_first_line(mask, axis))
        return LabeledArray(cube.isel({dim: selected}), dim)
    order = np.argsort(~mask, axis=axis, kind="stable")
    values = np.take_along_axis(np.where(mask, cube.values, np.nan), order, axis=axis)
    width = int(mask.sum(axis=axis).max()) if mask.size else 0
    values = np.take(values, np.arange(width), axis=axis)
    result = xr.DataArray(
        values, dims=cube.dims, coords={k: v for k, v in cube.coords.items() if dim not in v.dims}
    )
    return LabeledArray(result, dim)


def _first_line(mask: np.ndarray, axis: int) -> np.ndarray:
    index = [0] * mask.ndim
    index[axis] = slice(None)  # type: ignore[call-overload]
    return mask[tuple(index)]


def _uniform(mask: np.ndarray, axis: int) -> bool:
    line = _first_line(mask, axis)
    shape = [1] * mask.ndim
    shape[axis] = line.size
    return bool((mask == line.reshape(shape)).all())


# --- interpolation ------------------------------------------------------------------------------


def _positions_of(labels: list[Any] | None, size: int) -> np.ndarray:
    """Interpolation positions: numeric or temporal labels (also as date strings), else the
    indices."""
    if labels and all(is_number(v) for v in labels):
        return np.asarray(labels, dtype=float)
    if labels and all(isinstance(v, np.datetime64 | str) for v in labels):
        try:
            stamps = [to_datetime64(v) if isinstance(v, str) else v for v in labels]
        except (TypeError, ValueError):
            return np.arange(size, dtype=float)
        return np.asarray(stamps, dtype="datetime64[ns]").astype(np.int64).astype(float)
    return np.arange(size, dtype=float)


def _interpolate(values: np.ndarray, x: np.ndarray, axis: int) -> np.ndarray:
    """Fill NaN between two valid values along ``axis`` linearly in ``x``; ends stay NaN."""
    moved = np.moveaxis(values, axis, -1)
    size = moved.shape[-1]
    valid = ~np.isnan(moved)
    index = np.where(valid, np.arange(size), -1)
    before = np.maximum.accumulate(index, axis=-1)
    after = np.flip(
        np.minimum.accumulate(np.flip(np.where(valid, np.arange(size), size), -1), axis=-1), -1
    )
    inside = (before >= 0) & (after < size) & ~valid
    lo, hi = np.clip(before, 0, size - 1), np.clip(after, 0, size - 1)
    v_lo = np.take_along_axis(moved, lo, -1)
    v_hi = np.take_along_axis(moved, hi, -1)
    with np.errstate(all="ignore"):
        t = (x - x[lo]) / (x[hi] - x[lo])
        filled = np.where(t == 0, v_lo, (1 - t) * v_lo + t * v_hi)
    return np.moveaxis(np.where(inside, filled, moved), -1, axis)


@process("array_interpolate_linear")
def array_interpolate_linear(data: Any) -> Any:
    """Fills no-data (``null``, NaN) between two valid numbers by linear interpolation over
    the labels (when numeric or temporal) or the positions; leading and trailing gaps stay."""
    data = as_array("array_interpolate_linear", data)
    if isinstance(data, LabeledArray):
        cube, dim = data.cube, data.dim
        labels = list(cube.coords[dim].values) if dim in cube.coords else None
        x = _positions_of(labels, cube.sizes[dim])
        values = np.asarray(cube.values, dtype=float)
        result = _interpolate(values, x, cube.dims.index(dim)) if values.size else values
        return LabeledArray(
            cube.copy(data=result.astype(cube.dtype if cube.dtype.kind == "f" else float)), dim
        )
    raw = list(data)
    numbers = np.array([np.nan if v is None else v for v in raw], dtype=float)
    x = _positions_of(labels_of(data), len(raw))
    filled = _interpolate(numbers, x, 0) if raw else numbers
    out = [
        to_python(f) if is_number(v) or (v is None and not np.isnan(f)) else v
        for v, f in zip(raw, filled, strict=True)
    ]
    return LabeledList(out, data.labels) if isinstance(data, LabeledList) else out
