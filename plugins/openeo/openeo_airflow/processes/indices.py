"""Spectral indices: ``normalized_difference`` and ``ndvi``."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from openeo_airflow.core.errors import ProcessParameterInvalid

from .bands import band_labels, match_bands
from .exceptions import process_error
from .registry import process
from .values import canonical_order, elementwise, on_data, where


def _normalized_difference(x: Any, y: Any) -> Any:
    if all(isinstance(v, xr.DataArray) and v.dtype.kind == "f" and v.ndim for v in (x, y)):
        return on_data(_normalized_difference_of_floats, x, y, operator=True)
    total = x + y
    zero = total == 0
    if bool(np.any(zero)):  # rare: spare the where() otherwise
        total = where(zero, np.nan, total)
    return (x - y) / total


def _normalized_difference_of_floats(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The same floats as above, dividing in place: one cube-sized array fewer."""
    total = np.add(x, y)
    zero = total == 0
    if bool(zero.any()):
        np.copyto(total, np.nan, where=zero)
    difference = np.subtract(x, y)
    return np.divide(difference, total, out=difference)


@process("normalized_difference")
def normalized_difference(x: Any, y: Any) -> Any:
    """``(x - y) / (x + y)``; where ``x + y == 0`` the result is NaN (``null`` on scalars' NaN).

    The spec's formula divides by zero there; we define the result as NaN instead of ±infinity
    (which IEEE division gives for ``x - y != 0``), the same rule as ``ndvi``.
    """
    return elementwise("normalized_difference", _normalized_difference, {"x": x, "y": y})


def _band(cube: xr.DataArray, name: Any, parameter: str, ambiguous: str) -> xr.DataArray:
    matches = match_bands(cube, str(name)) if isinstance(name, str) else []
    if len(matches) != 1:
        found = f"matches {', '.join(matches)}" if matches else "matches no band"
        detail = f"'{name}' {found}; bands: {', '.join(band_labels(cube))}."
        raise process_error("ndvi", ambiguous, f"Parameter '{parameter}': {detail}")
    return cube.sel(bands=matches[0], drop=True)


@process("ndvi")
def ndvi(data: Any, nir: Any = "nir", red: Any = "red", target_band: Any = None) -> Any:
    """NDVI ``(nir - red) / (nir + red)`` over the ``bands`` dimension.

    ``nir``/``red`` name a band by label or by common name (defaults: the bands with common
    names ``nir`` and ``red``, i.e. ``B08`` and ``B04`` for Sentinel-2). Where
    ``nir + red == 0`` the NDVI is NaN (no-data): the ratio is undefined there, and returning
    NaN instead of ±infinity or 0 keeps such pixels out of later statistics. Without
    ``target_band`` the ``bands`` dimension is dropped; with it the NDVI is appended as a band
    of that name. The result keeps the input's float dtype (float32 stays float32).
    """
    if not isinstance(data, xr.DataArray):
        raise ProcessParameterInvalid(process="ndvi", parameter="data", reason="not a data cube")
    if "bands" not in data.dims:
        raise process_error(
            "ndvi", "DimensionAmbiguous", f"Dimensions: {', '.join(map(str, data.dims))}."
        )
    if target_band is not None and str(target_band) in band_labels(data):
        raise process_error("ndvi", "BandExists", f"Band '{target_band}' exists.")
    nir_values = _band(data, nir, "nir", "NirBandAmbiguous")
    red_values = _band(data, red, "red", "RedBandAmbiguous")
    with np.errstate(all="ignore"):
        index = _normalized_difference(nir_values, red_values).astype(
            data.dtype if data.dtype.kind == "f" else np.float64, copy=False
        )
    if target_band is None:
        return canonical_order(index)
    new_band = index.expand_dims(bands=[str(target_band)]).transpose(*data.dims)
    appended = xr.concat([data, new_band], dim="bands")
    return canonical_order(appended)
