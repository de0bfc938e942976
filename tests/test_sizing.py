"""The sizing model (pure, table-tested), job options, and the API endpoints built on them."""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from openeo_airflow.core.errors import ProcessGraphComplexity, ProcessParameterInvalid
from openeo_airflow.engine.planning import check_scale, graph_shape
from openeo_airflow.io.grid import DEFAULT_TILE_SIZE
from openeo_airflow.sizing.model import (
    READER_TILE,
    TILE_BUDGET_MB,
    GraphShape,
    Limits,
    SourceShape,
    choose_fused,
    choose_tile,
    fused_budget_mb,
    fused_peak_mb,
    load_stage_mb,
    load_tile_mb,
    read_threads,
    reads_whole,
    result_mb,
    shrink,
    size_job,
    stage_peak_mb,
    stream_read_tile,
    tile_inputs_mb,
    transform_tile_mb,
)
from openeo_airflow.sizing.resources import (
    Resources,
    apply_overrides,
    parse_memory_mb,
    validate_job_options,
)

SMALL = SourceShape("load", steps=6, bands=3, height=400, width=400, block_size=512)
LONG = SourceShape("load", steps=150, bands=4, height=5000, width=5000, block_size=1024)
HUGE = SourceShape("load", steps=300, bands=10, height=100_000, width=100_000)
GRAPH = GraphShape(nodes=5, reduces_time=True)


@pytest.mark.parametrize(
    ("value", "mb"),
    [("4g", 4096), ("512m", 512), ("2GiB", 2048), ("1.5g", 1536), (300, 300), ("1t", 1048576)],
)
def test_memory_sizes(value: object, mb: int) -> None:
    assert parse_memory_mb(value) == mb


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"executor-memory": "500T"}, "executor-memory"),
        ({"executor-memory": "lots"}, "not a memory size"),
        ({"executor-cores": 0}, "executor-cores"),
        ({"executor-cores": "2"}, "integer"),
        ({"max-executors": True}, "max-executors"),
        ({"engine": "gpu"}, "one of inline, spark-local, spark-k8s"),
        ({"tile-size": 10}, "between 64 and 4096"),
        ({"soft-errors": 2}, "soft-errors"),
        ({"fuse-stages": "yes"}, "fuse-stages"),
    ],
)
def test_nonsense_job_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ProcessParameterInvalid, match=message):
        validate_job_options(options)


def test_user_options_override_the_sizing() -> None:
    options = validate_job_options(
        {"executor-memory": "4g", "executor-cores": 3, "max-executors": 2, "other": "kept"}
    )
    resources = apply_overrides(Resources(executors=5, max_executors=8), options)
    assert resources.executor_memory_mb == 4096
    assert resources.executor_memory_overhead_mb == round(4096 * 0.4)  # PySpark's factor
    assert resources.executor_cores == 3
    assert (resources.executors, resources.max_executors) == (2, 2)


def test_small_jobs_run_inline_and_large_ones_on_spark() -> None:
    limits = Limits(engine="spark-k8s")
    assert size_job([SMALL], GRAPH, limits).engine == "inline"
    large = size_job([LONG], GRAPH, limits)
    assert large.engine == "spark-k8s"
    assert "Mpx" in large.reason
    forced = size_job([SMALL], GRAPH, limits, {"engine": "spark-local"})
    assert (forced.engine, forced.reason) == ("spark-local", "forced by job_options")


def test_tiles_are_block_multiples_that_fit_the_budget() -> None:
    tile = choose_tile([SMALL], GRAPH)
    assert tile % SMALL.block_size == 0
    assert load_tile_mb(SMALL, tile) <= TILE_BUDGET_MB
    # A long time series: one 1024 px block of 150 dates x 4 bands is 2.4 GB to load, so the
    # tile is a fraction of a block: the largest that fits both load and transform.
    assert load_tile_mb(LONG, 1024) > TILE_BUDGET_MB
    tile = choose_tile([LONG], GRAPH)
    assert tile in (512, 256, 128)

    def fits(t: int) -> bool:
        return max(load_tile_mb(LONG, t), transform_tile_mb([LONG], GRAPH, t)) <= TILE_BUDGET_MB

    assert fits(tile) and not fits(tile * 2)
    # Merging three more cubes into it raises the working set: never a larger tile.
    merged = GraphShape(nodes=9, merges=3, reduces_time=True)
    assert choose_tile([LONG], merged) < tile


