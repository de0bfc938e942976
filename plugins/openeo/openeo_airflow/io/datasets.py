"""Raster files kept open while the tiles of one evaluation read them one window at a time.

A cube read tile by tile opens every file once per tile: W2 (84 files) in 16 tiles opened
1344 files, at 1.5-10 ms each (GDAL parses the file's header and directories again every
time). ``OpenDatasets`` keeps each thread's files open for the evaluation that owns it, so a
thread opens a file once, and closes them all when the evaluation ends. A GDAL dataset must
not be used by two threads at once, so each thread has its own; at most ``limit`` per thread
stay open (least recently used first out), which bounds the file descriptors of jobs over
thousands of files.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import rasterio

LIMIT = 256  # open files per thread


class OpenDatasets:
    """Open datasets per thread, by file and overview level; ``close()`` closes them all."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._local = threading.local()
        self._lock = threading.Lock()
        self._per_thread: list[OrderedDict[tuple[str, int | None], Any]] = []
        self._closed = False
        self.opened = 0  # files opened, for tests and measurements

    @contextmanager
    def open(self, href: str, overview_level: int | None = None) -> Iterator[Any]:
        """The thread's open dataset of ``href``; one that failed a read is closed, not kept."""
        kept = self._kept()
        if kept is None:  # closed: a late reader opens and closes its own
            with _open(href, overview_level) as dataset:
                yield dataset
            return
        key = (href, overview_level)
        dataset = kept.pop(key, None)
        if dataset is None:
            dataset = _open(href, overview_level)
            with self._lock:
                self.opened += 1
        try:
            yield dataset
        except BaseException:
            dataset.close()
            raise
        kept[key] = dataset  # most recently used last
        while len(kept) > self.limit:
            _, oldest = kept.popitem(last=False)
            oldest.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close every thread's datasets; call once the threads have stopped reading."""
        with self._lock:
            every, self._per_thread, self._closed = self._per_thread, [], True
        for kept in every:
            while kept:
                _, dataset = kept.popitem()
                dataset.close()

    def _kept(self) -> OrderedDict[tuple[str, int | None], Any] | None:
        kept = getattr(self._local, "kept", None)
        with self._lock:
            if self._closed:
                return None
            if kept is None:
                kept = self._local.kept = OrderedDict()
                self._per_thread.append(kept)
        return kept

    def __enter__(self) -> OpenDatasets:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def opened(
    href: str, overview_level: int | None = None, datasets: OpenDatasets | None = None
) -> Iterator[Any]:
    """``href`` open for reading: from ``datasets`` when given, else opened and closed here."""
    if datasets is not None:
        with datasets.open(href, overview_level) as dataset:
            yield dataset
        return
    with _open(href, overview_level) as dataset:
        yield dataset


def _open(href: str, overview_level: int | None) -> Any:
    if overview_level is None:
        return rasterio.open(href)
    return rasterio.open(href, overview_level=overview_level)
