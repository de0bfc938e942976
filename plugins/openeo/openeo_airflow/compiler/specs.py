"""Official openEO process specifications, read at run time from an installed package.

The JSON files come with ``openeo_processes_dask`` (``specs/openeo-processes/*.json``); we never
copy spec text into this repository. The specs at the folder's top level come first; a process
missing there is looked up in its ``missing-processes/`` and ``proposals/`` subfolders (for
example ``apply_neighborhood`` and ``load_result``). The files are read lazily, once per id.

``AMENDMENTS`` adds parameters that openEO processes 2.0 introduced after the installed specs
were written and that clients send (the openEO Python client always sends
``resample_spatial``'s ``align``); their descriptions are ours. ``RENAMED`` gives parameters
2.0 renamed their new name (``apply_polygon``'s ``polygons`` is ``geometries``).

This module lives in the compiler layer because validation needs the parameter lists; the
processes layer re-exports it (``openeo_airflow.processes.specs``).
"""

from __future__ import annotations

import copy
import json
from contextlib import suppress
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

SPEC_PACKAGE = "openeo_processes_dask"
SPEC_FOLDER = ("specs", "openeo-processes")
AMENDMENTS: dict[str, list[dict[str, Any]]] = {
    "resample_spatial": [
        {
            "name": "align",
            "description": "The corner of the spatial extent the new grid starts from: "
            "`upper-left` (default), `upper-right`, `lower-left` or `lower-right`. (openEO "
            "processes 2.0; described here, the installed spec predates it.)",
            "schema": {
                "type": "string",
                "enum": ["upper-left", "upper-right", "lower-left", "lower-right"],
            },
            "default": "upper-left",
            "optional": True,
        }
    ]
}
# Parameters openEO processes 2.0 renamed (clients send the new name): {process: {old: new}}.
RENAMED: dict[str, dict[str, str]] = {"apply_polygon": {"polygons": "geometries"}}
FALLBACK_FOLDERS = ("missing-processes", "proposals")


def _spec_dir() -> Traversable:
    folder = files(SPEC_PACKAGE)
    for part in SPEC_FOLDER:
        folder = folder / part
    return folder


def _json_files(folder: Traversable) -> dict[str, Traversable]:
    if not folder.is_dir():
        return {}
    return {
        entry.name.removesuffix(".json"): entry
        for entry in folder.iterdir()
        if entry.is_file() and entry.name.endswith(".json")
    }


@cache
def _spec_files() -> dict[str, Traversable]:
    found: dict[str, Traversable] = {}
    for sub in reversed(FALLBACK_FOLDERS):
        found.update(_json_files(_spec_dir() / sub))
    found.update(_json_files(_spec_dir()))
    return found


@cache
def spec_ids() -> frozenset[str]:
    """Ids of all processes with an official spec."""
    return frozenset(_spec_files())


@cache
def _load(process_id: str) -> dict[str, Any]:
    if process_id not in spec_ids():
        raise KeyError(f"No official openEO process spec for '{process_id}'")
    text = _spec_files()[process_id].read_text(encoding="utf-8")
    try:
        spec: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError as exc:  # an empty placeholder file in the package
        raise KeyError(f"The spec of '{process_id}' in {SPEC_PACKAGE} is not valid JSON") from exc
    for parameter in spec.get("parameters", []):
        parameter["name"] = RENAMED.get(process_id, {}).get(parameter["name"], parameter["name"])
    known = {p.get("name") for p in spec.get("parameters", [])}
    spec["parameters"] = spec.get("parameters", []) + [
        p for p in AMENDMENTS.get(process_id, []) if p["name"] not in known
    ]
    return spec


def preload() -> None:
    """Parses every spec now (~0.2 s). Airflow's task processes are forked from the process
    that imported the plugin, so they find the specs parsed instead of each sizing task
    parsing them again."""
    for process_id in spec_ids():
        with suppress(KeyError):
            _load(process_id)


def process_spec(process_id: str) -> dict[str, Any]:
    """The official spec of one process (a fresh copy: callers may modify it).

    Raises ``KeyError`` for a process without an official spec.
    """
    return copy.deepcopy(_load(process_id))


def parameter_names(process_id: str) -> list[str]:
    return [p["name"] for p in _load(process_id)["parameters"]]


def required_parameters(process_id: str) -> list[str]:
    """Parameters without ``optional: true`` in the spec."""
    return [p["name"] for p in _load(process_id)["parameters"] if not p.get("optional", False)]


def exception_spec(process_id: str, name: str) -> dict[str, Any] | None:
    """The spec's entry for a process-specific exception (``message``, optional ``http``)."""
    exceptions: dict[str, Any] = _load(process_id).get("exceptions") or {}
    entry = exceptions.get(name)
    return dict(entry) if entry is not None else None
