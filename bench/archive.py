"""The benchmark archive: a year of Sentinel-2-L2A-like COGs derived from the real T29UNU product.

Derivation (deterministic; see bench/README.md):

- Window: the north-west 20.4 km x 20.4 km of tile 29UNU (EPSG:32629, upper-left corner
  499980, 5900040), the least cloudy part of the real 2022-10-05 scene (about 1 % cloud).
- Surface: the real 60 m B04 and B8A JPEG2000 bands (B8A stands in for B08, which the sample
  lacks at any resolution), minus the baseline-04.00 offset of 1000, upsampled bilinearly by
  GDAL to the 10 m grid (2040 x 2040 px) and clipped to 1..20000 (so no pixel is no-data).
- Scene classification: the real 20 m SCL of the same window (no-data 0 becomes 7).
- 28 dates in 2022 at 11:54:11Z: the 5th and 20th of every month, and every 5 days in July
  (1, 6, 11, 16, 21, 26). Per date: a seasonal vegetation cycle (NIR up to +25 %, red down to
  -20 % on vegetated pixels, peaking in late July), a smooth +-3 % gain field and 1 % pixel
  noise, and synthetic clouds (SCL 8/9/10) with shadows (SCL 3) from a seeded smooth field
  covering 0-60 % of the window; reflectance under clouds is blended towards cloud brightness.
- Files: B04, B08 uint16 at 10 m and SCL uint8 at 20 m as tiled (256 px) deflate COGs with
  nodata 0, one static STAC item per date, written with the demo archive's helpers.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window

from openeo_airflow.demo.archive import (
    cog_asset,
    footprint_wgs84,
    format_datetime,
    stac_item,
    write_cog,
    write_collection_config,
    write_static_collection,
)

COLLECTION_ID = "BENCH_S2_T29UNU"
EPSG = 32629
ORIGIN = (499980.0, 5900040.0)  # upper-left corner of tile 29UNU
SIZE_10M = 2040  # 20.4 km at 10 m
CENTRE = (ORIGIN[0] + SIZE_10M * 5.0, ORIGIN[1] - SIZE_10M * 5.0)
YEAR = 2022
JULY_DAYS = (1, 6, 11, 16, 21, 26)
OTHER_DAYS = (5, 20)
BOA_OFFSET = 1000
FORMAT = 1  # bump when the generated content changes
SAFE_GLOB = "safe_T29UNU/*.SAFE/GRANULE/*/IMG_DATA"


@dataclass(frozen=True)
class Archive:
    root: Path
    catalog: Path
    collections_yaml: Path

    def items(self) -> list[dict]:
        """The STAC items (with absolute asset paths), sorted by datetime."""
        out = []
        for item_path in sorted((self.root / "items").glob("*.json")):
            item = json.loads(item_path.read_text())
            for asset in item["assets"].values():
                asset["href"] = str((item_path.parent / asset["href"]).resolve())
            out.append(item)
        return sorted(out, key=lambda i: i["properties"]["datetime"])


def acquisition_dates() -> list[datetime]:
    dates = []
    for month in range(1, 13):
        for day in JULY_DAYS if month == 7 else OTHER_DAYS:
            dates.append(datetime(YEAR, month, day, 11, 54, 11, tzinfo=UTC))
    return dates


def build_archive(shared_data: Path, dest: Path) -> Archive:
    """Generate the archive into ``dest`` (or reuse it when it is complete and current)."""
    dest = Path(dest)
    archive = Archive(dest, dest / "catalog.json", dest / "collections.yaml")
    marker = dest / ".bench-archive.json"
    params = {"format": FORMAT, "dates": len(acquisition_dates()), "size": SIZE_10M}
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return archive
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    red, nir, scl = _read_source(shared_data)
    vegetation = np.clip(((nir - red) / (nir + red) - 0.2) / 0.5, 0.0, 1.0).astype(np.float32)
    t10 = Affine(10.0, 0.0, ORIGIN[0], 0.0, -10.0, ORIGIN[1])
    t20 = Affine(20.0, 0.0, ORIGIN[0], 0.0, -20.0, ORIGIN[1])
    bounds = (ORIGIN[0], ORIGIN[1] - SIZE_10M * 10.0, ORIGIN[0] + SIZE_10M * 10.0, ORIGIN[1])
    geometry, bbox = footprint_wgs84(EPSG, bounds)
    items = []
    for index, when in enumerate(acquisition_dates()):
        b04, b08, scl_d = _render_date(index, when, red, nir, scl, vegetation)
        item_id = f"BENCH_S2_T29UNU_{when:%Y%m%d}"
        folder = dest / "data" / item_id
        assets = {}
        for name, array, transform, categorical in (
            ("B04", b04, t10, False),
            ("B08", b08, t10, False),
            ("SCL", scl_d, t20, True),
        ):
            path = folder / f"{name}.tif"
            write_cog(path, array, transform=transform, epsg=EPSG, categorical=categorical)
            assets[name] = cog_asset(f"../data/{item_id}/{name}.tif", path, title=name)
        cloudy = float(np.isin(scl_d, (3, 8, 9, 10)).mean())
        items.append(
            stac_item(
                item_id,
                collection_id=COLLECTION_ID,
                datetime_utc=format_datetime(when),
                epsg=EPSG,
                geometry=geometry,
                bbox=bbox,
                assets=assets,
                properties={"eo:cloud_cover": round(100 * cloudy, 2), "generated": True},
            )
        )
    description = (
        "Benchmark archive DERIVED from the real Sentinel-2 L2A product "
        "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU (60 m B04/B8A upsampled to 10 m, real "
        "20 m SCL) with deterministic per-date perturbation and synthetic clouds."
    )
    write_static_collection(
        dest,
        collection_id=COLLECTION_ID,
        title="Benchmark Sentinel-2 L2A (derived from T29UNU)",
        description=description,
        license="proprietary",
        items=items,
    )
    write_collection_config(
        dest,
        collection_id=COLLECTION_ID,
        title="Benchmark Sentinel-2 L2A (derived from T29UNU)",
        description=description,
        crs=f"EPSG:{EPSG}",
        resolution=10,
        bands=["B04", "B08", "SCL"],
    )
    marker.write_text(json.dumps(params))
    return archive


def _read_source(shared_data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    folders = sorted(Path(shared_data).glob(SAFE_GLOB))
    if not folders:
        raise FileNotFoundError(f"no T29UNU SAFE product under {shared_data}")
    img = folders[0]
    bands = []
    for name in ("B04", "B8A"):
        path = next((img / "R60m").glob(f"*_{name}_60m.jp2"))
        with rasterio.open(path) as src:
            window = Window(0, 0, SIZE_10M // 6, SIZE_10M // 6)
            data = src.read(
                1,
                window=window,
                out_shape=(SIZE_10M, SIZE_10M),
                resampling=Resampling.bilinear,
                out_dtype="float32",
            )
        bands.append(np.clip(data - BOA_OFFSET, 1, 20000).astype(np.float32))
    path = next((img / "R20m").glob("*_SCL_20m.jp2"))
    with rasterio.open(path) as src:
        scl = src.read(1, window=Window(0, 0, SIZE_10M // 2, SIZE_10M // 2))
    scl = np.where(scl == 0, 7, scl).astype(np.uint8)
    return bands[0], bands[1], scl


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, waves: int) -> np.ndarray:
    """A smooth random field in about [-1, 1]: a sum of low-frequency plane waves."""
    yy, xx = (np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32) + 0.5) / shape[0]
    field = np.zeros(shape, dtype=np.float32)
    for _ in range(waves):
        fx, fy = rng.uniform(-4, 4, size=2)
        field += np.sin(2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 2 * np.pi))
    return field / np.float32(np.sqrt(waves * 0.5))


def _render_date(
    index: int,
    when: datetime,
    red: np.ndarray,
    nir: np.ndarray,
    scl: np.ndarray,
    vegetation: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1000 + index)
    doy = when.timetuple().tm_yday
    season = np.float32(np.sin(2 * np.pi * (doy - 110) / 365.0))
    gain = 1.0 + 0.03 * np.clip(_smooth_field(red.shape, rng, 6), -1, 1)
    b08 = nir * (1.0 + 0.25 * vegetation * season) * gain
    b04 = red * (1.0 - 0.2 * vegetation * season) * gain
    b08 *= 1.0 + 0.01 * rng.standard_normal(red.shape, dtype=np.float32)
    b04 *= 1.0 + 0.01 * rng.standard_normal(red.shape, dtype=np.float32)

    # Clouds at 20 m: the top `cover` fraction of a smooth field; shadows offset to the north-west.
    cover = float(rng.choice([0.0, 0.1, 0.2, 0.35, 0.5, 0.6]))
    density = _smooth_field(scl.shape, rng, 5)
    out_scl = scl.copy()
    opacity = np.zeros(scl.shape, dtype=np.float32)
    if cover > 0:
        threshold = np.quantile(density, 1.0 - cover)
        top = max(float(density.max() - threshold), 1e-6)
        opacity = np.where(density > threshold, 0.2 + 0.8 * (density - threshold) / top, 0.0)
        opacity = opacity.astype(np.float32)
        shadow = np.zeros(scl.shape, dtype=bool)
        shadow[:-15, :-6] = opacity[15:, 6:] > 0
        shadow &= opacity == 0
        out_scl[shadow] = 3
        out_scl[(opacity > 0) & (opacity < 0.4)] = 10
        out_scl[(opacity >= 0.4) & (opacity < 0.7)] = 8
        out_scl[opacity >= 0.7] = 9
        shadow10 = np.repeat(np.repeat(shadow, 2, axis=0), 2, axis=1)
        b04[shadow10] *= 0.45
        b08[shadow10] *= 0.45
        op10 = np.repeat(np.repeat(opacity, 2, axis=0), 2, axis=1)
        b04 = b04 * (1 - op10) + 6200.0 * op10
        b08 = b08 * (1 - op10) + 6600.0 * op10
    as_dn = lambda a: np.clip(np.rint(a), 1, 20000).astype(np.uint16)  # noqa: E731
    return as_dn(b04), as_dn(b08), out_scl