def test_an_aligned_graph_gets_aligned_tiles() -> None:
    graph = GraphShape(nodes=3, halo=16, align=384)
    sizing = size_job([LONG], graph, Limits(), {"tile-size": 500})
    assert sizing.tile_size % 384 == 0


def test_stage_predictions_grow_with_the_job() -> None:
    small = size_job([SMALL], GRAPH, Limits())
    large = size_job([LONG], GRAPH, Limits(engine="spark-k8s"))
    names = [s.name for s in large.stages]
    assert names == ["load:load", "transform", "save"]
    for name in names:
        a, b = small.stage(name), large.stage(name)
        assert a is not None and b is not None
        assert b.megapixels > a.megapixels
    load = large.stage("load:load")
    assert load is not None and load.tiles == math.ceil(5000 / large.tile_size) ** 2
    assert load.resources.max_executors > 1
    assert load.resources.partitions == load.tiles
    assert large.credits > small.credits > 0


def test_out_of_memory_halves_tiles_and_doubles_memory() -> None:
    limits = Limits(engine="spark-k8s")
    sizing = size_job([LONG], GRAPH, limits)
    retried = shrink(sizing, [LONG], GRAPH, limits, {}, "transform")
    before, after = sizing.stage("transform"), retried.stage("transform")
    assert before is not None and after is not None
    assert retried.tile_size == sizing.tile_size // 2
    assert after.resources.executor_memory_overhead_mb == min(
        2 * before.resources.executor_memory_overhead_mb, limits.max_executor_memory_mb
    )
    assert retried.reason == "transform ran out of memory"


def test_a_job_beyond_the_limits_is_refused_with_what_to_reduce() -> None:
    sizing = size_job([HUGE], GRAPH, Limits(engine="spark-k8s"))
    with pytest.raises(ProcessGraphComplexity, match="Reduce the spatial or temporal extent"):
        check_scale(sizing, Limits(max_job_megapixels=1000))
    check_scale(size_job([SMALL], GRAPH, Limits()), Limits(max_job_megapixels=1000))


def test_graph_shape_counts_callbacks_and_time_reductions() -> None:
    graph = {
        "load": {"process_id": "load_collection", "arguments": {"id": "S2"}},
        "kernel": {
            "process_id": "apply_kernel",
            "arguments": {"data": {"from_node": "load"}, "kernel": [[1, 1, 1]] * 3},
        },
        "reduce": {
            "process_id": "reduce_dimension",
            "arguments": {
                "data": {"from_node": "kernel"},
                "dimension": "t",
                "reducer": {
                    "process_graph": {
                        "max": {
                            "process_id": "max",
                            "arguments": {"data": {"from_parameter": "data"}},
                            "result": True,
                        }
                    }
                },
            },
            "result": True,
        },
    }
    shape = graph_shape({"process_graph": graph})
    assert shape.nodes == 4
    assert shape.halo == 1
    assert shape.reduces_time
    assert shape.global_nodes == 0
    assert not shape.reduces_bands


def _monthly_ndvi(period: str = "month") -> dict[str, object]:
    return {
        "load": {"process_id": "load_collection", "arguments": {"id": "S2"}},
        "ndvi": {"process_id": "ndvi", "arguments": {"data": {"from_node": "load"}}},
        "monthly": {
            "process_id": "aggregate_temporal_period",
            "arguments": {
                "data": {"from_node": "ndvi"},
                "period": period,
                "reducer": {
                    "process_graph": {
                        "mean": {
                            "process_id": "mean",
                            "arguments": {"data": {"from_parameter": "data"}},
                            "result": True,
                        }
                    }
                },
            },
            "result": True,
        },
    }


