"""The intermediate store between DAG stages: one cube per folder.

A cube is its values as one uncompressed NumPy file (``values.npy``) beside a
JSON description of its dimensions, attributes and coordinates (``cube.json``, with the
coordinate values in ``coords.npz``). Stages on one filesystem pay a copy through the page cache,
nothing more: for the 104 MB sources of the sizing benchmark's medium job, writing took 0.03-0.04 s
and reading 0.03 s, against 0.2-0.5 s and 0.1-0.27 s for the Zarr folders this store used to
write (LZ4 or uncompressed, through xarray or zarr directly; tiles of 512 px or the whole
extent; measured side by side). Those costs made separate stages 1.4x slower than a fused run.

A cube is written to a temporary sibling folder and renamed into place, so readers (and retried
stages) see either the whole previous cube, no cube, or the whole new cube. Tiles fill a cube
made by ``create_cube`` in parallel: each writes only its own window of the values file.
Only local (or mounted shared) filesystem paths are supported.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from openeo_airflow.core import libc

VALUES = "values.npy"
COORDS = "coords.npz"
DESCRIPTION = "cube.json"


def write_cube(cube: xr.DataArray, path: Path) -> Path:
    """Write ``cube`` to the folder ``path`` atomically (replacing any previous cube)."""
    path = Path(path)
    temporary = _temporary(path)
    try:
        values = np.asarray(cube.values)
        _check_storable(values.dtype)
        _write_description(cube, temporary)
        np.save(temporary / VALUES, values, allow_pickle=False)
        _replace(temporary, path)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    return path


def create_cube(template: xr.DataArray, path: Path) -> Path:
    """An empty cube shaped like ``template`` (its values are never read: only dims, coords,
    dtype) at ``path``, for tiles to fill with ``TileWriter`` in parallel. ``path`` is a
    private temporary folder until ``publish`` moves it into place."""
    _check_storable(template.dtype)
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    _write_description(template, path)
    # A sparse file: the tiles write every byte of it.
    values = np.lib.format.open_memmap(
        path / VALUES, mode="w+", dtype=template.dtype, shape=template.shape
    )
    start, size = values.offset, values.nbytes
    del values
    _reserve(path / VALUES, start, size)
    return path


def _reserve(file: Path, start: int, size: int) -> None:
    """Have the filesystem set the values' blocks aside before the tiles write them (Linux's
    ``fallocate``). On ext4 the tiles' writes then skip reserving blocks page by page: 104 MB
    written in 16 ms instead of 22, the reservation included, as fast as copying into fresh
    memory (18 planes of 1200 x 1200 floats, medians of 9). Where the filesystem or the C
    library cannot, the file stays sparse and the writes reserve as they go."""
    fallocate = libc.function("fallocate")
    if fallocate is None or size <= 0:
        return
    fd = os.open(file, os.O_WRONLY)
    try:
        fallocate(fd, 0, ctypes.c_int64(start), ctypes.c_int64(size))  # failed: stays sparse
    finally:
        os.close(fd)


def write_tile(
    path: Path, rows: slice, cols: slice, values: np.ndarray, first_plane: int = 0
) -> None:
    """Write one tile's values into a cube made by ``create_cube`` (``TileWriter.write``)."""
    with TileWriter(path) as writer:
        writer.write(rows, cols, values, first_plane)


class TileWriter:
    """Writes windows into a cube made by ``create_cube``, its layout read and its values file
    opened once for all of them (a load tile writes one window per band and date).

    Tiles write disjoint byte ranges of the values file with plain positioned writes, so they
    may write concurrently (several threads may share one writer), from processes on other
    machines of a shared filesystem too (a close publishes them there). A memory map written
    the same way needed an ``msync`` for that, which wrote the file through to disk: 0.4 s
    more for the medium job's 104 MB.
    """

    def __init__(self, path: Path) -> None:
        file = Path(path) / VALUES
        dims = _read_description(Path(path))["dims"]
        if dims[-2:] != ["y", "x"]:
            raise ValueError(f"tiles cut the last two dimensions (y, x), not those of {dims}")
        self.shape, self.dtype, self.offset = _layout(file)
        self._fd = os.open(file, os.O_WRONLY)

    def write(self, rows: slice, cols: slice, values: np.ndarray, first_plane: int = 0) -> None:
        """One window's values: all its planes (the non-spatial indices, flattened), or those
        from ``first_plane`` on (e.g. one band of one time step, as a load reads it)."""
        top, bottom, _ = rows.indices(self.shape[-2])
        left, right, _ = cols.indices(self.shape[-1])
        block = np.ascontiguousarray(values, dtype=self.dtype)
        block = block.reshape(-1, bottom - top, right - left)
        planes = range(first_plane, first_plane + len(block))
        for part, at in _window_parts(block, planes, self.shape, self.offset, top, left):
            os.pwrite(self._fd, part.data, at)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> TileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _window_parts(
    block: np.ndarray,
    planes: Iterable[int],
    shape: tuple[int, ...],
    offset: int,
    top: int,
    left: int,
) -> Iterator[tuple[np.ndarray, int]]:
    """The contiguous parts of ``block`` (one window of rows x columns per plane, for the
    values file's ``planes``) with the file position of each: a whole plane window when the
    window spans whole rows, else one part per row."""
    width = shape[-1]
    item = block.dtype.itemsize
    whole_rows = block.shape[-1] == width
    for window, plane in zip(block, planes, strict=True):
        start = _window_start(shape, offset, item, plane, top, left)
        if whole_rows:
            yield window, start
            continue
        for row, line in enumerate(window):
            yield line, start + row * width * item


