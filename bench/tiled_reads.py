"""Sources read tile by tile: files kept open per thread against opened for every tile.

    .venv/bin/python bench/tiled_reads.py GRAPH_JSON --collections FILE [--tile 512] [--rounds 4]

GRAPH_JSON is a process graph the e2e harness saved beside our result (``*.graph.json``), and
FILE the collections file of its archive. Each round evaluates the graph twice in this process,
as a synchronous request or a fused batch job does for sources too large to read whole
(``engine.streaming.evaluate_streamed`` with ``whole_mb=0``, two threads, ``--tile`` px
windows): once with every file opened once per reading thread (``io.datasets.OpenDatasets``,
the engine's way) and once with each file opened again for every tile (a limit of 0 open
files: the engine before it). The two alternate, so that both see the same machine. Prints one
JSON line per run, then the medians, the ratio kept / reopened and the files each opened.
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
    from openeo_airflow.engine.planning import shape_job
    from openeo_airflow.io import datasets
    from openeo_airflow.processes.registry import implemented

    collections = load_collections(args.collections)
    process = json.loads(args.graph.read_text())
    plan = compile_plan(process, known_processes=set(implemented()), collections=set(collections))
    loads = {p.node_id: p for p in shape_job(plan, collections, "local", {}).loads}
    opened: dict[str, int] = {}
    original_close = datasets.OpenDatasets.close

    def close(self: Any) -> None:  # records what the run opened
        opened[mode] = self.opened
        original_close(self)

    datasets.OpenDatasets.close = close  # type: ignore[method-assign]
    seconds: dict[str, list[float]] = {"kept": [], "reopened": []}
    for round_ in range(args.rounds + 1):  # the first round warms up
        for mode in ("kept", "reopened"):
            datasets.OpenDatasets.__init__.__defaults__ = (
                (datasets.LIMIT,) if mode == "kept" else (0,)
            )
            started = time.perf_counter()
            streaming.evaluate_streamed(
                plan, loads, workers=args.workers, whole_mb=0.0, read_tile=args.tile
            )
            elapsed = time.perf_counter() - started
            if round_:
                seconds[mode].append(elapsed)
            print(json.dumps({"round": round_, "mode": mode, "seconds": round(elapsed, 3)}))
    kept, reopened = (statistics.median(seconds[m]) for m in ("kept", "reopened"))
    print(
        json.dumps(
            {
                "tile": args.tile,
                "kept_s": round(kept, 3),
                "reopened_s": round(reopened, 3),
                "kept_over_reopened": round(kept / reopened, 3),
                "files_opened": opened,
            }
        )
    )


if __name__ == "__main__":
    main()
