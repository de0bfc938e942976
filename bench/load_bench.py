"""Load benchmark: our loader vs odc-stac vs a hand-written rasterio loop (the floor).

    python bench/load_bench.py            # 1 km2 .. a full tile, 3 runs each (median)
    python bench/load_bench.py --quick    # 1 km2 .. 100 km2, 1 run each, under two minutes
    python bench/load_bench.py --quick --runs 3 --baseline /tmp/old   # + an older loader

The archive (``bench/load_archive.py``): full 10980 x 10980 Sentinel-2 tiles at 10 m derived
from the real T29UNU product, 3 dates, B04/B08 (uint16, 10 m) and SCL (uint8, 20 m) as
DEFLATE COGs with 512 px blocks and overviews, built once into ``--archive``.

Every implementation loads the same cube — 3 dates x (B04, B08, SCL) on the 10 m grid of the
tile, float32 with NaN for no-data, reflectances harmonised (the baseline 04.00 offset of
-1000 removed), SCL upsampled with nearest — each in its own process (peak RSS is the
process's). They run with the same thread count (``--threads``, default 2):

- ours: ``openeo_airflow.io.reader.load_cube`` on a collection of the archive's items;
- odc-stac: ``odc.stac.load`` on the same items (pystac), on the identical GeoBox,
  ``dtype=float32``, ``groupby=solar_day``, ``pool=threads``; the offset is subtracted after;
- floor: a minimal loop — per date and band one windowed ``rasterio`` read, SCL repeated 2x2,
  float conversion with NaN — single-threaded, no mosaicking, no overlap logic.

It also decodes whole files with 1 and with ``--threads`` threads: the raw decode speed, the
physical limit on this machine. The last line is ``SUMMARY {json}`` with medians over the
sizes (``ours_over_floor``, ``ours_over_odc_stac``, ``peak_mem_ours_over_odc_stac``, and
``ours_over_baseline`` with ``--baseline``; ``*_cpu_*``: the same with CPU time of all threads,
steadier than wall time when other work competes for the cores) and per size under
``by_size``. Runs are
interleaved (each round runs every implementation once) and the medians are compared.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO / "plugins" / "openeo"), str(HERE)]

import load_archive  # noqa: E402

SHARED_DATA = REPO.parent / "shared" / "data"
UPPER_LEFT = (load_archive.ORIGIN[0] + 10000.0, load_archive.ORIGIN[1] - 10000.0)
FULL_SIZES = {"1km2": 1000, "100km2": 10000, "900km2": 30000, "tile": 109800}
QUICK_SIZES = {"1km2": 1000, "25km2": 5000, "100km2": 10000}
IMPLS = ("floor", "ours", "odc_stac")
BANDS = ("B04", "B08", "SCL")
PERIOD = ("2022-10-01", "2022-11-01")


def box(side: float) -> tuple[float, float, float, float]:
    """(west, south, east, north) in EPSG:32629; the full tile for ``side >= 109800``."""
    if side >= 109800:
        x0, y1 = load_archive.ORIGIN
        return (x0, y1 - 109800, x0 + 109800, y1)
    x0, y1 = UPPER_LEFT
    return (x0, y1 - side, x0 + side, y1)


# --------------------------------------------------------------------------- implementations


def run_ours(catalog: Path, bounds: tuple[float, ...], threads: int) -> np.ndarray:
    from openeo_airflow.catalog.config import BandConfig, CollectionConfig
    from openeo_airflow.io.reader import load_cube

    cfg = CollectionConfig(
        id="BENCH",
        title="bench",
        description="load bench",
        license="proprietary",
        catalog=str(catalog),
        resolution=10,
        crs="EPSG:32629",
        grid_origin=(-20.0, 20.0),
        sentinel2=True,
        bands=[
            BandConfig("B04", "B04", nodata=0, harmonize=True),
            BandConfig("B08", "B08", nodata=0, harmonize=True),
            BandConfig("SCL", "SCL", nodata=0, overviews=False),
        ],
    )
    west, south, east, north = bounds
    extent = {"west": west, "south": south, "east": east, "north": north, "crs": 32629}
    cube = load_cube(
        cfg,
        spatial_extent=extent,
        temporal_extent=list(PERIOD),
        bands=list(BANDS),
        workers=threads,
    )
    return np.asarray(cube.values)


def run_odc_stac(catalog: Path, bounds: tuple[float, ...], threads: int) -> np.ndarray:
    import odc.stac
    import pystac
    from affine import Affine
    from odc.geo.geobox import GeoBox

    features = json.loads(catalog.read_text())["features"]
    items = [pystac.Item.from_dict(f) for f in features]
    west, south, east, north = bounds
    width, height = round((east - west) / 10), round((north - south) / 10)
    geobox = GeoBox((height, width), Affine(10, 0, west, 0, -10, north), "EPSG:32629")
    data = odc.stac.load(
        items,
        bands=list(BANDS),
        geobox=geobox,
        groupby="solar_day",
        dtype="float32",
        resampling="nearest",
        pool=threads,
        chunks=None,
    )
    out = np.stack([data[b].values for b in BANDS], axis=1)
    out[out == 0] = np.nan  # odc-stac keeps the sources' nodata value (0) in float output
    out[:, :2] -= 1000  # harmonise baseline 04.00 (odc-stac does not)
    return out


def run_floor(catalog: Path, bounds: tuple[float, ...], threads: int) -> np.ndarray:
    import rasterio
    from rasterio.windows import Window

    del threads  # the floor is the simple single-threaded loop
    features = json.loads(catalog.read_text())["features"]
    features = [f for f in features if PERIOD[0] <= f["properties"]["datetime"][:10] < PERIOD[1]]
    west, south, east, north = bounds
    x0, y1 = load_archive.ORIGIN
    col, row = round((west - x0) / 10), round((y1 - north) / 10)
    width, height = round((east - west) / 10), round((north - south) / 10)
    out = np.empty((len(features), len(BANDS), height, width), dtype=np.float32)
    for t, feature in enumerate(features):
        for b, band in enumerate(BANDS):
            with rasterio.open(feature["assets"][band]["href"]) as src:
                if band == "SCL":
                    window = Window(col // 2, row // 2, (width + 1) // 2, (height + 1) // 2)
                    raw = src.read(1, window=window).repeat(2, 0).repeat(2, 1)[:height, :width]
                else:
                    raw = src.read(1, window=Window(col, row, width, height))
            values = out[t, b]
            values[...] = raw
            if band != "SCL":
                values -= 1000
            values[raw == 0] = np.nan
    return out


RUNNERS = {"ours": run_ours, "odc_stac": run_odc_stac, "floor": run_floor}


def worker(impl: str, catalog: Path, side: float, threads: int) -> dict[str, Any]:
    """One measured load in this process: wall time, peak RSS, a checksum of the cube."""
    # Imports (and xarray's one-time probing of optional array libraries) are not load time.
    import rasterio  # noqa: F401
    import xarray

    xarray.DataArray(np.zeros(1)) + 1
    if impl == "odc_stac":
        import odc.stac  # noqa: F401
    else:
        from openeo_airflow.io import reader  # noqa: F401
    import_rss = _vm_hwm()
    start, cpu = time.perf_counter(), time.process_time()
    cube = RUNNERS[impl](catalog, box(side), threads)
    seconds = time.perf_counter() - start
    peak = _vm_hwm()
    return {
        "seconds": seconds,
        # CPU time of all threads: the work done, steadier than wall time on a busy machine.
        "cpu_seconds": time.process_time() - cpu,
        "peak_rss": peak,
        "import_rss": import_rss,
        "shape": list(cube.shape),
        "pixels": int(cube.size),
        "nan": int(np.isnan(cube).sum()),
        "sum": float(np.nansum(cube, dtype=np.float64)),
    }


def _vm_hwm() -> int:
    """Peak RSS of this process in bytes (VmHWM: unlike ru_maxrss, not inherited at exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(
    impl: str, catalog: Path, side: float, threads: int, baseline: Path | None = None
) -> dict[str, Any]:
    """One load in a fresh process; ``baseline``: our loader from another source tree (its
    own ``bench/load_bench.py`` runs the worker)."""
    script = (
        str(baseline / "bench" / "load_bench.py") if impl == "baseline" and baseline else __file__
    )
    command = [
        sys.executable,
        script,
        "--worker",
        "ours" if impl == "baseline" else impl,
        "--archive-catalog",
        str(catalog),
        "--side",
        str(side),
        "--threads",
        str(threads),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{impl} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------- raw decode


def raw_decode(catalog: Path, threads: int, dates: int) -> dict[str, float]:
    """Megapixels per second decoding whole files (all blocks), 1 and ``threads`` threads."""
    import rasterio

    features = json.loads(catalog.read_text())["features"][:dates]
    paths = [f["assets"][b]["href"] for f in features for b in BANDS]

    def decode(path: str) -> int:
        with rasterio.Env(GDAL_CACHEMAX=64 * 2**20), rasterio.open(path) as src:
            return int(src.read(1).size)

    result = {}
    for n in (1, threads):
        start = time.perf_counter()
        with ThreadPoolExecutor(n) as pool:
            pixels = sum(pool.map(decode, paths))
        result[f"{n}_thread"] = pixels / 1e6 / (time.perf_counter() - start)
    return result


# --------------------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 run (< 2 min)")
    parser.add_argument("--runs", type=int, help="runs per size and implementation (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--archive", type=Path, default=Path("/tmp/openeo-airflow-load-bench"))
    parser.add_argument("--shared-data", type=Path, default=SHARED_DATA)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a source tree (e.g. `git archive` of an older commit) whose loader runs side by "
        "side as 'baseline'",
    )
    parser.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    parser.add_argument("--archive-catalog", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--side", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.archive_catalog, args.side, args.threads)))
        return
    t0 = time.perf_counter()
    catalog = load_archive.build(args.shared_data, args.archive)
    print(f"archive: {catalog.parent} (ready after {time.perf_counter() - t0:.0f} s)")
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    runs = args.runs or (1 if args.quick else 3)
    decode = raw_decode(catalog, args.threads, 1 if args.quick else 3)
    print(
        f"raw decode: {decode['1_thread']:.0f} Mpx/s (1 thread), "
        f"{decode[f'{args.threads}_thread']:.0f} Mpx/s ({args.threads} threads)"
    )
    header = f"{'size':>8} {'impl':>9} {'seconds':>8} {'Mpx/s':>7} {'peak MB':>8} {'vs floor':>8}"
    print(header)
    by_size: dict[str, dict[str, float]] = {}
    impls = (*IMPLS, "baseline") if args.baseline else IMPLS
    for name, side in sizes.items():
        samples: dict[str, list[dict[str, Any]]] = {impl: [] for impl in impls}
        for impl in impls:
            if not args.quick:
                measure(impl, catalog, side, args.threads, args.baseline)  # page cache, pyc
        for _ in range(runs):  # interleaved: a busy moment hits every implementation alike
            for impl in impls:
                samples[impl].append(measure(impl, catalog, side, args.threads, args.baseline))
        results: dict[str, dict[str, Any]] = {}
        for impl, taken in samples.items():
            seconds = statistics.median(s["seconds"] for s in taken)
            # (an older tree's worker may not report CPU time)
            cpu = [s["cpu_seconds"] for s in taken if "cpu_seconds" in s]
            results[impl] = {**taken[-1], "seconds": seconds}
            results[impl]["cpu_seconds"] = statistics.median(cpu) if cpu else None
        floor = results["floor"]["seconds"]
        for impl, r in results.items():
            mpx = r["pixels"] / 1e6 / r["seconds"]
            print(
                f"{name:>8} {impl:>9} {r['seconds']:8.3f} {mpx:7.0f} "
                f"{r['peak_rss'] / 2**20:8.0f} {r['seconds'] / floor:8.2f}"
            )
        same = _same_cube(results)
        print(f"{name:>8} identical cubes: {'yes' if same else 'NO'}")
        if not same:
            for impl, r in results.items():
                print(f"{name:>8} {impl:>9} shape {r['shape']} nan {r['nan']} sum {r['sum']:.6g}")
        by_size[name] = {
            "ours_over_floor": results["ours"]["seconds"] / floor,
            "ours_over_odc_stac": results["ours"]["seconds"] / results["odc_stac"]["seconds"],
            "peak_mem_ours_over_odc_stac": results["ours"]["peak_rss"]
            / results["odc_stac"]["peak_rss"],
            "ours_seconds": results["ours"]["seconds"],
            "ours_mpx_per_s": results["ours"]["pixels"] / 1e6 / results["ours"]["seconds"],
            "identical": same,
        }
        cpu_of = {impl: r["cpu_seconds"] for impl, r in results.items()}
        by_size[name]["ours_cpu_over_floor"] = cpu_of["ours"] / cpu_of["floor"]
        if args.baseline:
            by_size[name]["ours_over_baseline"] = (
                results["ours"]["seconds"] / results["baseline"]["seconds"]
            )
            if cpu_of["baseline"]:
                by_size[name]["ours_cpu_over_baseline"] = cpu_of["ours"] / cpu_of["baseline"]
    keys: tuple[str, ...] = ("ours_over_floor", "ours_over_odc_stac", "peak_mem_ours_over_odc_stac")
    keys += ("ours_cpu_over_floor",)
    keys += ("ours_over_baseline",) if args.baseline else ()
    keys = tuple(k for k in keys if all(k in s for s in by_size.values()))
    summary: dict[str, Any] = {
        k: round(statistics.median(s[k] for s in by_size.values()), 3) for k in keys
    }
    summary["raw_decode_mpx_per_s"] = {k: round(v, 1) for k, v in decode.items()}
    summary["by_size"] = {
        n: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items()}
        for n, s in by_size.items()
    }
    summary["threads"] = args.threads
    summary["runs"] = runs
    print(f"total {time.perf_counter() - t0:.0f} s")
    print("SUMMARY " + json.dumps(summary))


def _same_cube(results: dict[str, dict[str, Any]]) -> bool:
    first = results["floor"]
    return all(
        r["shape"] == first["shape"]
        and r["nan"] == first["nan"]
        and abs(r["sum"] - first["sum"]) <= 1e-6 * max(1.0, abs(first["sum"]))
        for r in results.values()
    )


if __name__ == "__main__":
    main()
