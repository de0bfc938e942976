"""Freed memory kept for the next array while a job computes (glibc's malloc settings).

glibc gives every allocation above 32 MiB pages of its own (mmap) and returns them on free, so
each new cube-sized array starts as untouched memory whose pages fault in one by one; a cloud
mask over W2 (28 x 1600 x 1600 px) makes 287 MB booleans, and on this VM those faults cost
more than the arithmetic. Big arrays taken from the heap instead, with up to 256 MiB of freed
memory kept at its top, ran W2 large through the stack (bench/e2e_bench.py, medians of 3, side
by side) in 4.9-5.3 s instead of 6.9-7.1 s (sync) and 7.4-7.8 s instead of 9.0-10.1 s (batch);
the batch task's peak RSS rose from 1.6-1.7 to 1.8 GB. Keeping up to 2 GiB was no faster and
peaked at 2.1 GB.

Processes that compute call ``reuse_freed_memory`` once; a long-lived one (the api-server,
for synchronous requests) gives the memory back with ``release_freed_memory`` when done.
Elsewhere than glibc both do nothing.
"""

from __future__ import annotations

import threading

from openeo_airflow.core import libc

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# Free memory at the top of the heap is returned to the system only above this.
_KEEP_BYTES = 256 * 2**20

_lock = threading.Lock()
_set = False


def reuse_freed_memory() -> bool:
    """Serve big allocations from the heap and keep what is freed there (once per process).
    Whether the settings are in force."""
    global _set
    mallopt = libc.function("mallopt")
    if mallopt is None:
        return False
    with _lock:
        if not _set:
            _set = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
        return _set


def release_freed_memory() -> None:
    """Hand the free pages of every heap back to the system. glibc keeps them (in an arena per
    thread that ever allocated), so a worker running tile after tile would start each tile
    from the high-water mark of the ones before: its resident size, and what a container
    limit sees, would creep up with the number of tiles instead of staying at one tile's."""
    malloc_trim = libc.function("malloc_trim")
    if malloc_trim is not None:
        malloc_trim(0)
