"""The ad-hoc collection of a STAC document: bands from its data assets, grid from ``proj:*``.

Used by ``catalog.adhoc`` (``load_stac``) and ``catalog.job_results`` (``load_result``):

- bands: the data assets (role ``data``, or raster-looking assets without roles); a single-band
  asset is one band named by its asset key (its ``eo:bands`` name and common name are aliases);
  each band of a multi-band asset is a band of its own (named by ``eo:bands``, else
  ``<key>_<i>``), read through GDAL's ``vrt://<file>?bands=i`` (``expand_bands``). Scale,
  offset and nodata come from each item's ``raster:bands`` (``scaling: stac``), else the file;
- grid: the items' common CRS (``proj:epsg`` / ``proj:code``), the finest pixel size among
  the bands' ``proj:transform`` aligned to that transform's origin (so a native grid loads
  native pixels); without projection metadata, the first data asset's header; last, ``gsd``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from openeo_airflow.catalog.config import BandConfig
from openeo_airflow.catalog.stac import StacItem

_HTTP = ("http://", "https://")
_NON_DATA_ROLES = {"thumbnail", "overview", "metadata"}
_RASTER_TYPES = ("image/tiff", "image/jp2", "application/x-netcdf", "application/netcdf")
_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".nc", ".vrt")
BAND_SEPARATOR = "#"  # asset key of band i of a multi-band asset: "<key>#<i>"


def expand_bands(item: StacItem, multiband: Mapping[str, int]) -> StacItem:
    """``item`` with an asset ``<key>#<i>`` per band of each multi-band asset (``vrt://``)."""
    assets, fields = dict(item.assets), dict(item.asset_fields)
    for key, count in multiband.items():
        if key not in item.assets:
            continue
        base = gdal_path(item.assets[key])
        raster = (item.asset_fields.get(key) or {}).get("raster:bands") or []
        for index in range(1, count + 1):
            assets[f"{key}{BAND_SEPARATOR}{index}"] = f"vrt://{base}?bands={index}"
            band = raster[index - 1] if index <= len(raster) else {}
            fields[f"{key}{BAND_SEPARATOR}{index}"] = {"raster:bands": [band]}
    return replace(item, assets=assets, asset_fields=fields)


def gdal_path(href: str) -> str:
    """The GDAL name of an href (inside ``vrt://`` GDAL does not translate URLs itself)."""
    if href.startswith(_HTTP):
        return f"/vsicurl/{href}"
    if href.startswith("s3://"):
        return f"/vsis3/{href[5:]}"
    return href


def asset_definitions(
    document: Mapping[str, Any], sample: list[StacItem]
) -> dict[str, dict[str, Any]]:
    """Asset key -> fields (``type``, ``roles``, ``eo:bands``, ...): the collection's
    ``item_assets``, completed by the sample items' assets."""
    definitions: dict[str, dict[str, Any]] = {}
    for key, value in (document.get("item_assets") or {}).items():
        if isinstance(value, dict):
            definitions[key] = dict(value)
    for item in sample:
        for key, href in item.assets.items():
            merged = {**(item.asset_fields.get(key) or {}), **definitions.get(key, {})}
            definitions[key] = {"href": href, **merged}
    return {key: value for key, value in definitions.items() if _is_data(key, value)}


def _is_data(key: str, asset: Mapping[str, Any]) -> bool:
    roles = set(asset.get("roles") or [])
    if roles:
        return "data" in roles and not roles & _NON_DATA_ROLES
    media = str(asset.get("type") or "")
    href = str(asset.get("href") or "").split("?")[0].lower()
    return (
        media.startswith(_RASTER_TYPES)
        or href.endswith(_RASTER_SUFFIXES)
        or any(k in asset for k in ("raster:bands", "eo:bands", "bands"))
    )


