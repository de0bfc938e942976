"""Sentinel-2 product logic on STAC items: duplicates, time steps and the BOA offset.

Pure functions of item metadata (nothing here opens a raster):

- ``product_info``: mission, sensing time, processing baseline, relative orbit, MGRS tile and
  generation time of an item, from its product name (``s2:product_uri``,
  ``sentinel:product_id`` or the item id: ``S2B_MSIL2A_20240419T095549_N0510_R122_T47XML_
  20240419T123458``) and the ``s2:*`` / ``sentinel:*`` / ``processing:version`` properties.
- ``drop_duplicates``: a datatake re-processed (same mission, sensing time, orbit and tile, other
  baseline or generation time) is one observation: keep the newest processing baseline, then
  the newest generation time.
- ``acquisition_day``: the time-step label; every tile of one datatake gets the day its
  datatake started, so a datatake that crosses midnight UTC stays one time step.
- ``boa_offset``: the additive offset in digital numbers that harmonises processing baseline
  04.00+ reflectances with older ones (``-1000``; per band from the STAC raster extension when
  the item carries it, e.g. items built from the SAFE metadata's ``BOA_ADD_OFFSET``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from openeo_airflow.catalog.stac import StacItem, parse_datetime

BASELINE_OFFSET_START = (4, 0)
DEFAULT_BOA_OFFSET = -1000.0

_PRODUCT = re.compile(
    r"(?P<mission>S2[A-D])_MSI(?P<level>L[12][AC])_(?P<sensing>\d{8}T\d{6})"
    r"_N(?P<baseline>\d{4})_R(?P<orbit>\d{3})_T(?P<tile>\d{2}[A-Z]{3})"
    r"_(?P<generation>\d{8}T\d{6})"
)
_BASELINE = (re.compile(r"(\d{1,2})\.(\d{1,2})"), re.compile(r"(\d{2})(\d{2})"))
_PLATFORM = re.compile(r"2([a-dA-D])$")
_BASELINE_KEYS = ("s2:processing_baseline", "processing:version", "sentinel:processing_baseline")
_OFFSET_APPLIED_KEYS = ("earthsearch:boa_offset_applied", "sentinel:boa_offset_applied")


@dataclass(frozen=True)
class S2Product:
    """What identifies a Sentinel-2 product; ``None`` where the metadata does not say."""

    mission: str | None
    sensing: datetime
    baseline: tuple[int, int] | None
    orbit: int | None
    tile: str | None
    generation: datetime | None

    @property
    def observation(self) -> tuple[Any, ...]:
        """Products with equal keys are re-processings of one observation of one tile."""
        return (self.mission, self.sensing, self.orbit, self.tile)

    @property
    def version(self) -> tuple[tuple[int, int], str]:
        """Sort key of re-processings: baseline, then generation time (unknown = oldest)."""
        generated = self.generation.isoformat() if self.generation else ""
        return (self.baseline or (0, 0), generated)


def product_info(item: StacItem) -> S2Product:
    """The product identity of a Sentinel-2 item (falls back to the item datetime)."""
    props = item.properties
    match = None
    for key in ("s2:product_uri", "sentinel:product_id"):
        if isinstance(props.get(key), str):
            match = _PRODUCT.search(props[key])
            if match:
                break
    match = match or _PRODUCT.search(item.id)
    baseline = parse_baseline(next((props[k] for k in _BASELINE_KEYS if k in props), None))
    generation = _property_time(props.get("s2:generation_time"))
    if match is None:
        return S2Product(
            mission=_mission(props.get("platform")),
            sensing=item.datetime,
            baseline=baseline,
            orbit=_int(props.get("sat:relative_orbit")),
            tile=_tile(props),
            generation=generation,
        )
    return S2Product(
        mission=match["mission"],
        sensing=_compact_time(match["sensing"]),
        baseline=baseline or (int(match["baseline"][:2]), int(match["baseline"][2:])),
        orbit=int(match["orbit"]),
        tile=match["tile"],
        generation=generation or _compact_time(match["generation"]),
    )


def drop_duplicates(items: Iterable[StacItem]) -> tuple[list[StacItem], list[StacItem]]:
    """(kept, dropped): of each re-processed observation keep only the newest version.

    The kept items stay in their input order.
    """
    items = list(items)
    best: dict[tuple[Any, ...], tuple[Any, int]] = {}
    for index, item in enumerate(items):
        info = product_info(item)
        key = info.observation
        version = (info.version, item.id)
        if key not in best or version > best[key][0]:
            best[key] = (version, index)
    keep = {index for _, index in best.values()}
    kept = [item for i, item in enumerate(items) if i in keep]
    dropped = [item for i, item in enumerate(items) if i not in keep]
    return kept, dropped


def acquisition_day(item: StacItem) -> date:
    """The UTC day that labels the item's time step: the day its datatake started."""
    return product_info(item).sensing.date()


