"""Sizing benchmark: how well the sizing model predicts, how stages scale, what staging costs.

    .venv/bin/python bench/sizing_bench.py --quick     # 8 km accuracy, 2-8 km scaling: < 5 min
    .venv/bin/python bench/sizing_bench.py             # 12 km accuracy, 4-16 km scaling

Jobs run through ``airflow.tasks`` (size, load per source, transform, save) exactly as the batch
DAG's tasks call them, without Airflow, in a temporary ``OPENEO_AIRFLOW_HOME`` whose collections
are the benchmark archive (bench/archive.py). Three parts:

1. Accuracy: seven workflows (bench/sizing_workflows.py) on the inline engine; per stage the
   sizing's predicted peak (``stage_peak_mb``: ``peak_tile_mb`` times the tiles running side by
   side on the worker's threads) against the measured ``peak_mb`` (the stage's peak above the
   worker's start RSS) and predicted ``seconds`` against the stage's wall time. Each workflow
   also runs once fused (one task, sources read whole, no store): the sizing's
   ``fused_peak_mb`` against the fused run's measured peak (``fused_peak_mem_*``).
2. Scaling: NDVI max composite at 1x, 4x and 16x the area on spark-local: ratio of the stages'
   own time (inside the Spark application) and of the peak RSS per Python worker.
3. Overhead: one small and one medium job three ways, taking turns, each after the same
   512 MiB touched and freed (``warmed``): staged (the four batch tasks with the stages forced
   apart, through the intermediate store), fused (the size task and the one fused task the
   sizing runs a job in when it fits a worker), and bare (compile, load plans read whole,
   ``evaluate_plan``, ``encode``: the graph in memory without a job's bookkeeping).
   ``stage_overhead`` = (staged - fused) / fused on the medium job, the median of the rounds'
   own; ``_vs_bare`` the same against bare; ``_tiled`` staged in 2 x 2 tiles against fused.
   It runs in a process of its own (when other parts run too), as an Airflow task does.

The last line is ``SUMMARY {json}``. See bench/README.md ("Sizing benchmark").
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# glibc keeps freed arrays below its (growing) mmap threshold in the heap, so a process's RSS
# would never come down between tiles and stages; "peak above the start" needs it to.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "1048576"}
WARM_MB = 512  # the free pages each overhead variant starts from (``warmed``)
MEM_FLOOR_MB = 32.0  # stages that measured less are allocator noise: not in the max
SCALING_WORKFLOW = "ndvi_max"
TASK_SECONDS = 0.0  # the model's per-task Airflow cost (sizing.model.TASK_SECONDS), set in main


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- running jobs ---------------------------------------------------------------------------------


def setup(home: Path, collections_yaml: Path) -> None:
    os.environ["OPENEO_AIRFLOW_HOME"] = str(home)
    os.environ["OPENEO_AIRFLOW_COLLECTIONS"] = str(collections_yaml)
    os.environ.setdefault("OPENEO_AIRFLOW_LOCAL_CORES", str(os.cpu_count() or 2))


def spark_session() -> Any:
    """One ``local[N]`` session for the whole benchmark (``--spark session``)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    cores = os.environ["OPENEO_AIRFLOW_LOCAL_CORES"]
    return (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("sizing-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.python.worker.reuse", "true")
        .config("spark.task.maxFailures", "1")
        .getOrCreate()
    )


def session_stage(session: Any) -> Any:
    """A load/transform task that runs the stage entrypoint's code on ``session`` instead of a
    ``spark-submit`` per stage (same tile functions, same mapper; no JVM start per stage)."""
    from openeo_airflow.airflow import tasks
    from openeo_airflow.engine import entrypoint

    def run(job_id: str, stage: str, node: str | None = None) -> None:
        ws = tasks.workspace(job_id)
        tile = int(ws.read_json(ws.stage_spec_file)["tile_size"])
        mapper = entrypoint.spark_mapper(session)
        measured = entrypoint.run_stage(ws, stage, node, tile, mapper)
        ws.write_json(ws.measurement_file(entrypoint.stage_name(stage, node)), measured.to_dict())

    return run


