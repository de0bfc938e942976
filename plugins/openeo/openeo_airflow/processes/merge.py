"""``merge_cubes``: two cubes into one, with an overlap resolver where both have values.

Labels of every dimension are united: ordered dimensions (spatial, temporal) stay sorted, the
others (``bands``...) keep ``cube1``'s labels followed by the new ones of ``cube2``. A cube
lacking a dimension of the other is repeated along it. Where both cubes have labels (in every
dimension) the cell overlaps: ``overlap_resolver(x=cube1, y=cube2, context)`` decides, called
once for the whole union (vectorised); without overlap no resolver is needed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .exceptions import process_error
from .registry import process
from .values import as_cube, canonical_order, dimension_type, where


def _union(dim: str, kind: str, first: xr.DataArray, second: xr.DataArray) -> Any:
    a = pd.Index(first.indexes[dim]) if dim in first.indexes else pd.Index([])
    b = pd.Index(second.indexes[dim]) if dim in second.indexes else pd.Index([])
    extra = b[~b.isin(a)]
    if kind == "spatial" or kind == "temporal":
        joined = a.append(extra)
        descending = len(a) > 1 and a[0] > a[-1]
        return joined.sort_values(ascending=not descending)
    return a.append(extra)


def _presence(cube: xr.DataArray, labels: dict[str, Any]) -> xr.DataArray:
    """1 where ``cube`` has every label of a cell of the united grid, else 0."""
    present = xr.DataArray(True)
    for dim, union in labels.items():
        has = (
            pd.Index(union).isin(cube.indexes[dim])
            if dim in cube.dims
            else np.ones(len(union), bool)
        )
        present = present & xr.DataArray(has, dims=dim, coords={dim: union})
    return present


@process("merge_cubes")
def merge_cubes(cube1: Any, cube2: Any, overlap_resolver: Any = None, context: Any = None) -> Any:
    first, second = as_cube("merge_cubes", cube1, "cube1"), as_cube("merge_cubes", cube2, "cube2")
    dims = [str(d) for d in first.dims] + [str(d) for d in second.dims if d not in first.dims]
    labels: dict[str, Any] = {}
    for dim in dims:
        owner = first if dim in first.dims else second
        kind = dimension_type(owner, dim)
        labels[dim] = _union(dim, kind, first, second)
    has1, has2 = _presence(first, labels), _presence(second, labels)
    a = _onto(first, labels)
    b = _onto(second, labels)
    overlap = has1 & has2
    merged = where(has1, a, b)
    if bool(overlap.any()):
        if not callable(overlap_resolver):
            raise process_error("merge_cubes", "OverlapResolverMissing")
        resolved = overlap_resolver(x=a, y=b, context=context)
        merged = where(overlap, resolved, merged)
    merged = merged.transpose(*dims)
    for dim in dims:
        owner = first if dim in first.dims else second
        if dim in owner.coords:
            merged.coords[dim].attrs.update(owner.coords[dim].attrs)
    if "spatial_ref" in first.coords:
        merged = merged.assign_coords(spatial_ref=first.coords["spatial_ref"])
    elif "spatial_ref" in second.coords:
        merged = merged.assign_coords(spatial_ref=second.coords["spatial_ref"])
    return canonical_order(merged)


def _onto(cube: xr.DataArray, labels: dict[str, Any]) -> xr.DataArray:
    """``cube`` on the united labels (NaN where it has none), repeated along missing dims."""
    reindexed = cube.reindex({d: labels[d] for d in cube.dims if d in labels})
    missing = {d: labels[d] for d in labels if d not in cube.dims}
    if missing:
        reindexed = reindexed.expand_dims(missing)
    return reindexed.astype(float, copy=False)
