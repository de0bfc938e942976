"""The sizing model (pure): from a job's shape, predict what each stage needs and choose how
it runs — engine, tile size, partitions, executors, cores and memory.

Inputs are plain numbers the size task gathers (``SourceShape`` per source from the catalog
search and one file header, ``GraphShape`` from the process graph) plus the deployment's
``Limits``. Memory in MiB (above a worker's resident size at rest), time in seconds.

The memory model, per tile of ``T`` x ``T`` pixels (``t`` time steps, ``b`` bands), fitted on
the seven workflows of ``bench/sizing_bench.py`` (bench/README.md has the measurements):
- load: a staged load stores each window (a band of one date on the reader's unit of
  ``min(T, 2048)^2`` px) as it is read and holds ``LOAD_STREAM_PLANES`` such planes per
  reader thread (``read_threads``: one when tiles run side by side) and 2 MiB; a load that
  reads its tile whole (a fused run; Sentinel Hub and backscatter) holds the tile's float32
  cube ``t*b*T^2*4`` bytes plus ``LOAD_BUFFER_PLANES`` planes per reader thread and 2 MiB;
- transform: the inputs cut to the tile (with halo) times a working-set weight, 1.95 plus
  0.025 per process (neighbourhood and temporal aggregations included), +5.85 per
  ``merge_cubes``, +0.45 with a neighbourhood (a halo); with ``run_udf``, its child process
  (``UDF_CHILD_MB`` plus its copies of the data);
- save: 20 MiB plus 1.1 times the result (its time steps after temporal aggregation, one band
  when the graph reduces the bands);
- small transforms need at least ``FLOOR_MB``, saves ``SAVE_FLOOR_MB``, whatever the size;
- a fused run (``fused_peak_mb``): the sources it holds (read whole, or a tile per worker),
  each worker's transform working set beyond its tile's inputs (which are those sources), and
  in tiles the result twice (pieces and mosaic).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from openeo_airflow.sizing.resources import Resources, apply_overrides, overhead_mb

MB = 1024 * 1024
FLOAT = 4
# A load holds its tile's cube plus what each of the reader's threads decodes at once: one
# plane of the reader's unit (a band of one date, at most READER_TILE px square) as read, its
# no-data mask, and a second item's plane where products overlap. At 12 km (1200 px planes, two
# threads) the seven workflows' loads measured their cube plus 1.05-1.65 planes per thread,
# whatever their bands (bench/sizing_bench.py, 2026-11-29); 0.2-1.6 at 8 km (800 px).
LOAD_BUFFER_PLANES = 1.65
# A staged load that stores each window as it is read holds no cube: each reading thread its
# window and the buffers above. Measured 1.95-2.5 planes per thread at 12 km, and up to 3.45
# when the load ran after larger stages in the same process (the benchmark's neighborhood
# load: 30-40 MiB over eight full runs, 2026-11-29): 3.2 keeps that within 7 % under.
LOAD_STREAM_PLANES = 3.2
READER_TILE = 2048  # io.grid.DEFAULT_TILE_SIZE: the reader's unit
READ_THREADS_MAX = 4  # the reader's threads on one tile, at most
LOAD_FIXED_MB = 2.0
# Transform working set per MiB of input: a base plus a share per process, since a longer
# graph keeps more intermediates alive. Proportional, without a fixed part: on
# bench/sizing_bench.py at 8 and 12 km every workflow measured the same multiple of its input
# at both sizes (2.0-2.1 for 5 processes, 2.1-2.2 for 7 with a neighbourhood, 2.3 for 15 with
# or without a temporal aggregation, 7.9-8.0 with one merge_cubes). Since computing processes
# keep freed memory for the next array (core/memory), every transform measured 4-12 % more;
# the weights were raised 7 % (ndvi_max 0.96 -> 1.03 of the measured peak at 12 km,
# aggregate_spatial 0.89 -> 0.95, temporal_period 0.92 -> 0.99).
WEIGHT_BASE = 2.09
WEIGHT_PER_NODE = 0.027
WEIGHT_PER_MERGE = 6.26
# A neighbourhood (a halo) keeps its windows' copies beside the input: the apply_neighborhood
# workflow's transform measured 2.46x its input through the NumPy store (8 km), 0.36 over what
# its node count gives.
WEIGHT_NEIGHBOURHOOD = 0.48
FLOOR_MB = 40.0
# Saving holds the result and the writer's buffers: a netCDF time series measured 38.3 MiB for
# a 29 MiB result and 72.6 MiB for 66 MiB (its chunks are deflated a few at a time; through
# HDF5's own filter it was 50.6 and 92.1 MiB).
SAVE_FIXED_MB = 8.0
SAVE_WEIGHT = 1.0
SAVE_FLOOR_MB = 40.0
# A Spark Python worker with our stack imported: 311-475 MiB measured (a plain interpreter:
# 253); the worker's memory limit starts from it.
PYTHON_BASE_MB = 480
JVM_HEAP_MB = 1024  # the JVM only moves tile descriptors and measurements
TILE_BUDGET_MB = 1536  # what one tile may need: several run side by side per executor
# On Spark a tile is a task: tiles of the same size whatever the extent keep an executor's
# memory flat as jobs grow (more tasks instead of larger ones), and spread a job over more
# executors. 64 MiB is 512 px for 6 dates of 3 bands; each task costs SPARK_TASK_SECONDS.
SPARK_TILE_TARGET_MB = 64.0
MIN_TILE = 128
MAX_TILE = 4096
LOAD_MPX_PER_SECOND = 15.0  # per core, reading, decoding and storing tiled COGs
LOAD_FIXED_SECONDS = 0.3
TRANSFORM_MPX_PER_SECOND = 10.0  # input megapixels per core, whatever the number of processes
TRANSFORM_FIXED_SECONDS = 0.3
UDF_SECONDS = 0.6  # per run_udf call and tile: a child Python process
# run_udf's child process (one at a time): its interpreter with numpy, xarray and openeo.udf
# (145 MiB measured) plus its copies of the data it gets and returns.
UDF_CHILD_MB = 150.0
UDF_DATA_WEIGHT = 4.0
SAVE_MPX_PER_SECOND = 6.0
SAVE_FIXED_SECONDS = 0.2
SPARK_TASK_SECONDS = 0.3  # per tile on the Spark engines
# Airflow's own cost per task (DESIGN §5: 4-11 s for a 4-task run on this machine) plus
# starting Spark, per stage.
TASK_SECONDS = 2.0
SPARK_STARTUP_SECONDS = {"inline": 0.0, "spark-local": 25.0, "spark-k8s": 60.0}
INLINE_MAX_MEGAPIXELS = 400.0  # above: the job goes to the configured Spark engine
# A fused run (engine.streaming) may take this share of the local worker's memory
# (Limits.local_memory_mb). It reads sources under STREAM_WHOLE_MB whole and evaluates them at
# once: measured in process, W1's 184 MB took 0.71 s in tiles on 2 threads against 0.64 s at
# once (W4's 10 MB: 0.16 vs 0.135 s). Larger sources are read and evaluated per tile of
# STREAM_MIN_TILE px (a block multiple, at most the sized tile) on the worker's cores: with
# files kept open and tiles on the files' blocks, W2's 860 MB took 2.98 s that way against
# 3.39 s read whole and evaluated in tiles of it (bench/tiled_reads.py), at half the memory.
FUSED_MEMORY_SHARE = 0.5
STREAM_WHOLE_MB = 256.0
# Graphs with global processes still read sources up to this whole: they run at once on the
# whole cube (their per-tile partials are for sources that do not fit).
STREAM_GLOBAL_WHOLE_MB = 2048.0
STREAM_MIN_TILE = 512
STREAM_MAX_TILE = 1024
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
    # A staged load stores each window as it is read (archive files), rather than after
    # reading its whole tile (Sentinel Hub, backscatter).
    streams: bool = True

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
    merges: int = 0  # merge_cubes calls
    temporal_aggregation: bool = False  # aggregate_temporal(_period)
    udfs: int = 0  # run_udf calls
    result_steps: int = 0  # time steps after a temporal aggregation (0: not known)
    reduces_bands: bool = False  # the result has one band (ndvi, a reduction over bands)


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
    fused: bool = False  # load, transform and save in one task, in memory
    fused_peak_mb: float = 0.0  # what the fused run would hold at once

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


def read_threads(cores: int, tiles: int = 1) -> int:
    """The archive reader's threads for one load tile: one when tiles run side by side (the
    tiles are then the parallel unit), else the worker's ``cores``, at most ``READ_THREADS_MAX``."""
    return 1 if tiles > 1 else max(1, min(READ_THREADS_MAX, cores))


