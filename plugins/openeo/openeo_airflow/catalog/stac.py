"""Reading static STAC catalogs: walk ``child`` / ``item`` links and filter items.

A static catalog is a ``catalog.json`` or ``collection.json`` (or an ItemCollection /
FeatureCollection) whose links (relative or absolute hrefs) lead to sub-catalogs and items.
Hrefs may be local paths, ``file://`` URLs or ``http(s)://`` URLs. What local documents hold is
kept while their files are unchanged.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from openeo_airflow.catalog.config import CollectionConfig
from openeo_airflow.catalog.properties import parse_properties
from openeo_airflow.core.errors import Internal

BBox = tuple[float, float, float, float]
_URL_PATTERN = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass(frozen=True)
class StacItem:
    """The parts of a STAC item the loader needs; ``assets`` maps asset key -> absolute href.

    ``geometry`` is the GeoJSON footprint (WGS 84) when the item has one; ``asset_fields``
    holds each asset's other fields (``raster:bands``, ``proj:*``, ...).
    """

    id: str
    datetime: datetime
    bbox: BBox
    crs: str | None
    assets: dict[str, str] = field(default_factory=dict, hash=False)
    properties: dict[str, Any] = field(default_factory=dict, hash=False)
    geometry: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    asset_fields: dict[str, dict[str, Any]] = field(default_factory=dict, hash=False, compare=False)


def search_items(
    cfg: CollectionConfig,
    bbox_wgs84: BBox | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    properties: dict[str, Any] | None = None,
) -> list[StacItem]:
    """Items of the collection intersecting ``bbox_wgs84`` with ``start <= t < end``.

    ``properties`` is ``load_collection``'s metadata filter (``{property: callback}``),
    pushed into a STAC API search where it translates and checked on every item.
    Sorted by datetime, then id. Naive datetimes are taken as UTC.
    """
    start_utc = _as_utc(start) if start else None
    end_utc = _as_utc(end) if end else None
    terms = parse_properties(properties)
    if cfg.stac_api:
        from openeo_airflow.catalog.stac_api import search_api

        candidates = search_api(cfg, bbox_wgs84, start_utc, end_utc, terms)
    elif cfg.catalog:
        candidates = read_catalog(cfg.catalog)
    else:
        raise Internal(message=f"Collection '{cfg.id}' has neither a catalog nor a STAC API")
    items = [
        item
        for item in candidates
        if (start_utc is None or item.datetime >= start_utc)
        and (end_utc is None or item.datetime < end_utc)
        and (bbox_wgs84 is None or bbox_intersects(item.bbox, bbox_wgs84))
        and (not terms or terms.matches(item.properties))
    ]
    return sorted(items, key=lambda item: (item.datetime, item.id))


def read_catalog(href: str) -> list[StacItem]:
    """All items reachable from a static catalog, collection or item collection."""
    return list(_walk(_normalise(href), set()))


def parse_item(
    document: dict[str, Any], href: str, *, keep_absolute_paths: bool = False
) -> StacItem:
    """A STAC item document (read from ``href``) as a ``StacItem``.

    ``keep_absolute_paths``: asset hrefs like ``/data/x.tif`` stay local paths even when the
    item came from a URL (STAC API answers pointing at a shared filesystem).
    """
    properties = dict(document.get("properties") or {})
    when = properties.get("datetime") or properties.get("start_datetime")
    if not when:
        raise Internal(message=f"STAC item {href} has no datetime")
    raw_assets = {
        key: asset
        for key, asset in (document.get("assets") or {}).items()
        if isinstance(asset, dict) and "href" in asset
    }
    return StacItem(
        id=str(document["id"]),
        datetime=parse_datetime(str(when)),
        bbox=_item_bbox(document, href),
        crs=_item_crs(document),
        assets={
            key: asset["href"]
            if keep_absolute_paths and str(asset["href"]).startswith("/")
            else resolve_href(href, asset["href"])
            for key, asset in raw_assets.items()
        },
        properties=properties,
        geometry=document.get("geometry") or None,
        asset_fields={
            key: {k: v for k, v in asset.items() if k != "href"}
            for key, asset in raw_assets.items()
        },
    )


def parse_datetime(value: str) -> datetime:
    """An RFC 3339 date-time (or a date) as an aware UTC datetime."""
    text = value.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return _as_utc(datetime.fromisoformat(text))


def bbox_intersects(a: BBox, b: BBox) -> bool:
    """Whether two (west, south, east, north) boxes overlap (touching edges do not count)."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def resolve_href(base: str, href: str) -> str:
    """``href`` made absolute against the document at ``base`` (path or URL)."""
    if _URL_PATTERN.match(href):
        return _normalise(href)
    if _URL_PATTERN.match(base):
        return urllib.parse.urljoin(base, href)
    if Path(href).is_absolute():
        return posixpath.normpath(href)
    return posixpath.normpath(posixpath.join(posixpath.dirname(base), href))