def bands_of(
    definitions: Mapping[str, Mapping[str, Any]],
) -> tuple[list[BandConfig], dict[str, int], dict[str, str]]:
    bands: list[BandConfig] = []
    multiband: dict[str, int] = {}
    aliases: dict[str, str] = {}
    used = set(definitions)
    for key, asset in definitions.items():
        eo = [b for b in asset.get("eo:bands") or asset.get("bands") or [] if isinstance(b, dict)]
        count = max(len(eo), len(asset.get("raster:bands") or []), 1)
        if count == 1:
            info = eo[0] if eo else {}
            bands.append(_band(key, key, info, asset))
            for alias in (info.get("name"), info.get("common_name")):
                if isinstance(alias, str) and alias not in used:
                    aliases.setdefault(alias, key)
            continue
        multiband[key] = count
        for index in range(1, count + 1):
            info = eo[index - 1] if index <= len(eo) else {}
            name = info.get("name")
            if not isinstance(name, str) or name in used:
                name = f"{key}_{index}"
            used.add(name)
            bands.append(_band(name, f"{key}{BAND_SEPARATOR}{index}", info, asset))
    return bands, multiband, aliases


def _band(
    name: str, asset_key: str, info: Mapping[str, Any], asset: Mapping[str, Any]
) -> BandConfig:
    wavelength = info.get("center_wavelength") or info.get("eo:center_wavelength")
    return BandConfig(
        name=name,
        asset=asset_key,
        # nodata, scale and offset: per item from raster:bands, else the file's nodata.
        scaling="stac",
        description=str(info.get("description") or asset.get("title") or ""),
        wavelength_um=float(wavelength) if isinstance(wavelength, int | float) else None,
        common_name=info.get("common_name") if isinstance(info.get("common_name"), str) else None,
    )


def grid_of(
    sample: list[StacItem],
    definitions: Mapping[str, Mapping[str, Any]],
    bands: list[BandConfig],
    check: Callable[[str], str],
) -> tuple[str | None, float, tuple[float, float]]:
    """(CRS, pixel size, grid origin) of the data: projection metadata, else a header."""
    codes = {item.crs for item in sample}
    crs = codes.pop() if len(codes) == 1 else None
    keys = {band.asset.split(BAND_SEPARATOR)[0] for band in bands}
    transforms: list[list[Any]] = [
        definitions[key]["proj:transform"]
        for key in keys
        if isinstance(definitions[key].get("proj:transform"), list)
    ]
    for item in sample[:1]:
        if isinstance(item.properties.get("proj:transform"), list):
            transforms.append(item.properties["proj:transform"])
    if crs is not None and transforms:
        finest = min(transforms, key=lambda t: abs(float(t[0])))
        return crs, abs(float(finest[0])), (float(finest[2]), float(finest[5]))
    href = next((str(d["href"]) for k, d in definitions.items() if k in keys and "href" in d), None)
    if href is not None:
        header = _header(check(href))
        if header is not None:
            return header
    gsd = next((d.get("gsd") for d in definitions.values() if d.get("gsd")), None)
    gsd = gsd or next((i.properties.get("gsd") for i in sample if i.properties.get("gsd")), None)
    if crs is not None and isinstance(gsd, int | float):
        return crs, float(gsd), (0.0, 0.0)
    raise ValueError("The STAC metadata tells neither the CRS and pixel size nor a readable asset.")


def _header(href: str) -> tuple[str | None, float, tuple[float, float]] | None:
    import rasterio  # only when the metadata lacks projection information

    try:
        with rasterio.open(href) as src:
            t = src.transform
            crs = src.crs.to_string() if src.crs else None
            return crs, abs(float(t.a)), (float(t.c), float(t.f))
    except (rasterio.errors.RasterioError, OSError):
        return None


def native_bounds(
    items: list[StacItem], crs: str | None, assets: list[str]
) -> tuple[float, float, float, float] | None:
    """The union of the items' raster bounds in ``crs`` (from ``proj:transform`` and
    ``proj:shape``); ``None`` unless every item is in ``crs`` and tells them."""
    keys = list(dict.fromkeys(asset.split(BAND_SEPARATOR)[0] for asset in assets))
    boxes = []
    for item in items:
        if crs is None or item.crs != crs:
            return None
        fields = next(
            (d for k in keys if "proj:shape" in (d := item.asset_fields.get(k) or {})), None
        )
        if fields is None or not isinstance(fields.get("proj:transform"), list):
            return None
        xres, _, left, _, yres, top = (float(v) for v in fields["proj:transform"][:6])
        height, width = (int(v) for v in fields["proj:shape"][:2])
        boxes.append((left, top + height * yres, left + width * xres, top))
    if not boxes:
        return None
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )
