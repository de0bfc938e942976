"""``flatten_dimensions``, ``unflatten_dimension`` and ``aggregate_spatial_window`` (openEO 2.0
proposals), from the spec text and its examples: labels and separators, the spec's exceptions,
windows padded or trimmed at the corner ``align`` names; through ``POST /result``; tiled as
untiled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from affine import Affine

from openeo_airflow.core.errors import OpenEOError, ProcessParameterInvalid
from openeo_airflow.cube import make_cube
from openeo_airflow.jobs.backend import DEFAULT_COLLECTIONS
from openeo_airflow.processes.graph import evaluate
from openeo_airflow.processes.inline import to_json
from openeo_airflow.processes.space import LOCAL
from openeo_airflow.processes.tiling import evaluate_tiled, node_space
from tests.api_support import PREFIX, bearer, implementation, make_backend, make_client

flatten = implementation("flatten_dimensions")
unflatten = implementation("unflatten_dimension")
TRANSFORM = Affine(10, 0, 500_010, 0, -10, 5_000_030)
TIMES = np.array(["2021-06-01", "2021-06-06"], dtype="datetime64[ns]")


def node(process_id: str, result: bool = False, **arguments: Any) -> dict[str, Any]:
    return {"process_id": process_id, "arguments": arguments, "result": result}


def callback(process_id: str, **arguments: Any) -> dict[str, Any]:
    return {"process_graph": {"p": node(process_id, True, **arguments)}}


DATA = {"from_parameter": "data"}


def raster(height: int = 5, width: int = 7, seed: int = 1) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    data = rng.uniform(0, 1, (2, 2, height, width)).astype(np.float32)
    return make_cube(data, times=TIMES, bands=["B04", "B08"], transform=TRANSFORM, crs="EPSG:32633")


def example() -> xr.DataArray:
    """The spec's example: ``A`` (2020, 2021) by ``B`` (B1, B2) holding ``[[1,2],[3,4]]``."""
    return xr.DataArray(
        [[1, 2], [3, 4]], dims=("A", "B"), coords={"A": [2020, 2021], "B": ["B1", "B2"]}
    )


# --- flatten_dimensions and unflatten_dimension -----------------------------------------------


def test_the_spec_examples() -> None:
    flat = flatten(data=example(), dimensions=["A", "B"], target_dimension="X")
    assert flat.dims == ("X",) and flat.coords["X"].attrs["type"] == "other"
    assert list(flat.X.values) == ["2020~B1", "2020~B2", "2021~B1", "2021~B2"]
    assert flat.values.tolist() == [1, 2, 3, 4]
    back = unflatten(data=flat, dimension="X", target_dimensions=["A", "B"])
    assert back.dims == ("A", "B") and back.values.tolist() == [[1, 2], [3, 4]]
    assert list(back.A.values) == ["2020", "2021"] and list(back.B.values) == ["B1", "B2"]
    assert back.dtype == flat.dtype  # every combination present: no no-data needed


def test_the_order_of_dimensions_decides_the_labels_and_values() -> None:
    flat = flatten(data=example(), dimensions=["B", "A"], target_dimension="X", label_separator="/")
    assert list(flat.X.values) == ["B1/2020", "B1/2021", "B2/2020", "B2/2021"]
    assert flat.values.tolist() == [1, 3, 2, 4]


def test_flattening_time_and_bands_of_a_raster_keeps_the_other_dimensions() -> None:
    cube = raster()
    flat = flatten(data=cube, dimensions=["t", "bands"], target_dimension="tb", label_separator="|")
    assert flat.dims == ("tb", "y", "x") and flat.sizes["tb"] == 4
    assert flat.tb.values[1] == "2021-06-01T00:00:00Z|B08"
    np.testing.assert_array_equal(flat.values[1], cube.values[0, 1])
    assert "spatial_ref" in flat.coords and np.array_equal(flat.x.values, cube.x.values)
    back = unflatten(
        data=flat, dimension="tb", target_dimensions=["time", "band"], label_separator="|"
    )
    assert back.dims == ("time", "band", "y", "x")
    np.testing.assert_array_equal(back.values, cube.values)


