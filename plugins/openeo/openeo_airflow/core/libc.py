"""The few C library functions Python does not wrap (glibc's), looked up once; ``None`` where
the C library lacks them (musl, other systems): callers then do without."""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache
from typing import Any


@cache
def function(name: str) -> Any | None:
    path = ctypes.util.find_library("c")
    if path is None:
        return None
    try:
        return getattr(ctypes.CDLL(path, use_errno=True), name)
    except (OSError, AttributeError):
        return None
