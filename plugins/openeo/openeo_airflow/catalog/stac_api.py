"""Searching a STAC API (``/search``, item-search conformance) with pystac-client.

The search sends the collection, the bounding box, the time interval and the translated
``properties`` terms (CQL2-JSON through the filter extension, or the query extension), pages
through all results, and returns ``StacItem``s. Times and properties are checked again on
each item (STAC intervals are closed, openEO's end is exclusive; a server may ignore terms).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from openeo_airflow.catalog.config import CollectionConfig
from openeo_airflow.catalog.properties import PropertyFilter
from openeo_airflow.catalog.stac import BBox, StacItem, parse_item
from openeo_airflow.core.errors import InfrastructureBusy

TIMEOUT_SECONDS = 60
RETRIES = 3
PAGE_SIZE = 100


def search_api(
    cfg: CollectionConfig,
    bbox_wgs84: BBox | None,
    start: datetime | None,
    end: datetime | None,
    terms: PropertyFilter,
) -> list[StacItem]:
    """All items of ``cfg.stac_collection`` at ``cfg.stac_api`` matching the search."""
    from pystac_client import Client
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO

    assert cfg.stac_api is not None and cfg.stac_collection is not None
    parameters: dict[str, Any] = {
        "collections": [cfg.stac_collection],
        "limit": PAGE_SIZE,
    }
    if bbox_wgs84 is not None:
        parameters["bbox"] = list(bbox_wgs84)
    if start is not None or end is not None:
        parameters["datetime"] = f"{_iso(start)}/{_iso(end)}"
    if cfg.filter_lang == "query" and terms.query():
        parameters["query"] = terms.query()
    elif terms.cql2():
        parameters["filter"] = terms.cql2()
        parameters["filter_lang"] = "cql2-json"
    try:
        client = Client.open(
            cfg.stac_api, stac_io=StacApiIO(timeout=TIMEOUT_SECONDS, max_retries=RETRIES)
        )
        search = client.search(method="POST", **parameters)
        documents = list(search.items_as_dicts())
    except (APIError, OSError, ValueError, NotImplementedError) as error:
        # The archive's catalog is down or unreachable: a service problem, not a bad request.
        raise InfrastructureBusy(
            f"The catalog of collection '{cfg.id}' ({cfg.stac_api}) could not be searched; "
            f"try again later. ({type(error).__name__}: {str(error)[:200]})"
        ) from error
    base = cfg.stac_api.rstrip("/") + "/search"
    return [
        parse_item(document, _self_href(document, base), keep_absolute_paths=True)
        for document in documents
    ]


def _self_href(document: dict[str, Any], default: str) -> str:
    for link in document.get("links") or []:
        if link.get("rel") == "self" and isinstance(link.get("href"), str):
            return str(link["href"])
    return default


def _iso(value: datetime | None) -> str:
    if value is None:
        return ".."
    return value.isoformat().replace("+00:00", "Z")
