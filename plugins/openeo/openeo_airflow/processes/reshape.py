"""Reshaping cubes: ``flatten_dimensions``, ``unflatten_dimension``, ``aggregate_spatial_window``.

``flatten_dimensions`` puts the new dimension where the first of the flattened dimensions was;
its labels are the labels of the flattened dimensions as text (dates as RFC 3339), joined with
the separator, the first dimension varying slowest. ``unflatten_dimension`` is its inverse:
the new dimensions' labels are the label parts in order of first appearance, and a
combination of parts that no label has is no-data.

``aggregate_spatial_window`` cuts ``x``/``y`` into windows of ``size`` pixels starting at the
corner ``align`` names, pads (no-data) or trims the other side, and reduces each window; the
labels are the windows' centres and the resolution grows by ``size``. It declares itself
global: its windows start at the cube's corner, not at a tile's.

The installed spec package lacks ``flatten_dimensions`` and ``unflatten_dimension`` (openEO
2.0 proposals): their specs are written here, in our words.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from openeo_airflow.core.errors import OpenEOError, ProcessParameterInvalid
from openeo_airflow.cube import cube_crs, cube_resolution, spatial_ref

from .exceptions import process_error
from .registry import process
from .space import LOCAL, NOT_LITERAL, SPATIAL_DIMS, Global, Space
from .values import (
    LabeledArray,
    as_cube,
    broadcast_value,
    callback,
    check_reduced,
    label_to_json,
    one_of,
    raster_cube,
)

_CUBE = {"type": "object", "subtype": "datacube"}
_SEPARATOR = {
    "name": "label_separator",
    "description": "The text between the parts of a combined label.",
    "schema": {"type": "string", "minLength": 1},
    "default": "~",
    "optional": True,
}
_EXCEPTIONS = {
    "DimensionNotAvailable": {"message": "The cube has no dimension of that name."},
    "TargetDimensionExists": {"message": "The cube already has a dimension of that name."},
}


def _exception(process_id: str, name: str, detail: str) -> OpenEOError:
    """The spec exception ``name`` with our message (``process_error`` reads the installed
    specs, which lack these two processes)."""
    kind = type(process_error(process_id, name))
    return kind(f"{name}: {_EXCEPTIONS[name]['message']} {detail}")


def _dimension(process_id: str, cube: xr.DataArray, name: Any) -> str:
    if name not in cube.dims:
        detail = f"'{name}' is not one of: {', '.join(map(str, cube.dims))}."
        raise _exception(process_id, "DimensionNotAvailable", detail)
    return str(name)


FLATTEN_SPEC: dict[str, Any] = {
    "id": "flatten_dimensions",
    "summary": "Combine dimensions into one",
    "description": "Replaces the given dimensions by one dimension of type `other` whose "
    "labels join their labels (as text) with `label_separator`, the first dimension varying "
    "slowest. (openEO 2.0 proposal; this spec is ours, the spec package we load lacks it.)",
    "categories": ["cubes", "reorganize"],
    "experimental": True,
    "parameters": [
        {"name": "data", "description": "A data cube.", "schema": _CUBE},
        {
            "name": "dimensions",
            "description": "The dimensions to combine, slowest-varying first.",
            "schema": {"type": "array", "uniqueItems": True, "items": {"type": "string"}},
        },
        {
            "name": "target_dimension",
            "description": "The name of the combined dimension; must not exist yet.",
            "schema": {"type": "string"},
        },
        _SEPARATOR,
    ],
    "returns": {"description": "The cube with the dimensions combined.", "schema": _CUBE},
    "exceptions": _EXCEPTIONS,
}

UNFLATTEN_SPEC: dict[str, Any] = {
    "id": "unflatten_dimension",
    "summary": "Split a dimension into several",
    "description": "Replaces a dimension by new dimensions of type `other`, splitting each "
    "label at `label_separator` into one part per new dimension. (openEO 2.0 proposal; this "
    "spec is ours, the spec package we load lacks it.)",
    "categories": ["cubes", "reorganize"],
    "experimental": True,
    "parameters": [
        {"name": "data", "description": "A data cube.", "schema": _CUBE},
        {
            "name": "dimension",
            "description": "The dimension to split.",
            "schema": {"type": "string"},
        },
        {
            "name": "target_dimensions",
            "description": "The names of the new dimensions, in the order of the label parts; "
            "none may exist yet.",
            "schema": {
                "type": "array",
                "uniqueItems": True,
                "minItems": 2,
                "items": {"type": "string"},
            },
        },
        _SEPARATOR,
    ],
    "returns": {"description": "The cube with the dimension split.", "schema": _CUBE},
    "exceptions": _EXCEPTIONS,
}


def _touches_space(*parameters: str) -> Any:
    """Local unless a named parameter (a name or a list of names) involves ``x`` or ``y``."""

    def rule(arguments: Mapping[str, Any]) -> Space:
        for parameter in parameters:
            value = arguments.get(parameter, NOT_LITERAL)
            names = value if isinstance(value, list) else [value]
            if any(n is NOT_LITERAL or n in SPATIAL_DIMS for n in names):
                return Global()
        return LOCAL

    return rule


def _label_texts(cube: xr.DataArray, dim: str) -> list[str]:
    if dim not in cube.coords:
        return [str(i) for i in range(cube.sizes[dim])]
    return [str(label_to_json(v)) for v in cube.coords[dim].values]


def _separator(process_id: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ProcessParameterInvalid(
            process=process_id, parameter="label_separator", reason="expected a non-empty text"
        )
    return value


def _names(process_id: str, parameter: str, value: Any, minimum: int) -> list[str]:
    if (
        not isinstance(value, list)
        or len(value) < minimum
        or not all(isinstance(v, str) for v in value)
        or len(set(value)) != len(value)
    ):
        raise ProcessParameterInvalid(
            process=process_id,
            parameter=parameter,
            reason=f"expected at least {minimum} distinct dimension names, got {value!r}",
        )
    return list(value)


def _kept_coords(cube: xr.DataArray, removed: list[str]) -> dict[str, Any]:
    return {
        str(name): coord
        for name, coord in cube.coords.items()
        if not set(coord.dims) & set(removed) and name not in removed
    }


@process("flatten_dimensions", space=_touches_space("dimensions"), spec=FLATTEN_SPEC)
def flatten_dimensions(
    data: Any, dimensions: Any, target_dimension: Any, label_separator: Any = "~"
) -> Any:
    cube = as_cube("flatten_dimensions", data)
    names = _names("flatten_dimensions", "dimensions", dimensions, 1)
    for name in names:
        _dimension("flatten_dimensions", cube, name)
    if target_dimension in cube.dims:
        raise _exception("flatten_dimensions", "TargetDimensionExists", f"'{target_dimension}'.")
    separator = _separator("flatten_dimensions", label_separator)
    position = min(cube.dims.index(n) for n in names)
    others = [str(d) for d in cube.dims if d not in names]
    order = others[:position] + names + others[position:]
    shape = [cube.sizes[d] for d in others[:position]] + [-1]
    shape += [cube.sizes[d] for d in others[position:]]
    values = cube.transpose(*order).values.reshape(shape)
    parts = [_label_texts(cube, n) for n in names]
    grid = np.meshgrid(*[np.array(p, dtype=object) for p in parts], indexing="ij")
    labels = [separator.join(combo) for combo in zip(*(g.ravel() for g in grid), strict=True)]
    target = str(target_dimension)
    coords = _kept_coords(cube, names)
    coords[target] = labels
    result = xr.DataArray(
        values, dims=[*others[:position], target, *others[position:]], coords=coords
    )
    result.coords[target].attrs["type"] = "other"
    return result


@process(
    "unflatten_dimension",
    space=_touches_space("dimension", "target_dimensions"),
    spec=UNFLATTEN_SPEC,
)
def unflatten_dimension(
    data: Any, dimension: Any, target_dimensions: Any, label_separator: Any = "~"
) -> Any:
    cube = as_cube("unflatten_dimension", data)
    dim = _dimension("unflatten_dimension", cube, dimension)
    targets = _names("unflatten_dimension", "target_dimensions", target_dimensions, 2)
    for target in targets:
        if target in cube.dims:
            raise _exception("unflatten_dimension", "TargetDimensionExists", f"'{target}'.")
    separator = _separator("unflatten_dimension", label_separator)
    split = [text.split(separator) for text in _label_texts(cube, dim)]
    for text, pieces in zip(_label_texts(cube, dim), split, strict=True):
        if len(pieces) != len(targets):
            raise ProcessParameterInvalid(
                process="unflatten_dimension",
                parameter="data",
                reason=f"the label {text!r} of '{dim}' has {len(pieces)} part(s) at "
                f"label_separator {separator!r}, target_dimensions needs {len(targets)}",
            )
    codes, uniques = [], []
    for k in range(len(targets)):
        code, unique = pd.factorize(np.array([p[k] for p in split], dtype=object))
        codes.append(code)
        uniques.append([str(u) for u in unique])
    sizes = [len(u) for u in uniques]
    flat = np.ravel_multi_index(codes, sizes) if split else np.zeros(0, dtype=int)
    if len(np.unique(flat)) != flat.size:
        raise ProcessParameterInvalid(
            process="unflatten_dimension",
            parameter="data",
            reason=f"two labels of '{dim}' split into the same parts",
        )
    position = cube.dims.index(dim)
    moved = np.moveaxis(cube.values, position, -1)
    total = int(np.prod(sizes))
    if flat.size == total:
        grid = moved[..., np.argsort(flat)]
    else:
        dtype = moved.dtype if moved.dtype.kind == "f" else np.float64
        grid = np.full((*moved.shape[:-1], total), np.nan, dtype=dtype)
        grid[..., flat] = moved
    grid = np.moveaxis(
        grid.reshape(*moved.shape[:-1], *sizes),
        range(-len(sizes), 0),
        range(position, position + len(sizes)),
    )
    others = [str(d) for d in cube.dims if d != dim]
    coords = _kept_coords(cube, [dim])
    coords.update(zip(targets, uniques, strict=True))
    result = xr.DataArray(grid, dims=others[:position] + targets + others[position:], coords=coords)
    for target in targets:
        result.coords[target].attrs["type"] = "other"
    return result


# --- aggregate_spatial_window -----------------------------------------------------------------

WINDOW = "__window__"
ALIGNS = ("upper-left", "upper-right", "lower-left", "lower-right")


def _window_size(value: Any) -> tuple[int, int]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        raise ProcessParameterInvalid(
            process="aggregate_spatial_window",
            parameter="size",
            reason=f"expected two whole numbers >= 1 (x, y), got {value!r}",
        )
    return value[0], value[1]


def _fit(length: int, size: int, pad: bool, at_start: bool) -> tuple[int, int]:
    """``(before, after)``: pixels added (positive) or removed (negative) on each side."""
    rest = length % size
    if not rest:
        return 0, 0
    change = size - rest if pad else -rest
    return (change, 0) if at_start else (0, change)


def _resize(
    values: np.ndarray, coords: np.ndarray, axis: int, step: float, sides: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    before, after = sides
    if before < 0 or after < 0:
        stop = values.shape[axis] + min(after, 0)
        keep = slice(-min(before, 0), stop)
        index = [slice(None)] * values.ndim
        index[axis] = keep
        return values[tuple(index)], coords[keep]
    widths = [(0, 0)] * values.ndim
    widths[axis] = (before, after)
    padded = np.pad(values, widths, constant_values=np.nan)
    if coords.size:
        first = coords[0] - before * step
        extended = first + step * np.arange(coords.size + before + after)
    else:
        extended = np.zeros(0)
    return padded, extended


@process("aggregate_spatial_window", space=Global())
def aggregate_spatial_window(
    data: Any,
    reducer: Any,
    size: Any,
    boundary: Any = "pad",
    align: Any = "upper-left",
    context: Any = None,
) -> Any:
    cube = raster_cube("aggregate_spatial_window", data)
    reducer = callback("aggregate_spatial_window", reducer, "reducer")
    sx, sy = _window_size(size)
    if boundary not in ("pad", "trim"):
        raise ProcessParameterInvalid(
            process="aggregate_spatial_window",
            parameter="boundary",
            reason=f"expected 'pad' or 'trim', got {boundary!r}",
        )
    align = one_of("aggregate_spatial_window", "align", align, ALIGNS)
    xres, yres = cube_resolution(cube)
    others = [str(d) for d in cube.dims if d not in ("y", "x")]
    ordered = cube.transpose(*others, "y", "x")
    values = ordered.values.astype(np.float64 if ordered.dtype.kind != "f" else ordered.dtype)
    pad = boundary == "pad"
    # Aligned to a corner: the fitting happens at the opposite sides (y runs top to bottom).
    values, ys = _resize(
        values, cube.y.values, -2, -yres, _fit(cube.sizes["y"], sy, pad, align.startswith("lower"))
    )
    values, xs = _resize(
        values, cube.x.values, -1, xres, _fit(cube.sizes["x"], sx, pad, align.endswith("right"))
    )
    ny, nx = values.shape[-2] // sy, values.shape[-1] // sx
    windows = values.reshape(*values.shape[:-2], ny, sy, nx, sx)
    windows = np.moveaxis(windows, -3, -2).reshape(*values.shape[:-2], ny, nx, sy * sx)
    coords = _kept_coords(cube, ["x", "y"])
    coords["y"] = ys.reshape(ny, sy).mean(axis=1)
    coords["x"] = xs.reshape(nx, sx).mean(axis=1)
    coords["spatial_ref"] = spatial_ref(cube_crs(cube), (xres * sx, yres * sy))
    stacked = xr.DataArray(windows, dims=[*others, "y", "x", WINDOW], coords=coords)
    result = reducer(data=LabeledArray(stacked, WINDOW), context=context)
    check_reduced("aggregate_spatial_window", result, WINDOW, "window")
    if not isinstance(result, xr.DataArray):
        result = broadcast_value(result, stacked.isel({WINDOW: 0}, drop=True))
    return result.transpose(*cube.dims)
