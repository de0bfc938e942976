"""Where our engine spends a workload's time: its stages in-process, against the raw decode.

    .venv/bin/python bench/profile_ours.py GRAPH_JSON --collections FILE [--repeat 2]

GRAPH_JSON is a process graph the harness saved next to our result (``*.graph.json``). Runs
the pieces of a sync or fused batch run one after the other, without HTTP or Airflow:
``compile_plan``, ``planning.shape_job`` and ``LoadPlan.read`` (STAC search + windowed COG
reads onto the cube grid, whole), ``stages.transform`` (untiled, one thread) and
``stages.encode``; then the raw decode of the same windows with rasterio (1 and 2 threads)
as the yardstick of DESIGN section 7 (W1's work time at most 2x the raw decode). Prints one
JSON line per repeat: seconds per stage, process peak RSS after each stage, megapixels decoded.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import rasterio
from rasterio.windows import from_bounds

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def raw_decode(plan, collections, threads: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Seconds and megapixels to decode every source window of the plan (no resampling)."""
    from openeo_airflow.catalog.stac import search_items
    from openeo_airflow.engine.sync import _time
    from openeo_airflow.sizing.estimate import extent_wgs84

    jobs = []
    for source in plan.sources:
        config = collections[source.collection_id]
        extent = source.spatial_extent
        start, end = (source.temporal_extent or [None, None])[:2]
        items = search_items(config, extent_wgs84(extent), _time(start), _time(end))
        for item in items:
            for band in source.bands or config.band_names:
                jobs.append((item.assets[config.band(band).asset], extent))

    def read(job: tuple[str, dict]) -> int:
        href, box = job
        with rasterio.open(href) as src:
            window = from_bounds(
                box["west"], box["south"], box["east"], box["north"], src.transform
            )
            return int(src.read(1, window=window.round_offsets().round_lengths()).size)

    started = time.perf_counter()
    with rasterio.Env(GDAL_NUM_THREADS=1), ThreadPoolExecutor(threads) as pool:
        pixels = sum(pool.map(read, jobs))
    return time.perf_counter() - started, pixels / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("graph", type=Path)
    parser.add_argument("--collections", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    from openeo_airflow.catalog.config import load_collections
    from openeo_airflow.compiler.compile import compile_plan
    from openeo_airflow.engine import stages
    from openeo_airflow.engine.planning import shape_job
    from openeo_airflow.processes.registry import implemented

    collections = load_collections(args.collections)
    process = json.loads(args.graph.read_text())
    for _ in range(args.repeat):
        report: dict[str, float] = {}
        started = time.perf_counter()
        plan = compile_plan(process, known_processes=set(implemented()),
                            collections=set(collections))  # fmt: skip
        report["compile_s"] = time.perf_counter() - started
        started = time.perf_counter()
        loads = shape_job(plan, collections, "local", {}).loads
        cubes = {p.node_id: p.empty_cube().copy(data=p.read(p.grid)[0]) for p in loads}
        report["load_s"] = time.perf_counter() - started
        report["load_peak_mb"] = peak_mb()
        started = time.perf_counter()
        result = stages.transform(plan, cubes)
        report["transform_s"] = time.perf_counter() - started
        report["transform_peak_mb"] = peak_mb()
        fmt, _ = stages.output_format(plan)
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            stages.encode(result, fmt, Path(tmp))
            report["encode_s"] = time.perf_counter() - started
        report["encode_peak_mb"] = peak_mb()
        del cubes, result
        for threads in (1, 2):
            seconds, mpx = raw_decode(plan, collections, threads)
            report[f"raw_decode_{threads}t_s"] = seconds
            report["raw_decode_mpx"] = mpx
        print(json.dumps({k: round(v, 3) for k, v in report.items()}), flush=True)


if __name__ == "__main__":
    main()