def test_the_result_of_a_monthly_aggregation_has_a_step_per_month_and_one_band() -> None:
    # 28 dates over a year, NDVI (one band), then monthly means: the save stage holds 12 steps
    # of one band, not 28 of three (nor one step, as a full reduction over time would leave).
    days = [date(2022, 1, 3) + timedelta(days=13 * i) for i in range(28)]
    loads = [SimpleNamespace(steps=[(day, []) for day in days])]
    graph = {"process_graph": _monthly_ndvi()}
    shape = graph_shape(graph, loads)
    assert shape.reduces_bands and shape.temporal_aggregation
    assert shape.result_steps == 12
    # seasons: DJF of the first January to DJF of the last December
    assert graph_shape({"process_graph": _monthly_ndvi("season")}, loads).result_steps == 5
    source = SourceShape("load", steps=28, bands=3, height=1000, width=1000)
    assert result_mb([source], shape) == pytest.approx(12 * 1000 * 1000 * 4 / 2**20)
    # reduced over time after all: one step
    reduced = dict(_monthly_ndvi())
    reduced["monthly"] = {**reduced["monthly"], "result": False}
    reduced["max"] = {
        "process_id": "reduce_dimension",
        "arguments": {"data": {"from_node": "monthly"}, "dimension": "t", "reducer": {}},
        "result": True,
    }
    assert graph_shape({"process_graph": reduced}, loads).result_steps == 0


def test_spark_tiles_keep_their_size_as_the_extent_grows() -> None:
    # The same workflow at 1x, 4x and 16x the area: the same tile, so the same executors;
    # the larger job gets more tiles (Spark tasks), not larger ones.
    limits = Limits(engine="spark-k8s")
    sized = [
        size_job(
            [SourceShape("load", steps=6, bands=3, height=side, width=side, block_size=256)],
            GraphShape(nodes=15, reduces_time=True),
            limits,
            {"engine": engine},
        )
        for engine in ("spark-local", "spark-k8s")
        for side in (1600, 3200, 6400)
    ]
    assert len({s.tile_size for s in sized}) == 1
    for runs in (sized[:3], sized[3:]):
        transforms = [s.stage("transform") for s in runs]
        assert [t.tiles for t in transforms if t] == [
            math.ceil(side / runs[0].tile_size) ** 2 for side in (1600, 3200, 6400)
        ]
        assert len({t.peak_tile_mb for t in transforms if t}) == 1
        assert len({t.resources.executor_memory_overhead_mb for t in transforms if t}) == 1


# --- API ------------------------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path, shared_data: Path):  # type: ignore[no-untyped-def]
    from tests.api_support import build_test_collections, make_backend, make_client

    collections = build_test_collections(shared_data, tmp_path / "catalogs")
    return make_client(make_backend(tmp_path / "home", collections))


def test_processing_parameters_list_the_job_options(client) -> None:  # type: ignore[no-untyped-def]
    from tests.api_support import PREFIX

    body = client.get(f"{PREFIX}/processing_parameters").json()
    names = {p["name"] for p in body["create_job_parameters"]}
    assert {"executor-memory", "executor-cores", "max-executors", "tile-size", "engine"} <= names
    assert all("schema" in p and "description" in p for p in body["create_job_parameters"])


def _cdse_job() -> dict[str, object]:
    return {
        "process_graph": {
            "load": {
                "process_id": "load_collection",
                "arguments": {
                    "id": "TEST_CDSE_S2",
                    "spatial_extent": {
                        "west": 587880,
                        "south": 5684910,
                        "east": 588340,
                        "north": 5685430,
                        "crs": 32631,
                    },
                    "temporal_extent": ["2023-10-01", "2024-01-01"],
                    "bands": ["B04", "B08"],
                },
            },
            "save": {
                "process_id": "save_result",
                "arguments": {"data": {"from_node": "load"}, "format": "netCDF"},
                "result": True,
            },
        }
    }