def test_unflatten_fills_missing_combinations_with_no_data() -> None:
    flat = flatten(data=example(), dimensions=["A", "B"], target_dimension="X")
    partial = flat.isel(X=[3, 0, 1])  # 2021~B2, 2020~B1, 2020~B2
    out = unflatten(data=partial, dimension="X", target_dimensions=["year", "band"])
    assert list(out.year.values) == ["2021", "2020"] and list(out.band.values) == ["B2", "B1"]
    np.testing.assert_array_equal(out.values, [[4, np.nan], [2, 1]])


def test_flatten_of_one_dimension_only_renames_and_turns_labels_into_text() -> None:
    out = flatten(data=example(), dimensions=["A"], target_dimension="year")
    assert out.dims == ("year", "B") and list(out.year.values) == ["2020", "2021"]


@pytest.mark.parametrize(
    ("call", "code", "words"),
    [
        (
            lambda c: flatten(data=c, dimensions=["A", "C"], target_dimension="X"),
            "DimensionNotAvailable",
            "'C'",
        ),
        (
            lambda c: flatten(data=c, dimensions=["A"], target_dimension="B"),
            "TargetDimensionExists",
            "'B'",
        ),
        (
            lambda c: unflatten(data=c, dimension="Z", target_dimensions=["P", "Q"]),
            "DimensionNotAvailable",
            "'Z'",
        ),
        (
            lambda c: unflatten(data=c, dimension="A", target_dimensions=["B", "Q"]),
            "TargetDimensionExists",
            "'B'",
        ),
    ],
)
def test_the_spec_exceptions(call: Any, code: str, words: str) -> None:
    with pytest.raises(OpenEOError) as raised:
        call(example())
    assert raised.value.code == code and words in str(raised.value)
    assert raised.value.status == 400
    assert str(raised.value).count(code) == 1 and "The cube" in str(raised.value)


@pytest.mark.parametrize(
    ("call", "parameter", "words"),
    [
        (lambda c: flatten(data=c, dimensions="A", target_dimension="X"), "dimensions", "distinct"),
        (
            lambda c: flatten(data=c, dimensions=["A", "A"], target_dimension="X"),
            "dimensions",
            "distinct",
        ),
        (
            lambda c: flatten(data=c, dimensions=["A"], target_dimension="X", label_separator=""),
            "label_separator",
            "non-empty",
        ),
        (
            lambda c: unflatten(data=c, dimension="A", target_dimensions=["P"]),
            "target_dimensions",
            "at least 2",
        ),
        (lambda c: unflatten(data=c, dimension="B", target_dimensions=["P", "Q"]), "data", "'B1'"),
        (
            lambda c: flatten(data=[1, 2], dimensions=["A"], target_dimension="X"),
            "data",
            "data cube",
        ),
    ],
)
def test_bad_arguments_name_the_parameter(call: Any, parameter: str, words: str) -> None:
    with pytest.raises(ProcessParameterInvalid) as raised:
        call(example())
    assert f"'{parameter}'" in str(raised.value) and words in str(raised.value)


def test_unflatten_refuses_labels_that_split_into_the_same_parts() -> None:
    cube = xr.DataArray([1, 2], dims=("X",), coords={"X": ["a~b", "a~b~"]})
    cube = cube.assign_coords(X=["a~b", "a~b"])
    with pytest.raises(ProcessParameterInvalid, match="same parts"):
        unflatten(data=cube, dimension="X", target_dimensions=["P", "Q"])


def test_space_declarations() -> None:
    local = node("flatten_dimensions", dimensions=["t", "bands"], target_dimension="tb")
    spatial = node("flatten_dimensions", dimensions=["y", "x"], target_dimension="px")
    unknown = node(
        "unflatten_dimension", dimension={"from_parameter": "d"}, target_dimensions=["a", "b"]
    )
    assert node_space(local) == LOCAL
    assert node_space(spatial).is_global and node_space(unknown).is_global
    assert node_space(node("aggregate_spatial_window", size=[2, 2])).is_global


