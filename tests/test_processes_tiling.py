"""Space declarations: every graph gives the same result tiled (with the declared halos and
per-tile partials) as untiled."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import xarray as xr
from affine import Affine
from pyproj import Transformer

from openeo_airflow.cube import make_cube
from openeo_airflow.processes import registry
from openeo_airflow.processes.graph import evaluate
from openeo_airflow.processes.space import LOCAL, NOT_LITERAL, Space, resolve_space
from openeo_airflow.processes.tiling import (
    _anchor,
    evaluate_tiled,
    node_space,
    tiles,
    tiling_plan,
)

CRS = 32633
TRANSFORM = Affine(10, 0, 500_010, 0, -10, 5_000_030)  # not aligned to the tiles
TIMES = np.array(["2021-06-01", "2021-06-06", "2021-06-11"], dtype="datetime64[ns]")


def source(bands: tuple[str, ...] = ("B04", "B08"), seed: int = 7) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    data = rng.uniform(0, 1, (3, len(bands), 37, 41)).astype(np.float32)
    data[1, :, 5:9, 10:14] = np.nan  # no-data across a tile border
    return make_cube(data, times=TIMES, bands=list(bands), transform=TRANSFORM, crs=CRS)


def node(process_id: str, result: bool = False, **arguments: Any) -> dict[str, Any]:
    return {"process_id": process_id, "arguments": arguments, "result": result}


def ref(node_id: str) -> dict[str, str]:
    return {"from_node": node_id}


def callback(process_id: str, **arguments: Any) -> dict[str, Any]:
    return {"process_graph": {"p": node(process_id, True, **arguments)}}


LOAD = {"lc": node("load_collection", id="S2", spatial_extent=None, temporal_extent=None)}
DATA = {"from_parameter": "data"}
X = {"from_parameter": "x"}


def lonlat_polygon(left: float, bottom: float, right: float, top: float) -> dict[str, Any]:
    to_lonlat = Transformer.from_crs(CRS, 4326, always_xy=True)
    corners = [(left, bottom), (right, bottom), (right, top), (left, top), (left, bottom)]
    return {"type": "Polygon", "coordinates": [[list(to_lonlat.transform(*c)) for c in corners]]}


POLYGONS = {
    "type": "FeatureCollection",
    "features": [
        {"type": "Feature", "properties": {}, "geometry": lonlat_polygon(*box)}
        for box in [
            (500_035, 4_999_705, 500_260, 4_999_955),
            (500_300, 4_999_680, 500_400, 4_999_800),
        ]
    ],
}

GRAPHS: dict[str, dict[str, Any]] = {
    "local: ndvi, max over time": {
        **LOAD,
        "ndvi": node("ndvi", data=ref("lc"), nir="B08", red="B04"),
        "max": node(
            "reduce_dimension",
            True,
            data=ref("ndvi"),
            dimension="t",
            reducer=callback("max", data=DATA),
        ),
    },
    "halo: two kernels in a row": {
        **LOAD,
        "k5": node(
            "apply_kernel",
            data=ref("lc"),
            kernel=np.ones((5, 5)).tolist(),
            border="replicate",
            factor=1 / 25,
        ),
        "k3": node("apply_kernel", True, data=ref("k5"), kernel=[[0, 1, 0], [1, -4, 1], [0, 1, 0]]),
    },
    "halo: neighbourhoods aligned to tiles": {
        **LOAD,
        "nb": node(
            "apply_neighborhood",
            True,
            data=ref("lc"),
            size=[
                {"dimension": "x", "value": 8, "unit": "px"},
                {"dimension": "y", "value": 8, "unit": "px"},
            ],
            overlap=[
                {"dimension": "x", "value": 2, "unit": "px"},
                {"dimension": "y", "value": 2, "unit": "px"},
            ],
            process=callback("apply_kernel", data=DATA, kernel=np.ones((3, 3)).tolist()),
        ),
    },
    "global with partials: aggregate_spatial mean": {
        **LOAD,
        "agg": node(
            "aggregate_spatial",
            True,
            data=ref("lc"),
            geometries=POLYGONS,
            reducer=callback("mean", data=DATA),
        ),
    },
    "global with partials: aggregate_spatial median after a kernel": {
        **LOAD,
        "k": node("apply_kernel", data=ref("lc"), kernel=np.ones((3, 3)).tolist()),
        "agg": node(
            "aggregate_spatial",
            True,
            data=ref("k"),
            geometries=POLYGONS,
            reducer=callback("median", data=DATA),
        ),
    },
    "global gathered: resample, then a kernel on the new grid": {
        **LOAD,
        "rs": node("resample_spatial", data=ref("lc"), resolution=20, method="average"),
        "mean": node(
            "reduce_dimension", data=ref("rs"), dimension="t", reducer=callback("mean", data=DATA)
        ),
        "k": node("apply_kernel", True, data=ref("mean"), kernel=np.ones((3, 3)).tolist()),
    },
    "global gathered: reduce over x": {
        **LOAD,
        "rx": node(
            "reduce_dimension",
            True,
            data=ref("lc"),
            dimension="x",
            reducer=callback("sd", data=DATA),
        ),
    },
    "local: bbox and polygon mask across tiles": {
        **LOAD,
        "bbox": node(
            "filter_bbox",
            data=ref("lc"),
            extent={
                "west": 500_050,
                "east": 500_333,
                "south": 4_999_700,
                "north": 4_999_990,
                "crs": CRS,
            },
        ),
        "mask": node("mask_polygon", True, data=ref("bbox"), mask=POLYGONS),
    },
    "local: two sources merged, then time series interpolation": {
        **LOAD,
        "lc2": node("load_collection", id="S2b", spatial_extent=None, temporal_extent=None),
        "merge": node("merge_cubes", data=None, cube1=ref("lc"), cube2=ref("lc2")),
        "fill": node(
            "apply_dimension",
            True,
            data=ref("merge"),
            dimension="t",
            process=callback("array_interpolate_linear", data=DATA),
        ),
    },
}
GRAPHS["local: two sources merged, then time series interpolation"]["merge"]["arguments"].pop(
    "data"
)


def sources() -> dict[str, xr.DataArray]:
    return {"lc": source(), "lc2": source(("B11",), seed=3)}


def untiled(graph: dict[str, Any]) -> Any:
    values = sources()
    return evaluate(graph, node_hooks={k: _constant(v) for k, v in values.items() if k in graph})


def _constant(value: Any) -> Any:
    return lambda _arguments, _node_id: value


def assert_same(tiled: Any, reference: Any) -> None:
    assert isinstance(tiled, xr.DataArray) and isinstance(reference, xr.DataArray)
    assert tiled.dims == reference.dims
    for dim in reference.dims:
        if dim == "geometry":
            assert [g.wkt for g in tiled[dim].values] == [g.wkt for g in reference[dim].values]
        else:
            np.testing.assert_array_equal(tiled[dim].values, reference[dim].values)
    np.testing.assert_allclose(tiled.values, reference.values, rtol=1e-5, atol=1e-6)


# Tiles anchored at the CRS origin, where a source's files start (off it by 3 x 5 px), or
# inside a pixel (tile edges then cut pixels: each goes to the tile that holds its centre).
FILES_ORIGIN = (500_040.0, 4_999_980.0)
MID_PIXEL = (500_092.0, 4_999_702.0)  # edges 2 px inside the last column and top row


@pytest.mark.parametrize("name", list(GRAPHS))
@pytest.mark.parametrize("tile_size", [8, 16])
@pytest.mark.parametrize("origin", [None, FILES_ORIGIN, MID_PIXEL])
def test_tiled_equals_untiled(
    name: str, tile_size: int, origin: tuple[float, float] | None
) -> None:
    graph = GRAPHS[name]
    reference = untiled(graph)
    values = {k: v for k, v in sources().items() if k in graph}
    tiled = evaluate_tiled(graph, values, tile_size=tile_size, origin=origin)
    assert_same(tiled, reference)


def test_tile_edges_fall_on_the_origin_and_on_the_chunks_grid() -> None:
    grid = source()
    step = 8 * 10.0
    for origin in [(0.0, 0.0), FILES_ORIGIN]:
        rows = tiles(grid, 8, origin)
        edges_x = {t.left for row in rows for t in row} | {t.right for row in rows for t in row}
        edges_y = {t.bottom for row in rows for t in row} | {t.top for row in rows for t in row}
        assert all((x - origin[0]) % step == 0 for x in edges_x)
        assert all((y - origin[1]) % step == 0 for y in edges_y)
        covered = sum(len(row) for row in rows)
        assert covered == len(rows) * len(rows[0]) and covered >= 6 * 5  # 41 x 37 px
    # Neighbourhood chunks of 4 px fall from the CRS origin: the anchor moves back onto them.
    assert _anchor(FILES_ORIGIN, 4, (10.0, 10.0)) == (500_040.0, 4_999_960.0)
    assert _anchor(FILES_ORIGIN, 1, (10.0, 10.0)) == FILES_ORIGIN
    assert _anchor(None, 4, (10.0, 10.0)) == (0.0, 0.0)


def test_tiling_plans() -> None:
    kernels = tiling_plan(GRAPHS["halo: two kernels in a row"])
    assert (kernels.halo, kernels.align, kernels.global_nodes) == (3, 1, [])
    neighbourhoods = tiling_plan(GRAPHS["halo: neighbourhoods aligned to tiles"])
    assert (neighbourhoods.halo, neighbourhoods.align) == (2, 8)
    median = tiling_plan(GRAPHS["global with partials: aggregate_spatial median after a kernel"])
    assert (median.halo, median.global_nodes) == (1, ["agg"])
    assert median.spaces["agg"].reduction is not None  # partials, not a gather
    resample = tiling_plan(GRAPHS["global gathered: resample, then a kernel on the new grid"])
    assert resample.global_nodes == ["rs"] and resample.spaces["rs"].reduction is None
    assert tiling_plan(GRAPHS["local: ndvi, max over time"]).halo == 0


def test_declarations_depend_on_the_arguments() -> None:
    reduce_t = node("reduce_dimension", data=ref("lc"), dimension="t", reducer=callback("max"))
    reduce_x = node("reduce_dimension", data=ref("lc"), dimension="x", reducer=callback("max"))
    reduce_p = node(
        "reduce_dimension",
        data=ref("lc"),
        dimension={"from_parameter": "d"},
        reducer=callback("max"),
    )
    assert node_space(reduce_t) == LOCAL
    assert node_space(reduce_x).is_global and node_space(reduce_p).is_global
    kernel = node("apply_kernel", data=ref("lc"), kernel=np.ones((7, 5)).tolist())
    assert node_space(kernel) == Space("halo", halo=3)
    wrap = node("apply_kernel", data=ref("lc"), kernel=[[1]], border="wrap")
    assert node_space(wrap).is_global


def test_every_process_declares_its_space() -> None:
    """Declarations resolve for any arguments; the non-local ones are the expected ones."""
    not_local = set()
    for process_id in registry.implemented():
        entry = registry.entry(process_id)
        assert entry is not None
        space = resolve_space(entry.space, {})
        assert space.kind in ("local", "halo", "global")
        if space != LOCAL or resolve_space(entry.space, {"dimension": "x"}) != LOCAL:
            not_local.add(process_id)
        assert resolve_space(entry.space, {"dimension": NOT_LITERAL}).kind
    assert {
        "aggregate_spatial",
        "apply_kernel",
        "apply_neighborhood",
        "resample_spatial",
        "resample_cube_spatial",
        "reduce_spatial",
        "reduce_dimension",
        "apply_dimension",
        "trim_cube",
    } <= not_local
    assert not {"add", "ndvi", "filter_temporal", "mask", "merge_cubes"} & not_local
