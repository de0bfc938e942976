"""Neighbourhood processes over ``x``/``y``: ``apply_kernel`` and ``apply_neighborhood``.

Both need pixels beyond a tile's edge, so they declare a halo: half the kernel size, or the
neighbourhood's overlap (with tiles aligned to the neighbourhood size).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr
from scipy import ndimage

from openeo_airflow.core.errors import ProcessParameterInvalid
from openeo_airflow.cube import cube_resolution

from .exceptions import process_error
from .registry import process
from .space import NOT_LITERAL, Global, Halo, Space
from .values import as_cube, canonical_order

BORDERS = {"replicate": "nearest", "reflect": "reflect", "reflect_pixel": "mirror", "wrap": "wrap"}


def _kernel_space(arguments: Mapping[str, Any]) -> Space:
    kernel = arguments.get("kernel", NOT_LITERAL)
    if kernel is NOT_LITERAL or not isinstance(kernel, list) or not kernel:
        return Global()
    border = arguments.get("border", 0)
    if border == "wrap":  # wraps around the whole extent, not a tile
        return Global()
    rows, cols = len(kernel), max(len(r) for r in kernel if isinstance(r, list)) if kernel else 0
    return Halo(max(rows, cols) // 2)


@process("apply_kernel", space=_kernel_space)
def apply_kernel(
    data: Any, kernel: Any, factor: Any = 1, border: Any = 0, replace_invalid: Any = 0
) -> Any:
    """A 2D convolution over ``x``/``y`` of every band and date, times ``factor``.

    Values outside the cube come from ``border`` (a number, or ``replicate``, ``reflect``,
    ``reflect_pixel``, ``wrap``); NaN and infinite values count as ``replace_invalid``.
    """
    cube = as_cube("apply_kernel", data)
    weights = np.asarray(kernel, dtype=float)
    if weights.ndim != 2 or weights.shape[0] % 2 == 0 or weights.shape[1] % 2 == 0:
        raise process_error("apply_kernel", "KernelDimensionsUneven", f"Shape {weights.shape}.")
    for dim in ("x", "y"):
        if dim not in cube.dims:
            raise ProcessParameterInvalid(
                process="apply_kernel", parameter="data", reason=f"dimension '{dim}' is missing"
            )
    if isinstance(border, str):
        if border not in BORDERS:
            raise ProcessParameterInvalid(
                process="apply_kernel", parameter="border", reason=f"unknown border {border!r}"
            )
        mode, cval = BORDERS[border], 0.0
    else:
        mode, cval = "constant", float(border)
    ordered = cube.transpose(..., "y", "x")
    values = np.asarray(ordered.values, dtype=np.float64)
    values = np.where(np.isfinite(values), values, float(replace_invalid))
    footprint = weights.reshape((1,) * (values.ndim - 2) + weights.shape)
    result = ndimage.correlate(values, footprint, mode=mode, cval=cval) * float(factor)
    out_dtype = cube.dtype if cube.dtype.kind == "f" else np.float64
    return canonical_order(ordered.copy(data=result.astype(out_dtype)).transpose(*cube.dims))


# --- apply_neighborhood ---------------------------------------------------------------------------


def _sizes(process_id: str, value: Any, parameter: str) -> dict[str, int | None]:
    """``[{dimension, value, unit}]`` as ``{dimension: pixels}`` (``None``: the whole dimension)."""
    sizes: dict[str, int | None] = {}
    for item in value or []:
        if not isinstance(item, dict) or "dimension" not in item:
            raise ProcessParameterInvalid(
                process=process_id, parameter=parameter, reason=f"invalid entry {item!r}"
            )
        unit = item.get("unit") or "px"
        amount = item.get("value")
        if amount is not None and unit != "px":
            raise ProcessParameterInvalid(
                process=process_id,
                parameter=parameter,
                reason="only pixel ('px') sizes are supported",
            )
        sizes[str(item["dimension"])] = None if amount is None else int(amount)
    return sizes


def _neighborhood_space(arguments: Mapping[str, Any]) -> Space:
    size, overlap = arguments.get("size", NOT_LITERAL), arguments.get("overlap")
    if size is NOT_LITERAL or overlap is NOT_LITERAL:
        return Global()
    try:
        sizes = _sizes("apply_neighborhood", size, "size")
        overlaps = _sizes("apply_neighborhood", overlap, "overlap")
    except ProcessParameterInvalid:
        return Global()
    if any(sizes.get(d) is None for d in ("x", "y")):
        return Global()
    halo = max(overlaps.get("x") or 0, overlaps.get("y") or 0)
    align = max(int(sizes["x"] or 1), int(sizes["y"] or 1))
    return Halo(halo, align) if halo else Space("halo", halo=0, align=align)


def _windows(length: int, size: int | None, overlap: int, first: int) -> list[tuple[int, ...]]:
    """``(read start, read stop, keep start, keep stop)`` of each chunk along one dimension.

    Chunks start where the absolute index (``first`` is the index of element 0) is a multiple
    of ``size``, so a cube cut into tiles aligned to ``size`` is chunked the same way.
    """
    if not size:
        return [(0, length, 0, length)]
    out: list[tuple[int, ...]] = []
    for start in range(-(first % size), length, size):
        keep_start, keep_stop = max(start, 0), min(start + size, length)
        read = (max(keep_start - overlap, 0), min(keep_stop + overlap, length))
        out.append((*read, keep_start, keep_stop))
    return out


def _first_index(cube: xr.DataArray, dim: str) -> int:
    """The index of the cube's first pixel along ``x``/``y`` in its CRS's grid (0 elsewhere)."""
    if dim not in ("x", "y") or "spatial_ref" not in cube.coords or not cube.sizes[dim]:
        return 0
    xres, yres = cube_resolution(cube)
    if dim == "x":
        return round((float(cube.x[0]) - xres / 2) / xres)
    return -round((float(cube.y[0]) + yres / 2) / yres)


@process("apply_neighborhood", space=_neighborhood_space)
def apply_neighborhood(
    data: Any, process: Any, size: Any, overlap: Any = None, context: Any = None
) -> Any:
    """Calls ``process`` once per neighbourhood (a chunk of ``size`` plus ``overlap`` on each
    side) with ``data`` = that chunk as a cube; the overlap is cut from its result."""
    cube = as_cube("apply_neighborhood", data)
    if not callable(process):
        raise ProcessParameterInvalid(
            process="apply_neighborhood", parameter="process", reason="not a process graph"
        )
    sizes = _sizes("apply_neighborhood", size, "size")
    overlaps = _sizes("apply_neighborhood", overlap, "overlap")
    for dim in list(sizes) + list(overlaps):
        if dim not in cube.dims:
            raise process_error("apply_neighborhood", "DimensionNotAvailable", f"'{dim}'.")
    chunked = [d for d in cube.dims if sizes.get(str(d))]
    plans = {
        d: _windows(
            cube.sizes[d], sizes[str(d)], overlaps.get(str(d)) or 0, _first_index(cube, str(d))
        )
        for d in chunked
    }
    result = xr.full_like(cube, np.nan, dtype=cube.dtype if cube.dtype.kind == "f" else float)
    for window in _combinations(plans):
        read = {d: slice(w[0], w[1]) for d, w in window.items()}
        keep = {d: slice(w[2] - w[0], w[3] - w[0]) for d, w in window.items()}
        chunk = cube.isel(read)
        out = process(data=chunk, context=context)
        if not isinstance(out, xr.DataArray) or out.shape != chunk.transpose(*out.dims).shape:
            raise ProcessParameterInvalid(
                process="apply_neighborhood",
                parameter="process",
                reason="must return a cube of the neighbourhood's shape",
            )
        target = {d: slice(w[2], w[3]) for d, w in window.items()}
        result[target] = out.transpose(*cube.dims).isel(keep).values
    return result


def _combinations(plans: dict[Any, list[tuple[int, ...]]]) -> list[dict[Any, tuple[int, ...]]]:
    combos: list[dict[Any, tuple[int, ...]]] = [{}]
    for dim, windows in plans.items():
        combos = [{**c, dim: w} for c in combos for w in windows]
    return combos