# --- aggregate_spatial_window ---------------------------------------------------------------------


def window_graph(**arguments: Any) -> dict[str, Any]:
    reducer = arguments.pop("reducer", "mean")
    return {
        "w": node(
            "aggregate_spatial_window",
            True,
            data={"from_parameter": "cube"},
            reducer=callback(reducer, data=DATA),
            **arguments,
        )
    }


def windows(cube: xr.DataArray, **arguments: Any) -> xr.DataArray:
    result = evaluate(window_graph(**arguments), arguments={"cube": cube})
    assert isinstance(result, xr.DataArray)
    return result


def reference(values: np.ndarray, sx: int, sy: int, boundary: str, align: str) -> np.ndarray:
    """Window means by plain indexing, one window at a time (the spec's text, literally)."""
    height, width = values.shape
    if boundary == "pad":
        ph, pw = -height % sy, -width % sx
        top, left = (ph if align.startswith("lower") else 0), (pw if align.endswith("right") else 0)
        grid = np.full((height + ph, width + pw), np.nan)
        grid[top : top + height, left : left + width] = values
    else:
        th, tw = height % sy, width % sx
        top, left = (th if align.startswith("lower") else 0), (tw if align.endswith("right") else 0)
        grid = values[top : top + height - th, left : left + width - tw]
    rows, cols = grid.shape[0] // sy, grid.shape[1] // sx
    out = np.empty((rows, cols))
    for r in range(rows):
        for c in range(cols):
            out[r, c] = np.nanmean(grid[r * sy : (r + 1) * sy, c * sx : (c + 1) * sx])
    return out


@pytest.mark.parametrize("boundary", ["pad", "trim"])
@pytest.mark.parametrize("align", ["upper-left", "upper-right", "lower-left", "lower-right"])
def test_windows_are_reduced_with_padding_or_trimming_at_the_far_corner(
    boundary: str, align: str
) -> None:
    cube = raster()
    out = windows(cube, size=[3, 2], boundary=boundary, align=align)
    assert out.dims == cube.dims
    for t in range(2):
        for b in range(2):
            expected = reference(cube.values[t, b].astype(float), 3, 2, boundary, align)
            np.testing.assert_allclose(out.values[t, b], expected, rtol=1e-6)
    assert out.spatial_ref.attrs["resolution"] == [30.0, 20.0]


def test_window_labels_are_the_window_centres() -> None:
    cube = raster()  # x centres 500015, 500025, ...; y centres 5000025, 5000015, ...
    out = windows(cube, size=[3, 2], boundary="pad", align="upper-left")
    np.testing.assert_allclose(out.x.values, [500_025, 500_055, 500_085])
    np.testing.assert_allclose(out.y.values, [5_000_020, 5_000_000, 4_999_980])
    right = windows(cube, size=[3, 2], boundary="trim", align="lower-right")
    np.testing.assert_allclose(right.x.values, [500_035, 500_065])
    np.testing.assert_allclose(right.y.values, [5_000_010, 4_999_990])


def test_no_data_is_left_to_the_reducer_and_constants_fill_each_window() -> None:
    cube = raster()
    cube[0, 0, 0:2, 0:3] = np.nan
    out = windows(cube, size=[3, 2])
    assert np.isnan(out.values[0, 0, 0, 0]) and np.isfinite(out.values[0, 0, 0, 1])
    counted = windows(cube, size=[3, 2], reducer="count")
    assert counted.values[0, 0, 2, 2] == 1  # the last window: one pixel, the rest is padding
    assert counted.values[1, 0, 0, 0] == 6


