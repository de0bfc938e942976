"""Array processes on cubes (inside apply_dimension/reduce_dimension, all pixels at once) agree
with the same processes on plain lists, pixel by pixel (no-data: NaN in cubes, null in lists)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import xarray as xr

from openeo_airflow.processes.graph import evaluate

RNG = np.random.default_rng(11)
VALUES = RNG.integers(-5, 6, (6, 3, 4)).astype(float)  # t, y, x: ties on purpose
VALUES[RNG.random(VALUES.shape) < 0.25] = np.nan
VALUES[:, 0, 0] = np.nan  # an all-no-data pixel
VALUES[:, 2, 3] = [np.nan, 1, np.nan, np.nan, 4, np.nan]
LABELS = np.array([f"2021-06-{d:02d}" for d in (1, 4, 9, 10, 20, 30)], dtype="datetime64[ns]")


def cube() -> xr.DataArray:
    return xr.DataArray(VALUES, dims=("t", "y", "x"), coords={"t": LABELS})


def node(process_id: str, result: bool = False, **arguments: Any) -> dict[str, Any]:
    return {"process_id": process_id, "arguments": arguments, "result": result}


DATA = {"from_parameter": "data"}


def callback(process_id: str, **arguments: Any) -> dict[str, Any]:
    return {"process_graph": {"p": node(process_id, True, data=DATA, **arguments)}}


def on_cube(kind: str, process_id: str, **arguments: Any) -> np.ndarray:
    graph = {
        "c": node("constant", x=None),
        "r": node(
            kind,
            True,
            data={"from_node": "c"},
            dimension="t",
            **{
                "reducer" if kind == "reduce_dimension" else "process": callback(
                    process_id, **arguments
                )
            },
        ),
    }
    result = evaluate(graph, node_hooks={"c": lambda a, n: cube()})
    return np.asarray(result.transpose(..., "y", "x").values, dtype=float)


def on_lists(process_id: str, labeled: bool = False, **arguments: Any) -> list[list[Any]]:
    """The process on each pixel's series as a list (labeled with the dates if asked)."""
    out = []
    for y in range(VALUES.shape[1]):
        row = []
        for x in range(VALUES.shape[2]):
            series = [None if math.isnan(v) else float(v) for v in VALUES[:, y, x]]
            labels = [str(v)[:10] for v in LABELS]
            data: Any = series
            graph: dict[str, Any] = {}
            if labeled:
                graph["l"] = node("array_create_labeled", data=series, labels=labels)
                data = {"from_node": "l"}
            graph["p"] = node(process_id, True, data=data, **arguments)
            row.append(evaluate(graph))
        out.append(row)
    return out


def as_float(value: Any) -> float:
    return math.nan if value is None else float(value)


REDUCERS = [
    ("mean", {}),
    ("median", {}),
    ("min", {}),
    ("max", {}),
    ("sum", {}),
    ("product", {}),
    ("sd", {}),
    ("variance", {}),
    ("first", {}),
    ("last", {}),
    ("count", {}),
    ("mean", {"ignore_nodata": False}),
    ("first", {"ignore_nodata": False}),
    ("array_find", {"value": 1}),
    ("array_find", {"value": 1, "reverse": True}),
    ("array_contains", {"value": 2}),
    ("any", {}),
    ("all", {}),
    ("any", {"ignore_nodata": False}),
    ("all", {"ignore_nodata": False}),
    ("array_element", {"index": 2}),
]


@pytest.mark.parametrize(("process_id", "arguments"), REDUCERS)
def test_reducers_agree(process_id: str, arguments: dict[str, Any]) -> None:
    if process_id in ("any", "all"):
        global VALUES
        saved = VALUES
        VALUES = np.where(np.isnan(saved), np.nan, (saved > 0).astype(float))
        try:
            got = on_cube("reduce_dimension", process_id, **arguments)
            lists = on_lists(process_id, **{k: v for k, v in arguments.items()})
        finally:
            VALUES = saved
        expected = np.array([[as_float(v) for v in row] for row in _booleans(lists)])
    else:
        got = on_cube("reduce_dimension", process_id, **arguments)
        expected = np.array(
            [[as_float(v) for v in row] for row in on_lists(process_id, **arguments)]
        )
    np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True)


def _booleans(rows: list[list[Any]]) -> list[list[Any]]:
    return [[None if v is None else float(v) for v in row] for row in rows]


