"""The spark-local engine: a stage as ``spark-submit --master local[N]`` of the stage entrypoint.

A child process, not a session inside the Airflow worker: the JVM and its Python workers go
away with the stage; the memory the sizing chose is enforced on each Python worker the way a
container's limit is (a worker over its share is killed, after saying so, instead of the
machine swapping); and it is the same entrypoint a SparkApplication runs on Kubernetes.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from openeo_airflow.engine import entrypoint
from openeo_airflow.engine.errors import StageOutOfMemory
from openeo_airflow.engine.measure import WORKER_MEMORY_ENV, Measurement
from openeo_airflow.engine.workspace import JobWorkspace
from openeo_airflow.sizing.resources import Resources

log = logging.getLogger(__name__)


def spark_submit() -> str:
    """``spark-submit`` of the pyspark beside this interpreter (or on PATH)."""
    local = Path(sys.executable).parent / "spark-submit"
    if local.exists():
        return str(local)
    found = shutil.which("spark-submit")
    if found is None:
        raise RuntimeError("spark-submit not found: install pyspark in this environment")
    return found


def worker_memory_mb(resources: Resources) -> int:
    return max(64, resources.executor_memory_overhead_mb // max(1, resources.executor_cores))


def command(
    workspace: JobWorkspace, stage: str, node: str | None, resources: Resources
) -> list[str]:
    conf = {
        "spark.ui.enabled": "false",
        "spark.default.parallelism": str(resources.partitions),
        "spark.python.worker.reuse": "true",
        "spark.task.maxFailures": "1",
        "spark.sql.shuffle.partitions": str(resources.partitions),
    }
    cmd = [
        spark_submit(),
        "--master",
        f"local[{resources.executor_cores}]",
        "--driver-memory",
        f"{resources.driver_memory_mb}m",
        "--name",
        f"openeo-{workspace.root.name}-{entrypoint.stage_name(stage, node)}",
    ]
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    cmd += [entrypoint.__file__, "--workspace", str(workspace.root), "--stage", stage]
    if node:
        cmd += ["--node", node]
    return cmd


def run(workspace: JobWorkspace, stage: str, node: str | None, resources: Resources) -> Measurement:
    name = entrypoint.stage_name(stage, node)
    result_file = workspace.measurement_file(name)
    result_file.unlink(missing_ok=True)
    env = dict(os.environ)
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # Each core's Python worker gets its share of the executor's memory beyond the heap; the
    # workers inherit this from the local JVM and hold themselves to it (engine.measure).
    env[WORKER_MEMORY_ENV] = str(worker_memory_mb(resources))
    cmd = command(workspace, stage, node, resources)
    log.info("spark-submit %s (local[%d])", name, resources.executor_cores)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    for line in output.splitlines():
        if " ERROR " in line or "Error" in line[:80]:
            log.warning("spark: %s", line[:500])
    result = workspace.read_json(result_file) if result_file.exists() else None
    if done.returncode == 0 and result is not None:
        return Measurement.from_dict(result)
    evidence = entrypoint.out_of_memory_evidence(output)
    if done.returncode in (entrypoint.OOM_EXIT, 137, -9) or evidence:
        raise StageOutOfMemory(
            f"{name} ran out of memory on spark-local",
            component="executor",
            evidence=(result or {}).get("evidence") or evidence or f"exit {done.returncode}",
        )
    tail = "\n".join(output.strip().splitlines()[-15:])
    raise RuntimeError(f"{name} failed on spark-local (exit {done.returncode}):\n{tail}")
