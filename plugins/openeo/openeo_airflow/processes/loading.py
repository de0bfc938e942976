"""``load_stac`` and ``load_result``: data sources, loaded by the engine like ``load_collection``.

The engine passes hooks for them to ``evaluate`` (``engine.stages.evaluate_plan``); these
functions only run when no engine does, and say so.

``load_stac``'s official schema allows only ``http(s)://`` URLs; this back-end also reads
local paths and ``file://`` URLs under the folders it allows (``catalog.adhoc``), so it lists
the official spec with that pattern lifted, and with the GeoJSON ``spatial_extent`` its
description promises (derived from the installed specs at run time).
"""

from __future__ import annotations

import copy
from typing import Any

from openeo_airflow.core.errors import Internal

from .registry import process
from .specs import process_spec


def _load_stac_spec() -> dict[str, Any]:
    spec = copy.deepcopy(process_spec("load_stac"))
    for parameter in spec.get("parameters", []):
        if parameter.get("name") == "spatial_extent":
            _allow_geojson(parameter)
        if parameter.get("name") == "url":
            schema = parameter.get("schema") or {}
            schema.pop("pattern", None)
            parameter["description"] = (
                f"{parameter.get('description', '')}\n\nThis back-end also accepts local paths "
                "and `file://` URLs under the folders its operators allow."
            )
    return spec


def _allow_geojson(parameter: dict[str, Any]) -> None:
    """The installed load_stac spec's schema lists only bounding boxes though its description
    speaks of polygons: take the GeoJSON alternative of load_collection's schema."""
    schemas = parameter.get("schema")
    if not isinstance(schemas, list) or any(s.get("subtype") == "geojson" for s in schemas):
        return
    for other in process_spec("load_collection").get("parameters", []):
        if other.get("name") == "spatial_extent":
            geojson = [s for s in other.get("schema", []) if s.get("subtype") == "geojson"]
            schemas[1:1] = copy.deepcopy(geojson)


@process("load_stac", spec=_load_stac_spec())
def load_stac(
    url: Any,
    spatial_extent: Any = None,
    temporal_extent: Any = None,
    bands: Any = None,
    properties: Any = None,
) -> Any:
    raise Internal(f"No data loader is configured to load STAC from '{url}'.")


@process("load_result")
def load_result(
    id: Any,
    spatial_extent: Any = None,
    temporal_extent: Any = None,
    bands: Any = None,
) -> Any:
    raise Internal(f"No data loader is configured to load the results of job '{id}'.")