def test_estimate_answers_from_the_sizing_model(client) -> None:  # type: ignore[no-untyped-def]
    from tests.api_support import PREFIX, bearer

    headers = bearer(client, "alice")
    created = client.post(f"{PREFIX}/jobs", json={"process": _cdse_job()}, headers=headers)
    assert created.status_code == 201, created.text
    job_id = created.headers["OpenEO-Identifier"]
    estimate = client.get(f"{PREFIX}/jobs/{job_id}/estimate", headers=headers)
    assert estimate.status_code == 200, estimate.text
    body = estimate.json()
    assert body["costs"] > 0
    assert body["duration"].startswith("PT")
    # 19 dates x 2 bands x 52 x 46 float32 pixels for the netCDF result.
    assert body["size"] == 19 * 2 * 52 * 46 * 4


def test_nonsense_job_options_are_an_openeo_error(client) -> None:  # type: ignore[no-untyped-def]
    from tests.api_support import PREFIX, bearer

    response = client.post(
        f"{PREFIX}/jobs",
        json={"process": _cdse_job(), "job_options": {"executor-memory": "500T"}},
        headers=bearer(client, "alice"),
    )
    assert response.status_code == 400
    assert response.json()["code"] == "ProcessParameterInvalid"
    assert "executor-memory" in response.json()["message"]


@pytest.mark.parametrize(
    ("source", "options", "engine", "fused"),
    [
        (SMALL, {}, "inline", True),  # under 100 MiB at once
        (SMALL, {"fuse-stages": False}, "inline", False),
        (SMALL, {"engine": "spark-local"}, "spark-local", False),
        (SMALL, {"engine": "spark-local", "fuse-stages": True}, "spark-local", False),
        (SMALL, {"tile-size": 128}, "inline", False),  # the user asks for tiled stages
        (LONG, {"engine": "inline"}, "inline", False),  # 15 Gpx: far over the budget
    ],
)
def test_inline_jobs_that_fit_the_worker_are_fused(
    source: SourceShape, options: dict[str, object], engine: str, fused: bool
) -> None:
    sizing = size_job([source], GRAPH, Limits(), validate_job_options(dict(options)))
    assert (sizing.engine, sizing.fused) == (engine, fused)
    assert sizing.fused_peak_mb > 0
    if fused:
        assert sizing.fused_peak_mb <= fused_budget_mb(Limits())
        assert "fused" in sizing.reason
        # one Airflow task instead of three: the estimate is shorter than the stages' sum
        assert sizing.seconds < sum(s.seconds for s in sizing.stages)


def test_a_job_over_the_fused_memory_budget_runs_in_stages() -> None:
    one_tile = SourceShape("load", steps=20, bands=4, height=1500, width=1500, block_size=2048)
    small_worker = Limits(local_memory_mb=2048)
    sizing = size_job([one_tile], GRAPH, small_worker, {"engine": "inline"})
    assert sizing.fused_peak_mb > fused_budget_mb(small_worker)
    assert not sizing.fused and "over" in sizing.reason
    forced = {"fuse-stages": True}
    assert choose_fused("inline", sizing.fused_peak_mb, forced, 1.0) == (
        True,
        "fuse-stages set in job_options",
    )


def test_a_deep_job_is_fused_and_read_per_tile() -> None:
    """A year of dates over 1600 px (820 MiB as float32): the tile budget cuts its stages into
    tiles; the fused run reads it in 512 px tiles on both cores and holds well under its
    input, so it fits a 2 GiB worker too; below that it runs in tiled stages."""
    year = SourceShape("load", steps=28, bands=3, height=1600, width=1600, block_size=512)
    graph = GraphShape(nodes=15, reduces_time=True, temporal_aggregation=True)
    sizing = size_job([year], graph, Limits(), {"engine": "inline"})
    assert sizing.tile_size < 1600 and any(s.tiles > 1 for s in sizing.stages)
    assert not reads_whole([year], graph) and sizing.fused
    whole = year.megapixels * 1e6 * 4 / 2**20
    assert sizing.fused_peak_mb < 0.7 * whole
    assert size_job([year], graph, Limits(local_memory_mb=2048), {"engine": "inline"}).fused
    small = size_job([year], graph, Limits(local_memory_mb=512), {"engine": "inline"})
    assert not small.fused
    for options in ({"tile-size": 1024}, {"fuse-stages": False}):
        chosen = size_job(
            [year], graph, Limits(), validate_job_options({"engine": "inline", **options})
        )
        assert not chosen.fused