def parse_baseline(value: Any) -> tuple[int, int] | None:
    """``"04.00"``, ``"N0400"``, ``4.0`` or ``"05.10"`` as (major, minor); None if unknown."""
    if value is None:
        return None
    text = str(value).strip().lstrip("Nn")
    match = _BASELINE[0].fullmatch(text) or _BASELINE[1].fullmatch(text)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def boa_offset(item: StacItem, asset: str) -> float:
    """Digital numbers to add to the asset's raw values to harmonise baseline 04.00+ data.

    ``0`` for older baselines, unknown baselines and items whose archive already removed the
    offset (Earth Search's ``earthsearch:boa_offset_applied``); else the raster extension's
    ``offset / scale`` of the asset when present (``BOA_ADD_OFFSET``), else ``-1000``.
    """
    props = item.properties
    if any(props.get(key) is True for key in _OFFSET_APPLIED_KEYS):
        return 0.0
    baseline = product_info(item).baseline
    if baseline is None or baseline < BASELINE_OFFSET_START:
        return 0.0
    band = first_raster_band(item.asset_fields.get(asset, {}))
    scale, offset = band.get("scale"), band.get("offset")
    if isinstance(scale, int | float) and isinstance(offset, int | float) and scale:
        return float(round(offset / scale))
    return DEFAULT_BOA_OFFSET


def first_raster_band(asset: dict[str, Any]) -> dict[str, Any]:
    """The first ``raster:bands`` entry of an asset (STAC 1.0) or its ``bands`` (STAC 1.1)."""
    for key in ("raster:bands", "bands"):
        bands = asset.get(key)
        if isinstance(bands, list) and bands and isinstance(bands[0], dict):
            band = dict(bands[0])
            for name in ("scale", "offset", "nodata"):  # STAC 1.1 prefixes raster fields
                if f"raster:{name}" in band:
                    band.setdefault(name, band[f"raster:{name}"])
            return band
    return {}


def describe(items: Sequence[StacItem]) -> str:
    return ", ".join(item.id for item in items)


def _compact_time(text: str) -> datetime:
    """``20240419T095549`` (as matched by ``_PRODUCT``), by hand: ``strptime`` builds a regex
    on its first call in a process (~1 ms in a loader process, ~20 ms in a bare one)."""
    numbers = (text[0:4], text[4:6], text[6:8], text[9:11], text[11:13], text[13:15])
    year, month, day, hour, minute, second = (int(n) for n in numbers)
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def _property_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        return None


def _mission(platform: Any) -> str | None:
    if not isinstance(platform, str):
        return None
    match = _PLATFORM.search(platform.strip())
    return f"S2{match.group(1).upper()}" if match else None


def _tile(props: dict[str, Any]) -> str | None:
    if isinstance(props.get("s2:mgrs_tile"), str):
        return str(props["s2:mgrs_tile"])
    if isinstance(props.get("grid:code"), str):  # "MGRS-31UFS"
        return str(props["grid:code"]).split("-")[-1]
    zone, band = props.get("sentinel:utm_zone"), props.get("sentinel:latitude_band")
    square = props.get("sentinel:grid_square")
    if zone is not None and band and square:
        return f"{int(zone):02d}{band}{square}"
    return None


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
