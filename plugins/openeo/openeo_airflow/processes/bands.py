"""Band lookup by name or by common name (``red``, ``nir``...), as ``filter_bands``/``ndvi`` need.

openEO lets users name a band by its label or by its common name. The loader may attach the
collection's common names to the cube as ``cube.coords["bands"].attrs["common_names"]`` (a list
aligned with the band labels); without them we fall back to the Sentinel-2 band designations,
the labels our collections use.
"""

from __future__ import annotations

from typing import Any

import xarray as xr

SENTINEL2_COMMON_NAMES = {
    "B01": "coastal",
    "B02": "blue",
    "B03": "green",
    "B04": "red",
    "B05": "rededge071",
    "B06": "rededge075",
    "B07": "rededge078",
    "B08": "nir",
    "B8A": "nir08",
    "B09": "nir09",
    "B10": "cirrus",
    "B11": "swir16",
    "B12": "swir22",
}
# Common names that group several narrower ones (STAC eo extension).
BROADER_NAMES = {"rededge": ("rededge071", "rededge075", "rededge078")}


def band_labels(cube: xr.DataArray) -> list[str]:
    return [str(b) for b in cube.coords["bands"].values] if "bands" in cube.dims else []


def common_names(cube: xr.DataArray) -> list[str | None]:
    """The common name of each band (``None`` where unknown)."""
    labels = band_labels(cube)
    attached: Any = cube.coords["bands"].attrs.get("common_names") if labels else None
    if isinstance(attached, list | tuple) and len(attached) == len(labels):
        return [str(n) if n else None for n in attached]
    return [SENTINEL2_COMMON_NAMES.get(label.upper()) for label in labels]


def match_bands(cube: xr.DataArray, name: str) -> list[str]:
    """Band labels ``name`` refers to: the band of that label, else the bands of that common name.

    A label wins over a common name (openEO rule); several bands may share a common name.
    """
    labels = band_labels(cube)
    if name in labels:
        return [name]
    wanted = {name.lower(), *BROADER_NAMES.get(name.lower(), ())}
    return [
        label
        for label, common in zip(labels, common_names(cube), strict=True)
        if common is not None and common.lower() in wanted
    ]