def test_a_fused_run_too_large_to_read_whole_holds_a_tile_per_worker() -> None:
    # 3 GiB of input: read per sized tile on each of the worker's cores, so the fused run
    # holds far less than its input, and four times the area holds no more (but its result).
    big = SourceShape("load", steps=50, bands=4, height=2000, width=2000, block_size=512)
    larger = SourceShape("load", steps=50, bands=4, height=4000, width=4000, block_size=512)
    graph = GraphShape(nodes=8, reduces_time=True)
    assert not reads_whole([big], graph)
    two = fused_peak_mb([big], graph, 512, workers=2)
    four = fused_peak_mb([big], graph, 512, workers=4)
    assert two < big.megapixels * 1e6 * 4 / 2**20 * 0.6 and four > two
    grown = 2 * (result_mb([larger], graph) - result_mb([big], graph))
    assert fused_peak_mb([larger], graph, 512, workers=2) - two == pytest.approx(grown, abs=0.2)
    # Read in block multiples of about 512 px, never more than the sized tile (a deep stack's
    # tile budget may ask for less).
    assert stream_read_tile(512, 1024) == stream_read_tile(512, 512) == 512
    assert stream_read_tile(256, 1792) == 512 and stream_read_tile(1024, 1792) == 1024
    assert fused_peak_mb([big], graph, 1024, workers=2) == two
    assert fused_peak_mb([big], graph, 256, workers=2) < two


def test_a_fused_run_counts_the_sources_it_holds_once() -> None:
    # Read whole and evaluated at once (99 MiB): the graph's inputs are the sources the run
    # holds, not copies, and there is no mosaic of tiles. Counting both, the model predicted
    # 1.2-2.0x the measured peaks of bench/sizing_bench.py's fused runs; now 1.0-1.2x but for
    # a 37 MB job (its working-set floor).
    medium = SourceShape("load", steps=6, bands=3, height=1200, width=1200, block_size=512)
    peak = fused_peak_mb([medium], GRAPH, 1280, workers=2)
    beyond = transform_tile_mb([medium], GRAPH, 1200) - tile_inputs_mb([medium], GRAPH, 1200)
    read = load_tile_mb(medium, 1200, threads=2)  # read whole on both cores
    assert peak == pytest.approx(read + beyond, abs=0.2)
    assert peak < read + transform_tile_mb([medium], GRAPH, 1200)


def test_global_processes_in_a_fused_run_work_on_the_whole_cube() -> None:
    # 369 MB: local graphs are read and evaluated per tile on both cores; global ones read it
    # whole and run at once. 184 MB is read whole and evaluated at once either way (tiles
    # would cost more than the second core gives).
    cube = SourceShape("load", steps=12, bands=3, height=1600, width=1600, block_size=512)
    small = SourceShape("load", steps=6, bands=3, height=1600, width=1600, block_size=512)
    local = GraphShape(nodes=10, reduces_time=True)
    zonal = GraphShape(nodes=10, reduces_time=True, global_nodes=1)
    assert fused_peak_mb([cube], zonal, 512, 2) > fused_peak_mb([cube], local, 512, 2)
    assert fused_peak_mb([small], zonal, 512, 2) == fused_peak_mb([small], local, 512, 2)


def test_a_resized_retry_is_never_fused() -> None:
    sizing = size_job([SMALL], GRAPH, Limits(), {})
    assert sizing.fused
    assert not shrink(sizing, [SMALL], GRAPH, Limits(), {}, "transform").fused


