"""Elementwise arithmetic: numbers and data cubes alike, ``null``/NaN in -> ``null``/NaN out.

Computations follow IEEE 754 (``divide(1, 0)`` is +infinity, ``sqrt(-1)`` is NaN) and never
warn. Integer scalars stay integers where the result is one (``add``, ``subtract``,
``multiply``, ``absolute``, ``power`` with a non-negative integer exponent).
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from .exceptions import process_error
from .registry import process
from .values import elementwise, is_number


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
