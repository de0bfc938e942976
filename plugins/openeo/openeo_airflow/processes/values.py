"""The values that flow between processes, and openEO null semantics on them.

A process receives and returns:

- scalars: ``None`` (openEO ``null``), ``bool``, ``int``, ``float``, ``str``; lists and dicts;
- raster cubes and other arrays: ``xarray.DataArray`` (or ``numpy.ndarray``), where NaN is
  no-data (``null``). Booleans computed on arrays (comparisons, logic) are ``float32`` arrays
  holding 1.0 (true), 0.0 (false) and NaN (null), so that null survives logic and masking;
- a ``LabeledArray``: the ``data`` a reducer callback receives. It stands for "the array of
  values along one dimension", for every other coordinate at once: reducers reduce along
  ``dim`` and ``array_element`` selects along it, so a callback runs once per cube, vectorised.

Scalars keep the exact openEO semantics (``null`` is not NaN); arrays follow the cube model.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from openeo_airflow.core.errors import ProcessParameterInvalid
from openeo_airflow.cube import DIMS

from .exceptions import process_error

BOOL_DTYPE = np.float32


class LabeledList(list[Any]):
    """An openEO labeled array outside a cube: a Python list with ``labels`` beside it.

    Being a list, it goes through every array process unchanged; processes that keep the
    labels (``array_apply``, ``array_modify``...) pass them on, the others drop them.
    """

    def __init__(self, values: Any = (), labels: Any = ()) -> None:
        super().__init__(values)
        self.labels = list(labels)
        if len(self.labels) != len(self):
            raise ValueError("a labeled array needs one label per value")


@dataclass(frozen=True)
class LabeledArray:
    """The values of ``cube`` along ``dim``, seen as one labeled array per other coordinate."""

    cube: xr.DataArray
    dim: str

    def labels(self) -> list[Any]:
        return list(self.cube.coords[self.dim].values) if self.dim in self.cube.coords else []


STACK_DIM = "__array__"


def stack_list(items: list[Any]) -> LabeledArray:
    """A list holding cubes (e.g. ``max([x, 0])`` in ``apply``) as one labeled array."""
    arrays = [
        v if isinstance(v, xr.DataArray) else xr.DataArray(np.nan if v is None else v)
        for v in items
    ]
    return LabeledArray(xr.concat(xr.broadcast(*arrays), dim=STACK_DIM), STACK_DIM)


def is_array(value: Any) -> bool:
    return isinstance(value, xr.DataArray | np.ndarray)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)


def to_python(value: Any) -> Any:
    """numpy scalars (and 0-d arrays) to Python scalars, so results stay JSON-friendly."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    return value


def canonical_order(data: Any) -> Any:
    """Transpose a DataArray to ``t, bands, y, x`` (other dimensions first, in their order)."""
    if not isinstance(data, xr.DataArray):
        return data
    others = [d for d in data.dims if d not in DIMS]
    order = others + [d for d in DIMS if d in data.dims]
    return data if list(data.dims) == order else data.transpose(*order)


def where(cond: Any, a: Any, b: Any) -> Any:
    """``numpy.where`` that keeps DataArray coordinates when any input is a DataArray."""
    if any(isinstance(v, xr.DataArray) for v in (cond, a, b)):
        return xr.where(cond, a, b)
    return np.where(cond, a, b)


def reject_labeled(process_id: str, parameter: str, value: Any) -> None:
    """Refuse a reducer's ``data`` where a single value (or a cube) is expected."""
    if isinstance(value, LabeledArray):
        raise ProcessParameterInvalid(
            process=process_id,
            parameter=parameter,
            reason="expected a number or a data cube, got an array. In a reducer, select a value "
            "with array_element() or reduce the array (e.g. with mean()) first.",
        )


