"""Data cube processes: loading/saving hooks, filters, masking, callbacks over cubes, dimensions.

Cubes follow ``openeo_airflow.cube``: dimensions ordered ``t, bands, y, x``, NaN no-data.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from pyproj import CRS, Transformer

from openeo_airflow.core.errors import Internal, ProcessParameterInvalid
from openeo_airflow.cube import cube_crs

from .bands import band_labels, match_bands
from .exceptions import process_error
from .registry import process
from .space import along_dimension
from .values import (
    LabeledArray,
    as_cube,
    boolean_nulls,
    broadcast_value,
    canonical_order,
    dimension_of,
    label_position,
    label_to_json,
    temporal_dimension,
    to_datetime64,
)

INSPECT_LOG = logging.getLogger("openeo_airflow.processes.inspect")


# --- hooks -----------------------------------------------------------------------------------


@process("load_collection")
def load_collection(
    id: Any,
    spatial_extent: Any,
    temporal_extent: Any,
    bands: Any = None,
    properties: Any = None,
) -> Any:
    """Loading is the engine's job: it passes a ``load_collection`` hook to ``evaluate``."""
    raise Internal(f"No data loader is configured to load collection '{id}'.")


@process("inspect")
def inspect(data: Any, message: Any = "", code: Any = "User", level: Any = "info") -> Any:
    """Logs ``message`` and a summary of ``data`` (a cube's dimensions, not its values) at
    ``level`` under the logger ``openeo_airflow.processes.inspect``; returns ``data``."""
    if isinstance(data, xr.DataArray):
        summary = ", ".join(f"{d}={n}" for d, n in data.sizes.items())
        detail = f"data cube ({summary}), {data.dtype}"
    elif isinstance(data, LabeledArray):
        detail = f"array along '{data.dim}' of {data.cube.sizes[data.dim]} values per pixel"
    else:
        text = repr(data)
        detail = text if len(text) <= 500 else text[:497] + "..."
    levels = {"error": logging.ERROR, "warning": logging.WARNING, "debug": logging.DEBUG}
    INSPECT_LOG.log(levels.get(str(level), logging.INFO), "[%s] %s %s", code, message, detail)
    return data


@process("save_result")
def save_result(data: Any, format: Any, options: Any = None) -> Any:
    """Without an engine hook, the data itself (the caller encodes it)."""
    return data


# --- callbacks over cubes --------------------------------------------------------------------


@process("reduce_dimension", space=along_dimension())
def reduce_dimension(data: Any, reducer: Any, dimension: Any, context: Any = None) -> Any:
    """Calls ``reducer`` once, with ``data`` = the whole cube seen along ``dimension``."""
    cube = as_cube("reduce_dimension", data)
    dim = dimension_of("reduce_dimension", cube, dimension)
    if not callable(reducer):
        raise ProcessParameterInvalid(
            process="reduce_dimension", parameter="reducer", reason="not a process graph"
        )
    result = reducer(data=LabeledArray(cube, dim), context=context)
    if isinstance(result, LabeledArray) or (
        isinstance(result, xr.DataArray) and dim in result.dims
    ):
        raise ProcessParameterInvalid(
            process="reduce_dimension",
            parameter="reducer",
            reason=f"the reducer must compute a single value per pixel, but returned an array"
            f" along '{dim}'",
        )
    if not isinstance(result, xr.DataArray):
        result = broadcast_value(result, cube.isel({dim: 0}, drop=True))
    return canonical_order(result)


@process("apply")
def apply(data: Any, process: Any, context: Any = None) -> Any:
    """Calls ``process`` once with ``x`` = the whole cube (elementwise processes vectorise)."""
    if not callable(process):
        raise ProcessParameterInvalid(
            process="apply", parameter="process", reason="not a process graph"
        )
    result = process(x=data, context=context)
    if isinstance(data, xr.DataArray) and not isinstance(result, xr.DataArray):
        result = broadcast_value(result, data)
    return canonical_order(result)


# --- filters ---------------------------------------------------------------------------------


def _bbox_in_crs(extent: dict[str, Any], target: CRS) -> tuple[float, float, float, float]:
    source = CRS.from_user_input(extent.get("crs") or 4326)
    west, south = float(extent["west"]), float(extent["south"])
    east, north = float(extent["east"]), float(extent["north"])
    if source == target:
        return west, south, east, north
    transformer = Transformer.from_crs(source, target, always_xy=True)
    left, bottom, right, top = transformer.transform_bounds(
        west, south, east, north, densify_pts=21
    )
    return left, bottom, right, top