def test_inline_tiles_side_by_side_are_predicted_together() -> None:
    # Inline stages run their tiles on the worker's threads and measure the process, so the
    # prediction they are compared with counts the tiles that run at once; Spark measures one
    # tile per Python worker.
    year = SourceShape("load", steps=28, bands=3, height=1600, width=1600, block_size=512)
    graph = GraphShape(nodes=15, reduces_time=True, temporal_aggregation=True)
    options = {"engine": "inline", "fuse-stages": False, "tile-size": 512}
    inline = size_job([year], graph, Limits(local_cores=2), options)
    load = inline.stage("load:load")
    assert load is not None and load.tiles == 16 and load.resources.executor_cores == 2
    assert stage_peak_mb("inline", load) == round(2 * load.peak_tile_mb, 1)
    assert stage_peak_mb("spark-local", load) == load.peak_tile_mb
    one = size_job([SMALL], GRAPH, Limits(), {"fuse-stages": False}).stage("load:load")
    assert one is not None and stage_peak_mb("inline", one) == one.peak_tile_mb


def test_a_load_holds_its_cube_and_a_plane_and_a_half_per_reader_thread() -> None:
    # bench/sizing_bench.py at 12 km: loads of 1 to 3 bands measured their cube plus 1.05-1.65
    # planes per reader thread, whatever their bands; a merge_cubes load of one band was
    # under-predicted by 17 % when the buffers grew with the bands instead.
    one_band = SourceShape("load", steps=6, bands=1, height=1200, width=1200)
    plane = 1200 * 1200 * 4 / 2**20
    cube = 6 * plane
    assert load_tile_mb(one_band, 1280, threads=2) == pytest.approx(cube + 3.3 * plane + 2)
    assert load_tile_mb(one_band, 1280, threads=1) == pytest.approx(cube + 1.65 * plane + 2)
    # the reader's unit is at most READER_TILE px square, whatever the tile
    wide = SourceShape("load", steps=2, bands=1, height=4096, width=4096)
    unit = READER_TILE**2 * 4 / 2**20
    assert load_tile_mb(wide, 4096, threads=1) - 2 * 4096**2 * 4 / 2**20 - 2 == pytest.approx(
        1.65 * unit
    )
    assert READER_TILE == DEFAULT_TILE_SIZE


def test_reader_threads_follow_the_tiles_that_run_at_once() -> None:
    assert read_threads(2) == 2 and read_threads(16) == 4 and read_threads(0) == 1
    assert read_threads(8, tiles=4) == 1  # tiles side by side are the parallel unit
    # a one-tile load reads on the worker's cores; several tiles on one thread each
    medium = SourceShape("load", steps=6, bands=1, height=1200, width=1200)
    limits = Limits(local_cores=2)
    one = size_job([medium], GRAPH, limits, {"engine": "inline"}).stage("load:load")
    tiled = size_job([medium], GRAPH, limits, {"engine": "inline", "tile-size": 512})
    assert one is not None and one.peak_tile_mb == round(load_stage_mb(medium, 1280, 2), 1)
    load = tiled.stage("load:load")
    assert load is not None and load.peak_tile_mb == round(load_stage_mb(medium, 512, 1), 1)


def test_a_staged_load_holds_its_reading_threads_windows_not_its_cube() -> None:
    # Archive reads are stored window by window as they are read (3.2 planes per thread);
    # Sentinel Hub and backscatter loads read their tile whole first.
    deep = SourceShape("load", steps=28, bands=3, height=1200, width=1200)
    plane = 1200 * 1200 * 4 / 2**20
    assert load_stage_mb(deep, 1280, threads=2) == pytest.approx(2 * 3.2 * plane + 2)
    whole = SourceShape("load", steps=28, bands=3, height=1200, width=1200, streams=False)
    assert load_stage_mb(whole, 1280, threads=2) == load_tile_mb(whole, 1280, threads=2)
    assert load_tile_mb(whole, 1280, threads=2) > 84 * plane  # the tile's 84 planes