def elementwise(
    process_id: str,
    fn: Callable[..., Any],
    args: dict[str, Any],
    *,
    int_fn: Callable[..., Any] | None = None,
) -> Any:
    """Apply a numeric function with null propagation (``null`` in -> ``null`` out).

    Scalars are computed in float64 (IEEE 754: x/0 -> ±inf, invalid -> NaN), or with ``int_fn``
    when all operands are integers. Arrays keep their dtype (float32 stays float32: Python
    scalars are "weak" in numpy 2).
    """
    for name, value in args.items():
        reject_labeled(process_id, name, value)
    values = list(args.values())
    if any(is_array(v) for v in values) and any(isinstance(v, list | dict) for v in values):
        raise ProcessParameterInvalid(
            process=process_id, parameter=", ".join(args), reason="cannot mix arrays and lists"
        )
    if not any(is_array(v) for v in values):
        if any(v is None for v in values):
            return None
        for name, value in args.items():
            if not is_number(value):
                raise ProcessParameterInvalid(
                    process=process_id, parameter=name, reason=f"expected a number, got {value!r}"
                )
        if int_fn is not None and all(isinstance(v, int) for v in values):
            return int_fn(*values)
        with np.errstate(all="ignore"):
            return to_python(fn(*(np.float64(v) for v in values)))
    operands = [np.nan if v is None else v for v in values]
    with np.errstate(all="ignore"):
        return canonical_order(fn(*operands))


def null_mask(*values: Any) -> Any:
    """Where any operand is null (NaN in arrays, ``None`` as a scalar); ``None``: nowhere."""
    mask: Any = None
    for value in values:
        if value is None:
            return True
        if is_array(value) and value.dtype.kind in "fc":
            isnan = np.isnan(value)
            mask = isnan if mask is None else mask | isnan
    return mask


def as_bool_array(value: Any, mask: Any) -> Any:
    """A boolean result (numpy/xarray bool) as float32 1/0 with NaN where ``mask`` is set."""
    result = value.astype(BOOL_DTYPE) if is_array(value) else BOOL_DTYPE(value)
    if mask is None or mask is False:
        return remember_boolean(result, nulls=False)
    if mask is True:
        return remember_boolean(BOOL_DTYPE(np.nan) + result * 0, nulls=True)
    if not bool(mask.any()):  # cheap test, spares a costly where() on null-free data
        return remember_boolean(result, nulls=False)
    return remember_boolean(where(mask, BOOL_DTYPE(np.nan), result), nulls=True)


# --- known booleans ----------------------------------------------------------------------------
# Logic on arrays first turns each operand into 1/0/NaN, then deals with null: several passes
# over the data. Arrays the boolean processes create are remembered (weakly, by identity, with
# whether they may hold null), so that work is skipped for them. Sound because values are never
# modified in place once a process has returned them; only arrays created here are remembered.

_BOOLEANS: dict[int, tuple[weakref.ref[np.ndarray], bool, object | None]] = {}


def _numpy_data(value: Any) -> np.ndarray | None:
    data = value.data if isinstance(value, xr.DataArray) else value
    return data if isinstance(data, np.ndarray) else None


def remember_boolean(value: Any, *, nulls: bool, pattern: object | None = None) -> Any:
    """Note that ``value`` holds only 1.0/0.0 (and NaN if ``nulls``); returns ``value``.

    ``pattern``: the token of ``nan_pattern`` whose NaN positions are exactly this value's
    nulls, when known."""
    data = _numpy_data(value)
    if data is not None and data.dtype == BOOL_DTYPE:
        key = id(data)
        ref = weakref.ref(data, lambda ref: _forget(_BOOLEANS, key, ref))
        _BOOLEANS[key] = (ref, nulls, pattern if nulls else None)
    return value


def _forget(registry: dict[int, Any], key: int, ref: weakref.ref[np.ndarray]) -> None:
    entry = registry.get(key)
    if entry is not None and entry[0] is ref:
        registry.pop(key, None)


def _remembered(value: Any) -> tuple[weakref.ref[np.ndarray], bool, object | None] | None:
    data = _numpy_data(value)
    entry = _BOOLEANS.get(id(data)) if data is not None else None
    if entry is None or entry[0]() is not data:
        return None
    return entry


def boolean_nulls(value: Any) -> bool | None:
    """For a remembered boolean array whether it may hold null; ``None`` if not one."""
    entry = _remembered(value)
    return None if entry is None else entry[1]


def boolean_pattern(value: Any) -> object | None:
    """For a remembered boolean array with nulls, the token of where they are, if known."""
    entry = _remembered(value)
    return None if entry is None else entry[2]


# --- where arrays hold NaN ----------------------------------------------------------------------
# A cloud mask compares one band (SCL) with several classes and joins the comparisons with
# ``or``: every comparison has its nulls where the band has NaN. Knowing that two booleans have
# their nulls in the same places turns three-valued ``or``/``and`` into one ``maximum``/
# ``minimum`` pass instead of four: 0.24 -> 0.09 s per ``or`` of two ``eq`` on a 28 x 1600 x
# 1600 px band with NaN rows (medians of 5). The bench's S2 tile has no NaN in SCL, so W1-W3
# do not take this path.
# The token stands for an array's NaN positions; like the booleans above, sound because values
# are never changed in place once made.

