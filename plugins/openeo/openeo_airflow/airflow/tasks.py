"""What each task of the batch DAG does, for one job (thin: decisions live in compiler/sizing,
work in engine)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any, TypeVar

from openeo_airflow.airflow import run_notes
from openeo_airflow.core.errors import OpenEOError
from openeo_airflow.core.memory import reuse_freed_memory
from openeo_airflow.core.models import JobStatus
from openeo_airflow.core.settings import load_settings
from openeo_airflow.engine import entrypoint, spark_local, tiled
from openeo_airflow.engine.errors import StageOutOfMemory
from openeo_airflow.engine.measure import Measurement, sum_usage
from openeo_airflow.engine.planning import JobShape, limits_of, size_plan
from openeo_airflow.engine.workspace import JobWorkspace
from openeo_airflow.jobs.backend import Backend
from openeo_airflow.jobs.joblog import job_logging
from openeo_airflow.sizing.model import Sizing, shrink, stage_peak_mb
from openeo_airflow.sizing.resources import Resources, validate_job_options

log = logging.getLogger(__name__)
T = TypeVar("T")
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


@cache
def backend() -> Backend:
    return Backend(load_settings())


def workspace(job_id: str) -> JobWorkspace:
    return JobWorkspace.for_job(backend().settings.jobs_dir, job_id)


@contextmanager
def stage(job_id: str, name: str) -> Iterator[None]:
    """Run a stage with its logs going to the job, and its failure explained there."""
    registry = backend().registry
    reuse_freed_memory()  # a task's process computes, then ends
    with job_logging(registry, job_id, name):
        try:
            yield
        except OpenEOError as exc:
            log.error("%s failed: [%s] %s", name, exc.code, exc.message)
            raise
        except Exception as exc:
            log.error("%s failed: %s: %s", name, type(exc).__name__, exc)
            raise


def _guard(job_id: str, name: str, work: Callable[[], T]) -> T:
    with stage(job_id, name):
        return work()


def adopt_run(run_id: str, owner: str, conf: dict[str, Any]) -> str:
    """A run triggered in Airflow (UI form or REST API) with a process graph becomes an openEO job
    owned by the triggering Airflow user, visible through /jobs like any other."""
    graph = conf.get("process_graph")
    if not isinstance(graph, dict) or not graph:
        raise ValueError(
            "Trigger this DAG with a 'process_graph' (an openEO process graph as JSON), "
            "or through the openEO API."
        )
    process = graph if "process_graph" in graph else {"process_graph": graph}
    registry = backend().registry
    job = registry.create(
        owner,
        process,
        title=conf.get("title") or f"Airflow run {run_id}",
        job_options=conf.get("job_options") or {},
    )
    registry.update(job.id, run_id=run_id)
    registry.set_status(job.id, JobStatus.QUEUED)
    registry.add_log(job.id, "info", f"Job created from Airflow DAG run '{run_id}' by '{owner}'")
    return job.id


def size(job_id: str) -> dict[str, Any]:
    """Compile, search the catalog, size; everything the stages need goes to the workspace."""

    def work() -> dict[str, Any]:
        b = backend()
        job = b.registry.get(job_id)
        b.registry.set_status(job_id, JobStatus.RUNNING, only_from=[JobStatus.QUEUED])
        log.info("Job started")
        plan = b.jobs.compile(job.owner, job.process)
        ws = workspace(job_id)
        ws.write_plan(plan)
        sizing, shape = size_plan(plan, b.collections, b.settings, job.job_options)
        for load_plan in shape.loads:
            ws.write_json(ws.load_plan_file(load_plan.node_id), load_plan.to_dict())
        ws.write_json(ws.user_processes_file, b.user_processes.by_id(job.owner))
        spec = {**sizing.to_dict(), "shape": shape.to_dict()}
        ws.write_json(ws.stage_spec_file, spec)
        b.registry.update(job_id, sizing={"predicted": sizing.to_dict()}, progress=0.0)
        log.info(
            "Sizing: engine %s (%s), tile %d px, %s Mpx, about %.0f s, %.3f credits",
            sizing.engine,
            sizing.reason,
            sizing.tile_size,
            f"{sizing.megapixels:,.1f}",
            sizing.seconds,
            sizing.credits,
        )
        for stage_size in sizing.stages:
            r = stage_size.resources
            log.info(
                "Sizing %s: %d tile(s), peak %.0f MiB per tile; %d x %d core(s), "
                "%d+%d MiB per executor",
                stage_size.name,
                stage_size.tiles,
                stage_size.peak_tile_mb,
                r.max_executors,
                r.executor_cores,
                r.executor_memory_mb,
                r.executor_memory_overhead_mb,
            )
        return spec

    spec = _guard(job_id, "size", work)
    run_notes.on_sized(backend(), job_id, spec)
    return spec


def _execute(
    sizing: Sizing,
    ws: JobWorkspace,
    stage: str,
    node: str | None,
    context: Any,
    attempt: int,
) -> Measurement:
    """One try of one stage on the sizing's engine."""
    name = entrypoint.stage_name(stage, node)
    stage_size = sizing.stage(name)
    resources = stage_size.resources if stage_size else Resources()
    engine = sizing.engine
    if engine == "spark-local" and stage == "save":
        engine = "inline"  # the driver's work only: not worth starting a JVM
    if engine == "spark-local":
        return spark_local.run(ws, stage, node, resources)
    if engine == "spark-k8s":
        from openeo_airflow.airflow.spark_k8s import run_spark_application
        from openeo_airflow.engine.spark_k8s import (
            SparkK8sConfig,
            build_spark_application,
            udf_sidecars,
        )

        settings = backend().settings
        _, graph = JobShape.shapes_from_dict(ws.read_json(ws.stage_spec_file)["shape"])
        try_number = int(getattr(context["ti"], "try_number", 1) or 1) * 10 + attempt
        manifest = build_spark_application(
            SparkK8sConfig.from_settings(settings),
            job_id=ws.root.name,
            stage=stage,
            workspace=str(ws.root),
            resources=resources,
            try_number=try_number,
            node=node,
            udf=udf_sidecars(stage, graph.udfs, stage_size),
        )
        run_spark_application(context, manifest, kubernetes_conn_id=settings.kubernetes_conn_id)
        return Measurement.from_dict(ws.read_json(ws.measurement_file(name)))
    mapper = tiled.ThreadMapper(backend().settings.local_cores)  # inline: the worker's cores
    return entrypoint.run_stage(ws, stage, node, sizing.tile_size, mapper)