def load_tile_mb(source: SourceShape, tile: int, threads: int = 1) -> float:
    """A load tile's cube and the buffers of the reader's ``threads``."""
    window = min(tile, source.height) * min(tile, source.width) * FLOAT / MB
    buffers = _reading_mb(source, tile, threads, LOAD_BUFFER_PLANES)
    return source.steps * source.bands * window + buffers + LOAD_FIXED_MB


def load_stage_mb(source: SourceShape, tile: int, threads: int = 1) -> float:
    """What a load stage's tile holds: its reading threads' windows when it stores them as
    they are read, else the whole tile (``load_tile_mb``)."""
    if not source.streams:
        return load_tile_mb(source, tile, threads)
    return _reading_mb(source, tile, threads, LOAD_STREAM_PLANES) + LOAD_FIXED_MB


def _reading_mb(source: SourceShape, tile: int, threads: int, planes: float) -> float:
    """``planes`` of the reader's unit (a band of one date, at most ``READER_TILE`` px
    square) per reading thread, for as many threads as the tile has such bands to read."""
    height = min(tile, source.height, READER_TILE)
    width = min(tile, source.width, READER_TILE)
    return height * width * FLOAT / MB * planes * min(threads, source.steps * source.bands)


def transform_weight(graph: GraphShape) -> float:
    return (
        WEIGHT_BASE
        + WEIGHT_PER_NODE * graph.nodes
        + WEIGHT_PER_MERGE * graph.merges
        + (WEIGHT_NEIGHBOURHOOD if graph.halo else 0.0)
    )