_NAN_PATTERNS: dict[int, tuple[weakref.ref[np.ndarray], object, bool]] = {}
_NO_NANS = object()


def nan_pattern(data: np.ndarray) -> tuple[object, bool]:
    """A token for where ``data`` holds NaN, and whether it holds any (one pass per array)."""
    known = _remembered(data)
    if known is not None and not known[1]:
        return _NO_NANS, False
    if known is not None and known[2] is not None:
        return known[2], True
    key = id(data)
    entry = _NAN_PATTERNS.get(key)
    if entry is not None and entry[0]() is data:
        return entry[1], entry[2]
    token, nans = object(), has_nan(data)
    ref = weakref.ref(data, lambda ref: _forget(_NAN_PATTERNS, key, ref))
    _NAN_PATTERNS[key] = (ref, token, nans)
    return token, nans


def has_nan(data: np.ndarray) -> bool:
    """Whether a numpy array holds a NaN: one pass, no temporary (``min`` propagates NaN)."""
    return data.dtype.kind in "fc" and data.size > 0 and bool(np.isnan(np.min(data)))


def numeric_operands(*values: Any) -> bool:
    """At least one cube, and otherwise only numeric cubes (not 0-d), numbers and booleans."""
    if not any(isinstance(v, xr.DataArray) for v in values):
        return False
    return all(
        v.dtype.kind in "biuf" and v.ndim > 0
        if isinstance(v, xr.DataArray)
        else is_number(v) or isinstance(v, bool | np.bool_)
        for v in values
    )


def on_data(fn: Callable[..., np.ndarray], *operands: Any, operator: bool) -> xr.DataArray:
    """``fn`` on the numpy data of cubes (and scalars), rewrapped with their coordinates.

    Cubes are aligned and broadcast as xarray arithmetic does. The name and attributes follow
    the xarray operation ``fn`` replaces: an ``operator`` (``x == y``, ``x - y``) or a numpy
    function on cubes (``np.fmax(x, y)``: the first cube's name and attributes).
    """
    join = xr.get_options()["arithmetic_join"]
    with np.errstate(all="ignore"):
        result = xr.apply_ufunc(fn, *operands, join=join, keep_attrs="override")
    if operator:
        like = _operator_result(operands)
        result.name, result.attrs = like.name, dict(like.attrs)
    return result


def _operator_result(operands: tuple[Any, ...]) -> Any:
    """The name and attributes an xarray operator gives: its result on 0-d stand-ins."""
    stand_ins = [
        xr.DataArray(0, name=v.name, attrs=v.attrs) if isinstance(v, xr.DataArray) else 0
        for v in operands
    ]
    result = stand_ins[0]
    for stand_in in stand_ins[1:]:
        result = result + stand_in
    return result


def label_position(index: pd.Index, label: Any) -> int | None:
    """Position of ``label`` in a dimension's index (temporal labels given as strings work)."""
    if isinstance(index, pd.DatetimeIndex) and not isinstance(label, np.datetime64):
        try:
            label = to_datetime64(label)
        except (TypeError, ValueError):
            return None
    try:
        loc = index.get_loc(label)
    except (KeyError, TypeError, ValueError):
        return None
    if isinstance(loc, int | np.integer):
        return int(loc)
    positions = np.flatnonzero(np.asarray(index == label))
    return int(positions[0]) if positions.size else None


def to_datetime64(value: Any) -> np.datetime64:
    """An openEO date or date-time string as a naive UTC ``datetime64[ns]``."""
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return np.datetime64(stamp.to_datetime64(), "ns")


def label_to_json(value: Any) -> Any:
    """A dimension label as a JSON value; temporal labels as RFC 3339 UTC strings."""
    if isinstance(value, np.datetime64 | pd.Timestamp):
        return pd.Timestamp(value).strftime("%Y-%m-%dT%H:%M:%SZ")
    return to_python(value)


# --- cubes and their dimensions ------------------------------------------------------------------

DIMENSION_TYPES = {"t": "temporal", "bands": "bands", "x": "spatial", "y": "spatial"}


