"""Deflated HDF5 chunks made on several threads, for the data variables of netCDF4 results.

HDF5 runs its deflate filter on the one writing thread, at about 50 MB/s on float32 results
(W2's 12 x 1600 x 1600 px, 123 MB, took 2.5 s). A chunk is the same kind of bytes however it was
deflated: here ISA-L's deflate (6x zlib's speed at the same size on NDVI, measured on W2's
result) compresses the chunks on a thread pool and HDF5 stores them as they are
(``write_direct_chunk``). Every zlib reader decodes them: the file is an ordinary netCDF4 file
with the shuffle and deflate filters.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import h5py
import numpy as np
from isal import isal_zlib

# ISA-L's levels are 0-3; 1 gave zlib level 1's size (0.60 of the raw bytes) in a sixth of
# its time on W2's NDVI means.
LEVEL = 1
# A chunk is one time step's square of this many pixels a side: 1 MiB of float32, what
# HDF5's chunk cache holds by default, and a window a map viewer reads without much waste.
CHUNK_SIDE = 512


def chunk_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """One plane of leading dimensions, at most ``CHUNK_SIDE`` pixels of y and x."""
    lead = tuple(1 for _ in shape[:-2])
    return lead + tuple(max(1, min(CHUNK_SIDE, n)) for n in shape[-2:])


def write_deflated(dataset: h5py.Dataset, data: np.ndarray, threads: int) -> None:
    """Write ``data`` into ``dataset`` (chunked, filters shuffle then deflate), chunk by chunk,
    compressing ``threads`` chunks at a time; at most twice that many are held in memory."""
    if data.shape != dataset.shape or data.dtype != dataset.dtype:
        raise ValueError(f"data {data.shape} {data.dtype} does not fit {dataset.name}")
    chunk = dataset.chunks
    if chunk is None:
        raise ValueError(f"{dataset.name} is not chunked")
    fill = dataset.fillvalue
    starts = itertools.product(*(range(0, n, c) for n, c in zip(data.shape, chunk, strict=True)))

    def pack(start: tuple[int, ...]) -> bytes:
        piece = data[tuple(slice(s, s + c) for s, c in zip(start, chunk, strict=True))]
        if piece.shape != chunk:
            # An edge chunk is stored whole; HDF5 ignores what lies outside the dataset.
            whole = np.full(chunk, fill, dtype=data.dtype)
            whole[tuple(slice(0, n) for n in piece.shape)] = piece
            piece = whole
        raw = np.ascontiguousarray(piece)
        # HDF5's shuffle filter: the first byte of every element, then the second, and so on.
        shuffled = raw.view(np.uint8).reshape(-1, raw.itemsize).T.tobytes()
        return isal_zlib.compress(shuffled, LEVEL)

    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="deflate") as pool:
        for start, payload in _bounded(pool, pack, starts, 2 * max(1, threads)):
            dataset.id.write_direct_chunk(start, payload)


def _bounded(
    pool: ThreadPoolExecutor,
    work: Callable[[tuple[int, ...]], bytes],
    items: Iterator[tuple[int, ...]],
    window: int,
) -> Iterator[tuple[tuple[int, ...], bytes]]:
    """``(item, work(item))`` in order, with at most ``window`` results pending at a time."""
    pending: deque[tuple[tuple[int, ...], Future[bytes]]] = deque()
    for item in items:
        pending.append((item, pool.submit(work, item)))
        if len(pending) >= window:
            done, future = pending.popleft()
            yield done, future.result()
    while pending:
        done, future = pending.popleft()
        yield done, future.result()
