"""Freed memory kept for the next array while a job computes (glibc's malloc settings).

glibc gives every allocation above 32 MiB pages of its own (mmap) and returns them on free, so
each new cube-sized array starts as untouched memory whose pages fault in one by one. A
cloud mask over W2 (28 x 1600 x 1600 px) makes a 287 MB boolean per process, and on this VM
those faults cost more than the arithmetic: W2's graph evaluated in 1.9-3.5 s with the default,
1.2-1.4 s with big arrays taken from the heap and freed memory kept there (peak RSS +2 %).

Processes that compute call ``reuse_freed_memory`` once; a long-lived one (the api-server,
for synchronous requests) gives the memory back with ``release_freed_memory`` when done.
Elsewhere than glibc both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from functools import cache

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# Free memory at the top of the heap is returned to the system only above this (the largest
# value mallopt takes): a job's arrays come and go far below it.
_KEEP_BYTES = 2**31 - 1

_lock = threading.Lock()
_set = False


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018 - glibc has it; musl and others do not
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def reuse_freed_memory() -> bool:
    """Serve big allocations from the heap and keep what is freed there (once per process).
    Whether the settings are in force."""
    global _set
    libc = _libc()
    if libc is None:
        return False
    with _lock:
        if not _set:
            _set = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(
                libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES)
            )
        return _set


def release_freed_memory() -> None:
    """Return the free pages of every heap to the system."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
