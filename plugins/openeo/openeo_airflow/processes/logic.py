"""Comparisons, logical operators and value checks.

Scalars follow the openEO spec exactly (strict types, ``null`` propagation, the three-valued
truth tables of ``and``/``or``/``xor``). On arrays booleans are float32 1/0/NaN (see
``values``): a comparison with a NaN (no-data) operand is NaN (null), ``and(false, null)`` is
false, ``or(true, null)`` is true, anything else with null is null.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

from .registry import process
from .values import (
    BOOL_DTYPE,
    LabeledArray,
    as_bool_array,
    boolean_nulls,
    boolean_pattern,
    has_nan,
    is_array,
    is_number,
    nan_pattern,
    null_mask,
    numeric_operands,
    on_data,
    reject_labeled,
    remember_boolean,
    stack_list,
    to_python,
    where,
)

# --- comparisons ----------------------------------------------------------------------------


def _eq_scalar(x: Any, y: Any, delta: Any, case_sensitive: bool) -> bool:
    if is_number(x) and is_number(y):
        if delta is not None:
            return bool(abs(x - y) <= delta)
        return bool(x == y)
    if isinstance(x, str) and isinstance(y, str):
        return x == y if case_sensitive else x.casefold() == y.casefold()
    if type(x) is not type(y):
        return False
    return bool(x == y)


def _compared(
    ufunc: np.ufunc, delta: Any = None, *, negate: bool = False
) -> Callable[[Any, Any], np.ndarray]:
    """A comparison of numpy operands, written straight into a new float32 1/0/NaN array."""

    def compare(x: Any, y: Any) -> np.ndarray:
        result = _new_boolean(x, y)
        if delta is None:
            ufunc(x, y, out=result)
        else:
            difference = np.asarray(np.subtract(x, y))
            np.less_equal(np.abs(difference, out=difference), delta, out=result)
        if negate:
            np.subtract(1, result, out=result)
        patterns = []
        for operand in (x, y):
            if not isinstance(operand, np.ndarray):
                continue
            pattern, nans = nan_pattern(operand)
            if nans and pattern not in patterns:
                np.copyto(result, np.nan, where=np.isnan(operand))
                # A broadcast operand's NaN do not sit where the result's do.
                patterns.append(pattern if operand.shape == result.shape else None)
        shared = patterns[0] if len(patterns) == 1 else None
        return remember_boolean(result, nulls=bool(patterns), pattern=shared)

    return compare


def _new_boolean(x: Any, y: Any) -> np.ndarray:
    return np.empty(np.broadcast_shapes(np.shape(x), np.shape(y)), BOOL_DTYPE)


def _eq_array(x: Any, y: Any, delta: Any, *, negate: bool = False) -> Any:
    if numeric_operands(x, y):
        return on_data(_compared(np.equal, delta, negate=negate), x, y, operator=True)
    with np.errstate(all="ignore"):
        equal = abs(x - y) <= delta if delta is not None else x == y
    result = as_bool_array(equal, null_mask(x, y))
    return 1 - result if negate else result


def _checked(process_id: str, x: Any, y: Any) -> tuple[Any, Any, bool]:
    reject_labeled(process_id, "x", x)
    reject_labeled(process_id, "y", y)
    return x, y, is_array(x) or is_array(y)


@process("eq")
def eq(x: Any, y: Any, delta: Any = None, case_sensitive: bool = True) -> Any:
    x, y, arrays = _checked("eq", x, y)
    if arrays:
        return _eq_array(x, y, delta)
    if x is None or y is None:
        return None
    return _eq_scalar(x, y, delta, case_sensitive)


@process("neq")
def neq(x: Any, y: Any, delta: Any = None, case_sensitive: bool = True) -> Any:
    x, y, arrays = _checked("neq", x, y)
    if arrays:
        return _eq_array(x, y, delta, negate=True)
    if x is None or y is None:
        return None
    return not _eq_scalar(x, y, delta, case_sensitive)


def _order(process_id: str, op: Callable[[Any, Any], Any], ufunc: np.ufunc, x: Any, y: Any) -> Any:
    x, y, arrays = _checked(process_id, x, y)
    if arrays and numeric_operands(x, y):
        return on_data(_compared(ufunc), x, y, operator=True)
    if arrays:
        with np.errstate(all="ignore"):
            return as_bool_array(op(x, y), null_mask(x, y))
    if x is None or y is None:
        return None
    if not (is_number(x) and is_number(y)):
        return False
    return bool(op(x, y))


@process("gt")
def gt(x: Any, y: Any) -> Any:
    return _order("gt", operator.gt, np.greater, x, y)


@process("gte")
def gte(x: Any, y: Any) -> Any:
    return _order("gte", operator.ge, np.greater_equal, x, y)


@process("lt")
def lt(x: Any, y: Any) -> Any:
    return _order("lt", operator.lt, np.less, x, y)


@process("lte")
def lte(x: Any, y: Any) -> Any:
    return _order("lte", operator.le, np.less_equal, x, y)


# --- logical operators ------------------------------------------------------------------------


def _operand(process_id: str, name: str, value: Any) -> Any:
    """A boolean operand: arrays as they are, scalars as 1.0/0.0/NaN (non-zero is true)."""
    reject_labeled(process_id, name, value)
    if value is None:
        return np.nan
    if is_array(value):
        return value
    if isinstance(value, bool | np.bool_) or is_number(value):
        return float(bool(value)) if not np.isnan(value) else np.nan
    raise ValueError(f"{name} must be a boolean, got {value!r}")


def _truth(value: Any) -> tuple[Any, bool]:
    """An operand as 1.0/0.0/NaN (a float or a float32 array) and whether it may hold null.

    Booleans the boolean processes made are used as they are; other arrays cost a pass.
    """
    if not isinstance(value, np.ndarray):  # a number, or the value of a 0-d cube
        number = np.nan if np.isnan(value) else float(bool(value))
        return number, bool(np.isnan(number))
    nulls = boolean_nulls(value)
    if nulls is not None:
        return value, nulls
    if value.dtype.kind == "b":
        return value.astype(BOOL_DTYPE), False
    if value.dtype.kind not in "iuf":
        value = value.astype(BOOL_DTYPE)
    truth = np.asarray(np.sign(value, dtype=BOOL_DTYPE))  # cast first: float32 decides what is 0
    np.abs(truth, out=truth)
    return truth, value.dtype.kind == "f" and has_nan(truth)


def _to_bool(value: Any) -> Any:
    """Scalar results as Python ``bool``/``None``; arrays stay float32 1/0/NaN."""
    if isinstance(value, xr.DataArray) or (isinstance(value, np.ndarray) and value.ndim > 0):
        return value
    value = to_python(value)
    return None if np.isnan(value) else bool(value)


def _logic(
    process_id: str, kernel: Callable[[Any, Any], np.ndarray], x: Any, y: Any, *, operator: bool
) -> Any:
    """``operator``: the metadata of cubes follow xarray's operators, not its numpy functions
    (see ``values.on_data``), as the earlier implementation of that process did."""
    a, b = _operand(process_id, "x", x), _operand(process_id, "y", y)
    if isinstance(a, xr.DataArray) or isinstance(b, xr.DataArray):
        return on_data(kernel, a, b, operator=operator)
    with np.errstate(all="ignore"):
        return _to_bool(kernel(a, b))


# On 1/0/NaN operands, without branches (np.where is several times slower than these ufuncs):
# ``np.minimum`` is the answer unless a NaN hides a decisive false (and: 0) or true (or: 1);
# ``np.fmin``/``np.fmax`` ignore NaN, so they find that decisive value, which then wins.
# Without null the first ufunc alone is the answer. Each writes into arrays made here only.


def _shared_nulls(a: Any, b: Any) -> object | None:
    """The NaN pattern of two same-shaped booleans whose nulls sit in the same places: there
    both are null, so the result is null, and elsewhere ``np.minimum``/``np.maximum`` of 1/0
    is the answer with no further pass."""
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)) or a.shape != b.shape:
        return None
    pattern = boolean_pattern(a)
    return pattern if pattern is not None and pattern is boolean_pattern(b) else None


def _and(x: Any, y: Any) -> np.ndarray:
    (a, a_nulls), (b, b_nulls) = _truth(x), _truth(y)
    result = np.minimum(a, b, out=_new_boolean(a, b))
    if not (a_nulls or b_nulls):
        return remember_boolean(result, nulls=False)
    shared = _shared_nulls(a, b)
    if shared is not None:
        return remember_boolean(result, nulls=True, pattern=shared)
    decisive_false = np.fmin(a, b, out=_new_boolean(a, b))
    np.subtract(1, decisive_false, out=decisive_false)
    np.divide(0, decisive_false, out=decisive_false)  # 0 where either is 0, else NaN
    return remember_boolean(np.fmin(result, decisive_false, out=result), nulls=True)


def _or(x: Any, y: Any) -> np.ndarray:
    (a, a_nulls), (b, b_nulls) = _truth(x), _truth(y)
    result = np.maximum(a, b, out=_new_boolean(a, b))
    if not (a_nulls or b_nulls):
        return remember_boolean(result, nulls=False)
    shared = _shared_nulls(a, b)
    if shared is not None:
        return remember_boolean(result, nulls=True, pattern=shared)
    decisive_true = np.fmax(a, b, out=_new_boolean(a, b))
    np.divide(decisive_true, decisive_true, out=decisive_true)  # 1 where either is 1, else NaN
    return remember_boolean(np.fmax(result, decisive_true, out=result), nulls=True)


def _xor(x: Any, y: Any) -> np.ndarray:
    (a, a_nulls), (b, b_nulls) = _truth(x), _truth(y)
    result = np.subtract(a, b, out=_new_boolean(a, b))
    return remember_boolean(np.abs(result, out=result), nulls=a_nulls or b_nulls)


def _negated(x: Any) -> np.ndarray:
    a, nulls = _truth(x)
    result = np.subtract(1, a, out=_new_boolean(a, a))
    return remember_boolean(result, nulls=nulls)


@process("and")
def and_(x: Any, y: Any) -> Any:
    return _logic("and", _and, x, y, operator=False)


@process("or")
def or_(x: Any, y: Any) -> Any:
    return _logic("or", _or, x, y, operator=False)


@process("xor")
def xor(x: Any, y: Any) -> Any:
    return _logic("xor", _xor, x, y, operator=True)


@process("not")
def not_(x: Any) -> Any:
    value = _operand("not", "x", x)
    if isinstance(value, xr.DataArray):
        return on_data(_negated, value, operator=True)
    with np.errstate(all="ignore"):
        return _to_bool(_negated(value))


# --- value checks -----------------------------------------------------------------------------


@process("is_nan")
def is_nan(x: Any) -> Any:
    """On arrays NaN is no-data, so ``is_nan`` is true for no-data pixels of a cube."""
    reject_labeled("is_nan", "x", x)
    if is_array(x):
        return as_bool_array(np.isnan(x), None)
    return isinstance(x, float | np.floating) and bool(np.isnan(x))


@process("is_nodata")
def is_nodata(x: Any) -> Any:
    """``null``; on arrays NaN (the cube model's no-data value)."""
    reject_labeled("is_nodata", "x", x)
    if is_array(x):
        return as_bool_array(np.isnan(x), None)
    return x is None


@process("is_valid")
def is_valid(x: Any) -> Any:
    reject_labeled("is_valid", "x", x)
    if is_array(x):
        return as_bool_array(np.isfinite(x), None)
    if x is None:
        return False
    if is_number(x):
        return bool(np.isfinite(x))
    return True


@process("is_infinite")
def is_infinite(x: Any) -> Any:
    reject_labeled("is_infinite", "x", x)
    if is_array(x):
        return as_bool_array(np.isinf(x), None)
    return is_number(x) and bool(np.isinf(x))


# --- between and if ---------------------------------------------------------------------------


@process("between")
def between(x: Any, min: Any, max: Any, exclude_max: Any = False) -> Any:
    """``min <= x <= max`` (``< max`` with ``exclude_max``); swapped bounds are always false."""
    reject_labeled("between", "x", x)
    if is_array(x):
        with np.errstate(all="ignore"):
            upper = x < max if exclude_max else x <= max
            inside = (x >= min) & upper & (min <= max)
        return as_bool_array(inside, null_mask(x))
    if x is None:
        return None
    if not is_number(x) or not (is_number(min) and is_number(max)) or min > max:
        return False
    return bool(min <= x < max) if exclude_max else bool(min <= x <= max)


@process("if")
def if_(value: Any, accept: Any, reject: Any = None) -> Any:
    """``accept`` where ``value`` is true, else ``reject`` (``null`` counts as false)."""
    reject_labeled("if", "value", value)
    if is_array(value):
        chosen = value == 1
        accept_value = np.nan if accept is None else accept
        reject_value = np.nan if reject is None else reject
        return where(chosen, accept_value, reject_value)
    return accept if value is True else reject


# --- all and any ------------------------------------------------------------------------------


def _truth_list(process_id: str, data: Any, ignore_nodata: bool, decisive: bool) -> Any:
    values = list(data)
    if not ignore_nodata and None in values and decisive not in values:
        return None
    return decisive if decisive in [v for v in values if v is not None] else not decisive


def _truth_cube(data: LabeledArray, ignore_nodata: bool, decisive: bool) -> Any:
    cube, dim = data.cube, data.dim
    truth = cube.astype(np.float32)
    target = 1.0 if decisive else 0.0
    found = (truth == target).any(dim=dim)
    missing = truth.isnull().any(dim=dim)
    result = found.astype(np.float32) if decisive else 1 - found.astype(np.float32)
    if not ignore_nodata:
        result = result.where(found | ~missing)
    return result


@process("all")
def all_(data: Any, ignore_nodata: Any = True) -> Any:
    """True unless a value is false; with ``ignore_nodata: false``, null if a value is null
    and none is false."""
    if isinstance(data, list) and any(is_array(v) for v in data):
        data = stack_list(data)
    if isinstance(data, LabeledArray):
        return _truth_cube(data, ignore_nodata, False)
    return _truth_list("all", data, ignore_nodata, False)


@process("any")
def any_(data: Any, ignore_nodata: Any = True) -> Any:
    """False unless a value is true; with ``ignore_nodata: false``, null if a value is null
    and none is true."""
    if isinstance(data, list) and any(is_array(v) for v in data):
        data = stack_list(data)
    if isinstance(data, LabeledArray):
        return _truth_cube(data, ignore_nodata, True)
    return _truth_list("any", data, ignore_nodata, True)