@process("filter_bbox")
def filter_bbox(data: Any, extent: Any) -> Any:
    """Keep pixels whose centre lies in the bounding box (edges included).

    A box in another CRS (default EPSG:4326) is transformed to the cube's CRS first; the
    selection is the transformed box's envelope (densified edges), so a little more than the
    box is kept when the CRSs are rotated against each other.
    """
    cube = as_cube("filter_bbox", data)
    keys = ("west", "south", "east", "north")
    if not isinstance(extent, dict) or any(extent.get(k) is None for k in keys):
        raise ProcessParameterInvalid(
            process="filter_bbox", parameter="extent", reason="needs west, south, east, north"
        )
    for dim in ("x", "y"):
        dimension_of("filter_bbox", cube, dim)
    try:
        left, bottom, right, top = _bbox_in_crs(extent, cube_crs(cube))
    except Exception as exc:
        raise ProcessParameterInvalid(
            process="filter_bbox", parameter="extent", reason=f"cannot transform: {exc}"
        ) from exc
    x, y = cube.x.values, cube.y.values
    keep_x = np.flatnonzero((x >= left) & (x <= right))
    keep_y = np.flatnonzero((y >= bottom) & (y <= top))
    return cube.isel(x=keep_x, y=keep_y)


def _instant(value: Any, parameter: str) -> np.datetime64 | None:
    if value is None:
        return None
    try:
        return to_datetime64(value)
    except (TypeError, ValueError) as exc:
        raise ProcessParameterInvalid(
            process="filter_temporal", parameter=parameter, reason=f"{value!r} is not a date"
        ) from exc


@process("filter_temporal")
def filter_temporal(data: Any, extent: Any, dimension: Any = None) -> Any:
    """Keep labels ``start <= t < end``; ``null`` leaves that end open. Times are UTC."""
    cube = as_cube("filter_temporal", data)
    dim = temporal_dimension("filter_temporal", cube, dimension)
    if not isinstance(extent, list | tuple) or len(extent) != 2:
        raise ProcessParameterInvalid(
            process="filter_temporal", parameter="extent", reason="needs [start, end]"
        )
    start, end = _instant(extent[0], "extent"), _instant(extent[1], "extent")
    if start is not None and end is not None and end <= start:
        raise process_error("filter_temporal", "TemporalExtentEmpty", f"{extent!r}.")
    labels = cube.coords[dim].values
    keep = np.ones(labels.shape, dtype=bool)
    if start is not None:
        keep &= labels >= start
    if end is not None:
        keep &= labels < end
    return cube.isel({dim: np.flatnonzero(keep)})


@process("filter_bands")
def filter_bands(data: Any, bands: Any = None) -> Any:
    """Bands by label or common name, in the requested order (several per common name)."""
    cube = as_cube("filter_bands", data)
    if not bands:
        raise process_error("filter_bands", "BandFilterParameterMissing")
    if "bands" not in cube.dims:
        raise process_error("filter_bands", "DimensionMissing")
    selected: list[str] = []
    for name in bands:
        matches = match_bands(cube, str(name))
        if not matches:
            raise ProcessParameterInvalid(
                process="filter_bands",
                parameter="bands",
                reason=f"band '{name}' does not exist; valid bands: {', '.join(band_labels(cube))}",
            )
        selected += [m for m in matches if m not in selected]
    return cube.sel(bands=selected)


# --- mask ------------------------------------------------------------------------------------


def _align_mask(cube: xr.DataArray, mask: xr.DataArray) -> xr.DataArray:
    one_band = "bands" in mask.dims and mask.sizes["bands"] == 1
    if one_band and ("bands" not in cube.dims or band_labels(mask) != band_labels(cube)):
        mask = mask.isel(bands=0, drop=True)
    for dim in mask.dims:
        if dim not in cube.dims:
            raise ProcessParameterInvalid(
                process="mask", parameter="mask", reason=f"dimension '{dim}' is not in data"
            )
    for dim in ("x", "y"):
        if dim in mask.dims and not np.array_equal(mask[dim].values, cube[dim].values):
            mask = mask.reindex({dim: cube[dim].values}, method="nearest")
    for dim in mask.dims:
        if dim in ("x", "y"):
            continue
        wanted = pd.Index(cube.indexes[dim])
        if not pd.Index(mask.indexes[dim]).equals(wanted):
            if not wanted.isin(mask.indexes[dim]).all():
                raise ProcessParameterInvalid(
                    process="mask", parameter="mask", reason=f"labels of '{dim}' differ from data"
                )
            mask = mask.sel({dim: wanted})
    return mask


