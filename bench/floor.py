"""The floor: what a skilled person writes by hand with rasterio + numpy for each workload.

    python bench/floor.py --workload W1 --side-km 1 --catalog CATALOG --out FILE [--polygons F]
    python bench/floor.py --decode --workload W1 --side-km 1 --catalog CATALOG --out FILE

``--decode`` only decodes the workload's input windows (native dtype, one thread, nothing
computed or written): the physical limit of reading them here, the yardstick for "work time".

One thread, streaming over dates (one date's window in memory at a time), GDAL block cache
capped at 64 MB, windowed reads of exactly the requested pixels. Prints one JSON line
``{"seconds": ...}`` (reading the catalog, computing and writing the result, after imports).
Rules shared with our backend and the peer: NDVI = (B08 - B04) / (B08 + B04) in float32, NaN
where the denominator is 0; SCL classes 3, 8, 9, 10 masked; SCL (20 m) taken nearest for each
10 m pixel; apply_kernel pads with 0 outside the loaded extent (openEO's default border).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GDAL_CACHEMAX", "64")

import numpy as np
import rasterio
from rasterio.features import rasterize
from rasterio.warp import transform_geom
from rasterio.windows import from_bounds

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workloads import (
    CLOUD_CLASSES,
    EPSG,
    KERNEL,
    KERNEL_FACTOR,
    WORKLOADS,
    extent,
)


def items(catalog: Path, period: tuple[str, str]) -> list[tuple[str, dict[str, Path]]]:
    """(datetime, {asset: path}) of the static catalog's items in [start, end), by time."""
    collection = json.loads(catalog.read_text())
    out = []
    for link in collection["links"]:
        if link["rel"] != "item":
            continue
        path = (catalog.parent / link["href"]).resolve()
        item = json.loads(path.read_text())
        when = item["properties"]["datetime"]
        if period[0] <= when < period[1]:
            hrefs = {k: (path.parent / a["href"]).resolve() for k, a in item["assets"].items()}
            out.append((when, hrefs))
    return sorted(out, key=lambda pair: pair[0])


def read(path: Path, box: dict[str, Any]) -> tuple[np.ndarray, Any]:
    with rasterio.open(path) as src:
        window = from_bounds(box["west"], box["south"], box["east"], box["north"], src.transform)
        window = window.round_offsets().round_lengths()
        return src.read(1, window=window), src.window_transform(window)


def masked_ndvi(hrefs: dict[str, Path], box: dict[str, Any]) -> tuple[np.ndarray, Any]:
    red, transform = read(hrefs["B04"], box)
    nir, _ = read(hrefs["B08"], box)
    red, nir = red.astype(np.float32), nir.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = (nir - red) / (nir + red)
    invalid = (red == 0) | (nir == 0)
    if "SCL" in hrefs:
        scl, _ = read(hrefs["SCL"], box)
        scl = np.repeat(np.repeat(scl, 2, axis=0), 2, axis=1)[: red.shape[0], : red.shape[1]]
        invalid |= np.isin(scl, CLOUD_CLASSES) | (scl == 0)
    ndvi[invalid] = np.nan
    return ndvi, transform


def w1(catalog: Path, box: dict[str, Any]) -> tuple[np.ndarray, Any]:
    best, transform = None, None
    for _, hrefs in items(catalog, WORKLOADS["W1"].period):
        ndvi, transform = masked_ndvi(hrefs, box)
        best = ndvi if best is None else np.fmax(best, ndvi)
    assert best is not None
    return best[None], transform


def w2(catalog: Path, box: dict[str, Any]) -> tuple[np.ndarray, Any]:
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    transform = None
    for when, hrefs in items(catalog, WORKLOADS["W2"].period):
        ndvi, transform = masked_ndvi(hrefs, box)
        month = when[:7]
        valid = ~np.isnan(ndvi)
        if month not in sums:
            sums[month] = np.zeros(ndvi.shape, np.float64)
            counts[month] = np.zeros(ndvi.shape, np.int32)
        sums[month] += np.where(valid, ndvi, 0)
        counts[month] += valid
    with np.errstate(divide="ignore", invalid="ignore"):
        means = [(sums[m] / counts[m]).astype(np.float32) for m in sorted(sums)]
    return np.stack(means), transform


def w3(catalog: Path, box: dict[str, Any], polygons: dict[str, Any]) -> list[list[float | None]]:
    geometries = [transform_geom("EPSG:4326", f"EPSG:{EPSG}", f["geometry"]) for f in
                  polygons["features"]]  # fmt: skip
    n = len(geometries)
    labels = None
    columns = []
    for _, hrefs in items(catalog, WORKLOADS["W3"].period):
        ndvi, transform = masked_ndvi({k: hrefs[k] for k in ("B04", "B08")}, box)
        if labels is None:
            shapes = [(g, i + 1) for i, g in enumerate(geometries)]
            labels = rasterize(shapes, out_shape=ndvi.shape, transform=transform, dtype="int32")
        valid = ~np.isnan(ndvi)
        sums = np.bincount(labels[valid], weights=ndvi[valid], minlength=n + 1)[1:]
        counts = np.bincount(labels[valid], minlength=n + 1)[1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            columns.append(sums / counts)
    table = np.stack(columns, axis=1)
    return [[None if np.isnan(v) else float(v) for v in row] for row in table]


def w4(catalog: Path, box: dict[str, Any]) -> tuple[np.ndarray, Any]:
    layers = []
    transform = None
    for _, hrefs in items(catalog, WORKLOADS["W4"].period):
        band, transform = read(hrefs["B08"], box)
        padded = np.pad(band.astype(np.float32), 1)
        out = np.zeros(band.shape, np.float32)
        rows, cols = band.shape
        for dy in range(3):
            for dx in range(3):
                out += KERNEL[dy][dx] * padded[dy : dy + rows, dx : dx + cols]
        layers.append(out * np.float32(KERNEL_FACTOR))
    return np.stack(layers), transform


def decode(workload: str, catalog: Path, box: dict[str, Any]) -> float:
    """Decodes every input window of the workload once; returns the megapixels decoded."""
    pixels = 0
    for _, hrefs in items(catalog, WORKLOADS[workload].period):
        for band in WORKLOADS[workload].bands:
            pixels += read(hrefs[band], box)[0].size
    return pixels / 1e6


def write_tif(data: np.ndarray, transform: Any, path: Path) -> None:
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
               "count": data.shape[0], "dtype": "float32", "crs": f"EPSG:{EPSG}",
               "transform": transform}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(np.float32))


def run(workload: str, side_km: float, catalog: Path, out: Path, polygons: Path | None) -> None:
    box = extent(side_km)
    if workload == "W3":
        assert polygons is not None
        table = w3(catalog, box, json.loads(polygons.read_text()))
        out.write_text(json.dumps({"values": table}))
        return
    data, transform = {"W1": w1, "W2": w2, "W4": w4}[workload](catalog, box)
    write_tif(data, transform, out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", required=True)
    parser.add_argument("--side-km", type=float, required=True)
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--polygons", type=Path)
    parser.add_argument("--decode", action="store_true", help="only decode the input windows")
    args = parser.parse_args()
    started = time.perf_counter()
    report: dict[str, float] = {}
    with rasterio.Env(GDAL_NUM_THREADS=1):
        if args.decode:
            report["megapixels"] = decode(args.workload, args.catalog, extent(args.side_km))
        else:
            run(args.workload, args.side_km, args.catalog, args.out, args.polygons)
    print(json.dumps({"seconds": time.perf_counter() - started, **report}))


if __name__ == "__main__":
    main()