def tile_inputs_mb(sources: list[SourceShape], graph: GraphShape, tile: int) -> float:
    """The sources cut to one tile plus halo, as float32."""
    side = tile + 2 * graph.halo
    return (
        sum(s.steps * s.bands * min(side, s.height) * min(side, s.width) * FLOAT for s in sources)
        / MB
    )


def transform_tile_mb(sources: list[SourceShape], graph: GraphShape, tile: int) -> float:
    inputs_mb = tile_inputs_mb(sources, graph, tile)
    udf_mb = UDF_CHILD_MB + inputs_mb * UDF_DATA_WEIGHT if graph.udfs else 0.0
    return max(FLOOR_MB, inputs_mb * transform_weight(graph) + udf_mb)


def result_mb(sources: list[SourceShape], graph: GraphShape) -> float:
    """The result cube's size: the largest source, with the time steps a temporal aggregation
    leaves (one when time is reduced) and one band when the graph reduces the bands."""
    if not sources:
        return 0.0
    largest = max(sources, key=lambda s: s.megapixels)
    if graph.result_steps:
        steps = min(graph.result_steps, largest.steps)
    else:
        steps = 1 if graph.reduces_time else largest.steps
    bands = 1 if graph.reduces_bands else largest.bands
    return steps * bands * largest.height * largest.width * FLOAT / MB


def save_mb(out_mb: float) -> float:
    """What saving a result of ``out_mb`` holds at once."""
    return max(SAVE_FLOOR_MB, SAVE_FIXED_MB + SAVE_WEIGHT * out_mb)


# --- choices --------------------------------------------------------------------------------------


