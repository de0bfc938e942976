"""The registry of implemented openEO processes.

Implementations register themselves with ``@process("id")`` in the family modules, which are
imported on first use of the registry, never at import time of this module. An implementation
is a plain function whose keyword parameters are the openEO parameter names (Python defaults
equal the spec defaults); child process graphs arrive as ``Callback`` objects.

Each registration declares how the process runs over space (``space=``, see ``space.py``;
elementwise and per-pixel processes are ``LOCAL``, the default). Processes that are not part of
the official openEO process set are registered with ``addition=True`` and their own ``spec``;
``GET /processes`` marks them with ``ADDITION_FLAG``. An official process whose spec the
installed spec package lacks (``text_find``) is registered with a ``spec`` written here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .space import LOCAL, SpaceRule
from .specs import process_spec

ProcessFunction = Callable[..., Any]

FAMILIES = (
    "math",
    "logic",
    "reducers",
    "arrays",
    "ordering",
    "texts",
    "dates",
    "cube",
    "dimensions",
    "merge",
    "aggregate",
    "neighborhood",
    "resample",
    "vector",
    "indices",
    "inline",
    "udf",
    "curves",
    "sar",
    "loading",
    "climate",
    "reshape",
    "polygon",
    "vectors",
    "ml",
)
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
    "experimental",
    "deprecated",
)
ADDITION_FLAG = "openeo-airflow:addition"


@dataclass(frozen=True)
class Entry:
    """One implemented process: its function, space declaration and (for additions) spec."""

    id: str
    function: ProcessFunction
    space: SpaceRule
    spec: dict[str, Any] | None = None
    addition: bool = False


_REGISTRY: dict[str, Entry] = {}
_loaded = False
_specs: Mapping[str, dict[str, Any]] | None = None


def process(
    process_id: str,
    *,
    space: SpaceRule = LOCAL,
    spec: dict[str, Any] | None = None,
    addition: bool = False,
) -> Callable[[ProcessFunction], ProcessFunction]:
    """Register the decorated function as the implementation of ``process_id``.

    ``spec`` is given for our additions (``addition=True``) and for official processes the
    installed specs lack; the others use the official spec.
    """
    if addition and spec is None:
        raise ValueError(f"Process '{process_id}': an addition needs its own spec")

    def register(fn: ProcessFunction) -> ProcessFunction:
        known = _REGISTRY.get(process_id)
        if known is not None and known.function is not fn:
            raise ValueError(f"Process '{process_id}' is registered twice")
        _REGISTRY[process_id] = Entry(process_id, fn, space, spec, addition)
        return fn

    return register


def _load_families() -> None:
    global _loaded
    if not _loaded:
        for family in FAMILIES:
            importlib.import_module(f"{__package__}.{family}")
        _loaded = True


def entry(process_id: str) -> Entry | None:
    _load_families()
    return _REGISTRY.get(process_id)


def get(process_id: str) -> ProcessFunction | None:
    """The implementation of ``process_id``, or ``None`` if it is not implemented."""
    found = entry(process_id)
    return found.function if found else None


def implemented() -> list[str]:
    """Ids of all implemented processes, sorted."""
    _load_families()
    return sorted(_REGISTRY)


def spec_of(process_id: str) -> dict[str, Any]:
    """The spec of an implemented process: ours for additions, else the official one."""
    found = entry(process_id)
    if found is not None and found.spec is not None:
        return found.spec
    return process_spec(process_id)


def specs() -> Mapping[str, dict[str, Any]]:
    """``{process id: spec}`` of every implemented process (what validation checks against).

    Read-only: built once; callers must not modify the specs.
    """
    global _specs
    if _specs is None:
        _specs = MappingProxyType({pid: spec_of(pid) for pid in implemented()})
    return _specs


def list_processes() -> list[dict[str, Any]]:
    """The ``processes`` of ``GET /processes``: the spec of each implemented process.

    Our additions carry ``"openeo-airflow:addition": true``.
    """
    listing = []
    for process_id in implemented():
        spec = spec_of(process_id)
        item = {key: spec[key] for key in LISTED_FIELDS if key in spec}
        if _REGISTRY[process_id].addition:
            item[ADDITION_FLAG] = True
        listing.append(item)
    return listing
