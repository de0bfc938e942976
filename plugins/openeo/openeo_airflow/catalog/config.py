"""Collection configuration: which archive backs a collection and how its assets become bands.

The configuration is a YAML file with a top-level ``collections`` list; each entry names a
static STAC catalog (``catalog:``) or a STAC API (``stac_api:`` + ``stac_collection:``) and maps
assets to bands. See ``collections.default.yaml``.
Loading reads only the YAML file, never the archive.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from openeo_airflow.core.errors import CollectionNotFound
from openeo_airflow.core.settings import load_settings

DEFAULT_COLLECTIONS_FILE = Path(__file__).with_name("collections.default.yaml")

_ENV_PATTERN = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")
_URL_PATTERN = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
RESAMPLING_METHODS = ("nearest", "bilinear", "cubic", "average", "mode")
FILTER_LANGS = ("cql2-json", "query")


@dataclass(frozen=True)
class BandConfig:
    """One band of a collection: the STAC asset it is read from and how to decode it.

    Decoded value = raw * scale + offset; raw values equal to ``nodata`` become NaN
    (``nodata: null`` means: use the source file's own no-data value, if any).
    ``resampling`` is used when the source grid differs from the cube grid; the default
    ``nearest`` keeps source values unchanged where grids align.
    ``harmonize`` (Sentinel-2 reflectances): add the item's processing-baseline offset
    (``-1000`` digital numbers from baseline 04.00 on) before scaling, so values of all
    baselines are comparable. ``scaling: stac`` takes scale and offset from the item asset's
    raster extension (``raster:bands``) where it has them, instead of ``scale``/``offset``.
    ``overviews: false`` keeps the loader from reading internal overviews for coarser
    targets: needed for class maps (SCL) whose overviews average classes (JPEG2000's reduced
    resolutions always do).
    """

    name: str
    asset: str
    nodata: float | None = None
    scale: float = 1.0
    offset: float = 0.0
    resolution: float | None = None
    description: str = ""
    wavelength_um: float | None = None
    common_name: str | None = None
    data_type: str | None = None
    resampling: str = "nearest"
    harmonize: bool = False
    scaling: str = "config"
    overviews: bool = True
    units: str | None = None


@dataclass(frozen=True)
class SentinelHubConfig:
    """A collection served by the Sentinel Hub Process API (``io.sentinelhub``).

    ``data_collection`` is a ``sentinelhub.DataCollection`` name (``SENTINEL2_L2A``,
    ``SENTINEL1_IW``...); each band's ``asset`` is the service's band name and ``units`` its
    units (``DN``, ``REFLECTANCE``, ``LINEAR_POWER``...). Credentials are never part of the
    configuration: only the names of the environment variables (or secret files) holding them.
    ``data_filter`` / ``processing`` are sent as the request's ``dataFilter`` / ``processing``
    (``sar_backscatter`` overrides the backscatter keys); ``max_pixels`` is the service's
    width/height limit per request.
    """

    data_collection: str
    base_url: str = "https://services.sentinel-hub.com"
    token_url: str | None = None
    client_id_env: str = "SH_CLIENT_ID"
    client_secret_env: str = "SH_CLIENT_SECRET"
    mosaicking_order: str | None = "mostRecent"
    data_filter: dict[str, Any] = field(default_factory=dict)
    processing: dict[str, Any] = field(default_factory=dict)
    max_pixels: int = 2500
    max_retries: int = 5

    @property
    def sar(self) -> bool:
        return self.data_collection.upper().startswith("SENTINEL1")


@dataclass(frozen=True)
class SarConfig:
    """Sentinel-1 GRD read from the archive (``io.sar``): the item assets holding each
    polarisation's annotation, calibration and noise XML (``{pol}``: ``vv``, ``vh``...)."""

    annotation_asset: str = "schema-product-{pol}"
    calibration_asset: str = "schema-calibration-{pol}"
    noise_asset: str = "schema-noise-{pol}"


@dataclass(frozen=True)
class CollectionConfig:
    """A configured collection, backed by a static STAC catalog or a STAC API.

    ``catalog`` is a static catalog (path or URL); ``stac_api`` + ``stac_collection`` a STAC
    API search endpoint and collection id (exactly one of ``catalog`` / ``stac_api``).
    ``crs`` is the target CRS of loaded cubes (``None``: the UTM zone of the extent when
    items are in it, else the first item's CRS); ``resolution`` the target pixel size in that
    CRS. Cube grids are aligned to ``grid_origin + k * resolution`` (default origin 0, 0), so
    one extent always gives the same grid. ``sentinel2`` switches on the Sentinel-2 product
    logic (duplicates, datatake time steps, baseline offset). ``gdal_profile`` names the GDAL
    profile for this archive (default: the deployment's). ``filter_lang`` is how the
    ``properties`` filter is sent to the STAC API: ``cql2-json`` (filter extension) or
    ``query`` (query extension).
    """

    id: str
    title: str
    description: str
    license: str
    catalog: str | None
    resolution: float
    bands: list[BandConfig]
    crs: str | None = None
    grid_origin: tuple[float, float] = (0.0, 0.0)
    spatial_extent: tuple[float, float, float, float] = (-180.0, -90.0, 180.0, 90.0)
    temporal_extent: tuple[str | None, str | None] = (None, None)
    keywords: list[str] = field(default_factory=list)
    providers: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    stac_api: str | None = None
    stac_collection: str | None = None
    filter_lang: str = "cql2-json"
    sentinel2: bool = False
    gdal_profile: str | None = None
    sentinelhub: SentinelHubConfig | None = None
    sar: SarConfig | None = None

    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    def band(self, name: str) -> BandConfig:
        for band in self.bands:
            if band.name == name:
                return band
        raise KeyError(name)


def load_collections(
    path: Path, env: Mapping[str, str] | None = None
) -> dict[str, CollectionConfig]:
    """Read a collections YAML file into configurations keyed by collection id.

    ``${VAR}`` and ``${VAR:-default}`` in ``catalog`` are expanded from ``env`` (default:
    the process environment); ``OPENEO_AIRFLOW_HOME`` defaults to the settings' home folder.
    Relative catalog paths are resolved against the YAML file's folder.
    """
    env = dict(os.environ if env is None else env)
    env.setdefault("OPENEO_AIRFLOW_HOME", str(load_settings(env).home))
    path = Path(path)
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = document.get("collections") or []
    if not isinstance(entries, list):
        raise ValueError(f"{path}: 'collections' must be a list of collection entries")
    collections: dict[str, CollectionConfig] = {}
    for entry in entries:
        cfg = _parse_collection(entry, path.parent.resolve(), env, path)
        if cfg.id in collections:
            raise ValueError(f"{path}: collection '{cfg.id}' is defined twice")
        collections[cfg.id] = cfg
    return collections


def get_collection(
    collections: Mapping[str, CollectionConfig], collection_id: str
) -> CollectionConfig:
    """Look up a collection, raising the openEO ``CollectionNotFound`` error."""
    try:
        return collections[collection_id]
    except KeyError:
        raise CollectionNotFound(identifier=collection_id) from None


def expand_env(value: str, env: Mapping[str, str]) -> str:
    """Expand ``${VAR}`` / ``${VAR:-default}``; an unset variable without default is an error."""

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        raise ValueError(f"environment variable {name} is not set (used in '{value}')")

    return _ENV_PATTERN.sub(replace, value)


def resolve_catalog_href(value: str, base: Path, env: Mapping[str, str]) -> str:
    """Expand variables; URLs stay as they are, local paths become absolute."""
    expanded = expand_env(value, env)
    if _URL_PATTERN.match(expanded):
        return expanded
    local = Path(expanded).expanduser()
    return str(local if local.is_absolute() else (base / local).resolve())


def _parse_collection(
    entry: dict[str, Any], base: Path, env: Mapping[str, str], path: Path
) -> CollectionConfig:
    if not isinstance(entry, dict) or "id" not in entry:
        raise ValueError(f"{path}: every collection entry needs an 'id'")
    cid = str(entry["id"])
    for key in ("resolution", "bands"):
        if key not in entry:
            raise ValueError(f"{path}: collection '{cid}' lacks '{key}'")
    if sum(key in entry for key in ("catalog", "stac_api", "sentinelhub")) != 1:
        raise ValueError(
            f"{path}: collection '{cid}' needs exactly one of 'catalog', 'stac_api', 'sentinelhub'"
        )
    if "stac_api" in entry and not entry.get("stac_collection"):
        raise ValueError(f"{path}: collection '{cid}' uses 'stac_api' without 'stac_collection'")
    filter_lang = str(entry.get("filter_lang", "cql2-json"))
    if filter_lang not in FILTER_LANGS:
        raise ValueError(f"{path}: '{cid}' filter_lang must be one of {', '.join(FILTER_LANGS)}")
    catalog = entry.get("catalog")
    stac_api = entry.get("stac_api")
    extent = entry.get("extent") or {}
    origin = entry.get("grid_origin") or (0.0, 0.0)
    return CollectionConfig(
        id=cid,
        title=str(entry.get("title", cid)),
        description=str(entry.get("description", cid)),
        license=str(entry.get("license", "proprietary")),
        catalog=None if catalog is None else resolve_catalog_href(str(catalog), base, env),
        resolution=float(entry["resolution"]),
        bands=[_parse_band(b, cid, path) for b in entry["bands"]],
        crs=str(entry["crs"]) if entry.get("crs") is not None else None,
        grid_origin=(float(origin[0]), float(origin[1])),
        spatial_extent=_parse_bbox(extent.get("spatial"), cid, path),
        temporal_extent=_parse_interval(extent.get("temporal"), cid, path),
        keywords=[str(k) for k in entry.get("keywords", [])],
        providers=list(entry.get("providers", [])),
        links=list(entry.get("links", [])),
        stac_api=None if stac_api is None else expand_env(str(stac_api), env),
        stac_collection=entry.get("stac_collection"),
        filter_lang=filter_lang,
        sentinel2=bool(entry.get("sentinel2", False)),
        gdal_profile=entry.get("gdal_profile"),
        sentinelhub=_parse_sentinelhub(entry.get("sentinelhub"), cid, env, path),
        sar=_parse_sar(entry.get("sar"), cid, path),
    )


def _parse_sentinelhub(
    value: Any, cid: str, env: Mapping[str, str], path: Path
) -> SentinelHubConfig | None:
    if value is None:
        return None
    if not isinstance(value, dict) or "data_collection" not in value:
        raise ValueError(f"{path}: '{cid}' sentinelhub needs a 'data_collection'")
    known = set(SentinelHubConfig.__dataclass_fields__)
    unknown = set(value) - known
    if unknown:
        raise ValueError(f"{path}: '{cid}' sentinelhub: unknown keys {', '.join(sorted(unknown))}")
    options = dict(value)
    for key in ("base_url", "token_url"):
        if options.get(key) is not None:
            options[key] = expand_env(str(options[key]), env).rstrip("/")
    for key in ("max_pixels", "max_retries"):
        if key in options:
            options[key] = int(options[key])
    return SentinelHubConfig(**options)


def _parse_sar(value: Any, cid: str, path: Path) -> SarConfig | None:
    if value is None or value is False:
        return None
    if value is True:
        return SarConfig()
    if not isinstance(value, dict) or set(value) - set(SarConfig.__dataclass_fields__):
        raise ValueError(f"{path}: '{cid}' sar must be true or a mapping of *_asset keys")
    return SarConfig(**{k: str(v) for k, v in value.items()})


def _parse_band(entry: dict[str, Any], cid: str, path: Path) -> BandConfig:
    if not isinstance(entry, dict) or "name" not in entry:
        raise ValueError(f"{path}: every band of '{cid}' needs a 'name'")
    resampling = str(entry.get("resampling", "nearest"))
    if resampling not in RESAMPLING_METHODS:
        raise ValueError(
            f"{path}: band {entry['name']} of '{cid}': resampling must be one of "
            f"{', '.join(RESAMPLING_METHODS)}"
        )
    scaling = str(entry.get("scaling", "config"))
    if scaling not in ("config", "stac"):
        raise ValueError(f"{path}: band {entry['name']} of '{cid}': scaling must be config or stac")
    harmonize = bool(entry.get("harmonize", False))
    if harmonize and scaling == "stac":
        raise ValueError(
            f"{path}: band {entry['name']} of '{cid}': 'harmonize' and 'scaling: stac' exclude "
            "each other (the raster extension's offset already harmonises)"
        )
    return BandConfig(
        name=str(entry["name"]),
        asset=str(entry.get("asset", entry["name"])),
        nodata=_optional_float(entry.get("nodata")),
        scale=float(entry.get("scale", 1.0)),
        offset=float(entry.get("offset", 0.0)),
        resolution=_optional_float(entry.get("resolution")),
        description=str(entry.get("description", "")),
        wavelength_um=_optional_float(entry.get("wavelength_um")),
        common_name=entry.get("common_name"),
        data_type=entry.get("data_type"),
        resampling=resampling,
        harmonize=harmonize,
        scaling=scaling,
        overviews=bool(entry.get("overviews", True)),
        units=entry.get("units"),
    )


def _parse_bbox(value: Any, cid: str, path: Path) -> tuple[float, float, float, float]:
    if value is None:
        return (-180.0, -90.0, 180.0, 90.0)
    if len(value) != 4:
        raise ValueError(f"{path}: '{cid}' extent.spatial must be [west, south, east, north]")
    west, south, east, north = (float(v) for v in value)
    return (west, south, east, north)


def _parse_interval(value: Any, cid: str, path: Path) -> tuple[str | None, str | None]:
    if value is None:
        return (None, None)
    if len(value) != 2:
        raise ValueError(f"{path}: '{cid}' extent.temporal must be [start, end]")
    start, end = (None if v is None else _iso(v) for v in value)
    return (start, end)


def _iso(value: Any) -> str:
    """YAML turns unquoted timestamps into date/datetime objects; keep RFC 3339 UTC strings."""
    if isinstance(value, datetime):
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return utc.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00Z"
    return str(value)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