def _window_start(
    shape: tuple[int, ...], offset: int, item: int, plane: int, top: int, left: int
) -> int:
    """Where a window's first value (row ``top``, column ``left`` of ``plane``, the
    non-spatial indices flattened) is in a values file whose values start at ``offset``."""
    height, width = shape[-2:]
    return offset + ((plane * height + top) * width + left) * item


def _layout(file: Path) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """The array's shape, dtype and where its values start in a NumPy file."""
    with open(file, "rb") as f:
        major, _minor = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(f)
        if fortran:
            raise ValueError(f"{file} is in Fortran order")
        return shape, dtype, f.tell()


def publish(temporary: Path, path: Path) -> Path:
    """Move a filled cube into place, replacing any previous one (one rename for readers)."""
    _replace(Path(temporary), Path(path))
    return Path(path)


def open_cube(path: Path) -> xr.DataArray:
    """The cube at ``path``, lazily: indexing (e.g. one tile) reads only that window."""
    return _cube(Path(path), lazy=True)


def read_cube(path: Path) -> xr.DataArray:
    """The cube at ``path``, whole: its values mapped copy-on-write, so they are the page
    cache's pages rather than a copy of them (a write changes only this process's view). The
    medium job's transform stage, reading its 104 MB source this way: 0.08 s against 0.09-0.10
    (bench/sizing_bench.py --parts overhead, two runs of 7 rounds each)."""
    return _cube(Path(path), lazy=False)


def cube_sizes(path: Path) -> dict[str, int]:
    """The stored cube's dimensions and their sizes, without building the cube (its
    coordinates are the costly part of opening one)."""
    dims = _read_description(Path(path))["dims"]
    shape, _, _ = _layout(Path(path) / VALUES)
    return dict(zip(dims, shape, strict=True))


def _cube(path: Path, lazy: bool) -> xr.DataArray:
    description = _read_description(path)
    values: Any
    if lazy:
        values = indexing.LazilyIndexedArray(_StoredArray(path / VALUES))
    else:
        shape, _, _ = _layout(path / VALUES)
        values = np.load(path / VALUES, mmap_mode="c" if 0 not in shape else None)
    with np.load(path / COORDS, allow_pickle=False) as stored:
        coords = {
            name: _coordinate(entry, stored[name]) for name, entry in description["coords"].items()
        }
    return xr.DataArray(
        xr.Variable(description["dims"], values),
        coords=coords,
        name=description["name"],
        attrs=description["attrs"],
    )


class _StoredArray(BackendArray):
    """A stored cube's values, read window by window with positioned reads when indexed.

    Not a memory map: the pages of a mapped file count in the process's resident memory, and a
    transform tile through a map measured its window twice (the mapped pages and its copy).
    """

    def __init__(self, file: Path) -> None:
        self.file = file
        self.shape, self.dtype, self.offset = _layout(file)

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self._read
        )

    def _read(self, key: tuple[Any, ...]) -> np.ndarray:
        if len(self.shape) < 2 or 0 in self.shape:
            return np.asarray(np.load(self.file)[key])
        top, rows, pick_y = index_window(key[-2], self.shape[-2])
        left, cols, pick_x = index_window(key[-1], self.shape[-1])
        planes = np.arange(int(np.prod(self.shape[:-2]))).reshape(self.shape[:-2])[key[:-2]]
        out = np.empty((planes.size, rows, cols), dtype=self.dtype)
        item = self.dtype.itemsize
        fd = os.open(self.file, os.O_RDONLY)
        try:
            for window, plane in zip(out, planes.flat, strict=True):
                start = _window_start(self.shape, self.offset, item, int(plane), top, left)
                _read_rows(fd, window, start, self.shape[-1] * item)
        finally:
            os.close(fd)
        return out.reshape(*planes.shape, rows, cols)[..., pick_y, pick_x]


