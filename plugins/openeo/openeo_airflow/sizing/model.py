"""The sizing model (pure): from a job's shape, predict what each stage needs and choose how
it runs — engine, tile size, partitions, executors, cores and memory.

Inputs are plain numbers the size task gathers (``SourceShape`` per source from the catalog
search and one file header, ``GraphShape`` from the process graph's tiling plan) plus the
deployment's ``Limits``. Memory in MiB, time in seconds.

The memory model, per tile of ``T`` x ``T`` pixels (``t`` time steps, ``b`` bands):
- load: the tile's float32 cube ``t*b*T^2*4`` bytes, plus the reader's per-thread buffers
  (``READ_THREADS`` reads of a band window in the stored type, decoded to float32, and a mask);
- transform: the inputs cut to the tile plus halo, times a working-set factor that grows with
  the number of processes (intermediate cubes alive at once), capped;
- the driver holds the result for save (and whole cubes when the graph has global processes).
The constants were fitted on ``bench/sizing_bench.py`` runs on the development machine; the
benchmark prints how far the predictions are from the measurements.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from openeo_airflow.sizing.resources import Resources, apply_overrides, overhead_mb

MB = 1024 * 1024
FLOAT = 4
READ_THREADS = 4
PYTHON_BASE_MB = 300  # an idle Python worker with our stack imported
JVM_HEAP_MB = 1024  # the JVM only moves tile descriptors and measurements
TILE_BUDGET_MB = 1536  # what one tile may need: several run side by side per executor
MIN_TILE = 128
MAX_TILE = 4096
TRANSFORM_FACTOR_BASE = 1.5
TRANSFORM_FACTOR_PER_NODE = 0.5
TRANSFORM_FACTOR_MAX = 6.0
LOAD_MPX_PER_SECOND = 40.0  # per core, reading and decoding tiled COGs
TRANSFORM_MPX_PER_SECOND = 60.0  # per core and process
SAVE_MPX_PER_SECOND = 30.0
# Airflow's own cost per task (DESIGN §5: 4-11 s for a 4-task run on this machine) plus
# starting Spark, per stage.
TASK_SECONDS = 2.0
SPARK_STARTUP_SECONDS = {"inline": 0.0, "spark-local": 20.0, "spark-k8s": 60.0}
INLINE_MAX_MEGAPIXELS = 400.0  # above: the job goes to the configured Spark engine
CREDITS_PER_CORE_HOUR = 1.0
CREDITS_PER_GIB_HOUR = 0.1


@dataclass(frozen=True)
class SourceShape:
    node_id: str
    steps: int
    bands: int
    height: int
    width: int
    items: int = 0
    assets: int = 0
    block_size: int = 512
    bytes_per_pixel: int = 2

    @property
    def megapixels(self) -> float:
        return self.steps * self.bands * self.height * self.width / 1e6


@dataclass(frozen=True)
class GraphShape:
    nodes: int  # processes in the graph (top level and callbacks)
    halo: int = 0
    align: int = 1
    global_nodes: int = 0
    reduces_time: bool = False


@dataclass(frozen=True)
class Limits:
    engine: str = "spark-local"  # engine for jobs too large to run inline
    local_cores: int = 2
    local_memory_mb: int = 8192
    max_executors: int = 16
    max_executor_memory_mb: int = 32768
    max_job_megapixels: float = 200_000


@dataclass(frozen=True)
class StageSize:
    name: str  # "load:<node>", "transform" or "save"
    tiles: int
    peak_tile_mb: float
    peak_executor_mb: float
    peak_driver_mb: float
    seconds: float
    megapixels: float
    bytes_read: float
    resources: Resources

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["resources"] = self.resources.to_dict()
        return data


@dataclass(frozen=True)
class Sizing:
    engine: str
    tile_size: int
    sources: list[str]
    reason: str
    stages: list[StageSize] = field(default_factory=list)
    megapixels: float = 0.0
    seconds: float = 0.0
    credits: float = 0.0

    def stage(self, name: str) -> StageSize | None:
        return next((s for s in self.stages if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stages"] = [s.to_dict() for s in self.stages]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sizing:
        stages = [
            StageSize(**{**s, "resources": Resources.from_dict(s["resources"])})
            for s in data.get("stages", [])
        ]
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{**fields, "stages": stages})


# --- memory per tile ------------------------------------------------------------------------------


def load_tile_mb(source: SourceShape, tile: int) -> float:
    window = min(tile, source.height) * min(tile, source.width)
    cube = source.steps * source.bands * window * FLOAT
    per_read = window * (source.bytes_per_pixel + 2 * FLOAT + 1)
    return (cube + READ_THREADS * per_read) / MB


def transform_factor(graph: GraphShape) -> float:
    return min(
        TRANSFORM_FACTOR_MAX, TRANSFORM_FACTOR_BASE + TRANSFORM_FACTOR_PER_NODE * graph.nodes
    )


def transform_tile_mb(sources: list[SourceShape], graph: GraphShape, tile: int) -> float:
    inputs = sum(
        s.steps
        * s.bands
        * min(tile + 2 * graph.halo, s.height)
        * min(tile + 2 * graph.halo, s.width)
        * FLOAT
        for s in sources
    )
    return inputs * transform_factor(graph) / MB


def result_mb(sources: list[SourceShape], graph: GraphShape) -> float:
    """The result cube's size: the largest source, without its time axis when reduced."""
    if not sources:
        return 0.0
    largest = max(sources, key=lambda s: s.megapixels)
    steps = 1 if graph.reduces_time else largest.steps
    return steps * largest.bands * largest.height * largest.width * FLOAT / MB