def choose_tile(
    sources: list[SourceShape], graph: GraphShape, target_mb: float = TILE_BUDGET_MB
) -> int:
    """The largest multiple of the source block (and of the graph's alignment) whose tiles fit
    ``target_mb`` (else the tile budget), whatever the extent: a larger job gets more tiles,
    not larger ones. When not even one block fits the budget (long time series), a half,
    quarter, ... of the block: each block is then decoded more than once, but the tile fits."""
    unit = _tile_unit(sources, graph)
    extent = max((max(s.height, s.width) for s in sources), default=unit)
    whole = -(-extent // unit) * unit  # the smallest tile that covers the extent
    multiples = [unit * k for k in range(1, min(MAX_TILE, whole) // unit + 1)] or [unit]
    fractions = [unit >> j for j in range(1, 8) if (unit >> j) >= max(MIN_TILE, graph.align)]

    def fits(t: int, limit: float = TILE_BUDGET_MB) -> bool:
        load = max((load_stage_mb(s, t) for s in sources), default=0.0)
        return load <= limit and transform_tile_mb(sources, graph, t) <= limit

    fitting = [t for t in multiples if fits(t, target_mb)] or [t for t in multiples if fits(t)]
    if not fitting:
        return next((t for t in fractions if fits(t)), fractions[-1] if fractions else unit)
    return fitting[-1]


def _tile_unit(sources: list[SourceShape], graph: GraphShape) -> int:
    """Tiles are multiples of the source block and of the graph's alignment."""
    block = max((s.block_size for s in sources), default=512)
    return block * graph.align // math.gcd(block, graph.align)


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


def stream_tile_size(height: int, width: int, workers: int) -> int:
    """The tiles a fused run evaluates sources read whole in: the longer side cut into equal
    parts, as few as give every worker two or more tiles (no thread idles while the last one
    finishes) at no more than ``STREAM_MAX_TILE`` px (the working set); cutting stops at
    ``STREAM_MIN_TILE`` (each tile evaluates the graph once more: about 15 ms of overhead
    measured on W1's 20 processes).

    Equal parts, because a remainder tile leaves a worker idle: W2's 1600 px cut at 1024 px
    (tiles of 1024 and 576) evaluated in 1.5-2.0 s on 2 threads, cut in halves in 1.1-1.45 s."""
    longest = max(height, width, 1)
    parts = 1
    while True:
        size = -(-longest // parts)
        tiles = -(-height // size) * -(-width // size)
        if size <= STREAM_MIN_TILE or (size <= STREAM_MAX_TILE and tiles >= 2 * workers):
            return size
        parts += 1


def _input_mb(sources: list[SourceShape]) -> float:
    return sum(s.megapixels for s in sources) * 1e6 * FLOAT / MB


def reads_whole(sources: list[SourceShape], graph: GraphShape) -> bool:
    """Whether a fused run reads its sources whole (else tile by tile)."""
    return whole_read(_input_mb(sources), bool(graph.global_nodes))


def whole_read(input_mb: float, global_nodes: bool) -> bool:
    """Whether sources of ``input_mb`` (float32) are read whole for a streamed run."""
    return input_mb < (STREAM_GLOBAL_WHOLE_MB if global_nodes else STREAM_WHOLE_MB)


def stream_read_tile(block_size: int, tile: int) -> int:
    """The tiles a streamed run reads sources in when it does not read them whole:
    ``STREAM_MIN_TILE`` px rounded up to a multiple of the source block (tiles start on the
    files' blocks, so each block is decoded once), and no larger than the sized ``tile``,
    which fits the tile memory budget of deep time series."""
    block = max(block_size, 1)
    return min(-(-STREAM_MIN_TILE // block) * block, tile)


def fused_peak_mb(sources: list[SourceShape], graph: GraphShape, tile: int, workers: int) -> float:
    """What a fused run holds at its peak: the sources read whole (or one read tile of them
    per worker, ``stream_read_tile`` of the sized ``tile``), each worker's transform working
    set beyond its tile's inputs (the whole cube with global processes, which then run at
    once), and, in tiles, the result twice (the tiles' pieces and their mosaic)."""
    extent = max((max(s.height, s.width) for s in sources), default=1)
    if reads_whole(sources, graph):  # small, or global processes: evaluated at once
        held = sum(load_tile_mb(s, extent, read_threads(workers)) for s in sources)
        evaluated = extent
    else:
        block = max((s.block_size for s in sources), default=STREAM_MIN_TILE)
        evaluated = stream_read_tile(block, tile)
        held = workers * sum(load_tile_mb(s, evaluated) for s in sources)
    whole_extent = evaluated >= extent
    parallel = 1 if whole_extent else workers
    # A tile's inputs are already held (views of the sources read whole, or the tile's own
    # read): its working set beyond them (the floor is on the whole working set, inputs
    # included). Tiled, the result is held twice (pieces and mosaic).
    working = parallel * (
        transform_tile_mb(sources, graph, evaluated) - tile_inputs_mb(sources, graph, evaluated)
    )
    mosaic = 0.0 if whole_extent else 2 * result_mb(sources, graph)
    return round(held + working + mosaic, 1)


def fused_budget_mb(limits: Limits) -> float:
    return limits.local_memory_mb * FUSED_MEMORY_SHARE


def choose_fused(
    engine: str, peak_mb: float, options: dict[str, Any], budget_mb: float, megapixels: float = 0.0
) -> tuple[bool, str]:
    """Whether a job runs its stages in one task, streamed from the archive to the result
    without the intermediate store (engine.streaming): inline jobs whose fused run fits
    ``budget_mb``. The store's write and read and three more Airflow tasks cost more than
    they give where the worker can hold the job (bench/README.md, "Engine overhead"); a fused
    run that still runs out of memory falls back to the stages. The user can force either
    way; a user's ``tile-size`` asks for tiled stages. A job larger than an inline job
    (``INLINE_MAX_MEGAPIXELS``, when forced inline) keeps its stages: what a stage stored
    need not be redone when a later one fails."""
    if engine != "inline":
        return False, f"stages run separately on {engine}"
    if options.get("fuse-stages") is not None:
        return bool(options["fuse-stages"]), "fuse-stages set in job_options"
    if options.get("tile-size"):
        return False, "tile-size set in job_options: tiled stages"
    if megapixels > INLINE_MAX_MEGAPIXELS:
        return False, f"{megapixels:,.0f} Mpx: stages keep what they did"
    if peak_mb > budget_mb:
        return False, f"fused, {peak_mb:,.0f} MiB at once would be over {budget_mb:,.0f} MiB"
    return True, f"{peak_mb:,.0f} MiB at once: stages fused, streamed in memory"


def _resources(
    engine: str, tiles: int, tile_mb: float, driver_mb: float, limits: Limits
) -> Resources:
    worker_mb = PYTHON_BASE_MB + tile_mb * 1.5
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
    spark = engine != "inline"
    startup = TASK_SECONDS + SPARK_STARTUP_SECONDS.get(engine, 0.0)
    for source in sources:
        tiles = _tile_count([source], tile)
        tile_mb = load_stage_mb(source, tile, read_threads(_reader_cores(engine, limits), tiles))
        resources = apply_overrides(_resources(engine, tiles, tile_mb, 1024, limits), options)
        parallel = max(1, min(tiles, resources.executor_cores * resources.max_executors))
        per_tile = SPARK_TASK_SECONDS if spark else 0.0
        seconds = startup + LOAD_FIXED_SECONDS
        seconds += (source.megapixels / LOAD_MPX_PER_SECOND + tiles * per_tile) / parallel
        stages.append(
            StageSize(
                name=f"load:{source.node_id}",
                tiles=tiles,
                peak_tile_mb=round(tile_mb, 1),
                peak_executor_mb=round(PYTHON_BASE_MB + tile_mb * resources.executor_cores, 1),
                peak_driver_mb=256.0,
                seconds=round(seconds, 2),
                megapixels=round(source.megapixels, 3),
                bytes_read=source.megapixels * 1e6 * source.bytes_per_pixel,
                resources=resources,
            )
        )
    stages.append(_transform_stage(sources, graph, engine, tile, limits, options, startup))
    out_mb = result_mb(sources, graph)
    out_mpx = out_mb * MB / FLOAT / 1e6
    save = Resources(driver_memory_mb=max(1024, math.ceil(out_mb * 3)), partitions=1)
    save_peak = round(save_mb(out_mb), 1)
    stages.append(
        StageSize(
            name="save",
            tiles=1,
            peak_tile_mb=save_peak,
            peak_executor_mb=0.0,
            peak_driver_mb=save_peak,
            seconds=round(TASK_SECONDS + SAVE_FIXED_SECONDS + out_mpx / SAVE_MPX_PER_SECOND, 2),
            megapixels=round(out_mpx, 3),
            bytes_read=out_mb * MB,
            resources=apply_overrides(save, {k: v for k, v in options.items() if "driver" in k}),
        )
    )
    return stages


def _reader_cores(engine: str, limits: Limits) -> int:
    """The cores a one-tile load reads on: the local worker's, else (a Kubernetes node of
    unknown size) as many threads as the reader takes."""
    return READ_THREADS_MAX if engine == "spark-k8s" else limits.local_cores


def _transform_stage(
    sources: list[SourceShape],
    graph: GraphShape,
    engine: str,
    tile: int,
    limits: Limits,
    options: dict[str, Any],
    startup: float,
) -> StageSize:
    """Tiles run on executors. With global processes the executors compute the tiles'
    partial results and the driver computes the first tile itself and holds all partials
    (about one value per pixel and date); inline, the driver runs every tile, one by one. A
    single tile is evaluated by the driver at once."""
    tiles = _tile_count(sources, tile)
    on_driver = graph.global_nodes > 0 and tiles > 1  # one tile: evaluated at once anyway
    inputs_mb = sum(s.megapixels for s in sources) * 1e6 * FLOAT / MB
    tile_mb = transform_tile_mb(sources, graph, tile)
    if on_driver:
        partials_mb = sum(s.steps * s.height * s.width for s in sources) * FLOAT / MB
        driver_mb = tile_mb + partials_mb
    elif tiles == 1:  # the stage's driver evaluates the one tile itself
        driver_mb = max(tile_mb, result_mb(sources, graph) * 2)
    else:
        driver_mb = result_mb(sources, graph) * 2
    resources = apply_overrides(_resources(engine, tiles, tile_mb, driver_mb, limits), options)
    serial = on_driver and engine == "inline"
    parallel = 1 if serial else min(tiles, resources.executor_cores * resources.max_executors)
    per_tile = UDF_SECONDS * graph.udfs + (SPARK_TASK_SECONDS if engine != "inline" else 0.0)
    work = inputs_mb * MB / FLOAT / 1e6 / TRANSFORM_MPX_PER_SECOND + tiles * per_tile
    return StageSize(
        name="transform",
        tiles=0 if serial else tiles,
        peak_tile_mb=round(driver_mb if on_driver else tile_mb, 1),
        peak_executor_mb=round(PYTHON_BASE_MB + tile_mb * resources.executor_cores, 1),
        peak_driver_mb=round(driver_mb, 1),
        seconds=round(startup + TRANSFORM_FIXED_SECONDS + work / max(1, parallel), 2),
        megapixels=round(inputs_mb * MB / FLOAT / 1e6, 3),
        bytes_read=inputs_mb * MB,
        resources=resources,
    )


def stage_peak_mb(engine: str, stage: StageSize) -> float:
    """What a stage is predicted to hold at once above its process's rest, as the stage
    measures it: one tile on Spark (each core's Python worker is a process of its own); on the
    inline engine the tiles that run side by side on the worker's threads."""
    if engine == "inline" and stage.tiles > 1:
        return round(stage.peak_tile_mb * min(stage.tiles, stage.resources.executor_cores), 1)
    return stage.peak_tile_mb


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
    target = TILE_BUDGET_MB if engine == "inline" else SPARK_TILE_TARGET_MB
    tile = int(options.get("tile-size") or choose_tile(sources, graph, target))
    if graph.align > 1:
        tile = -(-tile // graph.align) * graph.align
    stages = size_stages(sources, graph, engine, tile, limits, options)
    peak = fused_peak_mb(sources, graph, tile, limits.local_cores)
    fused, why = choose_fused(engine, peak, options, fused_budget_mb(limits), megapixels)
    seconds = sum(s.seconds for s in stages)
    if fused:  # one Airflow task instead of one per stage
        seconds -= TASK_SECONDS * (len(stages) - 1)
    return Sizing(
        engine=engine,
        tile_size=tile,
        sources=[s.node_id for s in sources],
        reason=f"{reason}; {why}" if engine == "inline" else reason,
        stages=stages,
        megapixels=round(megapixels, 3),
        seconds=round(seconds, 2),
        credits=credits(stages),
        fused=fused,
        fused_peak_mb=peak,
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
    return replace(
        sizing, tile_size=tile, stages=stages, reason=f"{stage} ran out of memory", fused=False
    )


def _doubled(resources: Resources, limits: Limits) -> Resources:
    return replace(
        resources,
        driver_memory_mb=resources.driver_memory_mb * 2,
        executor_memory_overhead_mb=min(
            limits.max_executor_memory_mb, resources.executor_memory_overhead_mb * 2
        ),
    )
