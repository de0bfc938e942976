"""Process-specific openEO exceptions (``DimensionNotAvailable``, ``ArrayElementNotAvailable``...).

The spec of each process lists its own exceptions; openEO reports them with the exception name
as the error ``code`` (HTTP 400 unless the spec says otherwise). One ``OpenEOError`` subclass is
created per name on first use, so the API layer handles them like any other openEO error.
"""

from __future__ import annotations

from functools import cache

from openeo_airflow.core.errors import OpenEOError

from .specs import exception_spec


class ProcessException(OpenEOError):
    """Base class of the process-specific exceptions; ``code`` is the spec's exception name."""

    status = 400
    template = "A process failed."


@cache
def _exception_class(name: str, status: int) -> type[ProcessException]:
    return type(name, (ProcessException,), {"code": name, "status": status})


def process_error(process_id: str, name: str, detail: str = "") -> ProcessException:
    """The spec's exception ``name`` of ``process_id``, its spec message followed by ``detail``."""
    try:
        entry = exception_spec(process_id, name)
    except KeyError:
        entry = None
    message = entry.get("message", name) if entry else name
    status = int(entry.get("http", 400)) if entry else 400
    text = f"{name}: {message}" + (f" {detail}" if detail else "")
    return _exception_class(name, status)(text)
