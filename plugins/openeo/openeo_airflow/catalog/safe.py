"""A STAC item for a Sentinel-2 L2A product in the SAFE layout, from its own metadata.

Reads ``MTD_MSIL2A.xml`` (product name, processing baseline, times, footprint, cloud cover,
quantification values and the per-band ``BOA_ADD_OFFSET``) and the granule's ``MTD_TL.xml``
(EPSG code and grid per resolution). Every image file listed in the product metadata that
exists becomes an asset keyed like the CDSE STAC (``B04_10m``, ``SCL_20m``, ``B8A_60m``) with
``proj:*`` fields and, for reflectances, the raster extension's ``scale = 1 / quantification``
and ``offset = BOA_ADD_OFFSET / quantification`` — so the loader harmonises baseline 04.00+
products per band exactly as the metadata says. Nothing here opens a raster.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from openeo_airflow.catalog.stac import BBox

STAC_VERSION = "1.0.0"
EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
]
_BAND_IDS = [
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B8A",
    "B09",
    "B10",
    "B11",
    "B12",
]
_IMAGE = re.compile(r"_(?P<band>[A-Z0-9]{3})_(?P<res>\d{2})m$")


def safe_item(safe_dir: Path | str) -> dict[str, Any]:
    """The STAC item (a JSON-ready dict) of the SAFE product folder ``safe_dir``."""
    root = Path(safe_dir)
    product = ET.parse(root / "MTD_MSIL2A.xml").getroot()
    granule_dir = next((root / "GRANULE").iterdir())
    tile = ET.parse(granule_dir / "MTD_TL.xml").getroot()

    def text(element: ET.Element, tag: str) -> str:
        found = element.find(f".//{tag}")
        if found is None or found.text is None:
            raise ValueError(f"{root}: no <{tag}> in the product metadata")
        return found.text.strip()

    name = text(product, "PRODUCT_URI").removesuffix(".SAFE")
    quantification = float(text(product, "BOA_QUANTIFICATION_VALUE"))
    offsets = {
        _BAND_IDS[int(e.attrib["band_id"])]: float(e.text or 0)
        for e in product.iter("BOA_ADD_OFFSET")
    }
    epsg = int(text(tile, "HORIZONTAL_CS_CODE").split(":")[-1])
    grids = _grids(tile)
    geometry, bbox = _footprint(text(product, "EXT_POS_LIST"))
    assets: dict[str, dict[str, Any]] = {}
    for element in product.iter("IMAGE_FILE"):
        relative = (element.text or "").strip()
        match = _IMAGE.search(relative)
        path = root / f"{relative}.jp2"
        if match is None or not path.exists():
            continue  # e.g. the 10 m / 20 m reflectances of the trimmed test product
        band, res = match["band"], int(match["res"])
        assets[f"{band}_{res}m"] = _asset(
            path, band, res, grids[res], epsg, quantification, offsets
        )
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": EXTENSIONS,
        "id": name,
        "bbox": list(bbox),
        "geometry": geometry,
        "properties": {
            "datetime": text(product, "PRODUCT_START_TIME"),
            "platform": text(product, "SPACECRAFT_NAME").lower(),
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "eo:cloud_cover": float(text(product, "Cloud_Coverage_Assessment")),
            "proj:epsg": epsg,
            "s2:product_uri": f"{name}.SAFE",
            "s2:processing_baseline": text(product, "PROCESSING_BASELINE"),
            "s2:generation_time": text(product, "GENERATION_TIME"),
            "s2:datatake_id": _datatake(product),
            "sat:relative_orbit": int(text(product, "SENSING_ORBIT_NUMBER")),
            "sat:orbit_state": text(product, "SENSING_ORBIT_DIRECTION").lower(),
        },
        "links": [],
        "assets": assets,
    }


def _datatake(product: ET.Element) -> str | None:
    element = product.find(".//Datatake")
    return None if element is None else element.attrib.get("datatakeIdentifier")


def _grids(tile: ET.Element) -> dict[int, tuple[int, int, float, float]]:
    """Per resolution: (rows, cols, upper-left x, upper-left y)."""
    sizes = {
        int(s.attrib["resolution"]): (int(s.findtext("NROWS", "0")), int(s.findtext("NCOLS", "0")))
        for s in tile.iter("Size")
    }
    origins = {
        int(g.attrib["resolution"]): (float(g.findtext("ULX", "0")), float(g.findtext("ULY", "0")))
        for g in tile.iter("Geoposition")
    }
    return {res: (*sizes[res], *origins[res]) for res in sizes if res in origins}


def _asset(
    path: Path,
    band: str,
    res: int,
    grid: tuple[int, int, float, float],
    epsg: int,
    quantification: float,
    offsets: dict[str, float],
) -> dict[str, Any]:
    rows, cols, x0, y0 = grid
    asset: dict[str, Any] = {
        "href": str(path),
        "type": "image/jp2",
        "roles": ["data"],
        "gsd": res,
        "proj:epsg": epsg,
        "proj:shape": [rows, cols],
        "proj:transform": [res, 0.0, x0, 0.0, -res, y0],
    }
    if band in offsets:
        asset["roles"] = ["data", "reflectance"]
        asset["raster:bands"] = [
            {
                "nodata": 0,
                "data_type": "uint16",
                "spatial_resolution": res,
                "scale": 1 / quantification,
                "offset": offsets[band] / quantification,
            }
        ]
    elif band == "SCL":
        asset["raster:bands"] = [{"nodata": 0, "data_type": "uint8", "spatial_resolution": res}]
    return asset


def _footprint(pos_list: str) -> tuple[dict[str, Any], BBox]:
    """EXT_POS_LIST ("lat lon lat lon ...") as a GeoJSON polygon (lon, lat) and its bbox."""
    values = [float(v) for v in pos_list.split()]
    ring = [[values[i + 1], values[i]] for i in range(0, len(values) - 1, 2)]
    if ring[0] != ring[-1]:
        ring.append(ring[0])
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    bbox = (min(lons), min(lats), max(lons), max(lats))
    return {"type": "Polygon", "coordinates": [ring]}, bbox
