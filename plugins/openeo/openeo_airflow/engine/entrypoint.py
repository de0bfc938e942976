"""The stage entrypoint: one stage of one job, run by any engine.

``run_stage`` is what every engine calls; ``main`` is the Spark application's main file
(``spark-submit entrypoint.py --workspace DIR --stage load --node NODE`` for spark-local; the
SparkApplication's ``mainApplicationFile`` for spark-k8s). The application reads everything it
needs from the job's workspace (plan, load plans, sizing, user processes), never the job
database, and writes what it measured to ``stages/measured-<stage>.json`` there; a stage that
ran out of memory writes ``{"out_of_memory": ...}`` instead and exits with ``OOM_EXIT``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from openeo_airflow.core.memory import reuse_freed_memory
from openeo_airflow.engine import streaming, tiled
from openeo_airflow.engine.errors import StageOutOfMemory
from openeo_airflow.engine.measure import Measurement
from openeo_airflow.engine.workspace import JobWorkspace

log = logging.getLogger(__name__)

STAGES = ("load", "transform", "save")
OOM_EXIT = 52  # what Spark itself uses for an executor's OutOfMemoryError
_OOM_MARKERS = ("MemoryError", "OutOfMemoryError", "Cannot allocate memory", "std::bad_alloc")


def stage_name(stage: str, node: str | None) -> str:
    return f"{stage}:{node}" if stage == "load" else stage


def run_stage(
    workspace: JobWorkspace,
    stage: str,
    node: str | None,
    tile_size: int,
    mapper: tiled.Mapper,
    workers: int = 1,
) -> Measurement:
    """Run one stage; a memory failure anywhere (here or in a tile) is a ``StageOutOfMemory``.
    ``workers``: threads of a fused run (its tiles run in this process)."""
    try:
        if stage == "load":
            if not node:
                raise ValueError("The load stage needs --node")
            return tiled.run_load(workspace, node, tile_size, mapper)
        if stage == "transform":
            return tiled.run_transform(workspace, tile_size, mapper)
        if stage == "save":
            return tiled.run_save(workspace)
        if stage == "fused":  # the three stages in one task, tile by tile (inline only)
            return streaming.run_fused(workspace, workers, tile_size)
        raise ValueError(f"Unknown stage {stage!r}; one of {', '.join(STAGES)}")
    except MemoryError as exc:
        raise StageOutOfMemory(
            f"{stage_name(stage, node)} ran out of memory", evidence="MemoryError"
        ) from exc
    except Exception as exc:
        evidence = out_of_memory_evidence(str(exc))
        if evidence:
            raise StageOutOfMemory(
                f"{stage_name(stage, node)} ran out of memory", evidence=evidence
            ) from exc
        raise


def out_of_memory_evidence(text: str) -> str:
    """The first line of ``text`` (an error, a log) that says memory ran out, or ''."""
    for line in text.splitlines():
        if any(marker in line for marker in _OOM_MARKERS):
            return line.strip()[:300]
    return ""


def spark_mapper(spark: Any) -> tiled.Mapper:
    """Tiles as Spark tasks: one partition per tile, so a slow tile holds up no other."""
    context = spark.sparkContext

    def mapper(fn: tiled.TileFn, descriptors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not descriptors:
            return []
        rdd = context.parallelize(descriptors, len(descriptors))
        return list(rdd.map(fn).collect())

    return mapper


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one stage of an openEO batch job.")
    parser.add_argument("--workspace", required=True, help="the job's workspace folder")
    parser.add_argument("--stage", required=True, choices=STAGES)
    parser.add_argument("--node", help="the source node (load stage)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    workspace = JobWorkspace(Path(args.workspace))
    sizing = workspace.read_json(workspace.stage_spec_file)
    reuse_freed_memory()
    name = stage_name(args.stage, args.node)
    from pyspark.sql import SparkSession  # only the Spark engines import Spark

    spark = SparkSession.builder.appName(f"openeo {workspace.root.name} {name}").getOrCreate()
    try:
        measured = run_stage(
            workspace, args.stage, args.node, int(sizing["tile_size"]), spark_mapper(spark)
        )
        workspace.write_json(workspace.measurement_file(name), measured.to_dict())
        return 0
    except StageOutOfMemory as exc:
        log.error("%s: %s", exc, exc.evidence)
        workspace.write_json(
            workspace.measurement_file(name), {"out_of_memory": str(exc), "evidence": exc.evidence}
        )
        return OOM_EXIT
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())
