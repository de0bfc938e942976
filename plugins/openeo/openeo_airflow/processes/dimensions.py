"""Processes over whole dimensions: ``apply_dimension``, ``filter_labels``, ``rename_dimension``,
``trim_cube`` and ``create_data_cube``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from openeo_airflow.core.errors import ProcessParameterInvalid

from .exceptions import process_error
from .registry import process
from .space import LOCAL, SPATIAL_DIMS, Global, Space, along_dimension
from .values import (
    LabeledArray,
    as_cube,
    dimension_of,
    dimension_type,
    label_to_json,
    stack_list,
)


def _along(result: Any, cube: xr.DataArray, dim: str) -> xr.DataArray:
    """A callback's result as a cube along ``dim`` (a single value per pixel: length 1)."""
    if isinstance(result, list):
        result = stack_list(result) if result else LabeledArray(cube.isel({dim: []}), dim)
    if isinstance(result, LabeledArray):
        values = result.cube if result.dim == dim else result.cube.rename({result.dim: dim})
    elif isinstance(result, xr.DataArray):
        values = result if dim in result.dims else result.expand_dims(dim)
    else:
        template = cube.isel({dim: [0]}, drop=False)
        values = xr.full_like(template, np.nan if result is None else result, dtype=float)
    template = cube.isel({dim: 0}, drop=True)
    missing = [d for d in template.dims if d not in values.dims]
    if missing:
        values = values.broadcast_like(template)
    return values


@process("apply_dimension", space=along_dimension())
def apply_dimension(
    data: Any, process: Any, dimension: Any, target_dimension: Any = None, context: Any = None
) -> Any:
    """Calls ``process`` once with ``data`` = the cube seen along ``dimension``.

    Labels are kept when the dimension keeps its name and length; otherwise they become
    0, 1, 2... A ``target_dimension`` replaces the source dimension (type ``other``).
    """
    cube = as_cube("apply_dimension", data)
    dim = dimension_of("apply_dimension", cube, dimension)
    if not callable(process):
        raise ProcessParameterInvalid(
            process="apply_dimension", parameter="process", reason="not a process graph"
        )
    kind = dimension_type(cube, dim)
    values = _along(process(data=LabeledArray(cube, dim), context=context), cube, dim)
    target = str(target_dimension) if target_dimension is not None else dim
    if target == dim and values.sizes[dim] == cube.sizes[dim] and dim in cube.coords:
        values = values.assign_coords({dim: cube.coords[dim].values})
        values.coords[dim].attrs["type"] = kind
    else:
        values = values.drop_vars(dim, errors="ignore").assign_coords(
            {dim: np.arange(values.sizes[dim])}
        )
        values.coords[dim].attrs["type"] = kind if target == dim else "other"
    order = [d for d in cube.dims if d in values.dims] + [
        d for d in values.dims if d not in cube.dims
    ]
    values = values.transpose(*order)
    if target != dim:
        if target in values.dims:
            raise process_error("apply_dimension", "DimensionNotAvailable", f"'{target}' exists.")
        values = values.rename({dim: target})
    return values


@process("filter_labels", space=along_dimension())
def filter_labels(data: Any, condition: Any, dimension: Any, context: Any = None) -> Any:
    """Keeps the labels for which ``condition`` (called per label as ``value``) is true."""
    cube = as_cube("filter_labels", data)
    dim = dimension_of("filter_labels", cube, dimension)
    if not callable(condition):
        raise ProcessParameterInvalid(
            process="filter_labels", parameter="condition", reason="not a process graph"
        )
    labels = cube.coords[dim].values if dim in cube.coords else np.arange(cube.sizes[dim])
    keep = [
        i
        for i, label in enumerate(labels)
        if condition(value=label_to_json(label), context=context) is True
    ]
    return cube.isel({dim: keep})


def _rename_space(arguments: Mapping[str, Any]) -> Space:
    names = {arguments.get("source"), arguments.get("target")}
    return Global() if names & set(SPATIAL_DIMS) else LOCAL


@process("rename_dimension", space=_rename_space)
def rename_dimension(data: Any, source: Any, target: Any) -> Any:
    cube = as_cube("rename_dimension", data)
    name = dimension_of("rename_dimension", cube, source)
    if target in cube.dims:
        raise process_error("rename_dimension", "DimensionExists", f"'{target}' exists.")
    kind = dimension_type(cube, name)
    renamed = cube.rename({name: str(target)})
    if str(target) not in renamed.coords:
        renamed = renamed.assign_coords({str(target): np.arange(renamed.sizes[str(target)])})
    renamed.coords[str(target)].attrs["type"] = kind
    return renamed


@process("trim_cube", space=Global())
def trim_cube(data: Any) -> Any:
    """Drops leading and trailing labels of every dimension whose values are all no-data."""
    cube = as_cube("trim_cube", data)
    valid = cube.notnull()
    for dim in cube.dims:
        others = [d for d in cube.dims if d != dim]
        has_data = valid.any(dim=others).values if others else valid.values
        positions = np.flatnonzero(has_data)
        start, stop = (int(positions[0]), int(positions[-1]) + 1) if positions.size else (0, 0)
        cube = cube.isel({dim: slice(start, stop)})
        valid = valid.isel({dim: slice(start, stop)})
    return cube


@process("create_data_cube")
def create_data_cube() -> xr.DataArray:
    """An empty data cube without dimensions (add them with ``add_dimension``)."""
    return xr.DataArray(np.empty(()), dims=()).isel() * np.nan