@process("mask")
def mask(data: Any, mask: Any, replacement: Any = None) -> Any:
    """Replace ``data`` where ``mask`` is true or a non-zero number (default: no-data, NaN).

    A no-data (NaN) mask pixel is neither true nor a number, so it does not mask. The mask may
    lack dimensions of ``data`` (it then applies to every label of them, e.g. a mask without
    ``bands`` masks all bands; a one-band mask counts as band-less). Its x/y grid is aligned
    to ``data`` by nearest neighbour when it differs; other dimensions need the same labels.
    """
    cube = as_cube("mask", data)
    aligned = _align_mask(cube, as_cube("mask", mask, "mask"))
    if aligned.dtype.kind == "b":
        keep = ~aligned
    elif boolean_nulls(aligned) is not None:
        keep = aligned != 1  # a boolean the processes made (1/0/NaN): one pass
    else:
        keep = (aligned == 0) | np.isnan(aligned)
    fill = np.nan if replacement is None else replacement
    return canonical_order(cube.where(keep, fill))


# --- dimensions and labels -------------------------------------------------------------------


def _label_value(dim: str, cube: xr.DataArray, label: Any) -> Any:
    index = cube.indexes.get(dim)
    if isinstance(index, pd.DatetimeIndex) or dim == "t":
        return to_datetime64(label)
    return label


@process("rename_labels", space=along_dimension())
def rename_labels(data: Any, dimension: Any, target: Any, source: Any = None) -> Any:
    """Rename labels of one dimension; without ``source`` the labels must be 0, 1, 2..."""
    cube = as_cube("rename_labels", data)
    dim = dimension_of("rename_labels", cube, dimension)
    labels = list(cube.indexes[dim])
    if not source:
        if labels != list(range(len(labels))):
            raise process_error("rename_labels", "LabelsNotEnumerated")
        source = labels[: len(target)]
    if len(source) != len(target):
        raise process_error("rename_labels", "LabelMismatch")
    new_labels = list(labels)
    index = pd.Index(labels)
    for old, new in zip(source, target, strict=True):
        position = label_position(index, old)
        if position is None:
            raise process_error("rename_labels", "LabelNotAvailable", f"Label: {old!r}.")
        new_labels[position] = _label_value(dim, cube, new)
    if len(set(map(str, new_labels))) != len(new_labels):
        raise process_error("rename_labels", "LabelExists", f"Labels: {target!r}.")
    return cube.assign_coords({dim: new_labels})


@process("add_dimension")
def add_dimension(data: Any, name: Any, label: Any, type: Any = "other") -> Any:
    cube = as_cube("add_dimension", data)
    if name in cube.dims:
        raise process_error("add_dimension", "DimensionExists", f"Dimension: '{name}'.")
    value = to_datetime64(label) if type == "temporal" else label
    expanded = cube.expand_dims({str(name): [value]})
    expanded.coords[str(name)].attrs["type"] = str(type)
    return canonical_order(expanded)


@process("drop_dimension")
def drop_dimension(data: Any, name: Any) -> Any:
    cube = as_cube("drop_dimension", data)
    dim = dimension_of("drop_dimension", cube, name)
    if cube.sizes[dim] != 1:
        detail = f"'{dim}' has {cube.sizes[dim]} labels."
        raise process_error("drop_dimension", "DimensionLabelCountMismatch", detail)
    return cube.isel({dim: 0}, drop=True)


@process("dimension_labels", space=along_dimension())
def dimension_labels(data: Any, dimension: Any) -> list[Any]:
    """Labels as JSON values; temporal labels as RFC 3339 strings in UTC."""
    cube = as_cube("dimension_labels", data)
    dim = dimension_of("dimension_labels", cube, dimension)
    if dim not in cube.coords:
        return list(range(cube.sizes[dim]))
    return [label_to_json(v) for v in cube.coords[dim].values]