APPLIERS = [
    ("sort", {}),
    ("sort", {"asc": False, "nodata": True}),
    ("sort", {"nodata": False}),
    ("order", {"nodata": True}),
    ("order", {"asc": False, "nodata": False}),
    ("cumsum", {}),
    ("cummax", {}),
    ("cummin", {"ignore_nodata": False}),
    ("cumproduct", {}),
    ("extrema", {}),
    ("quantiles", {"probabilities": [0.1, 0.5, 0.9]}),
    ("quantiles", {"q": 4}),
    ("array_interpolate_linear", {}),
    ("rearrange", {"order": [5, 0, 3]}),
    ("array_modify", {"values": [7, 8], "index": 1, "length": 2}),
    ("array_append", {"value": 3}),
    ("array_concat", {"array2": [1, 2]}),
]


@pytest.mark.parametrize(("process_id", "arguments"), APPLIERS)
def test_array_results_agree(process_id: str, arguments: dict[str, Any]) -> None:
    if process_id == "array_concat":  # the cube is the first array
        arguments = {"array2": arguments["array2"]}
        graph_arguments = {"array1": DATA, **arguments}
        got = _concat_on_cube(graph_arguments)
        expected_lists = [
            [_list_concat(VALUES[:, y, x], arguments["array2"]) for x in range(VALUES.shape[2])]
            for y in range(VALUES.shape[1])
        ]
    else:
        got = on_cube("apply_dimension", process_id, **arguments)
        labeled = process_id == "array_interpolate_linear"  # interpolates over the dates
        expected_lists = on_lists(process_id, labeled=labeled, **arguments)
    if process_id == "order" and "nodata" not in arguments:
        pytest.skip("dropped no-data leaves lists of different lengths")
    width = max(len(v) for row in expected_lists for v in row)
    expected = np.full((width, *VALUES.shape[1:]), np.nan)
    for y, row in enumerate(expected_lists):
        for x, values in enumerate(row):
            expected[: len(values), y, x] = [as_float(v) for v in values]
    np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True)


def _list_concat(series: np.ndarray, tail: list[Any]) -> list[Any]:
    return [None if math.isnan(v) else v for v in series] + tail


def _concat_on_cube(arguments: dict[str, Any]) -> np.ndarray:
    graph = {
        "c": node("constant", x=None),
        "r": node(
            "apply_dimension",
            True,
            data={"from_node": "c"},
            dimension="t",
            process={"process_graph": {"p": node("array_concat", True, **arguments)}},
        ),
    }
    result = evaluate(graph, node_hooks={"c": lambda a, n: cube()})
    return np.asarray(result.transpose("t", "y", "x").values, dtype=float)


def test_array_apply_and_filter_with_index_and_label() -> None:
    shifted = {
        "process_graph": {
            "a": node("add", True, x={"from_parameter": "x"}, y={"from_parameter": "index"})
        }
    }
    graph = {
        "c": node("constant", x=None),
        "r": node(
            "apply_dimension",
            True,
            data={"from_node": "c"},
            dimension="t",
            process={"process_graph": {"p": node("array_apply", True, data=DATA, process=shifted)}},
        ),
    }
    got = evaluate(graph, node_hooks={"c": lambda a, n: cube()})
    np.testing.assert_array_equal(got.values, VALUES + np.arange(6).reshape(6, 1, 1))
    np.testing.assert_array_equal(got.t.values, LABELS)  # same length: labels kept

    positive = {"process_graph": {"g": node("gt", True, x={"from_parameter": "x"}, y=0)}}
    graph["r"]["arguments"]["process"] = {
        "process_graph": {"p": node("array_filter", True, data=DATA, condition=positive)}
    }
    got = evaluate(graph, node_hooks={"c": lambda a, n: cube()})
    for y in range(VALUES.shape[1]):
        for x in range(VALUES.shape[2]):
            kept = [v for v in VALUES[:, y, x] if v > 0]
            column = got.values[:, y, x]
            np.testing.assert_array_equal(column[: len(kept)], kept)
            assert np.isnan(column[len(kept) :]).all()

    by_label = {
        "process_graph": {
            "d": node(
                "date_between",
                True,
                x={"from_parameter": "label"},
                min="2021-06-05",
                max="2021-06-25",
            )
        }
    }
    graph["r"]["arguments"]["process"] = {
        "process_graph": {"p": node("array_filter", True, data=DATA, condition=by_label)}
    }
    got = evaluate(graph, node_hooks={"c": lambda a, n: cube()})
    np.testing.assert_array_equal(got.values, VALUES[2:5])  # the same labels for all pixels
    np.testing.assert_array_equal(got.t.values, [0, 1, 2])  # fewer values: labels 0, 1, 2