@pytest.mark.parametrize(
    ("arguments", "parameter"),
    [
        ({"size": [0, 2]}, "size"),
        ({"size": [2]}, "size"),
        ({"size": [2, 2], "boundary": "wrap"}, "boundary"),
        ({"size": [2, 2], "align": "centre"}, "align"),
    ],
)
def test_window_arguments_are_checked(arguments: dict[str, Any], parameter: str) -> None:
    with pytest.raises(ProcessParameterInvalid) as raised:
        windows(raster(), **arguments)
    assert f"'{parameter}'" in str(raised.value) and "aggregate_spatial_window" in str(raised.value)


def test_windows_need_a_raster() -> None:
    with pytest.raises(ProcessParameterInvalid, match="'data'"):
        windows(raster().isel(x=0, drop=True), size=[2, 2])


# --- through POST /result -------------------------------------------------------------------------


def test_flatten_and_windows_through_post_result(tmp_path: Path) -> None:
    client = make_client(make_backend(tmp_path, DEFAULT_COLLECTIONS))
    alice = bearer(client, "alice")
    cube = raster(4, 4)
    graph = {
        "c": node("load_inline_cube", data=to_json(cube)),
        "w": node(
            "aggregate_spatial_window",
            data={"from_node": "c"},
            reducer=callback("max", data=DATA),
            size=[2, 2],
        ),
        "f": node(
            "flatten_dimensions",
            data={"from_node": "w"},
            dimensions=["t", "bands"],
            target_dimension="tb",
        ),
        "save": node("save_result", True, data={"from_node": "f"}, format="JSON"),
    }
    response = client.post(
        f"{PREFIX}/result", json={"process": {"process_graph": graph}}, headers=alice
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["order"] == ["tb", "y", "x"]
    assert body["dimensions"]["tb"]["values"][3] == "2021-06-06T00:00:00Z~B08"
    expected = cube.values[1, 1].reshape(2, 2, 2, 2).max(axis=(1, 3))
    np.testing.assert_allclose(np.array(body["data"][3]), expected, rtol=1e-6)
    graph["f"]["arguments"]["dimensions"] = ["t", "x"]
    graph["f"]["arguments"]["target_dimension"] = "bands"
    response = client.post(
        f"{PREFIX}/result", json={"process": {"process_graph": graph}}, headers=alice
    )
    assert response.status_code == 400
    error = response.json()
    assert error["code"] == "TargetDimensionExists" and "'f'" in error["message"]


# --- tiled as untiled -----------------------------------------------------------------------------

TILED = {
    "windows": {
        "w": node(
            "aggregate_spatial_window",
            True,
            data={"from_node": "lc"},
            reducer=callback("median", data=DATA),
            size=[4, 3],
            boundary="trim",
            align="lower-right",
        )
    },
    "flatten, apply, unflatten": {
        "f": node(
            "flatten_dimensions",
            data={"from_node": "lc"},
            dimensions=["bands", "t"],
            target_dimension="bt",
        ),
        "a": node(
            "apply", data={"from_node": "f"}, process=callback("sqrt", x={"from_parameter": "x"})
        ),
        "u": node(
            "unflatten_dimension",
            True,
            data={"from_node": "a"},
            dimension="bt",
            target_dimensions=["b", "d"],
        ),
    },
}


@pytest.mark.parametrize("name", list(TILED))
def test_tiled_equals_untiled(name: str) -> None:
    source = raster(37, 41, seed=4)
    source[1, :, 5:9, 10:14] = np.nan
    graph = {"lc": node("load_collection", id="S2"), **TILED[name]}
    untiled = evaluate(graph, node_hooks={"lc": lambda _a, _n: source})
    for tile_size in (8, 16):
        tiled = evaluate_tiled(graph, {"lc": source}, tile_size=tile_size)
        assert tiled.dims == untiled.dims
        for dim in untiled.dims:
            np.testing.assert_array_equal(tiled[dim].values, untiled[dim].values)
        np.testing.assert_allclose(tiled.values, untiled.values, rtol=1e-6, equal_nan=True)
