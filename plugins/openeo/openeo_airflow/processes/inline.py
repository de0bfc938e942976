"""Values as JSON: small cubes written inline in a process graph, and results returned as JSON.

The JSON form of a cube is the one of the official openEO process tests (and close to the
STAC datacube extension)::

    {"type": "datacube", "order": ["t", "y", "x"],
     "dimensions": {"t": {"type": "temporal", "values": [...]},
                    "y": {"type": "spatial", "axis": "y", "values": [...],
                          "reference_system": "EPSG:25832"}, ...},
     "data": [[[...]]], "nodata": [NaN]}

- ``load_inline_cube`` (our addition) turns that form into a cube, so a client can send a small
  cube in a process graph (the conformance runner does, through ``POST /result``);
- ``to_json`` / ``dumps`` turn any process result into JSON: cubes in that form (no-data as
  ``null``), labeled arrays as ``{"type": "labeled-array", "data": [{"key", "value"}]}``,
  dates as RFC 3339 strings, numbers as numbers (NaN and infinities as the JSON5 literals
  ``NaN``/``Infinity``, which Python's and JavaScript's JSON5 parsers read).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import xarray as xr
from pyproj import CRS

from openeo_airflow.core.errors import ProcessParameterInvalid
from openeo_airflow.cube import spatial_ref

from .registry import process
from .values import (
    LabeledArray,
    LabeledList,
    dimension_type,
    label_to_json,
    to_datetime64,
    to_python,
)
from .vector import geometry_json

INLINE_CUBE_SPEC: dict[str, Any] = {
    "id": "load_inline_cube",
    "summary": "Load a small data cube given inline as JSON",
    "description": "Creates a raster data cube from its JSON form: `order` (the dimension "
    "names, outermost first), `dimensions` (per name: `type` (`spatial`, `temporal`, `bands` "
    "or `other`), `values` (the labels), for spatial dimensions `axis` and "
    "`reference_system`), `data` (nested arrays in that order; `null` or an empty array "
    "when only the labels matter) and `nodata` (a value or a list of values that mean no "
    "data). This is the cube encoding of the official openEO process tests. Useful for "
    "tests and for small inputs; large data belongs in a collection.",
    "categories": ["cubes", "import"],
    "parameters": [
        {
            "name": "data",
            "description": "The data cube in its JSON form.",
            "schema": {"type": "object"},
        }
    ],
    "returns": {
        "description": "The data cube.",
        "schema": {"type": "object", "subtype": "datacube"},
    },
    "exceptions": {},
}


def _invalid(reason: str) -> ProcessParameterInvalid:
    return ProcessParameterInvalid(process="load_inline_cube", parameter="data", reason=reason)


def _crs(value: Any) -> CRS:
    if isinstance(value, int):
        return CRS.from_epsg(value)
    return CRS.from_user_input(value)


def _resolution(values: list[float]) -> float:
    steps = np.abs(np.diff(np.asarray(values, dtype=float)))
    return float(steps.min()) if steps.size and steps.min() > 0 else 1.0


def _labels(name: str, dimension: dict[str, Any]) -> Any:
    values = list(dimension.get("values") or [])
    kind = dimension.get("type")
    if kind == "temporal":
        return np.array([to_datetime64(v) for v in values], dtype="datetime64[ns]")
    if kind == "spatial":
        return np.asarray(values, dtype=float)
    if kind == "bands":
        return [str(v) for v in values]
    return values


def _values(data: Any, shape: list[int], nodata: Any) -> np.ndarray:
    size = math.prod(shape)
    if data is None or (isinstance(data, list) and not data and size):
        return np.full(shape, np.nan)
    try:
        array = np.array(data, dtype=float)  # None becomes NaN
    except (TypeError, ValueError) as exc:
        raise _invalid(f"'data' is not a nested array of numbers: {exc}") from exc
    if array.size != size:
        raise _invalid(f"'data' has {array.size} values, the dimensions give {size}")
    array = array.reshape(shape)
    for value in nodata if isinstance(nodata, list) else [nodata]:
        if isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value):
            array[array == value] = np.nan
    return array


def cube_from_json(value: Any) -> xr.DataArray:
    """A cube from its JSON form (see the module docstring)."""
    if not isinstance(value, dict) or not isinstance(value.get("dimensions"), dict):
        raise _invalid("expected an object with 'dimensions', 'order' and 'data'")
    dimensions: dict[str, Any] = value["dimensions"]
    order = list(value.get("order") or dimensions)
    if sorted(order) != sorted(dimensions):
        raise _invalid(f"'order' {order} does not list the dimensions {list(dimensions)}")
    coords: dict[str, Any] = {name: _labels(name, dimensions[name]) for name in order}
    shape = [len(coords[name]) for name in order]
    data = _values(value.get("data"), shape, value.get("nodata"))
    spatial = [n for n in order if dimensions[n].get("type") == "spatial"]
    if spatial:
        system = next(
            (
                dimensions[n]["reference_system"]
                for n in spatial
                if "reference_system" in dimensions[n]
            ),
            4326,
        )
        try:
            crs = _crs(system)
        except Exception as exc:
            raise _invalid(f"unknown reference_system {system!r}: {exc}") from exc
        xres = _resolution(list(coords.get("x", []))) if "x" in coords else 1.0
        yres = _resolution(list(coords.get("y", []))) if "y" in coords else 1.0
        coords["spatial_ref"] = spatial_ref(crs, (xres, yres))
    cube = xr.DataArray(data, dims=order, coords=coords)
    for name in order:
        cube.coords[name].attrs["type"] = dimensions[name].get("type", "other")
    return cube


@process("load_inline_cube", spec=INLINE_CUBE_SPEC, addition=True)
def load_inline_cube(data: Any) -> xr.DataArray:
    return cube_from_json(data)


# --- results as JSON ---------------------------------------------------------------------------


def _dimension_json(cube: xr.DataArray, name: str) -> dict[str, Any]:
    kind = dimension_type(cube, name)
    if name in cube.coords:
        raw = cube.coords[name].values
        if kind == "geometry":
            values = [geometry_json(v) for v in raw]
        else:
            values = [label_to_json(v) for v in raw]
    else:
        values = list(range(cube.sizes[name]))
    entry: dict[str, Any] = {"type": kind, "values": values}
    if kind == "geometry":
        wkt = cube.coords[name].attrs.get("crs_wkt")
        crs = CRS.from_wkt(wkt) if wkt else None
        entry["reference_system"] = f"EPSG:{crs.to_epsg()}" if crs and crs.to_epsg() else wkt
    if kind == "spatial":
        entry["axis"] = name
        if "spatial_ref" in cube.coords:
            crs = CRS.from_wkt(cube.coords["spatial_ref"].attrs["crs_wkt"])
            epsg = crs.to_epsg()
            entry["reference_system"] = f"EPSG:{epsg}" if epsg else crs.to_wkt()
    return entry


def _cube_json(cube: xr.DataArray) -> dict[str, Any]:
    values = np.asarray(cube.values, dtype=float)
    data = values.astype(object)
    data[np.isnan(values)] = None
    data = data.tolist() if values.size else []
    return {
        "type": "datacube",
        "order": [str(d) for d in cube.dims],
        "dimensions": {str(d): _dimension_json(cube, str(d)) for d in cube.dims},
        "data": data,
        "nodata": [None],
    }


def to_json(value: Any) -> Any:
    """A process result as a JSON value (numbers may be NaN or infinite)."""
    if isinstance(value, xr.DataArray):
        return _cube_json(value)
    if isinstance(value, LabeledArray):
        return _cube_json(value.cube)
    if isinstance(value, LabeledList):
        items = [
            {"key": to_json(k), "value": to_json(v)}
            for k, v in zip(value.labels, value, strict=True)
        ]
        return {"type": "labeled-array", "data": items}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [to_json(v) for v in value.tolist()]
    if isinstance(value, np.datetime64):
        return label_to_json(value)
    return to_python(value)


def dumps(value: Any) -> bytes:
    """A process result as JSON bytes (``application/json``)."""
    return json.dumps(to_json(value), allow_nan=True, separators=(",", ":")).encode()
