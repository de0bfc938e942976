"""``load_stac``: any STAC document a user names, read like a configured collection.

The URL may point at a STAC Item, an ItemCollection, a static Catalog or Collection (its
``child`` / ``item`` links are walked), or a STAC API collection (``/collections/{id}``, known
by its ``items`` link: searched with the extent through the API's ``/search``). From the
document (and one item) an ad-hoc ``CollectionConfig`` is made, so the load follows the same
path as ``load_collection``:

- bands: the data assets (role ``data``, or raster-looking ones without roles); a single-band
  asset is one band named by its asset key (its ``eo:bands`` name and common name also select
  it); each band of a multi-band asset becomes a band of its own (named by ``eo:bands``),
  read through GDAL's ``vrt://...?bands=i``. nodata/scale/offset come from each item's
  ``raster:bands`` (``scaling: stac``), else from the files;
- grid: the CRS shared by the items (``proj:epsg`` / ``proj:code``), the finest pixel size of
  the bands' ``proj:transform`` (else the first asset's header, else ``gsd``), aligned to that
  transform's origin, so a load of a native grid reads native pixels.

Security: in production a user-given URL must not read the server's files. ``http(s)`` URLs
are always allowed; local paths, ``file://`` URLs and other schemes only under an allowed root:
the folders of the configured collections' static catalogs, plus the entries of the
environment variable ``OPENEO_AIRFLOW_LOAD_STAC_ROOTS`` (comma-separated folders, or
URL prefixes such as ``s3://bucket/prefix/``). The same rule applies to every document walked
and to every asset href read, so a remote catalog cannot point the loader at local files.

``probe_stac`` is the cheap part of this that job creation and ``POST /validation`` run
(policy, one bounded read, "is it STAC"), so a bad URL is refused before a job is queued.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from openeo_airflow.catalog.adhoc_config import (
    BAND_SEPARATOR,
    asset_definitions,
    bands_of,
    expand_bands,
    grid_of,
    native_bounds,
)
from openeo_airflow.catalog.config import CollectionConfig
from openeo_airflow.catalog.properties import parse_properties
from openeo_airflow.catalog.stac import (
    BBox,
    StacItem,
    bbox_intersects,
    parse_item,
    resolve_href,
    search_items,
)
from openeo_airflow.core.errors import ProcessParameterInvalid

ROOTS_ENV = "OPENEO_AIRFLOW_LOAD_STAC_ROOTS"
TIMEOUT_SECONDS = 30
# The look at a URL during validation: a user waits for it, so it must be short and small.
PROBE_SECONDS = 5.0
PROBE_BYTES = 16 * 1024 * 1024
STAC_TYPES = ("Feature", "FeatureCollection", "Catalog", "Collection")
MAX_DOCUMENTS = 10_000  # a static catalog walk stops here: an endless catalog is an error
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_HTTP = ("http://", "https://")


@dataclass(frozen=True)
class AdhocSource:
    """An ad-hoc collection and how to find its items.

    ``items`` is the full item list of a static document (filtered in memory on each search);
    ``None`` for a STAC API, which is searched. ``multiband`` maps a multi-band asset key to
    its band count (the items' assets are expanded to one per band). ``aliases`` maps other
    names of a band (``eo:bands`` names, common names) to the band's name.
    """

    config: CollectionConfig
    items: list[StacItem] | None = None
    multiband: dict[str, int] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    roots: tuple[str, ...] = ()
    parameter: str = "url"
    process: str = "load_stac"
    trusted: bool = False  # hrefs the back-end made itself (load_result): no root check
    # The data's own bounding box (in the config's CRS) when the static items tell it: a load
    # without spatial_extent covers exactly the files' grid, not the reprojected lon/lat box.
    native_extent: dict[str, Any] | None = None

    def bands(self, requested: list[str] | None) -> list[str] | None:
        """The requested band names with aliases replaced by the bands' names."""
        if requested is None:
            return None
        names = set(self.config.band_names)
        return [name if name in names else self.aliases.get(name, name) for name in requested]

    def search(
        self,
        cfg: CollectionConfig,
        bbox_wgs84: BBox | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        properties: dict[str, Any] | None = None,
    ) -> list[StacItem]:
        """The items matching the extent (``io.reader``'s search signature)."""
        if self.items is None:
            found = search_items(cfg, bbox_wgs84, start, end, properties=properties)
        else:
            # Naive datetimes are UTC, as in ``search_items``.
            start = start.replace(tzinfo=start.tzinfo or UTC) if start else None
            end = end.replace(tzinfo=end.tzinfo or UTC) if end else None
            terms = parse_properties(properties)
            found = [
                item
                for item in self.items
                if (start is None or item.datetime >= start)
                and (end is None or item.datetime < end)
                and (bbox_wgs84 is None or bbox_intersects(item.bbox, bbox_wgs84))
                and (not terms or terms.matches(item.properties))
            ]
        wanted = {band.asset.split(BAND_SEPARATOR)[0] for band in cfg.bands}
        for item in found:
            for key in wanted & set(item.assets):
                self.check_href(item.assets[key])
        return sorted(
            (expand_bands(item, self.multiband) for item in found),
            key=lambda item: (item.datetime, item.id),
        )

    def check_href(self, href: str) -> str:
        if self.trusted:
            return href
        return check_href(href, self.roots, self.process, self.parameter)


def allowed_roots(
    collections: Iterable[CollectionConfig], env: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """Where local (and non-HTTP) STAC may live: configured catalogs' folders + the env var."""
    roots = [
        str(Path(cfg.catalog).resolve().parent)
        for cfg in collections
        if cfg.catalog and not _URL.match(cfg.catalog)
    ]
    value = (os.environ if env is None else env).get(ROOTS_ENV, "")
    for entry in value.split(","):  # not os.pathsep: URL prefixes contain ':'
        entry = entry.strip()
        if entry:
            roots.append(entry if _URL.match(entry) else str(Path(entry).resolve()))
    return tuple(roots)


def check_href(href: str, roots: Iterable[str], process: str, parameter: str) -> str:
    """``href`` normalised (``file://`` -> path) if it may be read, else an openEO error."""
    if href.startswith(_HTTP):
        return href
    if href.startswith("file://"):
        href = urllib.parse.unquote(urllib.parse.urlparse(href).path)
    if _URL.match(href):
        if any(href.startswith(root) for root in roots if _URL.match(root)):
            return href
    elif Path(href).is_absolute():
        path = Path(href).resolve()  # symlinks and '..' resolved before the check
        if any(path.is_relative_to(root) for root in roots if not _URL.match(root)):
            return str(path)
    raise ProcessParameterInvalid(
        process=process,
        parameter=parameter,
        reason=(
            f"'{href}' may not be read: give an http(s) URL, or a path under a folder this "
            f"back-end allows ({ROOTS_ENV})."
        ),
    )


def open_stac(url: str, roots: tuple[str, ...], process: str = "load_stac") -> AdhocSource:
    """Read the STAC document at ``url`` (and its items, unless it is a STAC API collection)."""
    href = check_href(url, roots, process, "url")
    document = read_document(href, process)
    kind = document.get("type")
    links = [link for link in document.get("links") or [] if isinstance(link, dict)]
    if kind == "Feature":
        items = [_parse(document, href, process)]
    elif kind == "FeatureCollection":
        items = [_parse(f, href, process) for f in document.get("features") or []]
    elif kind in ("Catalog", "Collection") and _is_api_collection(links):
        return _api_source(document, href, links, roots, process)
    elif kind in ("Catalog", "Collection"):
        items = _walk(document, href, roots, process)
    else:
        raise _invalid(process, f"'{url}' is not a STAC Item, Collection or Catalog.")
    if not items:
        raise _invalid(process, f"The STAC document '{url}' leads to no items.")
    return build_source(url, document, items, items, roots=roots, process=process)


def build_source(
    name: str,
    document: Mapping[str, Any],
    sample: list[StacItem],
    items: list[StacItem] | None,
    *,
    roots: tuple[str, ...] = (),
    process: str = "load_stac",
    parameter: str = "url",
    trusted: bool = False,
) -> AdhocSource:
    """An ``AdhocSource`` from a STAC document (title, extent, ``item_assets``) and ``sample``
    items (assets and projection); ``items`` as for ``AdhocSource``."""
    definitions = asset_definitions(document, sample)
    bands, multiband, aliases = bands_of(definitions)
    if not bands:
        raise ProcessParameterInvalid(
            process=process, parameter=parameter, reason=f"'{name}' has no raster data assets."
        )
    source = AdhocSource(
        CollectionConfig(name, name, name, "", None, 1.0, bands),  # placeholder until the grid
        items,
        multiband,
        aliases,
        roots,
        parameter,
        process,
        trusted,
    )
    try:
        crs, resolution, origin = grid_of(sample, definitions, bands, source.check_href)
    except ValueError as error:
        raise ProcessParameterInvalid(
            process=process, parameter=parameter, reason=str(error)
        ) from None
    extent = document.get("extent") or {}
    spatial = ((extent.get("spatial") or {}).get("bbox") or [None])[0]
    config = CollectionConfig(
        id=name,
        title=str(document.get("title") or name),
        description=str(document.get("description") or name),
        license=str(document.get("license") or "proprietary"),
        catalog=None,
        resolution=resolution,
        bands=bands,
        crs=crs,
        grid_origin=origin,
        spatial_extent=tuple(spatial[:4])
        if spatial and len(spatial) >= 4
        else (-180, -90, 180, 90),
    )
    native = native_bounds(items or [], crs, [b.asset for b in bands])
    extent_of_data = None
    if native is not None and crs is not None:
        west, south, east, north = native
        extent_of_data = {"west": west, "south": south, "east": east, "north": north, "crs": crs}
    return replace(source, config=config, native_extent=extent_of_data)


def probe_stac(
    url: str,
    roots: tuple[str, ...],
    *,
    timeout: float = PROBE_SECONDS,
    limit: int = PROBE_BYTES,
) -> None:
    """A cheap look at a ``load_stac`` URL before a job runs: allowed by the path policy,
    readable within ``timeout`` seconds, and a STAC document. Only this one document is read
    (no links followed); one larger than ``limit`` bytes is taken as readable unparsed."""
    href = check_href(url, roots, "load_stac", "url")
    deadline = time.monotonic() + timeout
    try:
        if href.startswith(_HTTP):
            request = urllib.request.Request(href, headers={"Accept": "application/json"})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = _read_until(response, deadline, limit)
        else:
            with open(href, "rb") as file:
                body = file.read(limit + 1)
    except (OSError, urllib.error.URLError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(error, TimeoutError) or isinstance(reason, TimeoutError):
            raise _invalid("load_stac", f"'{url}' did not answer within {timeout:g} s.") from None
        raise _invalid("load_stac", f"'{url}' cannot be read: {error}.") from None
    if len(body) > limit:
        return
    try:
        document = json.loads(body)
    except ValueError:
        raise _invalid("load_stac", f"'{url}' is not a JSON document (not STAC).") from None
    if not isinstance(document, dict) or document.get("type") not in STAC_TYPES:
        raise _invalid("load_stac", f"'{url}' is not a STAC Item, Collection or Catalog.")


def _read_until(response: Any, deadline: float, limit: int) -> bytes:
    """At most ``limit + 1`` bytes, or ``TimeoutError`` past ``deadline`` (the socket timeout
    bounds each read; a server trickling bytes must not hold validation longer)."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        if time.monotonic() > deadline:
            raise TimeoutError
        chunk = response.read(min(65536, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def read_document(href: str, process: str = "load_stac") -> dict[str, Any]:
    """A JSON document from a URL or path; unreadable or non-JSON is the user's error."""
    try:
        if href.startswith(_HTTP):
            request = urllib.request.Request(href, headers={"Accept": "application/json"})
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                document = json.load(response)
        else:
            document = json.loads(Path(href).read_text(encoding="utf-8"))
    except (OSError, urllib.error.URLError) as error:
        raise _invalid(process, f"'{href}' cannot be read: {error}.") from None
    except ValueError:
        raise _invalid(process, f"'{href}' is not a JSON document (not STAC).") from None
    if not isinstance(document, dict):
        raise _invalid(process, f"'{href}' is not a STAC document (not a JSON object).")
    return document


def _parse(document: Any, href: str, process: str) -> StacItem:
    try:
        return parse_item(document, href)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise _invalid(process, f"'{href}' has an invalid STAC item: {error!r}.") from None
    except Exception as error:  # parse_item raises Internal for items without datetime/bbox
        raise _invalid(process, f"'{href}': {error}") from None


def _walk(
    document: dict[str, Any], href: str, roots: tuple[str, ...], process: str
) -> list[StacItem]:
    """Items under a static catalog: breadth first, every href checked before it is read."""
    items: list[StacItem] = []
    seen = {href}
    queue = [(document, href)]
    while queue:
        current, base = queue.pop(0)
        for link in current.get("links") or []:
            if not isinstance(link, dict) or link.get("rel") not in ("child", "item"):
                continue
            target = check_href(resolve_href(base, str(link.get("href"))), roots, process, "url")
            if target in seen:
                continue
            seen.add(target)
            if len(seen) > MAX_DOCUMENTS:
                raise _invalid(process, f"The catalog has more than {MAX_DOCUMENTS} documents.")
            child = read_document(target, process)
            if child.get("type") == "Feature":
                items.append(_parse(child, target, process))
            else:
                queue.append((child, target))
    return items


def _is_api_collection(links: list[dict[str, Any]]) -> bool:
    rels = {link.get("rel") for link in links}
    return "items" in rels and not rels & {"item", "child"}


def _api_source(
    document: dict[str, Any],
    href: str,
    links: list[dict[str, Any]],
    roots: tuple[str, ...],
    process: str,
) -> AdhocSource:
    """A STAC API collection: one item tells the assets; loads search ``/search``."""
    root = next((link["href"] for link in links if link.get("rel") == "root"), None)
    api = resolve_href(href, str(root)) if root else href.split("/collections/")[0]
    items_link = next(link["href"] for link in links if link.get("rel") == "items")
    separator = "&" if "?" in items_link else "?"
    page = read_document(resolve_href(href, f"{items_link}{separator}limit=1"), process)
    sample = [_parse(f, href, process) for f in (page.get("features") or [])[:1]]
    if not sample and not document.get("item_assets"):
        raise _invalid(process, f"The STAC API collection '{href}' has no items.")
    source = build_source(href, document, sample, None, roots=roots, process=process)
    config = replace(
        source.config, stac_api=api.rstrip("/"), stac_collection=str(document.get("id"))
    )
    return replace(source, config=config)


def _invalid(process: str, reason: str) -> ProcessParameterInvalid:
    parameter = "id" if process == "load_result" else "url"
    return ProcessParameterInvalid(process=process, parameter=parameter, reason=reason)