# Between two rows of a window, up to this many bytes are read into a scratch buffer rather
# than read around: copying 64 KiB costs about what one more read call does.
GAP_BYTES = 64 * 1024
IOV_MAX = 1024  # buffers per vectored read (Linux's limit)


def _read_rows(fd: int, window: np.ndarray, start: int, stride: int) -> None:
    """Fill ``window`` (rows x columns, C order) from the file, its first row at ``start`` and
    each next one ``stride`` bytes on. Narrow gaps between the rows go into a scratch buffer,
    so up to 512 rows come in one vectored read: a tile half the cube's width read a call per
    row made 43,200 calls for the sizing benchmark's medium job, 0.24 s of its transform."""
    rows, row_bytes = window.shape[0], window.shape[1] * window.itemsize
    gap = stride - row_bytes
    if gap == 0:
        _read_exactly(fd, [window.data], start, rows * row_bytes)
        return
    if gap > GAP_BYTES:
        for row in range(rows):
            _read_exactly(fd, [window[row].data], start + row * stride, row_bytes)
        return
    scratch = memoryview(bytearray(gap))
    per_call = IOV_MAX // 2
    for first in range(0, rows, per_call):
        lines = [window[row].data for row in range(first, min(first + per_call, rows))]
        buffers = [part for line in lines for part in (line, scratch)][:-1]
        _read_exactly(fd, buffers, start + first * stride, len(lines) * stride - gap)


def _read_exactly(fd: int, buffers: list[memoryview], at: int, size: int) -> None:
    if os.preadv(fd, buffers, at) != size:
        raise OSError(f"short read from a stored cube at byte {at}: the file is truncated")


def index_window(key: Any, size: int) -> tuple[int, int, Any]:
    """The window (first index, count) a basic index along one axis needs, and the index that
    picks the wanted values out of it."""
    picked = range(size)[key]
    if isinstance(picked, int):
        return picked, 1, 0
    if not picked:
        return 0, 0, slice(None)
    first, last = min(picked), max(picked)
    pick: Any = slice(None) if picked.step == 1 else np.asarray(picked) - first
    return first, last - first + 1, pick


def _write_description(cube: xr.DataArray, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    coords: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for name, coord in cube.coords.items():
        geometry = _is_geometry(coord)
        values = np.asarray(coord.values)
        if geometry:  # the geometries of a vector cube travel as WKB (hex)
            values = np.asarray(shapely.to_wkb(values, hex=True), dtype=str)
        coords[str(name)] = {
            "dims": list(coord.dims),
            "attrs": dict(coord.attrs),
            "geometry": geometry,
        }
        arrays[str(name)] = _plain(values)
    description = {
        "name": None if cube.name is None else str(cube.name),
        "dims": [str(d) for d in cube.dims],
        "attrs": dict(cube.attrs),
        "coords": coords,
    }
    text = json.dumps(description, default=_json_value)  # before any file: a bad attr fails
    np.savez(folder / COORDS, allow_pickle=False, **arrays)
    (folder / DESCRIPTION).write_text(text)


def _read_description(folder: Path) -> dict[str, Any]:
    description: dict[str, Any] = json.loads((folder / DESCRIPTION).read_text())
    return description


def _coordinate(entry: dict[str, Any], values: np.ndarray) -> tuple[Any, ...]:
    if entry["geometry"]:
        values = shapely.from_wkb(values.astype(object))
    return (tuple(entry["dims"]), values, entry["attrs"])


def _is_geometry(coord: xr.DataArray) -> bool:
    return coord.dtype == object and coord.size > 0 and hasattr(coord.values.flat[0], "geom_type")


def _plain(values: np.ndarray) -> np.ndarray:
    """``values`` without Python objects (which NumPy files only hold through pickle)."""
    if values.dtype == object:
        return np.asarray(values.tolist(), dtype=str)
    return values


def _check_storable(dtype: np.dtype[Any]) -> None:
    if dtype.kind == "O":
        raise TypeError("a cube of Python objects cannot be stored")


def _json_value(value: Any) -> Any:
    """NumPy scalars and arrays in attributes, as JSON can hold them; anything else fails."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"an attribute of type {type(value).__name__} cannot be stored")


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")


def _replace(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``; an existing ``target`` is moved aside first."""
    if not target.exists():
        os.replace(source, target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
    os.replace(target, old)
    os.replace(source, target)
    shutil.rmtree(old, ignore_errors=True)