def run_job(graph: dict[str, Any], options: dict[str, Any], session: Any = None) -> dict[str, Any]:
    """One job through the batch tasks; per stage the prediction, the measurement, wall time.
    With a Spark ``session``, load and transform run their tiles on it (engine spark-local)."""
    from openeo_airflow.airflow import tasks
    from openeo_airflow.core.models import JobStatus
    from openeo_airflow.sizing.model import Sizing, stage_peak_mb

    run_spark = session_stage(session) if session is not None else None

    b = tasks.backend()
    job = b.registry.create("bench", graph, job_options=options)
    b.registry.set_status(job.id, JobStatus.QUEUED)
    walls: dict[str, float] = {}

    def timed(name: str, fn: Any, *args: Any) -> Any:
        gc.collect()
        started = time.perf_counter()
        value = fn(job.id, *args)
        walls[name] = time.perf_counter() - started
        return value

    spec = timed("size", tasks.size)
    error = None
    try:
        # a fused job is done in one task: the DAG skips the stage tasks
        if not (spec["fused"] and timed("fused", tasks.fused)):
            for node in spec["sources"]:
                if run_spark:
                    timed(f"load:{node}", run_spark, "load", node)
                else:
                    timed(f"load:{node}", tasks.load, node)
            if run_spark:
                timed("transform", run_spark, "transform")
            else:
                timed("transform", tasks.transform)
            timed("save", tasks.save)
    except Exception as exc:  # the stages that ran are still reported
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
        log(f"job {job.id} failed: {error}")
    done = b.registry.get(job.id)
    if error is None and done.status != JobStatus.FINISHED:
        error = f"job {job.id} ended {done.status}"
    predicted = done.sizing["predicted"]
    measured = done.sizing.get("measured") or {}
    # a stage killed for memory is re-sized (smaller tiles) and retried: say so
    retries = [e.message for e in b.registry.logs(job.id) if "ran out of memory" in e.message]
    stages = []
    sized = Sizing.from_dict(predicted)
    for stage in predicted["stages"]:
        if stage["name"] not in measured:
            continue
        m = measured[stage["name"]]
        size = sized.stage(stage["name"])
        assert size is not None
        stages.append(
            {
                "stage": stage["name"],
                "tiles": stage["tiles"],
                # inline tiles run side by side on the worker's threads and are measured as one
                "pred_peak_mb": stage_peak_mb(sized.engine, size),
                "meas_peak_mb": round(m.get("peak_mb", 0.0), 1),
                "meas_peak_rss_mb": round(m.get("peak_rss_mb", 0.0), 1),
                "pred_seconds": stage["seconds"],
                # without Airflow's per-task cost, which this benchmark does not pay
                "pred_work_seconds": round(stage["seconds"] - TASK_SECONDS, 2),
                "wall_seconds": round(walls.get(stage["name"], 0.0), 2),
                "meas_seconds": round(m.get("seconds", 0.0), 2),
                "cpu_seconds": round(m.get("cpu_seconds", 0.0), 2),
                "pred_megapixels": stage["megapixels"],
                "meas_megapixels": round(m.get("megapixels", 0.0), 3),
                "pieces": m.get("pieces", 0),
                "whole": bool((m.get("extra") or {}).get("whole")),
            }
        )
    fused = measured.get("fused") or {}
    return {
        "job": job.id,
        "engine": predicted["engine"],
        "fused": {
            "pred_peak_mb": predicted.get("fused_peak_mb", 0.0),
            "meas_peak_mb": round(fused.get("peak_mb", 0.0), 1),
            "pred_seconds": predicted["seconds"],
            "wall_seconds": round(walls.get("fused", 0.0), 2),
        }
        if fused
        else None,
        "tile_size": predicted["tile_size"],
        "sized_tile_size": spec["tile_size"],
        "oom_retries": retries,
        "megapixels": predicted["megapixels"],
        "shape": spec["shape"],
        "walls": {k: round(v, 2) for k, v in walls.items()},
        "staged_seconds": round(sum(walls.values()), 3),
        "stages": stages,
        "error": error,
    }


