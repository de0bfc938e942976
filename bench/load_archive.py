"""The load benchmark's archive: full Sentinel-2 tiles (10980 x 10980 at 10 m) from T29UNU.

Derivation (deterministic):

- Source: the real 60 m B04 and B8A JPEG2000 bands of ``shared/data/safe_T29UNU`` (baseline
  04.00; B8A stands in for B08, absent from the sample) and its real 20 m SCL.
- Reflectances: upsampled bilinearly by GDAL from 1830 x 1830 to the standard 10980 x 10980
  grid of tile 29UNU (EPSG:32629, upper-left 499980, 5900040), still carrying the baseline
  offset (+1000 DN), times a per-date smooth gain (+-3 %) plus 1 % seeded pixel noise.
- SCL: the real 20 m classes (5490 x 5490), one date in three with its classes rolled by a
  seeded shift (a different cloud mask per date).
- Dates: ``DATES`` (one product per date, baseline 04.00 in the product name and properties).
- Files: cloud-optimized GeoTIFFs written by GDAL's COG driver — 512 px blocks, DEFLATE with
  horizontal predictor, internal overviews (average for reflectances, nearest for SCL),
  nodata 0 — like the public Sentinel-2 COG archives; one static STAC item per date (with
  ``raster:bands``, ``proj:*`` and ``s2:*`` properties) in an item collection ``items.json``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.shutil import copy as gdal_copy
from rasterio.warp import transform_bounds

ORIGIN = (499980.0, 5900040.0)
EPSG = 32629
SIZE = 10980
DATES = ("2022-10-05", "2022-10-10", "2022-10-15")
SAFE = "safe_T29UNU/S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE"
FORMAT = 1  # bump when the generated content changes


def build(shared_data: Path, dest: Path, dates: tuple[str, ...] = DATES) -> Path:
    """Write the archive into ``dest`` (once; reused while FORMAT is unchanged)."""
    marker = dest / f"FORMAT-{FORMAT}-{len(dates)}"
    catalog = dest / "items.json"
    if marker.exists() and catalog.exists():
        return catalog
    dest.mkdir(parents=True, exist_ok=True)
    granule = next((shared_data / SAFE / "GRANULE").iterdir()) / "IMG_DATA"
    sources = {
        "B04": granule / "R60m" / "T29UNU_20221005T115411_B04_60m.jp2",
        "B08": granule / "R60m" / "T29UNU_20221005T115411_B8A_60m.jp2",
    }
    base = {band: _upsample(path) for band, path in sources.items()}
    with rasterio.open(granule / "R20m" / "T29UNU_20221005T115411_SCL_20m.jp2") as src:
        scl = src.read(1)
    features = []
    for index, day in enumerate(dates):
        rng = np.random.default_rng(1000 + index)
        folder = dest / day
        folder.mkdir(exist_ok=True)
        assets: dict[str, Any] = {}
        for band, data in base.items():
            values = _perturb(data, rng)
            path = _write_cog(folder / f"{band}.tif", values, 10, "AVERAGE")
            assets[band] = _asset(path, 10, reflectance=True)
        classes = scl if index % 3 == 0 else np.roll(scl, (index * 997, index * 613), (0, 1))
        assets["SCL"] = _asset(_write_cog(folder / "SCL.tif", classes, 20, "NEAREST"), 20)
        features.append(_item(day, assets))
    catalog.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    marker.write_text("ok\n")
    return catalog


def _upsample(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return np.asarray(
            src.read(1, out_shape=(SIZE, SIZE), resampling=Resampling.bilinear), dtype=np.float32
        )


def _perturb(data: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    coarse = 1 + rng.uniform(-0.03, 0.03, size=(12, 12)).astype(np.float32)
    gain = np.kron(coarse, np.ones((SIZE // 12 + 1, SIZE // 12 + 1), np.float32))[:SIZE, :SIZE]
    noise = rng.standard_normal((SIZE, SIZE), dtype=np.float32) * np.float32(0.01)
    values = data * (gain + noise)
    values[data == 0] = 0
    return np.clip(values, 0, 65535).astype(np.uint16)


def _write_cog(path: Path, data: np.ndarray, res: int, overview_resampling: str) -> Path:
    profile = {
        "driver": "GTiff",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "dtype": data.dtype.name,
        "crs": f"EPSG:{EPSG}",
        "transform": Affine(res, 0, ORIGIN[0], 0, -res, ORIGIN[1]),
        "nodata": 0,
    }
    with MemoryFile() as memory:
        with memory.open(**profile) as mem:
            mem.write(data, 1)
        with memory.open() as mem:
            gdal_copy(
                mem,
                str(path),
                driver="COG",
                COMPRESS="DEFLATE",
                PREDICTOR="2",
                BLOCKSIZE="512",
                OVERVIEW_RESAMPLING=overview_resampling,
                NUM_THREADS="ALL_CPUS",
            )
    return path


def _asset(path: Path, res: int, *, reflectance: bool = False) -> dict[str, Any]:
    band: dict[str, Any] = {"nodata": 0, "spatial_resolution": res}
    if reflectance:
        band.update(data_type="uint16", scale=0.0001, offset=-0.1)
    else:
        band.update(data_type="uint8")
    return {
        "href": str(path),
        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
        "roles": ["data"],
        "proj:epsg": EPSG,
        "proj:shape": [SIZE * 10 // res, SIZE * 10 // res],
        "proj:transform": [res, 0, ORIGIN[0], 0, -res, ORIGIN[1]],
        "raster:bands": [band],
    }


def _item(day: str, assets: dict[str, Any]) -> dict[str, Any]:
    stamp = datetime.fromisoformat(day).strftime("%Y%m%d")
    name = f"S2A_MSIL2A_{stamp}T115411_N0400_R023_T29UNU_{stamp}T164454"
    bounds = (ORIGIN[0], ORIGIN[1] - SIZE * 10, ORIGIN[0] + SIZE * 10, ORIGIN[1])
    west, south, east, north = transform_bounds(f"EPSG:{EPSG}", "EPSG:4326", *bounds)
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        ],
        "id": name,
        "bbox": [west, south, east, north],
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {
            "datetime": f"{day}T11:54:11Z",
            "proj:epsg": EPSG,
            "s2:product_uri": f"{name}.SAFE",
            "s2:processing_baseline": "04.00",
            "eo:cloud_cover": 10.0,
        },
        "links": [],
        "assets": assets,
    }
