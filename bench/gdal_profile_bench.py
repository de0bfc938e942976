"""What each remote GDAL setting of ``io/gdal_env.py`` changes, read through ``/vsicurl/``.

    python bench/gdal_profile_bench.py           # 2 x 2 tiles, 3 runs per setting, 30 ms latency
    python bench/gdal_profile_bench.py --quick   # 1 tile, 1 run (about two minutes)

A loopback HTTP server (``bench/range_server.py``: byte ranges, HTTP/1.1 keep-alive, a fixed
latency per request like an object store) serves two archives: the load benchmark's COGs
(``bench/load_archive.py``: 3 dates x B04/B08 at 10 m + SCL at 20 m, 512 px blocks) and the
real product's JPEG2000 files (60 m B04/B8A, 20 m SCL of ``shared/data/safe_T29UNU``, as on
the CDSE archive). Each setting runs in its own process (GDAL's caches start empty) and reads
the same windows the way the loader does: per output tile and file, open, one windowed read,
close (2 x 2 tiles of 768 px at 10 m with a 16 px halo by default). The full ``https`` profile
is the baseline; every other row turns one setting back to GDAL's default. Printed per
setting: HTTP requests, TCP connections, body bytes and wall time, each as a ratio to the full
profile (medians; rows interleaved, so machine noise hits them alike), injected 503s, failed
reads, and whether the pixels are identical.

Retries need errors to matter: the ``*_503`` rows answer every 10th request with a 503, with
and without ``GDAL_HTTP_MAX_RETRY``. A stalled server and the low-speed abort are tested in
``tests/test_io_remote.py`` (a hang is not a benchmark). The last line is ``SUMMARY {json}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO / "plugins" / "openeo"), str(REPO)]

from rasterio.windows import Window  # noqa: E402

from bench import load_archive  # noqa: E402
from bench.range_server import RangeServer  # noqa: E402

SHARED_DATA = REPO.parent / "shared" / "data"
BANDS = ("B04", "B08", "SCL")
TILE, HALO, OFFSET = 768, 16, 2048  # px on the 10 m grid
FAIL_EVERY = 10
JP2 = "safe_T29UNU/S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE/GRANULE"
# File (relative to IMG_DATA) -> its pixel size in 10 m pixels.
JP2_FILES = {
    "R60m/T29UNU_20221005T115411_B04_60m.jp2": 6,
    "R60m/T29UNU_20221005T115411_B8A_60m.jp2": 6,
    "R20m/T29UNU_20221005T115411_SCL_20m.jp2": 2,
}
WORKLOADS = ("cog", "jp2")

# Each setting back at GDAL's default (GDAL 3.10 documentation, "Configuration options").
VARIANTS: dict[str, dict[str, str]] = {
    "full": {},
    "no_merge_ranges": {"GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "NO"},
    "small_chunks": {"CPL_VSIL_CURL_CHUNK_SIZE": "16384"},
    "no_ingest_at_open": {"GDAL_INGESTED_BYTES_AT_OPEN": "0"},
    "no_keepalive": {"GDAL_HTTP_TCP_KEEPALIVE": "NO"},
    "no_vsi_cache": {"VSI_CACHE": "FALSE"},
    "readdir_on_open": {"GDAL_DISABLE_READDIR_ON_OPEN": "FALSE"},
    "no_low_speed_abort": {"GDAL_HTTP_LOW_SPEED_TIME": "0"},
    "no_retry": {"GDAL_HTTP_MAX_RETRY": "0"},
}
FAULTY = {"full_503": "full", "no_retry_503": "no_retry"}  # row -> variant, with 503s


def windows(tiles: int) -> list[tuple[int, int, int, int]]:
    """(col, row, width, height) on the 10 m grid: ``tiles`` x ``tiles`` with halo."""
    return [
        (OFFSET + i * TILE - HALO, OFFSET + j * TILE - HALO, TILE + 2 * HALO, TILE + 2 * HALO)
        for j in range(tiles)
        for i in range(tiles)
    ]


def cog_reads(archive: Path, url: str, tiles: int) -> list[tuple[str, Window]]:
    """Per tile and file of the COG archive: (path, window); SCL on its 20 m grid."""
    features = json.loads((archive / "items.json").read_text())["features"]
    paths = [
        f"/vsicurl/{url}{Path(f['assets'][band]['href']).relative_to(archive)}"
        for f in features
        for band in BANDS
    ]
    reads = []
    for col, row, width, height in windows(tiles):
        for path in paths:
            k = 2 if path.endswith("SCL.tif") else 1
            reads.append((path, Window(col // k, row // k, width // k, height // k)))
    return reads


def jp2_reads(url: str, tiles: int) -> list[tuple[str, Window]]:
    """The real product's JPEG2000 files (60 m bands, 20 m SCL), the same tiles' area."""
    reads = []
    for col, row, width, height in windows(tiles):
        for name, k in JP2_FILES.items():
            reads.append(
                (f"/vsicurl/{url}{name}", Window(col // k, row // k, width // k, height // k))
            )
    return reads


def worker(workload: str, url: str, archive: Path, variant: str, tiles: int) -> dict[str, Any]:
    """Read every window through /vsicurl/ with one setting changed; a failed read counts."""
    import numpy as np
    import rasterio

    from openeo_airflow.io.gdal_env import gdal_options

    reads = cog_reads(archive, url, tiles) if workload == "cog" else jp2_reads(url, tiles)
    total, errors = 0.0, 0
    start = time.perf_counter()
    with rasterio.Env(**{**gdal_options("https"), **VARIANTS[variant]}):
        for path, window in reads:
            try:
                with rasterio.open(path) as src:
                    total += float(src.read(1, window=window).sum(dtype=np.float64))
            except rasterio.errors.RasterioError:
                errors += 1
    return {"seconds": time.perf_counter() - start, "sum": total, "errors": errors}


def run(
    server: RangeServer, workload: str, archive: Path, variant: str, tiles: int
) -> dict[str, Any]:
    server.reset()
    command = [
        sys.executable,
        __file__,
        "--worker",
        variant,
        "--workload",
        workload,
        "--url",
        server.url,
        "--archive",
        str(archive),
        "--tiles",
        str(tiles),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{done.stderr[-3000:]}")
    counts = server.reset()
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        **result,
        "requests": counts.requests,
        "connections": counts.connections,
        "bytes": counts.bytes,
        "failed": counts.failed,
    }


def measure(
    server: RangeServer, workload: str, archive: Path, tiles: int, runs: int
) -> dict[str, dict[str, float]]:
    """Median per row over ``runs`` interleaved rounds, after one unmeasured warm-up."""
    rows = [*VARIANTS, *FAULTY]
    run(server, workload, archive, "full", tiles)  # page cache, .pyc
    samples: dict[str, list[dict[str, Any]]] = {row: [] for row in rows}
    for _ in range(runs):
        for row in rows:
            server.fail_every(FAIL_EVERY if row in FAULTY else None)
            samples[row].append(run(server, workload, archive, FAULTY.get(row, row), tiles))
    server.fail_every(None)
    return {
        row: {k: statistics.median(s[k] for s in ss) for k in ss[0]} for row, ss in samples.items()
    }


def report(workload: str, med: dict[str, dict[str, float]]) -> dict[str, Any]:
    base = med["full"]
    print(f"{workload}: ratios to the full profile")
    print(
        f"{'setting':>20} {'requests':>9} {'conns':>6} {'MB':>7} {'seconds':>8} "
        f"{'req x':>6} {'bytes x':>7} {'time x':>6} {'503s':>5} {'errors':>6} same"
    )
    summary: dict[str, Any] = {}
    for row, m in med.items():
        same = m["sum"] == base["sum"] and not m["errors"]
        ratios = {k: m[k] / base[k] for k in ("requests", "bytes", "seconds")}
        print(
            f"{row:>20} {m['requests']:9.0f} {m['connections']:6.0f} {m['bytes'] / 1e6:7.1f} "
            f"{m['seconds']:8.2f} {ratios['requests']:6.2f} {ratios['bytes']:7.2f} "
            f"{ratios['seconds']:6.2f} {m['failed']:5.0f} {m['errors']:6.0f} "
            f"{'yes' if same else 'NO'}"
        )
        summary[row] = {
            **{f"{k}_ratio": round(v, 3) for k, v in ratios.items()},
            "requests": int(m["requests"]),
            "connections": int(m["connections"]),
            "errors": int(m["errors"]),
            "identical": same,
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run, 1 tile")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--tiles", type=int)
    parser.add_argument("--latency", type=float, default=0.03, help="seconds per request")
    parser.add_argument("--archive", type=Path, default=Path("/tmp/openeo-airflow-load-bench"))
    parser.add_argument("--shared-data", type=Path, default=SHARED_DATA)
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--workload", choices=WORKLOADS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    tiles = args.tiles or (1 if args.quick else 2)
    archive = args.archive.resolve()
    if args.worker:
        print(json.dumps(worker(args.workload, args.url, archive, args.worker, tiles)))
        return
    t0 = time.perf_counter()
    load_archive.build(args.shared_data, archive)
    runs = args.runs or (1 if args.quick else 3)
    print(
        f"latency {args.latency * 1000:.0f} ms/request, {tiles}x{tiles} tiles of {TILE} px, "
        f"{runs} run(s) after a warm-up, medians"
    )
    summary: dict[str, Any] = {}
    roots = {"cog": archive, "jp2": next((args.shared_data / JP2).iterdir()) / "IMG_DATA"}
    for workload, root in roots.items():
        with RangeServer(root, latency=args.latency) as server:
            summary[workload] = report(workload, measure(server, workload, archive, tiles, runs))
    print(f"total {time.perf_counter() - t0:.0f} s")
    summary.update(latency_s=args.latency, tiles=tiles, runs=runs)
    print("SUMMARY " + json.dumps(summary))


if __name__ == "__main__":
    main()