def run_fused(graph: dict[str, Any], out: Path) -> float:
    """The same job in memory: compile, load every source whole, evaluate, encode."""
    from openeo_airflow.airflow import tasks
    from openeo_airflow.engine import stages
    from openeo_airflow.engine.planning import shape_job

    b = tasks.backend()
    gc.collect()
    started = time.perf_counter()
    plan = b.jobs.compile("bench", graph)
    loads = shape_job(plan, b.collections, b.settings.gdal_profile, {}).loads
    sources = {p.node_id: p.empty_cube().copy(data=p.read(p.grid)[0]) for p in loads}
    result = stages.evaluate_plan(plan, sources)
    fmt, _ = stages.result_format(plan, result)
    stages.encode(result, fmt, out)
    return round(time.perf_counter() - started, 3)


# --- the three parts ------------------------------------------------------------------------------


def tile_inputs_mb(shape: dict[str, Any], tile: int) -> float:
    """The float32 inputs of one transform tile (halo included), from the job's shape."""
    from openeo_airflow.engine.planning import JobShape
    from openeo_airflow.sizing.model import tile_inputs_mb as model_tile_inputs_mb

    sources, graph = JobShape.shapes_from_dict(shape)
    return round(model_tile_inputs_mb(sources, graph, tile), 1)


