"""End-to-end benchmark: the same workloads, on the same files, through every path.

    .venv/bin/python bench/e2e_bench.py [--quick] [--sizes small,large] [--workloads W1,W2]
                                         [--paths floor,local,sync,batch] [--runs 3] [--scaling]

Paths: ``floor`` (hand-written rasterio + numpy, bench/floor.py), ``local`` (openEO local
processing in its own venv, bench/peer.py, reading through a loopback STAC API), ``sync`` and
``batch`` (our backend's real local stack, bench/ours.py). See bench/README.md for what is
measured and how the archive is made. The last line printed is ``SUMMARY {json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import measure
from bench.archive import build_archive
from bench.compare import compare
from bench.fresh_memory import probe as fresh_memory_probe
from bench.measure import run_measured
from bench.ours import FORMATS, Stack, run_ours, snapshot
from bench.peer_env import ensure_peer_venv
from bench.polygons import write_polygons
from bench.report import PathResult, summarize, table
from bench.stac_api import StacApi
from bench.workloads import SCALING_KM, SIZES_KM, WORKLOADS

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = Path.home() / ".cache" / "openeo-airflow-bench"
PATHS = ("decode", "floor", "local", "sync", "batch")
# For every path (the stack too): glibc returns freed arrays of 1 MiB or more to the system
# at once (a fixed mmap threshold turns off glibc's growing one), so that the memory a run
# adds to a long-lived process (our API server, for sync) can be measured as an RSS delta.
BENCH_ENV = {"PYTHONWARNINGS": "ignore", "MALLOC_MMAP_THRESHOLD_": "1048576"}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cache: Path = args.cache
        self.out = args.out or self.cache / "results" / time.strftime("%Y%m%d-%H%M%S")
        self.out.mkdir(parents=True, exist_ok=True)
        self.archive = build_archive(args.shared_data, self.cache / "archive")
        self.peer_python: Path | None = None
        self.stac: StacApi | None = None
        self.stack: Stack | None = None
        self.env = {**os.environ, **BENCH_ENV}

    # ---------------------------------------------------------------- one path, all runs

    def measure(self, path: str, workload: str, side_km: float, tag: str) -> PathResult:
        result = PathResult(path)
        polygons = self.out / f"polygons_{side_km:g}km.geojson"
        if workload == "W3" and not polygons.exists():
            write_polygons(side_km, polygons)
        target = self.out / f"{workload}_{tag}_{path}.{self._suffix(workload, path)}"
        index, retries = 0, self.args.retries
        while index < self.args.warmup + self.args.runs:
            warm = index < self.args.warmup
            seconds, (peak, pss), error, tasks, work = self._once(
                path, workload, side_km, target, polygons
            )
            label = "warm-up" if warm else f"run {index - self.args.warmup + 1}"
            shown = f"{seconds:.2f} s" if seconds is not None else f"FAILED: {error}"
            log(f"{workload} {tag} {path} {label}: {shown}, peak {peak / 2**20:.0f} MB")
            if error is not None:
                # A rejected graph is final; a run that failed at run time may be transient
                # (this machine is shared): retry it, and keep the failure on record.
                result.failures.append(error)
                if retries > 0 and not _rejected(error):
                    retries -= 1
                    continue
                result.error = error
                return result
            index += 1
            # Peak memory counts the warm-up too: a long-lived process (the API server, for
            # sync) grows on its first run and reuses that memory (GDAL cache, heap) later.
            result.peak_mem.append(peak)
            result.peak_pss.append(pss)
            if not warm:
                result.seconds.append(seconds)
                if tasks:
                    result.tasks.append(tasks)
                if work is not None:
                    result.work.append(work)
        result.output = target
        return result

    @staticmethod
    def _suffix(workload: str, path: str) -> str:
        if path in ("floor", "local"):
            return "json" if WORKLOADS[workload].output == "table" else "tif"
        return {"GTiff": "tif", "netCDF": "nc"}[FORMATS[workload]]

    def _once(
        self, path: str, workload: str, side_km: float, target: Path, polygons: Path
    ) -> tuple[float | None, tuple[int, int], str | None, dict[str, float], float | None]:
        target.unlink(missing_ok=True)
        common = ["--workload", workload, "--side-km", str(side_km), "--out", str(target)]
        if workload == "W3":
            common += ["--polygons", str(polygons)]
        if path in ("decode", "floor", "local"):
            if path in ("decode", "floor"):
                command = [sys.executable, str(REPO / "bench" / "floor.py"), *common]
                command += ["--catalog", str(self.archive.catalog)]
                command += ["--decode"] if path == "decode" else []
            else:
                assert self.peer_python is not None and self.stac is not None
                command = [str(self.peer_python), str(REPO / "bench" / "peer.py"), *common]
                command += ["--stac", self.stac.collection_url]
            run = run_measured(command, self.env, self.args.timeout)
            return run.seconds, (run.peak_rss, run.peak_pss), run.error, {}, None
        assert self.stack is not None
        if not self.stack.alive():
            log("the local stack is down (see its logs); restarting it")
            self.stack.restart()
        data = json.loads(polygons.read_text()) if workload == "W3" else None
        engine = path.partition("-")[2] or "inline"
        ours = run_ours(self.stack, path.partition("-")[0], workload, side_km, target, data, engine)
        peaks = (ours.peak_rss_delta, ours.peak_pss_delta)
        return ours.seconds, peaks, ours.error, ours.tasks, ours.work_seconds

    # ---------------------------------------------------------------- the whole invocation

    def paths(self) -> list[str]:
        out = []
        for path in self.args.paths:
            if path == "batch":
                out += ["batch" if e == "inline" else f"batch-{e}" for e in self.args.engines]
            else:
                out.append(path)
        return out

    def run(self) -> dict[str, Any]:
        with ExitStack() as stack:
            self._start_services(stack)
            results: dict[str, dict[str, dict[str, PathResult]]] = {}
            for workload in self.args.workloads:
                for size in self.args.sizes:
                    side = SIZES_KM[size]
                    paths: dict[str, PathResult] = {}
                    for path in self.paths():
                        paths[path] = self.measure(path, workload, side, size)
                    self._compare(workload, paths)
                    results.setdefault(workload, {})[size] = paths
            summary = summarize(results)
            if self.args.scaling:
                self._scaling()
        return summary

    def _start_services(self, stack: ExitStack) -> None:
        if "local" in self.args.paths:
            venv = self.args.peer_venv or self.cache / "peer-venv"
            log(f"peer venv: {venv}")
            self.peer_python = ensure_peer_venv(venv, self.cache / "peer-install.log")
            self.stac = stack.enter_context(StacApi(self.archive.catalog, self.archive.items()))
            log(f"loopback STAC API: {self.stac.url}")
        if {"sync", "batch"} & set(self.args.paths):
            home = self.cache / "stack-home"
            shutil.rmtree(home, ignore_errors=True)
            log("starting the local stack (openeo-airflow up) ...")
            started = time.perf_counter()
            env = {"OPENEO_AIRFLOW_SYNC_MAX_PIXELS": str(self.args.sync_max_pixels)}
            env["MALLOC_MMAP_THRESHOLD_"] = BENCH_ENV["MALLOC_MMAP_THRESHOLD_"]
            source = None
            if self.args.backend != "worktree":
                source, sha = snapshot(REPO, self.args.backend, self.cache)
                log(f"backend: commit {sha} ({self.args.backend}), run from {source}")
            else:
                log("backend: the working tree, uncommitted changes included")
            collections = self.archive.collections_yaml
            self.stack = stack.enter_context(Stack(home, collections, env, source))
            log(f"stack up at {self.stack.url} after {time.perf_counter() - started:.0f} s")

    def _compare(self, workload: str, paths: dict[str, PathResult]) -> None:
        floor = paths.get("floor")
        if floor is None or not floor.ok:
            return
        kind = WORKLOADS[workload].output
        for name, result in paths.items():
            if name not in ("floor", "decode") and result.ok:
                assert floor.output is not None and result.output is not None
                try:
                    result.comparison = compare(floor.output, result.output, kind)
                except Exception as error:
                    result.comparison = {"compare_note": f"cannot compare: {error}"}

    def _scaling(self) -> None:
        """W1 at growing areas, every path, for the time-against-area plot."""
        points: dict[str, list[list[float | None]]] = {}
        runs, warmup = self.args.runs, self.args.warmup
        self.args.runs, self.args.warmup = self.args.scaling_runs, 0
        for side in SCALING_KM:
            for path in self.paths():
                result = self.measure(path, "W1", side, f"scale{side:g}km")
                points.setdefault(path, []).append([side * side, result.median])
        self.args.runs, self.args.warmup = runs, warmup
        data = {"workload": "W1", "points": points, "note": f"median of {self.args.scaling_runs}"}
        scaling_json = self.out / "scaling.json"
        scaling_json.write_text(json.dumps(data, indent=1))
        png = self.out / "scaling_W1.png"
        python = self.peer_python or Path(sys.executable)
        done = subprocess.run(
            [str(python), str(REPO / "bench" / "plot.py"), str(scaling_json), str(png)],
            capture_output=True,
            text=True,
        )
        log(f"scaling plot: {png}" if done.returncode == 0 else f"plot failed: {done.stderr}")
        print(f"SCALING {json.dumps(points)}")


def _rejected(error: str) -> bool:
    """An openEO error answered to the request itself (e.g. ProcessUnsupported)."""
    code = error.partition(":")[0]
    return code.isidentifier() and not code.endswith("Error") and code != "timeout"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small size, one run, no warm-up")
    parser.add_argument("--workloads", default="W1,W2,W3,W4")
    parser.add_argument("--sizes", default="small,large")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument(
        "--engines", default="inline", help="batch engines, e.g. inline,spark-local"
    )
    parser.add_argument("--runs", type=int, default=3, help="measured runs per path (median)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--retries", type=int, default=1, help="re-runs after a runtime failure")
    parser.add_argument(
        "--pss",
        action="store_true",
        help="also sample the proportional set size once a second (slows the runs down)",
    )
    parser.add_argument("--scaling", action="store_true", help="also W1 at 1..256 km2 + PNG")
    parser.add_argument("--scaling-runs", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per floor/peer run")
    parser.add_argument("--sync-max-pixels", type=int, default=2_000_000_000)
    parser.add_argument(
        "--backend",
        default="HEAD",
        help="git ref of our backend to run (a clean snapshot), or 'worktree' for the tree as is",
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--peer-venv", type=Path)
    parser.add_argument("--out", type=Path, help="result folder (default CACHE/results/TIME)")
    parser.add_argument("--shared-data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.runs, args.warmup = "small", 1, 0
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    for name, values, allowed in (
        ("workload", args.workloads, WORKLOADS),
        ("size", args.sizes, SIZES_KM),
        ("path", args.paths, PATHS),
    ):
        unknown = [v for v in values if v not in allowed]
        if unknown:
            parser.error(f"unknown {name}(s) {unknown}; choose from {list(allowed)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.pss:
        measure.PSS_INTERVAL = 1.0
    bench = Bench(args)
    log(f"archive: {bench.archive.root}; results: {bench.out}")
    # Batch tasks are new processes: what their fresh memory costs here (bench/fresh_memory.py)
    fresh = fresh_memory_probe()
    (bench.out / "fresh_memory.json").write_text(json.dumps(fresh, indent=1))
    log(f"fresh memory: {json.dumps(fresh)}")
    summary = bench.run()
    (bench.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(table(summary))
    print(f"fresh memory of a new process (bench/fresh_memory.py): {json.dumps(fresh)}")
    print(f"results and outputs: {bench.out}")
    print("SUMMARY " + json.dumps(summary, separators=(",", ":")))


if __name__ == "__main__":
    main()