def _walk(href: str, seen: set[str]) -> Iterator[StacItem]:
    if href in seen:
        return
    seen.add(href)
    entries = _local_entries(href) if not _URL_PATTERN.match(href) else _entries(href)
    yield from entries.items
    for link in entries.links:
        yield from _walk(link, seen)


@dataclass(frozen=True)
class _Entries:
    """What one catalog document holds: its items and the hrefs of its children and items."""

    items: tuple[StacItem, ...]
    links: tuple[str, ...]


# The entries of local documents, with the (mtime, size) they were read at. A synchronous
# request searches its catalog twice (size check, then load), and each search read and parsed
# every document: 30 ms for the 29 documents of the benchmark catalog. A changed file is read
# again; remote documents are always read.
_LOCAL_ENTRIES: dict[str, tuple[tuple[int, int], _Entries]] = {}
_MAX_LOCAL_DOCUMENTS = 50_000


def _local_entries(path: str) -> _Entries:
    try:
        stat = os.stat(path)
    except OSError as error:
        raise Internal(message=f"Cannot read STAC document {path}: {error}") from error
    version = (stat.st_mtime_ns, stat.st_size)
    cached = _LOCAL_ENTRIES.get(path)
    if cached is not None and cached[0] == version:
        return cached[1]
    entries = _entries(path)
    if len(_LOCAL_ENTRIES) >= _MAX_LOCAL_DOCUMENTS:
        _LOCAL_ENTRIES.clear()  # bounded memory in a long-lived API process; simply start over
    _LOCAL_ENTRIES[path] = (version, entries)
    return entries


def _entries(href: str) -> _Entries:
    document = _read_json(href)
    kind = document.get("type")
    if kind == "Feature":
        return _Entries((parse_item(document, href),), ())
    features = document.get("features", []) if kind == "FeatureCollection" else []
    return _Entries(
        tuple(parse_item(feature, href) for feature in features),
        tuple(
            resolve_href(href, link["href"])
            for link in document.get("links", [])
            if link.get("rel") in ("child", "item") and "href" in link
        ),
    )


def _read_json(href: str) -> dict[str, Any]:
    try:
        if href.startswith(("http://", "https://")):
            with urllib.request.urlopen(href, timeout=30) as response:
                document = json.load(response)
        else:
            document = json.loads(Path(href).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise Internal(message=f"Cannot read STAC document {href}: {error}") from error
    if not isinstance(document, dict):
        raise Internal(message=f"STAC document {href} is not a JSON object")
    return document


def _normalise(href: str) -> str:
    """``file://`` URLs become local paths; other URLs stay as they are."""
    if href.startswith("file://"):
        return urllib.parse.unquote(urllib.parse.urlparse(href).path)
    return href


def _item_bbox(document: dict[str, Any], href: str) -> BBox:
    bbox = document.get("bbox")
    if bbox and len(bbox) in (4, 6):
        half = len(bbox) // 2
        return (float(bbox[0]), float(bbox[1]), float(bbox[half]), float(bbox[half + 1]))
    geometry = document.get("geometry")
    if not geometry:
        raise Internal(message=f"STAC item {href} has neither bbox nor geometry")
    xs, ys = zip(*_positions(geometry["coordinates"]), strict=True)
    return (min(xs), min(ys), max(xs), max(ys))


def _positions(coordinates: Any) -> Iterator[tuple[float, float]]:
    if coordinates and isinstance(coordinates[0], int | float):
        yield float(coordinates[0]), float(coordinates[1])
        return
    for part in coordinates:
        yield from _positions(part)


def _item_crs(document: dict[str, Any]) -> str | None:
    """``proj:code`` / ``proj:epsg`` of the item, else of its first asset that has one."""
    sources = [document.get("properties") or {}]
    sources += list((document.get("assets") or {}).values())
    for source in sources:
        if source.get("proj:code"):
            return str(source["proj:code"])
        if source.get("proj:epsg"):
            return f"EPSG:{int(source['proj:epsg'])}"
    return None


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