def accuracy(
    args: argparse.Namespace, scratch: Path, failures: dict[str, str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every workflow once inline in separate stages, and once as one fused run (how the
    sizing runs a job the worker can hold): the stages that ran, and the fused runs (a
    failure goes into ``failures``)."""
    from bench.sizing_workflows import WORKFLOWS, process_graph

    rows, fused_rows = [], []
    for wid in args.workflows:
        workflow = WORKFLOWS[wid]
        graph = process_graph(workflow, args.side_km, scratch)
        log(f"accuracy: {wid} at {args.side_km:g} km, inline")
        run = run_job(graph, {"engine": "inline", "fuse-stages": False})  # per-stage figures
        nodes = run["shape"]["graph"]["nodes"]
        inputs = tile_inputs_mb(run["shape"], run["tile_size"])
        for stage in run["stages"]:
            rows.append(
                {
                    "workflow": wid,
                    "tile_size": run["tile_size"],
                    "nodes": nodes,
                    "inputs_mb": inputs,
                    **stage,
                }
            )
        if run["error"]:
            failures[wid] = run["error"]
        for message in run["oom_retries"]:
            log(f"{wid}: {message}")
        fused = run_job(graph, {"engine": "inline", "fuse-stages": True})["fused"]
        if fused is None:
            failures[f"{wid} fused"] = "the sizing did not fuse it, or the fused run failed"
            continue
        fused_rows.append(
            {
                "workflow": wid,
                "stage": "fused",
                "tile_size": run["tile_size"],
                "tiles": 1,
                "pred_peak_mb": fused["pred_peak_mb"],
                "meas_peak_mb": fused["meas_peak_mb"],
                "pred_work_seconds": round(fused["pred_seconds"] - TASK_SECONDS, 2),
                "wall_seconds": fused["wall_seconds"],
            }
        )
    return rows, fused_rows


@contextmanager
def spark_env() -> Iterator[None]:
    """Spark's Python workers without the allocator setting: with it a fresh worker's RSS
    reaches the spark-local engine's per-worker limit (PYTHON_BASE_MB + tile) and is killed,
    which the engine then retries in smaller tiles."""
    saved = {k: os.environ.pop(k) for k in MALLOC_ENV if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def scaling(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    with spark_env():
        return _scaling(args, scratch)


def _scaling(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    from bench.sizing_workflows import WORKFLOWS, process_graph

    workflow = WORKFLOWS[SCALING_WORKFLOW]
    out: dict[str, Any] = {"workflow": SCALING_WORKFLOW, "spark": args.spark, "runs": {}}
    session = None
    if args.spark == "session":
        started = time.perf_counter()
        session = spark_session()
        out["session_start_seconds"] = round(time.perf_counter() - started, 1)
    try:
        for factor, side in zip((1, 4, 16), args.scaling_km, strict=True):
            graph = process_graph(workflow, side, scratch)
            log(f"scaling: {SCALING_WORKFLOW} at {side:g} km ({factor}x), spark-local {args.spark}")
            if factor == 1 and session is not None:  # Python workers started and warm
                run_job(graph, {"engine": "spark-local"}, session)
            run = run_job(graph, {"engine": "spark-local"}, session)
            for message in run["oom_retries"]:
                log(f"{side:g} km: {message}")
            _scaled(out, factor, side, run)
            if factor == 16:  # the 16x area again in tiles of the 1x run's size
                tile = out["runs"]["1x"]["tile_size"]
                log(f"scaling: {side:g} km in tiles of {tile} px")
                fixed = run_job(graph, {"engine": "spark-local", "tile-size": tile}, session)
                _scaled(out, 0, side, fixed)
    finally:
        if session is not None:
            session.stop()
    one, big = out["runs"]["1x"], out["runs"]["16x"]
    out["time_16x"] = round(big["stage_seconds"] / max(one["stage_seconds"], 1e-9), 2)
    out["wall_16x"] = round(big["wall_seconds"] / max(one["wall_seconds"], 1e-9), 2)
    out["peak_rss_16x"] = round(big["peak_rss_mb"] / max(one["peak_rss_mb"], 1e-9), 2)
    out["peak_mb_16x"] = round(big["peak_mb"] / max(one["peak_mb"], 1e-9), 2)
    fixed = out["runs"].pop("0x")
    out["runs"]["16x_fixed_tile"] = fixed
    out["fixed_tile_time_16x"] = round(fixed["stage_seconds"] / max(one["stage_seconds"], 1e-9), 2)
    out["fixed_tile_peak_rss_16x"] = round(fixed["peak_rss_mb"] / max(one["peak_rss_mb"], 1e-9), 2)
    return out


def _scaled(out: dict[str, Any], factor: int, side: float, run: dict[str, Any]) -> None:
    if run["error"]:
        raise RuntimeError(f"scaling at {side:g} km: {run['error']}")
    spark = [s for s in run["stages"] if s["stage"] != "save"]
    out["runs"][f"{factor}x"] = {
        "side_km": side,
        "tile_size": run["tile_size"],
        "sized_tile_size": run["sized_tile_size"],
        "oom_retries": len(run["oom_retries"]),
        "tiles": max(s["tiles"] for s in spark),
        "megapixels": run["megapixels"],
        "stage_seconds": round(sum(s["meas_seconds"] for s in spark), 2),
        "wall_seconds": round(sum(s["wall_seconds"] for s in spark), 2),
        "peak_rss_mb": max(s["meas_peak_rss_mb"] for s in spark),
        "peak_mb": max(s["meas_peak_mb"] for s in spark),
        "stages": run["stages"],
        "staged_seconds": run["staged_seconds"],
    }


def overhead(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    from bench.sizing_workflows import WORKFLOWS, process_graph

    workflow = WORKFLOWS[SCALING_WORKFLOW]
    out: dict[str, Any] = {"workflow": SCALING_WORKFLOW}
    for label, side in (("small", args.scaling_km[0]), ("medium", args.medium_km)):
        graph = process_graph(workflow, side, scratch)
        log(f"overhead: {label} ({side:g} km) staged, fused and bare, {args.runs} run(s) each")
        # file cache, imports and first-use set-ups warm for all (the first staged run after
        # them alone measured 10x its median)
        run_fused(graph, scratch / "warmup")
        for fuse in (False, True):
            run_job(graph, {"engine": "inline", "fuse-stages": fuse})
        # The three take turns, and each overhead is the median of the rounds' own: on a
        # sub-second job the machine's drift between two blocks of runs is larger than the
        # difference being measured.
        rounds = [
            (
                warmed(run_job, graph, {"engine": "inline", "fuse-stages": False}),
                warmed(run_job, graph, {"engine": "inline", "fuse-stages": True}),
                warmed(run_fused, graph, scratch / "fused"),
            )
            for _ in range(args.runs)
        ]
        staged, fused, bare = (_median([r[i] for r in rounds]) for i in range(3))
        # the staged path once more in 2 x 2 tiles: the sizing runs the medium job in one
        # tile, which leaves the tiles' own costs (threads, chunk alignment) unmeasured
        half = -(-max(max(s["height"], s["width"]) for s in staged["shape"]["sources"]) // 2)
        options = {"engine": "inline", "fuse-stages": False, "tile-size": half}
        tiled = _median([warmed(run_job, graph, options) for _ in range(args.runs)])
        for run in [*(r[0] for r in rounds), *(r[1] for r in rounds), tiled]:
            if run["error"]:
                raise RuntimeError(f"overhead, {label} job: {run['error']}")
        entry = {
            "side_km": side,
            "megapixels": staged["megapixels"],
            "tile_size": staged["tile_size"],
            "staged_seconds": staged["staged_seconds"],
            "staged_task_seconds": staged["walls"],
            "fused_seconds": fused["staged_seconds"],
            "fused_task_seconds": fused["walls"],
            "bare_seconds": bare,
            # the goal's figure: the stages and their store against the job run fused
            "overhead": _round_overhead(rounds, 0, 1),
            "overhead_rounds": [
                _overhead(r[0]["staged_seconds"], r[1]["staged_seconds"]) for r in rounds
            ],
            # against the graph evaluated in memory without any of a job's bookkeeping
            "overhead_vs_bare": _round_overhead(rounds, 0, 2),
            "fused_over_bare": _round_overhead(rounds, 1, 2),
            # each variant's fastest round: timing noise here only ever adds (the host's
            # other guests take the CPU), so the fastest is the least disturbed run
            "overhead_best": _overhead(*(min(_seconds(r[i]) for r in rounds) for i in (0, 1))),
            "overhead_best_vs_bare": _overhead(
                *(min(_seconds(r[i]) for r in rounds) for i in (0, 2))
            ),
            "rounds_seconds": [[round(_seconds(v), 3) for v in r] for r in rounds],
            "tiled_tile_size": half,
            "tiled_seconds": tiled["staged_seconds"],
            "tiled_task_seconds": tiled["walls"],
            "overhead_tiled": _overhead(tiled["staged_seconds"], fused["staged_seconds"]),
        }
        out[label] = entry
    out["stage_overhead"] = out["medium"]["overhead"]
    out["stage_overhead_vs_bare"] = out["medium"]["overhead_vs_bare"]
    out["stage_overhead_tiled"] = out["medium"]["overhead_tiled"]
    return out


def overhead_apart(args: argparse.Namespace, scratch: Path, out: Path) -> dict[str, Any]:
    """The overhead part in a process of its own when other parts run too: each part's figures
    move with what the process ran before (after the accuracy part's gigabyte transforms the
    medium job measured 0.16 where it measured 0.10-0.13 alone; run before the accuracy part,
    it moved merge_cubes' measured transform peak from 242 to 287 MiB)."""
    if args.parts == {"overhead"}:
        return overhead(args, scratch)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--parts=overhead",
        f"--runs={args.runs}",
        f"--cache={args.cache}",
        f"--shared-data={args.shared_data}",
        f"--out={out / 'overhead'}",
        *(["--quick"] if args.quick else []),
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=os.environ)
    result: dict[str, Any] = json.loads((out / "overhead" / "sizing.json").read_text())
    return dict(result["overhead"])


def warmed(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` after touching and freeing ``WARM_MB``: whichever variant runs next finds
    the same pool of free pages the kernel has just had back. This VM hands free memory to its
    host after about two seconds (bench/fresh_memory.py: 1.4-2.1 ms per MB to touch it again,
    against 0.1-0.2 just after a free), so without it a variant's time depended on how much
    the one before it had freed: the fused task measured 0.32 s after a staged job that
    stored its load window by window, 0.24 s after one that freed a 104 MB copy, and 0.21 s
    on its own (medians of 7)."""
    import numpy as np

    block = np.ones(WARM_MB * 2**20, dtype=np.uint8)
    del block
    return fn(*args)


def _seconds(value: dict[str, Any] | float) -> float:
    return float(value["staged_seconds"] if isinstance(value, dict) else value)


def _overhead(seconds: float, base: float) -> float:
    return round((seconds - base) / base, 3)


def _round_overhead(rounds: list[tuple[Any, ...]], i: int, base: int) -> float:
    """The median over the rounds of variant ``i``'s time over variant ``base``'s."""
    return round(
        statistics.median((_seconds(r[i]) - _seconds(r[base])) / _seconds(r[base]) for r in rounds),
        3,
    )


def _median(runs: list[Any]) -> Any:
    """The run with the median time (a job's total, or a bare run's seconds)."""
    return sorted(runs, key=_seconds)[len(runs) // 2]


# --- constants measured ---------------------------------------------------------------------------


def python_base_mb() -> float:
    """RSS of a fresh Python with the stage code imported (what a worker holds before a tile)."""
    code = (
        "import psutil, openeo_airflow.engine.tiled, openeo_airflow.engine.entrypoint, "
        "openeo_airflow.processes.registry; print(psutil.Process().memory_info().rss)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    return round(int(done.stdout.strip().splitlines()[-1]) / 2**20, 1)


def fits(rows: list[dict[str, Any]], scale: dict[str, Any] | None) -> dict[str, Any]:
    """What the measurements say the model's constants are (next to the current values)."""
    from openeo_airflow.sizing import model

    def med(values: list[float]) -> float | None:
        values = [v for v in values if v and v > 0]
        return round(statistics.median(values), 2) if values else None

    loads = [r for r in rows if r["stage"].startswith("load:")]
    transforms = [r for r in rows if r["stage"] == "transform"]
    saves = [r for r in rows if r["stage"] == "save"]
    factors = [
        {
            "workflow": r["workflow"],
            "inputs_mb": r["inputs_mb"],
            "meas_over_inputs": round(r["meas_peak_mb"] / r["inputs_mb"], 2),
            "meas_minus_32_over_inputs": round((r["meas_peak_mb"] - 32) / r["inputs_mb"], 2),
            "pred_over_meas": round(r["pred_peak_mb"] / max(r["meas_peak_mb"], 1e-3), 2),
        }
        for r in transforms
        if counted(r) and r["inputs_mb"] > 1
    ]
    out: dict[str, Any] = {
        "LOAD_MPX_PER_SECOND": {
            "model": getattr(model, "LOAD_MPX_PER_SECOND", None),
            "measured": med([r["meas_megapixels"] / r["cpu_seconds"] for r in loads]),
        },
        "TRANSFORM_MPX_PER_SECOND": {
            "model": getattr(model, "TRANSFORM_MPX_PER_SECOND", None),
            "measured": med([r["pred_megapixels"] / r["wall_seconds"] for r in transforms]),
        },
        "SAVE_MPX_PER_SECOND": {
            "model": getattr(model, "SAVE_MPX_PER_SECOND", None),
            "measured": med([r["pred_megapixels"] / r["wall_seconds"] for r in saves]),
        },
        "load_peak_meas_over_pred": med(
            [r["meas_peak_mb"] / r["pred_peak_mb"] for r in loads if r["pred_peak_mb"]]
        ),
        "transform_factor": factors,
        "PYTHON_BASE_MB": {
            "model": getattr(model, "PYTHON_BASE_MB", None),
            "measured": python_base_mb(),
            "spark_worker_peak_rss": max(
                (r["peak_rss_mb"] for r in (scale or {}).get("runs", {}).values()), default=None
            ),
        },
    }
    if scale and scale["spark"] == "submit":
        startup = [
            s["wall_seconds"] - s["meas_seconds"]
            for run in scale["runs"].values()
            for s in run["stages"]
            if s["stage"] != "save"
        ]
        out["SPARK_STARTUP_SECONDS[spark-local]"] = {
            "model": getattr(model, "SPARK_STARTUP_SECONDS", {}).get("spark-local"),
            "measured": med(startup),
        }
    return out


# --- report ---------------------------------------------------------------------------------------


def _ratio(pred: float, meas: float) -> str:
    return f"{pred / meas:.2f}" if meas > 0 else "-"


def counted(row: dict[str, Any]) -> bool:
    return bool(row["meas_peak_mb"] >= MEM_FLOOR_MB)


def print_accuracy(rows: list[dict[str, Any]], what: str = "inline engine") -> None:
    print(f"\n## Sizing accuracy ({what}; memory in MiB per tile, time in s)\n")
    print(f"(pred s = the model's seconds minus its per-task Airflow cost of {TASK_SECONDS:g} s)\n")
    print(
        "| workflow | stage | tile px | tiles | pred peak | meas peak | pred/meas "
        "| pred s | meas s | pred/meas |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mark = "" if counted(r) else " (below floor)"
        print(
            f"| {r['workflow']} | {r['stage']} | {r['tile_size']} | {r['tiles']} "
            f"| {r['pred_peak_mb']:.1f} | {r['meas_peak_mb']:.1f}{mark} "
            f"| {_ratio(r['pred_peak_mb'], r['meas_peak_mb'])} | {r['pred_work_seconds']:.2f} "
            f"| {r['wall_seconds']:.2f} | {_ratio(r['pred_work_seconds'], r['wall_seconds'])} |"
        )


def memory_errors(rows: list[dict[str, Any]]) -> tuple[float, float, list[str]]:
    abs_err, under, worst = 0.0, 0.0, []
    for r in rows:
        if not counted(r):
            continue
        meas = max(r["meas_peak_mb"], 1e-3)
        err = abs(r["pred_peak_mb"] - meas) / meas
        abs_err = max(abs_err, err)
        under = max(under, (meas - r["pred_peak_mb"]) / meas)
        worst.append((err, f"{r['workflow']}/{r['stage']}"))
    worst.sort(reverse=True)
    return round(abs_err, 3), round(max(0.0, under), 3), [w for _, w in worst[:3]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from bench.sizing_workflows import WORKFLOWS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller extents, one run each")
    parser.add_argument("--workflows", default=",".join(WORKFLOWS))
    parser.add_argument("--parts", default="accuracy,scaling,overhead")
    parser.add_argument("--shared-data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/openeo-airflow-bench")
    parser.add_argument("--out", type=Path, help="result folder (default: CACHE/results/...)")
    parser.add_argument(
        "--runs",
        type=int,
        help="rounds of the overhead part (median; 11, 9 --quick): its ratios on "
        "sub-second jobs spread over -0.5 to 0.35 from one round to the next",
    )
    parser.add_argument(
        "--spark",
        choices=("session", "submit"),
        help="scaling with a spark-submit per stage, the spark-local engine as the DAG runs "
        "it (default), or on one local Spark session: quicker, but then the benchmark's own "
        "process is the driver, and one-tile stages run and are measured there",
    )
    args = parser.parse_args(argv)
    args.workflows = [w for w in args.workflows.split(",") if w]
    args.parts = {p for p in args.parts.split(",") if p}
    args.spark = args.spark or "submit"
    if args.quick:
        # the overhead goal's medium job as in the full run: its fixed costs weigh more on a
        # smaller one, and the overhead part takes seconds either way
        args.side_km, args.scaling_km, args.medium_km, runs = 8.0, (2.0, 4.0, 8.0), 12.0, 9
    else:
        args.side_km, args.scaling_km, args.medium_km, runs = 12.0, (4.0, 8.0, 16.0), 12.0, 11
    args.runs = args.runs or runs
    return args


def main(argv: list[str] | None = None) -> None:
    if any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})
    args = parse_args(argv)
    from bench.archive import build_archive
    from openeo_airflow.sizing import model

    global TASK_SECONDS
    TASK_SECONDS = float(getattr(model, "TASK_SECONDS", 0.0))

    started = time.perf_counter()
    archive = build_archive(args.shared_data, args.cache / "archive")
    out = args.out or args.cache / "results" / time.strftime("sizing-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sizing-bench-") as tmp:
        home, scratch = Path(tmp) / "home", Path(tmp) / "scratch"
        home.mkdir()
        scratch.mkdir()
        setup(home, archive.collections_yaml)
        failures: dict[str, str] = {}
        over = overhead_apart(args, scratch, out) if "overhead" in args.parts else None
        rows, fused_rows = (
            accuracy(args, scratch, failures) if "accuracy" in args.parts else ([], [])
        )
        scale = scaling(args, scratch) if "scaling" in args.parts else None
        if over and scale:
            small = over["small"]
            small["spark_local_seconds"] = scale["runs"]["1x"]["staged_seconds"]
            small["spark_local_over_fused"] = round(
                small["spark_local_seconds"] / small["fused_seconds"], 2
            )
        fitted = fits(rows, scale)
    print_accuracy(rows)
    abs_err, under, worst = memory_errors(rows)
    print(f"\npeak memory: max |pred-meas|/meas {abs_err}, max under-prediction {under}")
    print(
        f"worst stages: {', '.join(worst)}; not counted: stages that measured under "
        f"{MEM_FLOOR_MB:g} MiB (a UDF's child process is measured with its stage)"
    )
    print_accuracy(fused_rows, "fused runs (load, transform and save in one task)")
    fused_err, fused_under, fused_worst = memory_errors(fused_rows)
    print(f"\nfused peak memory: max |pred-meas|/meas {fused_err}, max under {fused_under}")
    print(f"worst fused runs: {', '.join(fused_worst)}")
    for wid, error in failures.items():
        print(f"FAILED {wid}: {error}")
    if scale:
        print("\n## Scaling (spark-local)\n")
        print(json.dumps({k: v for k, v in scale.items() if k != "runs"}))
        for factor, run in scale["runs"].items():
            print(factor, json.dumps({k: v for k, v in run.items() if k != "stages"}))
    if over:
        print("\n## Engine overhead\n")
        print(json.dumps(over, indent=1))
    print("\n## Constants measured vs model\n")
    print(json.dumps(fitted, indent=1))
    summary = {
        "peak_mem_abs_error_max": abs_err,
        "peak_mem_under_prediction_max": under,
        "fused_peak_mem_abs_error_max": fused_err,
        "fused_peak_mem_under_prediction_max": fused_under,
        "scaling_time_16x": scale["time_16x"] if scale else None,
        "scaling_peak_mem_16x": scale["peak_rss_16x"] if scale else None,
        "scaling_peak_mem_above_start_16x": scale["peak_mb_16x"] if scale else None,
        "scaling_wall_16x": scale["wall_16x"] if scale else None,
        "stage_overhead": over["stage_overhead"] if over else None,
        "stage_overhead_best": over["medium"]["overhead_best"] if over else None,
        "stage_overhead_vs_bare": over["stage_overhead_vs_bare"] if over else None,
        "stage_overhead_tiled": over["stage_overhead_tiled"] if over else None,
        "stages_counted": sum(1 for r in rows if counted(r)),
        "workflows": len({r["workflow"] for r in rows}),
        "workflows_failed": sorted(failures),
        "quick": args.quick,
        "seconds": round(time.perf_counter() - started, 1),
    }
    details = {
        "accuracy": rows,
        "accuracy_fused": fused_rows,
        "failures": failures,
        "scaling": scale,
        "overhead": over,
        "fits": fitted,
    }
    (out / "sizing.json").write_text(json.dumps({**details, "summary": summary}, indent=1))
    print(f"\nresults: {out / 'sizing.json'}")
    print("SUMMARY " + json.dumps(summary), flush=True)
    sys.stderr.flush()
    os._exit(0)  # nothing after the SUMMARY line (py4j and others log at interpreter exit)


if __name__ == "__main__":
    main()