def run_stage(job_id: str, stage: str, node: str | None = None, context: Any = None) -> str:
    """Run a stage; when it runs out of memory, re-size it (smaller tiles, then more memory)
    and try again, up to the deployment's ``oom_retries``; other failures are not retried."""
    name = entrypoint.stage_name(stage, node)

    def work() -> str:
        b = backend()
        ws = workspace(job_id)
        spec = ws.read_json(ws.stage_spec_file)
        retries = b.settings.oom_retries
        for attempt in range(retries + 1):
            sizing = Sizing.from_dict(spec)
            try:
                measured = _execute(sizing, ws, stage, node, context, attempt)
                break
            except StageOutOfMemory as exc:
                if attempt == retries:
                    log.error(
                        "%s ran out of memory (%s) %d time(s); giving up. Reduce the extent or "
                        "set job_options executor-memoryOverhead / tile-size.",
                        name,
                        exc.evidence or exc,
                        attempt + 1,
                    )
                    raise
                spec = _resized(spec, b, name, b.registry.get(job_id).job_options)
                ws.write_json(ws.stage_spec_file, spec)
                stage_size = Sizing.from_dict(spec).stage(name)
                log.warning(
                    "%s ran out of memory (%s); retrying with tiles of %d px and %d MiB per "
                    "executor (retry %d of %d)",
                    name,
                    exc.evidence or exc,
                    spec["tile_size"],
                    stage_size.resources.executor_pod_mb if stage_size else 0,
                    attempt + 1,
                    retries,
                )
        ws.write_json(ws.measurement_file(name), measured.to_dict())
        _record(job_id, ws, spec)
        sized = Sizing.from_dict(spec)
        predicted = sized.stage(name)
        log.info(
            "Measured %s: %.1f s, peak %.0f MiB (predicted %s), %.1f Mpx, %.1f MB read",
            name,
            measured.seconds,
            measured.peak_mb,
            f"{stage_peak_mb(sized.engine, predicted):.0f} MiB" if predicted else "-",
            measured.megapixels,
            measured.bytes_read / 1e6,
        )
        return name

    return _guard(job_id, stage, work)


def _resized(
    spec: dict[str, Any], b: Backend, stage_name: str, job_options: dict[str, Any]
) -> dict[str, Any]:
    sources, graph = JobShape.shapes_from_dict(spec["shape"])
    options = validate_job_options(dict(job_options))
    sizing = shrink(
        Sizing.from_dict(spec), sources, graph, limits_of(b.settings), options, stage_name
    )
    return {**spec, **sizing.to_dict()}


