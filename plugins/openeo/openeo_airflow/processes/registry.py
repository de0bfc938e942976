"""The registry of implemented openEO processes.

Implementations register themselves with ``@process("id")`` in the family modules
(``math``, ``logic``, ``reducers``, ``cube``), which are imported on first use of the registry,
never at import time of this module. An implementation is a plain function whose keyword
parameters are the openEO parameter names (Python defaults equal the spec defaults); child
process graphs arrive as ``Callback`` objects.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .specs import process_spec

ProcessFunction = Callable[..., Any]

FAMILIES = ("math", "logic", "reducers", "cube", "indices")
LISTED_FIELDS = (
    "id",
    "summary",
    "description",
    "categories",
    "parameters",
    "returns",
    "exceptions",
    "examples",
    "links",
)

_REGISTRY: dict[str, ProcessFunction] = {}
_loaded = False


def process(process_id: str) -> Callable[[ProcessFunction], ProcessFunction]:
    """Register the decorated function as the implementation of ``process_id``."""

    def register(fn: ProcessFunction) -> ProcessFunction:
        if process_id in _REGISTRY and _REGISTRY[process_id] is not fn:
            raise ValueError(f"Process '{process_id}' is registered twice")
        _REGISTRY[process_id] = fn
        return fn

    return register


def _load_families() -> None:
    global _loaded
    if not _loaded:
        for family in FAMILIES:
            importlib.import_module(f"{__package__}.{family}")
        _loaded = True


def get(process_id: str) -> ProcessFunction | None:
    """The implementation of ``process_id``, or ``None`` if it is not implemented."""
    _load_families()
    return _REGISTRY.get(process_id)


def implemented() -> list[str]:
    """Ids of all implemented processes, sorted."""
    _load_families()
    return sorted(_REGISTRY)


def list_processes() -> list[dict[str, Any]]:
    """The ``processes`` of ``GET /processes``: the official spec of each implemented process."""
    listing = []
    for process_id in implemented():
        spec = process_spec(process_id)
        listing.append({key: spec[key] for key in LISTED_FIELDS if key in spec})
    return listing
