"""Sources read tile by tile: the engine's way against the two ways it read them before.

    .venv/bin/python bench/tiled_reads.py GRAPH_JSON --collections FILE [--tile 512] [--rounds 4]

GRAPH_JSON is a process graph the e2e harness saved beside our result (``*.graph.json``), and
FILE the collections file of its archive. Each round evaluates the graph once per variant in
this process, as a synchronous request or a fused batch job does for sources too large to read
whole (``engine.streaming.evaluate_streamed`` with ``whole_mb=0``, two threads, ``--tile`` px
windows):

- ``engine``: each reading thread keeps the files it opened (``io.datasets.OpenDatasets``), and
  tiles start where the files' blocks start (``LoadPlan.block_origin``);
- ``crs_anchor``: files kept, tiles anchored at the CRS origin (they cut the files' blocks);
- ``before``: every file opened again for each tile, tiles anchored at the CRS origin;
- ``whole``: for reference, the sources read whole first, then evaluated in tiles of them
  (what the engine did with sources up to 2 GiB before 256 MB became its limit).

The variants alternate, so that all see the same machine. Prints one JSON line per run, then
the medians, each variant's time over ``before`` and the files each opened.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS = ("engine", "crs_anchor", "before", "whole")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("graph", type=Path)
    parser.add_argument("--collections", type=Path, required=True)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from openeo_airflow.catalog.config import load_collections
    from openeo_airflow.compiler.compile import compile_plan
    from openeo_airflow.engine import streaming
    from openeo_airflow.engine.loadplan import LoadPlan
    from openeo_airflow.engine.planning import shape_job
    from openeo_airflow.io import datasets
    from openeo_airflow.processes.registry import implemented

    collections = load_collections(args.collections)
    process = json.loads(args.graph.read_text())
    plan = compile_plan(process, known_processes=set(implemented()), collections=set(collections))
    loads = {p.node_id: p for p in shape_job(plan, collections, "local", {}).loads}
    opened: dict[str, int] = {}
    original_close, block_origin = datasets.OpenDatasets.close, LoadPlan.block_origin

    def close(self: Any) -> None:  # records what the run opened
        opened[variant] = self.opened
        original_close(self)

    datasets.OpenDatasets.close = close  # type: ignore[method-assign]
    seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for round_ in range(args.rounds + 1):  # the first round warms up
        for variant in VARIANTS:
            limit = 0 if variant == "before" else datasets.LIMIT
            datasets.OpenDatasets.__init__.__defaults__ = (limit,)
            LoadPlan.block_origin = (  # type: ignore[method-assign]
                block_origin if variant == "engine" else lambda self: None
            )
            started = time.perf_counter()
            whole_mb = float("inf") if variant == "whole" else 0.0
            streaming.evaluate_streamed(
                plan, loads, workers=args.workers, whole_mb=whole_mb, read_tile=args.tile
            )
            elapsed = time.perf_counter() - started
            if round_:
                seconds[variant].append(elapsed)
            print(json.dumps({"round": round_, "variant": variant, "seconds": round(elapsed, 3)}))
    medians = {v: statistics.median(s) for v, s in seconds.items()}
    summary: dict[str, Any] = {"tile": args.tile}
    summary.update({f"{v}_s": round(s, 3) for v, s in medians.items()})
    for variant in ("engine", "crs_anchor", "whole"):
        summary[f"{variant}_over_before"] = round(medians[variant] / medians["before"], 3)
    summary["engine_over_whole"] = round(medians["engine"] / medians["whole"], 3)
    summary["files_opened"] = opened
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
