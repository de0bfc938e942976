"""Result equality against the floor: max absolute difference and fraction of differing values.

Rasters are aligned by their georeferencing (same pixel size required) and compared on the
floor's grid: a floor pixel missing from the other result, or NaN on one side only, counts as
differing; ``max_abs_diff`` is taken over pixels finite on both sides. Tables (W3) are
compared value by value (polygon x date).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

TOLERANCE = 1e-5  # relative to max(1, |floor value|): float32 rounding of either side


def read_result(path: Path, kind: str) -> tuple[np.ndarray, Any]:
    if path.suffix == ".nc":
        return _read_netcdf(path, kind)
    if kind == "table":
        return _read_table(path), None
    with rasterio.open(path) as src:
        return src.read().astype(np.float64), src.transform


def _read_table(path: Path) -> np.ndarray:
    text = path.read_text()
    document = json.loads(text)
    if isinstance(document, dict) and "values" in document:
        rows = document["values"]
    elif isinstance(document, dict):  # openEO JSON of a vector cube: {date: [[v], ...]}
        dates = sorted(document)
        rows = list(zip(*[[_first(v) for v in document[d]] for d in dates], strict=True))
    else:
        rows = document
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)


def _read_netcdf(path: Path, kind: str) -> tuple[np.ndarray, Any]:
    """The first data variable: (bands/t, y, x) with its transform, or (geometry, t)."""
    import xarray as xr
    from affine import Affine

    with xr.open_dataset(path, decode_times=False) as ds:
        names = [
            n for n, v in ds.data_vars.items() if v.ndim >= 1 and n not in ("crs", "spatial_ref")
        ]
        if kind == "table":
            var = ds[next(n for n in names if any("geom" in str(d) for d in ds[n].dims))]
            geometry = next(d for d in var.dims if "geom" in str(d))
            values = var.transpose(geometry, ...).values.astype(float)
            return values.reshape(values.shape[0], -1), None
        var = ds[next(n for n in names if {"x", "y"} <= set(ds[n].dims))]
        if len(names) > 1 and all({"x", "y"} <= set(ds[n].dims) for n in names):
            var = xr.concat([ds[n] for n in names], dim="__bands__")
        var = var.transpose(..., "y", "x")
        xs, ys = var["x"].values, var["y"].values
        values = var.values.astype(float).reshape(-1, len(ys), len(xs))
        dx, dy = float(xs[1] - xs[0]), float(ys[1] - ys[0])
        if dy > 0:
            values, ys, dy = values[:, ::-1], ys[::-1], -dy
        transform = Affine(dx, 0, float(xs[0]) - dx / 2, 0, dy, float(ys[0]) - dy / 2)
        return values, transform


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) else value


def compare(floor: Path, other: Path, kind: str) -> dict[str, Any]:
    expected, t_expected = read_result(floor, kind)
    actual, t_actual = read_result(other, kind)
    note = ""
    if kind == "raster":
        actual, note = _align(actual, t_actual, expected.shape, t_expected)
    elif actual.shape != expected.shape:
        note = f"shape {actual.shape} != floor {expected.shape}"
        fixed = np.full(expected.shape, np.nan)
        rows, cols = (
            min(actual.shape[0], expected.shape[0]),
            min(actual.shape[1], expected.shape[1]),
        )
        fixed[:rows, :cols] = actual[:rows, :cols]
        actual = fixed
    both = np.isfinite(expected) & np.isfinite(actual)
    diff = np.abs(expected - actual)
    differs = np.isfinite(expected) != np.isfinite(actual)
    differs |= both & (diff > TOLERANCE * np.maximum(1.0, np.abs(np.nan_to_num(expected))))
    return {
        "max_abs_diff": float(diff[both].max()) if both.any() else None,
        "frac_diff": float(differs.mean()),
        "compare_note": note,
    }


def _align(
    actual: np.ndarray, t_actual: Any, shape: tuple[int, ...], t_expected: Any
) -> tuple[np.ndarray, str]:
    """``actual`` resampled by offset onto the floor grid (NaN where it has no pixel)."""
    note = []
    if abs(t_actual.a - t_expected.a) > 1e-9 or abs(t_actual.e - t_expected.e) > 1e-9:
        return np.full(shape, np.nan), f"pixel size {t_actual.a} != floor {t_expected.a}"
    if actual.shape[0] != shape[0]:
        note.append(f"{actual.shape[0]} bands, floor {shape[0]}")
    col = round((t_actual.c - t_expected.c) / t_expected.a)
    row = round((t_actual.f - t_expected.f) / t_expected.e)
    if (row, col) != (0, 0) or actual.shape[1:] != shape[1:]:
        note.append(f"grid offset ({row}, {col}) px, shape {actual.shape[1:]} vs {shape[1:]}")
    out = np.full(shape, np.nan)
    bands = min(actual.shape[0], shape[0])
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + actual.shape[1], shape[1]), min(col + actual.shape[2], shape[2])
    if r1 > r0 and c1 > c0:
        out[:bands, r0:r1, c0:c1] = actual[:bands, r0 - row : r1 - row, c0 - col : c1 - col]
    return out, "; ".join(note)