def as_cube(process_id: str, value: Any, parameter: str = "data") -> xr.DataArray:
    """``value`` if it is a data cube, else ``ProcessParameterInvalid``."""
    if isinstance(value, LabeledArray):
        raise ProcessParameterInvalid(
            process=process_id, parameter=parameter, reason="expected a data cube, got an array"
        )
    if not isinstance(value, xr.DataArray):
        raise ProcessParameterInvalid(
            process=process_id, parameter=parameter, reason=f"expected a data cube, got {value!r}"
        )
    return value


def raster_cube(process_id: str, value: Any, parameter: str = "data") -> xr.DataArray:
    """``value`` if it is a data cube with ``x``, ``y`` and a CRS (``spatial_ref``), else
    ``ProcessParameterInvalid``."""
    cube = as_cube(process_id, value, parameter)
    if not {"x", "y"} <= set(cube.dims) or "spatial_ref" not in cube.coords:
        raise ProcessParameterInvalid(
            process=process_id,
            parameter=parameter,
            reason="expected a raster cube with spatial dimensions 'x' and 'y'",
        )
    return cube


def callback(process_id: str, value: Any, parameter: str) -> Callable[..., Any]:
    """``value`` if it is a callback (a process graph), else ``ProcessParameterInvalid``."""
    if not callable(value):
        raise ProcessParameterInvalid(
            process=process_id, parameter=parameter, reason="not a process graph"
        )
    return value


def check_reduced(process_id: str, result: Any, dim: str, per: str) -> None:
    """Refuse a reducer's ``result`` that still holds values along ``dim``: one value ``per``
    pixel (window...) was expected."""
    if isinstance(result, LabeledArray) or (
        isinstance(result, xr.DataArray) and dim in result.dims
    ):
        raise ProcessParameterInvalid(
            process=process_id, parameter="reducer", reason=f"must return one value per {per}"
        )


def one_of(process_id: str, parameter: str, value: Any, choices: Collection[str]) -> str:
    """``value`` if it is one of ``choices``, else ``ProcessParameterInvalid`` listing them."""
    if value not in choices:
        raise ProcessParameterInvalid(
            process=process_id,
            parameter=parameter,
            reason=f"expected one of {', '.join(choices)}, got {value!r}",
        )
    return str(value)


def dimension_of(process_id: str, cube: xr.DataArray, name: Any) -> str:
    """``name`` if ``cube`` has that dimension, else the process's ``DimensionNotAvailable``."""
    if name not in cube.dims:
        detail = f"'{name}' is not one of: {', '.join(map(str, cube.dims))}."
        raise process_error(process_id, "DimensionNotAvailable", detail)
    return str(name)


def dimension_type(cube: xr.DataArray, dim: Any) -> str:
    """``spatial``, ``temporal``, ``bands``, ``geometry`` or ``other``.

    Known from the name (``x``, ``y``, ``t``, ``bands``), from datetime labels, or from a
    ``type`` attribute on the dimension's coordinate (set where cubes are built).
    """
    coord = cube.coords.get(dim)
    if coord is not None and coord.attrs.get("type"):
        return str(coord.attrs["type"])
    if dim in DIMENSION_TYPES:
        return DIMENSION_TYPES[dim]
    if coord is not None and np.issubdtype(coord.dtype, np.datetime64):
        return "temporal"
    return "other"


def temporal_dimension(process_id: str, cube: xr.DataArray, dimension: Any) -> str:
    """The temporal dimension to work on: ``dimension``, or the cube's only temporal one."""
    if dimension is not None:
        name = dimension_of(process_id, cube, dimension)
        if dimension_type(cube, name) != "temporal":
            raise process_error(process_id, "DimensionNotAvailable", f"'{name}' is not temporal.")
        return name
    temporal = [str(d) for d in cube.dims if dimension_type(cube, d) == "temporal"]
    if not temporal:
        raise process_error(
            process_id, "DimensionNotAvailable", "The cube has no temporal dimension."
        )
    if len(temporal) > 1:
        raise process_error(process_id, "TooManyDimensions", f"Temporal: {', '.join(temporal)}.")
    return temporal[0]


def broadcast_value(value: Any, template: xr.DataArray) -> xr.DataArray:
    """A scalar (or ``null``) as a float cube shaped like ``template``."""
    if isinstance(value, xr.DataArray):
        return value
    fill = np.nan if value is None else value
    dtype = template.dtype if template.dtype.kind == "f" else np.float64
    return xr.full_like(template, fill, dtype=dtype)
