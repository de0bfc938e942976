"""Elementwise arithmetic: numbers and data cubes alike, ``null``/NaN in -> ``null``/NaN out.

Computations follow IEEE 754 (``divide(1, 0)`` is +infinity, ``sqrt(-1)`` is NaN) and never
warn. Integer scalars stay integers where the result is one (``add``, ``subtract``,
``multiply``, ``absolute``, ``power`` with a non-negative integer exponent).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from .exceptions import process_error
from .registry import process
from .values import elementwise, is_array, is_number, reject_labeled, where


@process("absolute")
def absolute(x: Any) -> Any:
    return elementwise("absolute", np.abs, {"x": x}, int_fn=abs)


@process("add")
def add(x: Any, y: Any) -> Any:
    return elementwise("add", np.add, {"x": x, "y": y}, int_fn=operator.add)


@process("subtract")
def subtract(x: Any, y: Any) -> Any:
    return elementwise("subtract", np.subtract, {"x": x, "y": y}, int_fn=operator.sub)


@process("multiply")
def multiply(x: Any, y: Any) -> Any:
    return elementwise("multiply", np.multiply, {"x": x, "y": y}, int_fn=operator.mul)


@process("divide")
def divide(x: Any, y: Any) -> Any:
    return elementwise("divide", np.divide, {"x": x, "y": y})


def _int_power(base: int, p: int) -> int | float:
    return base**p if p >= 0 else float(np.power(np.float64(base), p))


@process("power")
def power(base: Any, p: Any) -> Any:
    return elementwise("power", np.power, {"base": base, "p": p}, int_fn=_int_power)


@process("sqrt")
def sqrt(x: Any) -> Any:
    return elementwise("sqrt", np.sqrt, {"x": x})


@process("ln")
def ln(x: Any) -> Any:
    return elementwise("ln", np.log, {"x": x})


def _log(x: Any, base: Any) -> Any:
    return np.log(x) / np.log(base)


@process("log")
def log(x: Any, base: Any) -> Any:
    return elementwise("log", _log, {"x": x, "base": base})


@process("exp")
def exp(p: Any) -> Any:
    return elementwise("exp", np.exp, {"p": p})


def _clip(x: Any, lower: Any, upper: Any) -> Any:
    return np.minimum(np.maximum(x, lower), upper)


@process("clip")
def clip(x: Any, min: Any, max: Any) -> Any:
    """``null`` in ``x`` stays ``null``; a ``null`` bound gives ``null`` (null propagation).

    ``min > max`` raises ``MinMaxSwapped`` (openEO processes 2.0).
    """
    if is_number(min) and is_number(max) and min > max:
        raise process_error("clip", "MinMaxSwapped", f"min={min}, max={max}.")
    return elementwise("clip", _clip, {"x": x, "min": min, "max": max})


def _scale(x: Any, in_min: Any, in_max: Any, out_min: Any, out_max: Any) -> Any:
    """The input range may be given upside down (``inputMin > inputMax``)."""
    clipped = _clip(x, np.minimum(in_min, in_max), np.maximum(in_min, in_max))
    return (clipped - in_min) / (in_max - in_min) * (out_max - out_min) + out_min


@process("linear_scale_range")
def linear_scale_range(
    x: Any, inputMin: Any, inputMax: Any, outputMin: Any = 0, outputMax: Any = 1
) -> Any:
    args = {"x": x, "inputMin": inputMin, "inputMax": inputMax}
    args |= {"outputMin": outputMin, "outputMax": outputMax}
    return elementwise("linear_scale_range", _scale, args)


# --- trigonometry and hyperbolic functions ----------------------------------------------------


def _unary(process_id: str, fn: Callable[[Any], Any]) -> None:
    def implementation(x: Any) -> Any:
        return elementwise(process_id, fn, {"x": x})

    implementation.__name__ = process_id
    process(process_id)(implementation)


for _id, _fn in {
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "arcsin": np.arcsin,
    "arccos": np.arccos,
    "arctan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "arsinh": np.arcsinh,
    "arcosh": np.arccosh,
    "artanh": np.arctanh,
}.items():
    _unary(_id, _fn)


@process("arctan2")
def arctan2(y: Any, x: Any) -> Any:
    return elementwise("arctan2", np.arctan2, {"y": y, "x": x})


# --- rounding ---------------------------------------------------------------------------------


def _integral(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Scalars: an ``int`` where the result is finite (``ceil(1.5)`` is 2, not 2.0)."""

    def run(x: Any) -> Any:
        result = fn(x)
        if is_array(result) or not math.isfinite(result):
            return result
        return int(result)

    return run


@process("ceil")
def ceil(x: Any) -> Any:
    return elementwise("ceil", _integral(np.ceil), {"x": x}, int_fn=int)


@process("floor")
def floor(x: Any) -> Any:
    return elementwise("floor", _integral(np.floor), {"x": x}, int_fn=int)


@process("int")
def int_(x: Any) -> Any:
    """Drops the fractional part; NaN has no integer part, so it gives ``null`` (no-data)."""
    reject_labeled("int", "x", x)
    if isinstance(x, float) and math.isnan(x):
        return None
    return elementwise("int", _integral(np.trunc), {"x": x}, int_fn=int)


@process("round")
def round_(x: Any, p: Any = 0) -> Any:
    """Round half to even at ``p`` decimals (negative ``p``: to tens, hundreds...)."""
    if not isinstance(p, int) or isinstance(p, bool):
        raise process_error("round", "ParameterInvalid", f"p={p!r} is not an integer.")

    def rounded(value: Any) -> Any:
        result = np.round(value, p)
        if p <= 0 and not is_array(result) and math.isfinite(result):
            return int(result)
        return result

    return elementwise(
        "round", rounded, {"x": x}, int_fn=lambda v: int(np.round(v, p)) if p < 0 else v
    )


@process("sgn")
def sgn(x: Any) -> Any:
    return elementwise("sgn", _integral(np.sign), {"x": x}, int_fn=lambda v: (v > 0) - (v < 0))


def _mod(x: Any, y: Any) -> Any:
    """The remainder with the sign of the divisor; an infinite divisor leaves ``x``.

    Division by zero follows the spec's first choice: +infinity for ``x > 0``, -infinity for
    ``x < 0``, NaN for ``x = 0`` (``x * inf`` gives exactly that).
    """
    remainder = np.fmod(x, y)
    wrong_sign = (remainder != 0) & (np.sign(remainder) != np.sign(y)) & np.isfinite(y)
    remainder = where(wrong_sign, remainder + y, remainder)
    return where(y == 0, x * np.inf, remainder)


@process("mod")
def mod(x: Any, y: Any) -> Any:
    return elementwise("mod", _mod, {"x": x, "y": y}, int_fn=_mod_int)


def _mod_int(x: int, y: int) -> int | float:
    return x % y if y else math.copysign(math.inf, x) if x else math.nan


# --- constants --------------------------------------------------------------------------------


@process("e")
def e() -> float:
    return math.e


@process("pi")
def pi() -> float:
    return math.pi


@process("nan")
def nan() -> float:
    return math.nan


@process("constant")
def constant(x: Any) -> Any:
    return x
