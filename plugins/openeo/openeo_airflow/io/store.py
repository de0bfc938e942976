"""The intermediate store between DAG stages: one cube per Zarr folder.

Chunks are one time step x one band x ``tile`` x ``tile`` pixels, compressed with Blosc/LZ4
(fast). A cube is written to a temporary sibling folder and renamed into place, so readers
(and retried stages) see either the whole previous cube, no cube, or the whole new cube.
Only local (or mounted shared) filesystem paths are supported for now.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import dask.array as da
import numpy as np
import shapely
import xarray as xr
import zarr
from zarr.codecs import BloscCodec

VARIABLE = "cube"
_NAME_ATTR = "openeo_airflow:name"
_STRING_COORDS_ATTR = "openeo_airflow:string_coords"
_GEOMETRY_COORDS_ATTR = "openeo_airflow:geometry_coords"


def write_cube(cube: xr.DataArray, path: Path, tile: int = 512) -> Path:
    """Write ``cube`` to the Zarr folder ``path`` atomically (replacing any previous cube)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        _to_dataset(cube).to_zarr(
            temporary,
            mode="w",
            consolidated=False,
            encoding={VARIABLE: {"chunks": _chunks(cube, tile), "compressors": [_codec()]}},
        )
        _replace(temporary, path)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    return path


def create_cube(template: xr.DataArray, path: Path, tile: int = 512) -> Path:
    """An empty cube shaped like ``template`` (its values are never read: only dims, coords,
    dtype) at ``path``, for tiles to fill with ``write_tile`` in parallel. ``path`` is a
    private temporary folder until ``publish`` moves it into place."""
    lazy = template.copy(data=da.zeros(template.shape, dtype=template.dtype, chunks=-1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        shutil.rmtree(path)
    _to_dataset(lazy).to_zarr(
        path,
        mode="w",
        consolidated=False,
        compute=False,
        encoding={VARIABLE: {"chunks": _chunks(template, tile), "compressors": [_codec()]}},
    )
    return path


def write_tile(path: Path, rows: slice, cols: slice, values: np.ndarray) -> None:
    """Write one tile's values (all non-spatial indices) into a cube made by ``create_cube``.
    Tiles aligned to the chunk grid write disjoint chunks, so tiles may write concurrently."""
    array = zarr.open_group(str(path), mode="r+")[VARIABLE]
    assert isinstance(array, zarr.Array)
    index = tuple(
        rows if dim == "y" else cols if dim == "x" else slice(None)
        for dim in getattr(array.metadata, "dimension_names", None) or ()
    )
    array[index] = values


def publish(temporary: Path, path: Path) -> Path:
    """Move a filled cube into place, replacing any previous one (one rename for readers)."""
    _replace(Path(temporary), Path(path))
    return Path(path)


def open_cube(path: Path) -> xr.DataArray:
    """The cube at ``path``, lazily: indexing (e.g. one tile) reads only the chunks needed."""
    dataset = xr.open_zarr(Path(path), chunks=None, consolidated=False)
    cube = dataset[VARIABLE]
    for name in cube.attrs.pop(_STRING_COORDS_ATTR, []):
        cube = cube.assign_coords({name: np.asarray(cube[name].values.tolist(), dtype=str)})
    for name in cube.attrs.pop(_GEOMETRY_COORDS_ATTR, []):
        coord = cube[name]
        values = shapely.from_wkb(np.asarray(coord.values.tolist(), dtype=object))
        cube = cube.assign_coords({name: (coord.dims, values, coord.attrs)})
    cube.name = cube.attrs.pop(_NAME_ATTR, None)
    return cube


def read_cube(path: Path) -> xr.DataArray:
    """The cube at ``path``, loaded into memory."""
    return open_cube(path).load()


def _is_geometry(coord: xr.DataArray) -> bool:
    return coord.dtype == object and coord.size > 0 and hasattr(coord.values.flat[0], "geom_type")


def _to_dataset(cube: xr.DataArray) -> xr.Dataset:
    """A dataset with one variable; string labels stored as variable-length strings and the
    geometries of a vector cube as WKB (hex), which Zarr can hold."""
    geometries = [name for name, coord in cube.coords.items() if _is_geometry(coord)]
    cube = cube.assign_coords(
        {
            name: (cube[name].dims, shapely.to_wkb(cube[name].values, hex=True), cube[name].attrs)
            for name in geometries
        }
    )
    strings = [name for name, coord in cube.coords.items() if coord.dtype.kind == "U"]
    cube = cube.assign_coords({name: cube[name].astype(object) for name in strings})
    attrs = dict(cube.attrs)
    attrs[_STRING_COORDS_ATTR] = [str(name) for name in strings]
    attrs[_GEOMETRY_COORDS_ATTR] = [str(name) for name in geometries]
    if cube.name is not None:
        attrs[_NAME_ATTR] = str(cube.name)
    return cube.copy(data=cube.data).assign_attrs(attrs).to_dataset(name=VARIABLE)


def _chunks(cube: xr.DataArray, tile: int) -> tuple[int, ...]:
    return tuple(
        max(1, min(tile, size)) if dim in ("y", "x") else 1
        for dim, size in zip(cube.dims, cube.shape, strict=True)
    )


def _codec() -> BloscCodec:
    return BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")


def _replace(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``; an existing ``target`` is moved aside first."""
    if not target.exists():
        os.replace(source, target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
    os.replace(target, old)
    os.replace(source, target)
    shutil.rmtree(old, ignore_errors=True)
