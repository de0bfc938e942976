"""From a compiled plan to a sized job: the catalog search per source, the graph's shape, the
sizing and the scale guard. The size task and ``GET /jobs/{id}/estimate`` both call ``size_plan``,
so an estimate is exactly what the job would be sized as."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from openeo_airflow.catalog.config import CollectionConfig
from openeo_airflow.compiler.compile import split_process
from openeo_airflow.compiler.plan import Plan
from openeo_airflow.core.errors import CollectionNotFound, ProcessGraphComplexity
from openeo_airflow.core.settings import Settings
from openeo_airflow.engine.loadplan import LoadPlan, prepare_load
from openeo_airflow.engine.sources import ADHOC_PROCESSES, resolve_source
from openeo_airflow.engine.stages import soft_error_ratio
from openeo_airflow.processes.aggregate import PERIODS
from openeo_airflow.processes.tiling import tiling_plan
from openeo_airflow.sizing.model import GraphShape, Limits, Sizing, SourceShape, size_job
from openeo_airflow.sizing.resources import validate_job_options

_TIME_REDUCERS = {"aggregate_temporal", "aggregate_temporal_period"}


@dataclass(frozen=True)
class JobShape:
    loads: list[LoadPlan]
    sources: list[SourceShape]
    graph: GraphShape

    def to_dict(self) -> dict[str, Any]:
        return {
            "sources": [vars(s) for s in self.sources],
            "graph": vars(self.graph),
        }

    @classmethod
    def shapes_from_dict(cls, data: dict[str, Any]) -> tuple[list[SourceShape], GraphShape]:
        return [SourceShape(**s) for s in data["sources"]], GraphShape(**data["graph"])


def limits_of(settings: Settings) -> Limits:
    return Limits(
        engine=settings.engine or "spark-local",
        local_cores=settings.local_cores,
        local_memory_mb=settings.local_memory_mb,
        max_executors=settings.max_executors,
        max_executor_memory_mb=settings.max_executor_memory_mb,
        max_job_megapixels=settings.max_job_megapixels,
    )


def _nodes(graph: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every node, callbacks included."""
    for node in graph.values():
        yield node
        for value in (node.get("arguments") or {}).values():
            if isinstance(value, dict) and isinstance(value.get("process_graph"), dict):
                yield from _nodes(value["process_graph"])


def _reduces(node: Mapping[str, Any], dimensions: tuple[str, ...]) -> bool:
    return node.get("process_id") == "reduce_dimension" and (
        (node.get("arguments") or {}).get("dimension") in dimensions
    )


def graph_shape(process_graph: Mapping[str, Any], loads: Sequence[LoadPlan] = ()) -> GraphShape:
    """The graph's shape; with the ``loads`` of its sources, also the time steps its result
    keeps after a temporal aggregation."""
    graph, _ = split_process(process_graph)
    tiling = tiling_plan(process_graph)
    nodes = list(_nodes(graph))
    ids = [n.get("process_id") for n in nodes]
    return GraphShape(
        nodes=len(nodes),
        halo=tiling.halo,
        align=tiling.align,
        global_nodes=len(tiling.global_nodes),
        reduces_time=any(
            n.get("process_id") in _TIME_REDUCERS or _reduces(n, ("t", "time")) for n in nodes
        ),
        merges=ids.count("merge_cubes"),
        temporal_aggregation=any(i in _TIME_REDUCERS for i in ids),
        udfs=ids.count("run_udf"),
        reduces_bands=any(
            _reduces(n, ("bands",))
            or (n.get("process_id") == "ndvi" and not (n.get("arguments") or {}).get("target_band"))
            for n in nodes
        ),
        result_steps=_result_steps(nodes, loads),
    )


def _result_steps(nodes: list[Mapping[str, Any]], loads: Sequence[LoadPlan]) -> int:
    """The time steps a temporal aggregation leaves: the periods from the sources' first to
    last date, or the intervals given; 0 without one, or when time is reduced after all."""
    if any(_reduces(n, ("t", "time")) for n in nodes):
        return 0
    days = sorted({datetime.combine(day, time()) for load in loads for day, _ in load.steps})
    for node in nodes:
        args = node.get("arguments") or {}
        if node.get("process_id") == "aggregate_temporal" and isinstance(
            args.get("intervals"), list
        ):
            return len(args["intervals"])
        if node.get("process_id") == "aggregate_temporal_period" and days:
            if args.get("period") not in PERIODS:
                return 0  # the process itself reports the bad period
            key_of, _, step = PERIODS[args["period"]]
            key, last, count = key_of(days[0]), key_of(days[-1]), 1
            while key < last:
                key, count = step(key), count + 1
            return count
    return 0


def source_shape(load: LoadPlan) -> SourceShape:
    steps, bands, height, width = load.shape
    return SourceShape(
        node_id=load.node_id,
        steps=steps,
        bands=bands,
        height=height,
        width=width,
        items=load.stats.items,
        assets=load.stats.assets,
        block_size=load.stats.block_size,
        bytes_per_pixel=load.stats.bytes_per_pixel,
        streams=load.reads_archive,
    )


def shape_job(
    plan: Plan,
    collections: Mapping[str, CollectionConfig],
    gdal_profile: str,
    job_options: Mapping[str, Any],
) -> JobShape:
    loads, shapes = [], []
    for source in plan.sources:
        if source.process_id in ADHOC_PROCESSES:
            # load_stac / load_result: a collection made from the STAC document, searched by
            # its own function; then the same tiled load as any collection.
            resolved = resolve_source(source, collections)
            load = prepare_load(
                resolved.source,
                resolved.config,
                gdal_profile,
                soft_error_ratio(job_options),
                search=resolved.search,
            )
            loads.append(load)
            shapes.append(source_shape(load))
            continue
        config = collections.get(source.collection_id)
        if config is None:
            raise CollectionNotFound(identifier=source.collection_id)
        # Archive files, Sentinel Hub and archive GRD with sar_backscatter all load per tile.
        load = prepare_load(source, config, gdal_profile, soft_error_ratio(job_options))
        loads.append(load)
        shapes.append(source_shape(load))
    return JobShape(loads=loads, sources=shapes, graph=graph_shape(plan.process_graph, loads))


def check_scale(sizing: Sizing, limits: Limits) -> None:
    """Refuse a job beyond the deployment's limits, saying what to reduce."""
    if sizing.megapixels > limits.max_job_megapixels:
        raise ProcessGraphComplexity(
            f"The job would load about {sizing.megapixels:,.0f} megapixels; this deployment "
            f"accepts at most {limits.max_job_megapixels:,.0f} per job. Reduce the spatial or "
            "temporal extent or the number of bands, or split the job."
        )


def size_plan(
    plan: Plan,
    collections: Mapping[str, CollectionConfig],
    settings: Settings,
    job_options: Mapping[str, Any],
) -> tuple[Sizing, JobShape]:
    options = validate_job_options(dict(job_options))
    shape = shape_job(plan, collections, settings.gdal_profile, options)
    limits = limits_of(settings)
    sizing = size_job(shape.sources, shape.graph, limits, options)
    check_scale(sizing, limits)
    return sizing, shape
