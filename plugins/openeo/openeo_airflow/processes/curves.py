"""Curve fitting: ``fit_curve`` and ``predict_curve``, for every pixel at once.

The model ``y = f(x, parameters)`` is a process graph; it is evaluated for all pixels in one
call (``x`` the labels of the dimension, ``parameters`` a labeled array per pixel, as
``array_element`` reads it), so fitting costs a few dozen vectorised evaluations, not a Python
loop per pixel. The fit is Levenberg-Marquardt least squares with a forward-difference Jacobian,
a damping factor per pixel, and a fixed iteration budget.

``x`` is the label: a number, or for temporal labels the seconds since 1970-01-01 (the unit of
the openEO documentation's seasonal examples, e.g. ``2 * pi / 31557600 * x``). The fitted
parameters replace the fitted dimension by a dimension ``parameters`` (labels 0, 1, ...); a
pixel with fewer valid values than parameters gets no-data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

from openeo_airflow.core.errors import ProcessParameterInvalid

from .registry import process
from .values import LabeledArray, as_cube, canonical_order, dimension_of, to_datetime64

PARAMETER_DIM = "parameters"
MAX_ITERATIONS = 60


def _x(labels: Any) -> np.ndarray:
    values = np.asarray(labels)
    if np.issubdtype(values.dtype, np.datetime64):
        return values.astype("datetime64[ns]").astype(np.int64) / 1e9
    if values.dtype.kind in "OU":
        return np.array([to_datetime64(v) for v in values]).astype(np.int64) / 1e9
    return values.astype(float)


def _model(
    function: Any, dim: str, x: np.ndarray, extra: dict[str, Any]
) -> Callable[[np.ndarray], np.ndarray]:
    """``f(p)`` for ``p`` of shape ``(pixels, k)``: values of shape ``(pixels, n)``."""
    xs = xr.DataArray(x, dims=dim)

    def evaluate(p: np.ndarray) -> np.ndarray:
        params = xr.DataArray(p, dims=("__pixel__", PARAMETER_DIM))
        value = function(x=xs, parameters=LabeledArray(params, PARAMETER_DIM), **extra)
        value = xr.DataArray(value) if not isinstance(value, xr.DataArray) else value
        value = value.broadcast_like(
            xr.DataArray(np.zeros((p.shape[0], x.size)), dims=("__pixel__", dim))
        )
        return np.asarray(value.transpose("__pixel__", dim).values, dtype=float)

    return evaluate


def _levenberg_marquardt(
    f: Callable[[np.ndarray], np.ndarray], y: np.ndarray, p0: np.ndarray
) -> np.ndarray:
    valid = ~np.isnan(y)
    target = np.where(valid, y, 0.0)
    p = p0.copy()
    damping = np.full(p.shape[0], 1e-3)

    def cost(params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(all="ignore"):
            residual = np.where(valid, target - f(params), 0.0)
        residual = np.where(np.isfinite(residual), residual, 1e150)
        return residual, (residual**2).sum(axis=1)

    residual, current = cost(p)
    k = p.shape[1]
    done = valid.sum(axis=1) < k  # too few values: nothing to fit
    for _ in range(MAX_ITERATIONS):
        step = 1e-6 * np.maximum(np.abs(p), 1.0)
        base = f(p)
        jacobian = np.empty((*y.shape, k))
        for j in range(k):
            moved = p.copy()
            moved[:, j] += step[:, j]
            with np.errstate(all="ignore"):
                jacobian[:, :, j] = (f(moved) - base) / step[:, j : j + 1]
        jacobian = np.where(valid[:, :, None] & np.isfinite(jacobian), jacobian, 0.0)
        normal = np.einsum("pni,pnj->pij", jacobian, jacobian)
        gradient = np.einsum("pni,pn->pi", jacobian, residual)
        diagonal = np.einsum("pii->pi", normal)
        system = normal + damping[:, None, None] * np.einsum(
            "pi,ij->pij", np.maximum(diagonal, 1e-12), np.eye(k)
        )
        try:
            delta = np.linalg.solve(system, gradient[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            delta = np.linalg.lstsq(system.reshape(-1, k), gradient.reshape(-1), rcond=None)[
                0
            ].reshape(p.shape)
        candidate = p + np.nan_to_num(delta)
        new_residual, new_cost = cost(candidate)
        better = new_cost < current
        p = np.where(better[:, None], candidate, p)
        residual = np.where(better[:, None], new_residual, residual)
        improvement = np.where(better, (current - new_cost) / np.maximum(current, 1e-300), 0.0)
        current = np.where(better, new_cost, current)
        damping = np.where(better, damping / 10, damping * 10).clip(1e-12, 1e12)
        done |= (better & (improvement < 1e-10)) | (current <= 1e-24) | (damping >= 1e10)
        if bool(done.all()):
            break
    return p


@process("fit_curve")
def fit_curve(
    data: Any, parameters: Any, function: Any, dimension: Any, ignore_nodata: Any = True
) -> Any:
    cube = as_cube("fit_curve", data)
    dim = dimension_of("fit_curve", cube, dimension)
    if not callable(function):
        raise ProcessParameterInvalid(
            process="fit_curve", parameter="function", reason="not a process graph"
        )
    guess = np.asarray(parameters, dtype=float)
    if guess.ndim != 1 or guess.size == 0:
        raise ProcessParameterInvalid(
            process="fit_curve", parameter="parameters", reason="an array of numbers"
        )
    moved = cube.transpose(..., dim)
    pixels = int(np.prod(moved.shape[:-1]))
    y = np.asarray(moved.values, dtype=float).reshape(pixels, moved.sizes[dim])
    model = _model(
        function,
        dim,
        _x(moved.coords[dim].values if dim in moved.coords else np.arange(y.shape[1])),
        {},
    )
    fitted = _levenberg_marquardt(model, y, np.tile(guess, (pixels, 1)))
    enough = (~np.isnan(y)).sum(axis=1) >= guess.size
    if not ignore_nodata:
        enough &= ~np.isnan(y).any(axis=1)
    fitted = np.where(enough[:, None], fitted, np.nan)
    others = [d for d in moved.dims if d != dim]
    coords = {k: v for k, v in moved.coords.items() if dim not in v.dims}
    result = xr.DataArray(
        fitted.reshape((*moved.shape[:-1], guess.size)),
        dims=(*others, PARAMETER_DIM),
        coords=coords,
    ).assign_coords({PARAMETER_DIM: np.arange(guess.size)})
    return canonical_order(result)


@process("predict_curve")
def predict_curve(data: Any, parameters: Any, function: Any, dimension: Any, labels: Any) -> Any:
    cube = as_cube("predict_curve", data)
    dim = dimension_of("predict_curve", cube, dimension)
    fitted = as_cube("predict_curve", parameters, "parameters")
    if PARAMETER_DIM not in fitted.dims:
        raise ProcessParameterInvalid(
            process="predict_curve",
            parameter="parameters",
            reason=f"no '{PARAMETER_DIM}' dimension (a fit_curve result)",
        )
    if not callable(function):
        raise ProcessParameterInvalid(
            process="predict_curve", parameter="function", reason="not a process graph"
        )
    temporal = dim in cube.coords and np.issubdtype(cube.coords[dim].dtype, np.datetime64)
    new_labels = np.array([to_datetime64(v) for v in labels]) if temporal else np.asarray(labels)
    params = fitted.transpose(..., PARAMETER_DIM)
    flat = np.asarray(params.values, dtype=float).reshape(-1, params.sizes[PARAMETER_DIM])
    model = _model(function, dim, _x(new_labels), {})
    with np.errstate(all="ignore"):
        values = model(flat).reshape((*params.shape[:-1], len(new_labels)))
    others = [d for d in params.dims if d != PARAMETER_DIM]
    coords = {k: v for k, v in params.coords.items() if PARAMETER_DIM not in v.dims}
    result = xr.DataArray(values, dims=(*others, dim), coords=coords).assign_coords(
        {dim: new_labels}
    )
    order = [d for d in cube.dims if d in result.dims] + [
        d for d in result.dims if d not in cube.dims
    ]
    return canonical_order(result.transpose(*order))
