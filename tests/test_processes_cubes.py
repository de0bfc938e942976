"""Cube processes the official test cases do not cover (or barely): spatial aggregation,
resampling, neighbourhoods, merging with a resolver, label filters, vector cubes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import xarray as xr
from affine import Affine
from pyproj import Transformer
from shapely.geometry import LineString, box, shape

from openeo_airflow.core.errors import OpenEOError
from openeo_airflow.cube import cube_resolution, make_cube
from openeo_airflow.processes.graph import evaluate
from openeo_airflow.processes.inline import to_json
from openeo_airflow.processes.vector import pixel_mask

CRS = 32633
TRANSFORM = Affine(10, 0, 500_000, 0, -10, 5_000_000)
TIMES = np.array(["2021-01-15", "2021-02-03", "2021-02-20", "2021-04-01"], dtype="datetime64[ns]")


def source(bands: tuple[str, ...] = ("B04", "B08")) -> xr.DataArray:
    data = np.arange(4 * len(bands) * 6 * 8, dtype=np.float32).reshape(4, len(bands), 6, 8)
    data[1, :, 0, 0] = np.nan
    return make_cube(data, times=TIMES, bands=list(bands), transform=TRANSFORM, crs=CRS)


def node(process_id: str, result: bool = False, **arguments: Any) -> dict[str, Any]:
    return {"process_id": process_id, "arguments": arguments, "result": result}


def callback(process_id: str, **arguments: Any) -> dict[str, Any]:
    return {"process_graph": {"p": node(process_id, True, **arguments)}}


DATA = {"from_parameter": "data"}
LC = {"from_node": "lc"}


def run(nodes: dict[str, Any], cube: xr.DataArray | None = None) -> Any:
    value = source() if cube is None else cube
    graph = {"lc": node("load_collection", id="S2", spatial_extent=None, temporal_extent=None)}
    return evaluate(graph | nodes, hooks={"load_collection": lambda a, n: value})


def lonlat_box(left: float, bottom: float, right: float, top: float) -> dict[str, Any]:
    to_lonlat = Transformer.from_crs(CRS, 4326, always_xy=True)
    ring = [(left, bottom), (right, bottom), (right, top), (left, top), (left, bottom)]
    return {"type": "Polygon", "coordinates": [[list(to_lonlat.transform(*p)) for p in ring]]}


# box covering pixel columns 1..3 and rows 0..1 (pixel centres inside)
BOX = lonlat_box(500_010, 4_999_980, 500_040, 5_000_000)


def test_aggregate_spatial_means_per_geometry() -> None:
    collection = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {}, "geometry": BOX},
            {
                "type": "Feature",
                "properties": {},
                "geometry": {
                    "type": "Point",
                    "coordinates": Transformer.from_crs(CRS, 4326, always_xy=True).transform(
                        500_075, 4_999_945
                    ),
                },
            },
        ],
    }
    result = run(
        {
            "a": node(
                "aggregate_spatial",
                True,
                data=LC,
                geometries=collection,
                reducer=callback("mean", data=DATA),
            )
        }
    )
    assert result.dims == ("geometry", "t", "bands")
    values = source().values
    np.testing.assert_allclose(result.values[0], np.nanmean(values[:, :, 0:2, 1:4], axis=(2, 3)))
    np.testing.assert_allclose(result.values[1], values[:, :, 5, 7])  # the point's pixel
    encoded = to_json(result)
    assert encoded["dimensions"]["geometry"]["type"] == "geometry"
    assert encoded["dimensions"]["geometry"]["values"][1]["type"] == "Point"


def test_load_geojson_and_vector_cube_geometries() -> None:
    features = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {"name": "a"}, "geometry": BOX}],
    }
    result = run(
        {
            "g": node("load_geojson", data=features, properties=["name"]),
            "a": node(
                "aggregate_spatial",
                True,
                data=LC,
                geometries={"from_node": "g"},
                reducer=callback("max", data=DATA),
            ),
        }
    )
    np.testing.assert_allclose(
        result.values[0], np.nanmax(source().values[:, :, 0:2, 1:4], axis=(2, 3))
    )


def test_mask_polygon_and_filter_spatial() -> None:
    masked = run({"m": node("mask_polygon", True, data=LC, mask=BOX, replacement=-1)})
    expected = np.full(source().shape, -1.0)
    expected[:, :, 0:2, 1:4] = source().values[:, :, 0:2, 1:4]
    np.testing.assert_array_equal(masked.values, expected)
    cropped = run({"f": node("filter_spatial", True, data=LC, geometries=BOX)})
    assert (cropped.sizes["y"], cropped.sizes["x"]) == (2, 3)
    np.testing.assert_array_equal(cropped.values, source().values[:, :, 0:2, 1:4])


def test_resample_spatial_average_and_nearest() -> None:
    coarse = run({"r": node("resample_spatial", True, data=LC, resolution=20, method="average")})
    assert cube_resolution(coarse) == (20.0, 20.0) and coarse.shape == (4, 2, 3, 4)
    block = source().values[2, 0, 2:4, 4:6]
    assert coarse.values[2, 0, 1, 2] == pytest.approx(block.mean())
    assert np.isclose(coarse.values[1, 0, 0, 0], np.nanmean(source().values[1, 0, 0:2, 0:2]))
    moved = run({"r": node("resample_spatial", True, data=LC, projection=3035, resolution=10)})
    assert moved.sizes["x"] >= 8 and "3035" in moved.spatial_ref.attrs["crs_wkt"]
    lower = run({"r": node("resample_spatial", True, data=LC, resolution=25, align="lower-left")})
    assert lower.y.values[-1] - 12.5 == pytest.approx(5_000_000 - 60)  # bottom edge kept


def test_resample_cube_spatial_and_temporal() -> None:
    target = run({"t": node("resample_spatial", True, data=LC, resolution=20)})
    nodes = {
        "t": node("resample_spatial", data=LC, resolution=20),
        "r": node("resample_cube_spatial", True, data=LC, target={"from_node": "t"}),
    }
    result = run(nodes)
    np.testing.assert_array_equal(result.x.values, target.x.values)
    labels = np.array(["2021-01-20", "2021-03-25", "2021-06-01"], dtype="datetime64[ns]")
    other = xr.DataArray(np.zeros((3,)), dims="t", coords={"t": labels})
    resampled = evaluate(
        {
            "c": node("constant", x=None),
            "o": node("constant", x=None),
            "r": node(
                "resample_cube_temporal",
                True,
                data={"from_node": "c"},
                target={"from_node": "o"},
                valid_within=10,
            ),
        },
        node_hooks={"c": lambda a, n: source(), "o": lambda a, n: other},
    )
    np.testing.assert_array_equal(resampled.t.values, labels)
    np.testing.assert_array_equal(resampled.values[0], source().values[0])  # nearest: 01-15
    np.testing.assert_array_equal(resampled.values[1], source().values[3])  # 04-01 is 7 d away
    assert np.isnan(resampled.values[2]).all()  # nothing within 10 days


def test_apply_neighborhood_chunks_with_overlap() -> None:
    size = [{"dimension": d, "value": 4, "unit": "px"} for d in ("x", "y")]
    overlap = [{"dimension": d, "value": 1, "unit": "px"} for d in ("x", "y")]
    process = {
        "process_graph": {
            "m": node(
                "reduce_dimension", data=DATA, dimension="x", reducer=callback("count", data=DATA)
            ),
            "r": node(
                "reduce_dimension",
                data={"from_node": "m"},
                dimension="y",
                reducer=callback("sum", data=DATA),
            ),
            "a": node(
                "apply",
                True,
                data=DATA,
                process={
                    "process_graph": {"c": node("constant", True, x={"from_parameter": "context"})}
                },
                context=1,
            ),
        }
    }
    result = run(
        {
            "n": node(
                "apply_neighborhood", True, data=LC, process=process, size=size, overlap=overlap
            )
        }
    )
    assert result.shape == source().shape and float(np.nanmax(result.values)) == 1.0
    with pytest.raises(OpenEOError, match="DimensionNotAvailable"):
        run(
            {
                "n": node(
                    "apply_neighborhood",
                    True,
                    data=LC,
                    process=process,
                    size=[{"dimension": "z", "value": 2, "unit": "px"}],
                )
            }
        )


def test_merge_cubes_with_a_resolver_on_overlapping_bands() -> None:
    nodes = {
        "a": node("filter_bands", data=LC, bands=["B04", "B08"]),
        "b": node("filter_bands", data=LC, bands=["B08"]),
        "m": node(
            "merge_cubes",
            True,
            cube1={"from_node": "a"},
            cube2={"from_node": "b"},
            overlap_resolver=callback("add", x={"from_parameter": "x"}, y={"from_parameter": "y"}),
        ),
    }
    merged = run(nodes)
    assert list(merged.bands.values) == ["B04", "B08"]
    np.testing.assert_array_equal(
        merged.sel(bands="B08").values, 2 * source().sel(bands="B08").values
    )
    nodes["m"]["arguments"].pop("overlap_resolver")
    with pytest.raises(OpenEOError, match="OverlapResolverMissing"):
        run(nodes)
    other = source(("B11",))
    merged = evaluate(
        {
            "c": node("constant", x=None),
            "d": node("constant", x=None),
            "m": node("merge_cubes", True, cube1={"from_node": "c"}, cube2={"from_node": "d"}),
        },
        node_hooks={"c": lambda a, n: source(), "d": lambda a, n: other},
    )
    assert list(merged.bands.values) == ["B04", "B08", "B11"]


def test_filter_labels_trim_and_reduce_spatial() -> None:
    february = callback(
        "date_between", x={"from_parameter": "value"}, min="2021-02-01", max="2021-02-28"
    )
    result = run({"f": node("filter_labels", True, data=LC, condition=february, dimension="t")})
    np.testing.assert_array_equal(result.t.values, TIMES[1:3])
    padded = source()
    padded[:, :, :, 6:] = np.nan
    trimmed = run({"t": node("trim_cube", True, data=LC)}, padded)
    assert trimmed.sizes["x"] == 6
    total = run({"r": node("reduce_spatial", True, data=LC, reducer=callback("sum", data=DATA))})
    np.testing.assert_allclose(total.values, np.nansum(source().values, axis=(2, 3)))


def test_aggregate_temporal_period_months_and_seasons() -> None:
    monthly = run(
        {
            "a": node(
                "aggregate_temporal_period",
                True,
                data=LC,
                period="month",
                reducer=callback("mean", data=DATA),
            )
        }
    )
    assert list(monthly.t.values) == ["2021-01", "2021-02", "2021-03", "2021-04"]
    values = source().values
    np.testing.assert_allclose(monthly.values[1], np.nanmean(values[1:3], axis=0))
    assert np.isnan(monthly.values[2]).all()
    seasons = run(
        {
            "a": node(
                "aggregate_temporal_period",
                True,
                data=LC,
                period="season",
                reducer=callback("max", data=DATA),
            )
        }
    )
    assert list(seasons.t.values) == ["2020-djf", "2021-mam"]


def test_fit_and_predict_curve_for_every_pixel() -> None:
    steps = np.arange(10.0)
    scale = np.linspace(1, 3, 12).reshape(3, 4)
    rate = np.linspace(-0.5, -0.1, 12).reshape(3, 4)
    values = scale[None] * np.exp(rate[None] * steps[:, None, None])
    values[4, 1, 1] = np.nan  # a gap is ignored
    values[:, 2, 3] = np.nan  # no data: no fit
    series = xr.DataArray(values, dims=("d", "y", "x"), coords={"d": steps})
    p = {"from_parameter": "parameters"}
    model = {
        "process_graph": {
            "a": node("array_element", data=p, index=0),
            "b": node("array_element", data=p, index=1),
            "bx": node("multiply", x={"from_node": "b"}, y={"from_parameter": "x"}),
            "e": node("exp", p={"from_node": "bx"}),
            "y": node("multiply", True, x={"from_node": "a"}, y={"from_node": "e"}),
        }
    }
    graph = {
        "c": node("constant", x=None),
        "fit": node(
            "fit_curve",
            data={"from_node": "c"},
            parameters=[1, -0.05],
            function=model,
            dimension="d",
        ),
        "new": node(
            "predict_curve",
            True,
            data={"from_node": "c"},
            parameters={"from_node": "fit"},
            function=model,
            dimension="d",
            labels=[12, 20],
        ),
    }
    predicted = evaluate(graph, node_hooks={"c": lambda a, n: series})
    assert predicted.dims == ("d", "y", "x") and list(predicted.d.values) == [12, 20]
    expected = scale[None] * np.exp(rate[None] * np.array([12.0, 20.0])[:, None, None])
    expected[:, 2, 3] = np.nan
    np.testing.assert_allclose(predicted.values, expected, rtol=1e-5)


def test_inspect_logs_a_summary_and_passes_the_data_on(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="openeo_airflow.processes.inspect"):
        result = run({"i": node("inspect", True, data=LC, message="after loading", code="dbg")})
    assert result.shape == source().shape
    assert "[dbg] after loading data cube (t=4, bands=2, y=6, x=8)" in caplog.text


def test_aggregate_spatial_windows_match_whole_cube_masks() -> None:
    """Each geometry is rasterised in the window of its bounds only; that must select the same
    pixels as a mask over the whole cube, also for geometries at or beyond the cube's edges,
    lines (all touched pixels) and a geometry outside the cube (no-data)."""
    to_lonlat = Transformer.from_crs(CRS, 4326, always_xy=True)
    native = [
        box(499_985, 4_999_935, 500_026, 5_000_013),  # over the top-left corner
        box(500_052, 4_999_922, 500_095, 4_999_990),  # over the right edge
        LineString([(500_003, 4_999_999), (500_071, 4_999_941)]),  # diagonal line
        box(500_031, 4_999_961, 500_049, 4_999_979),  # one pixel centre inside
        box(501_000, 4_999_000, 501_050, 4_999_050),  # outside the cube
    ]
    features = [
        {
            "type": "Feature",
            "properties": {},
            "geometry": {
                "type": g.geom_type,
                "coordinates": [to_lonlat.transform(*p) for p in g.coords]
                if g.geom_type == "LineString"
                else [[to_lonlat.transform(*p) for p in g.exterior.coords]],
            },
        }
        for g in native
    ]
    cube = source()
    result = run(
        {
            "a": node(
                "aggregate_spatial",
                True,
                data=LC,
                geometries={"type": "FeatureCollection", "features": features},
                reducer=callback("sum", data=DATA),
            )
        }
    )
    from_lonlat = Transformer.from_crs(4326, CRS, always_xy=True)
    for index, feature in enumerate(features):
        geometry = shape(feature["geometry"])
        projected = type(geometry)(
            [from_lonlat.transform(*p) for p in geometry.coords]
            if geometry.geom_type == "LineString"
            else [from_lonlat.transform(*p) for p in geometry.exterior.coords]
        )
        inside = pixel_mask(cube, [projected]).values
        expected = (
            np.nansum(cube.values[:, :, inside], axis=2)
            if inside.any()
            else np.full(cube.shape[:2], np.nan)
        )
        np.testing.assert_allclose(result.values[index], expected, err_msg=f"geometry {index}")