def _record(job_id: str, ws: JobWorkspace, spec: dict[str, Any]) -> None:
    """Put what the stages measured so far beside the prediction, and the usage totals."""
    measured = ws.measurements()
    predicted = Sizing.from_dict(spec)
    parts = [Measurement.from_dict(m) for m in measured.values()]
    usage: dict[str, dict[str, Any]] = {
        "cpu": {"value": round(sum(p.cpu_seconds for p in parts), 2), "unit": "cpu-seconds"},
        "duration": {"value": round(sum(p.seconds for p in parts), 2), "unit": "seconds"},
        "memory": {"value": round(max((p.peak_rss_mb for p in parts), default=0)), "unit": "mb"},
        "input_pixel": {"value": round(sum(p.megapixels for p in parts), 3), "unit": "mega-pixel"},
        "network": {"value": round(sum(p.bytes_read for p in parts) / 1e6, 2), "unit": "mb"},
    }
    # what loaders report themselves (Sentinel Hub processing units)
    for name, entry in sum_usage(p.extra.get("usage") for p in parts).items():
        before = float(usage.get(name, {}).get("value", 0))
        usage[name] = {"value": round(before + entry["value"], 3), "unit": entry["unit"]}
    backend().registry.update(
        job_id, usage=usage, sizing={"predicted": predicted.to_dict(), "measured": measured}
    )


def load(job_id: str, node_id: str, context: Any = None) -> str:
    return run_stage(job_id, "load", node_id, context)


def transform(job_id: str, context: Any = None) -> str:
    name = run_stage(job_id, "transform", None, context)
    backend().registry.update(job_id, progress=66.0)
    return name


def save(job_id: str, context: Any = None) -> list[str]:
    # The sources go while the result is encoded: freeing a cube's pages is the kernel's work
    # on the other core (7 ms for the sizing benchmark's 104 MB medium source).
    with _meanwhile(workspace(job_id).discard_sources):
        run_stage(job_id, "save", None, context)
    return _finish(job_id, "save")


@contextmanager
def _meanwhile(work: Callable[[], None]) -> Iterator[None]:
    """Run ``work`` on a thread of its own while the body runs; over when both are."""
    thread = threading.Thread(target=work, name="meanwhile")
    thread.start()
    try:
        yield
    finally:
        thread.join()


def fused(job_id: str) -> bool:
    """Run a job the sizing fused (load, transform and save in this task, in memory). When it
    runs out of memory, the job falls back to separate stages (``False``): they tile and
    re-size themselves."""

    def work() -> bool:
        ws = workspace(job_id)
        spec = ws.read_json(ws.stage_spec_file)
        log.info("Load, transform and save run in this task, tile by tile, in memory")
        try:
            measured = entrypoint.run_stage(
                ws,
                "fused",
                None,
                spec["tile_size"],
                tiled.inline_mapper,
                workers=backend().settings.local_cores,
            )
        except StageOutOfMemory as exc:
            log.warning(
                "The fused run ran out of memory (%s); running the stages separately",
                exc.evidence or exc,
            )
            ws.write_json(ws.stage_spec_file, {**spec, "fused": False})
            return False
        ws.write_json(ws.measurement_file("fused"), measured.to_dict())
        _record(job_id, ws, spec)
        log.info(
            "Measured fused run: %.1f s, peak %.0f MiB (predicted %.0f MiB), %.1f Mpx, "
            "%.1f MB read",
            measured.seconds,
            measured.peak_mb,
            Sizing.from_dict(spec).fused_peak_mb,
            measured.megapixels,
            measured.bytes_read / 1e6,
        )
        return True

    done = _guard(job_id, "fused", work)
    if done:
        _finish(job_id, "fused")
    return done


def _finish(job_id: str, stage_name: str) -> list[str]:
    ws = workspace(job_id)
    files = list((ws.read_result_metadata() or {}).get("assets", {}))
    # The run's note first: once the job is finished, its Airflow run already says so.
    run_notes.on_finished(backend(), job_id, files)
    backend().registry.set_status(job_id, JobStatus.FINISHED, only_from=ACTIVE, progress=100.0)
    _guard(job_id, stage_name, lambda: log.info("Job finished"))
    ws.discard_intermediates()  # last: until here a retried save still finds its input
    return files


def mark_failed(job_id: str, task_id: str, reason: str | None) -> None:
    """Called once a task has failed for good; a canceled job stays canceled.

    The reason is logged too: a task can fail before our code runs (e.g. Airflow's execution
    API timing out), and the user must still see why the job stopped.
    """
    registry = backend().registry
    if registry.set_status(job_id, JobStatus.ERROR, only_from=ACTIVE):
        registry.add_log(
            job_id, "error", f"Task '{task_id}' failed: {reason or 'no reason given by Airflow'}"
        )