# --- choices --------------------------------------------------------------------------------------


def choose_tile(sources: list[SourceShape], graph: GraphShape, slots: int) -> int:
    """The largest multiple of the source block (and of the graph's alignment) whose tiles fit
    the tile budget, but small enough that every slot gets a tile when the extent allows.
    When not even one block fits (long time series), a half, quarter, ... of the block: each
    block is then decoded more than once, but the tile fits in memory."""
    block = max((s.block_size for s in sources), default=512)
    unit = block * graph.align // math.gcd(block, graph.align)
    extent = max((max(s.height, s.width) for s in sources), default=unit)
    multiples = [unit * k for k in range(1, MAX_TILE // unit + 1)] or [unit]
    fractions = [unit >> j for j in range(1, 8) if (unit >> j) >= max(MIN_TILE, graph.align)]

    def fits(t: int) -> bool:
        load = max((load_tile_mb(s, t) for s in sources), default=0.0)
        return load <= TILE_BUDGET_MB and transform_tile_mb(sources, graph, t) <= TILE_BUDGET_MB

    fitting = [t for t in multiples if fits(t)]
    if not fitting:
        return next((t for t in fractions if fits(t)), fractions[-1] if fractions else unit)
    tile = fitting[-1]
    # Parallelism: shrink while there are fewer tiles than slots and a smaller tile remains.
    while tile > fitting[0] and _tile_count(sources, tile) < slots and tile >= extent / 2:
        tile = max(t for t in fitting if t < tile)
    return tile


def _tile_count(sources: list[SourceShape], tile: int) -> int:
    return max((math.ceil(s.height / tile) * math.ceil(s.width / tile) for s in sources), default=1)


def choose_engine(megapixels: float, limits: Limits, forced: str | None) -> tuple[str, str]:
    if forced:
        return forced, "forced by job_options"
    if limits.engine == "inline":
        return "inline", "the deployment runs every job inline"
    if megapixels <= INLINE_MAX_MEGAPIXELS:
        return "inline", f"{megapixels:,.0f} Mpx fits one worker (<= {INLINE_MAX_MEGAPIXELS:,.0f})"
    return limits.engine, f"{megapixels:,.0f} Mpx: parallel on {limits.engine}"


def _resources(
    engine: str, tiles: int, tile_mb: float, driver_mb: float, limits: Limits
) -> Resources:
    worker_mb = PYTHON_BASE_MB + tile_mb * 1.25
    if engine == "spark-k8s":
        cores = 2 if tiles > 1 else 1
        executors = max(1, min(limits.max_executors, math.ceil(tiles / cores)))
    else:
        cores = max(1, min(limits.local_cores, tiles))
        executors = 1
    overhead = max(overhead_mb(JVM_HEAP_MB), round(cores * worker_mb))
    return Resources(
        driver_cores=1,
        driver_memory_mb=max(1024, math.ceil(driver_mb)),
        executor_cores=cores,
        executor_memory_mb=JVM_HEAP_MB,
        executor_memory_overhead_mb=min(overhead, limits.max_executor_memory_mb),
        executors=1 if engine != "spark-k8s" else min(executors, 2),
        max_executors=executors,
        partitions=max(1, tiles),
    )


def size_stages(
    sources: list[SourceShape],
    graph: GraphShape,
    engine: str,
    tile: int,
    limits: Limits,
    options: dict[str, Any],
) -> list[StageSize]:
    stages: list[StageSize] = []
    startup = TASK_SECONDS + SPARK_STARTUP_SECONDS.get(engine, 0.0)
    for source in sources:
        tiles = _tile_count([source], tile)
        tile_mb = load_tile_mb(source, tile)
        resources = apply_overrides(_resources(engine, tiles, tile_mb, 1024, limits), options)
        parallel = min(tiles, resources.executor_cores * resources.max_executors)
        stages.append(
            StageSize(
                name=f"load:{source.node_id}",
                tiles=tiles,
                peak_tile_mb=round(tile_mb, 1),
                peak_executor_mb=round(PYTHON_BASE_MB + tile_mb * resources.executor_cores, 1),
                peak_driver_mb=256.0,
                seconds=round(
                    startup + source.megapixels / LOAD_MPX_PER_SECOND / max(1, parallel), 2
                ),
                megapixels=round(source.megapixels, 3),
                bytes_read=source.megapixels * 1e6 * source.bytes_per_pixel,
                resources=resources,
            )
        )
    tiles = _tile_count(sources, tile)
    whole = graph.global_nodes > 0
    inputs_mb = sum(s.megapixels for s in sources) * 1e6 * FLOAT / MB
    tile_mb = (
        inputs_mb * transform_factor(graph) if whole else transform_tile_mb(sources, graph, tile)
    )
    driver_mb = tile_mb if whole else result_mb(sources, graph) * 2
    resources = apply_overrides(_resources(engine, tiles, tile_mb, driver_mb, limits), options)
    parallel = 1 if whole else min(tiles, resources.executor_cores * resources.max_executors)
    work = sum(s.megapixels for s in sources) * max(1, graph.nodes)
    stages.append(
        StageSize(
            name="transform",
            tiles=0 if whole else tiles,
            peak_tile_mb=round(tile_mb, 1),
            peak_executor_mb=round(PYTHON_BASE_MB + tile_mb * resources.executor_cores, 1),
            peak_driver_mb=round(driver_mb, 1),
            seconds=round(startup + work / TRANSFORM_MPX_PER_SECOND / max(1, parallel), 2),
            megapixels=round(sum(s.megapixels for s in sources), 3),
            bytes_read=inputs_mb * MB,
            resources=resources,
        )
    )
    out_mb = result_mb(sources, graph)
    save = Resources(driver_memory_mb=max(1024, math.ceil(out_mb * 3)), partitions=1)
    stages.append(
        StageSize(
            name="save",
            tiles=1,
            peak_tile_mb=round(out_mb * 2, 1),
            peak_executor_mb=0.0,
            peak_driver_mb=round(out_mb * 2, 1),
            seconds=round(TASK_SECONDS + out_mb * MB / FLOAT / 1e6 / SAVE_MPX_PER_SECOND, 2),
            megapixels=round(out_mb * MB / FLOAT / 1e6, 3),
            bytes_read=out_mb * MB,
            resources=apply_overrides(save, {k: v for k, v in options.items() if "driver" in k}),
        )
    )
    return stages


def credits(stages: list[StageSize]) -> float:
    total = 0.0
    for stage in stages:
        r = stage.resources
        cores = r.driver_cores + r.executor_cores * r.max_executors
        gib = (r.driver_memory_mb + r.executor_pod_mb * r.max_executors) / 1024
        hours = stage.seconds / 3600
        total += hours * (cores * CREDITS_PER_CORE_HOUR + gib * CREDITS_PER_GIB_HOUR)
    return round(total, 6)


def size_job(
    sources: list[SourceShape],
    graph: GraphShape,
    limits: Limits,
    options: dict[str, Any] | None = None,
) -> Sizing:
    """The sizing of a job (``options`` are the user's validated ``job_options``)."""
    options = options or {}
    megapixels = sum(s.megapixels for s in sources)
    engine, reason = choose_engine(megapixels, limits, options.get("engine"))
    slots = limits.local_cores if engine != "spark-k8s" else limits.max_executors * 2
    tile = int(options.get("tile-size") or choose_tile(sources, graph, slots))
    if graph.align > 1:
        tile = -(-tile // graph.align) * graph.align
    stages = size_stages(sources, graph, engine, tile, limits, options)
    return Sizing(
        engine=engine,
        tile_size=tile,
        sources=[s.node_id for s in sources],
        reason=reason,
        stages=stages,
        megapixels=round(megapixels, 3),
        seconds=round(sum(s.seconds for s in stages), 2),
        credits=credits(stages),
    )


def shrink(
    sizing: Sizing,
    sources: list[SourceShape],
    graph: GraphShape,
    limits: Limits,
    options: dict[str, Any],
    stage: str,
) -> Sizing:
    """The sizing for a retry after ``stage`` ran out of memory: half the tile edge (a quarter
    of the pixels per tile) and twice the memory the stage had (the user's memory options
    included: they were too small), within the deployment's limits."""
    floor = max(MIN_TILE, graph.align)
    tile = max(floor, sizing.tile_size // 2)
    before = sizing.stage(stage)
    stages = size_stages(sources, graph, sizing.engine, tile, limits, options)
    if before is not None:
        doubled = _doubled(before.resources, limits)
        stages = [replace(s, resources=doubled) if s.name == stage else s for s in stages]
    return replace(sizing, tile_size=tile, stages=stages, reason=f"{stage} ran out of memory")


def _doubled(resources: Resources, limits: Limits) -> Resources:
    return replace(
        resources,
        driver_memory_mb=resources.driver_memory_mb * 2,
        executor_memory_overhead_mb=min(
            limits.max_executor_memory_mb, resources.executor_memory_overhead_mb * 2
        ),
    )
