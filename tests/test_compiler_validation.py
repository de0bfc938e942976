"""Validation before execution: argument types, band names, parameters and user-defined
processes; every problem reported at once with its error code and the node it concerns."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openeo.rest.datacube import DataCube

from openeo_airflow.compiler.compile import compile_plan
from openeo_airflow.compiler.schemas import literal_matches, schemas_compatible
from openeo_airflow.compiler.validate import validate_process
from openeo_airflow.core.errors import (
    OpenEOError,
    ProcessGraphInvalid,
    ProcessParameterInvalid,
    ProcessParameterRequired,
    ProcessUnsupported,
)
from openeo_airflow.processes import registry
from tests.graph_builders import EXTENT, load, node

S2 = {"B02": "blue", "B04": "red", "B08": "nir", "B05": "rededge071", "SCL": None}
COLLECTIONS = {"S2": S2, "S1": ["VV", "VH"]}
DATA = {"from_parameter": "data"}


def reducer(**nodes: dict[str, Any]) -> dict[str, Any]:
    return {"process_graph": nodes}


def check(process: Any, **kwargs: Any) -> list[OpenEOError]:
    kwargs.setdefault("collections", COLLECTIONS)
    return validate_process(process, known_processes=registry.specs(), **kwargs)


def found(errors: list[OpenEOError], code: str, *words: str) -> OpenEOError:
    matching = [e for e in errors if e.code == code and all(w in e.message for w in words)]
    assert len(matching) == 1, [f"[{e.code}] {e.message}" for e in errors]
    return matching[0]


# --- a correct graph has no problems --------------------------------------------------------------


def client_graph() -> dict[str, Any]:
    cube = DataCube.load_collection(
        "S2",
        connection=None,
        spatial_extent=EXTENT,
        temporal_extent=["2021-06-01", "2021-07-01"],
        bands=["B04", "B08", "SCL"],
        fetch_metadata=False,
    )
    scl = cube.band("SCL")
    masked = cube.filter_bands(["red", "nir"]).mask((scl == 3) | (scl == 8))
    ndvi = masked.ndvi(nir="nir", red="red")
    result = ndvi.max_time().apply(lambda x: x * 100).save_result(format="GTiff")
    return json.loads(result.to_json())


def test_client_graphs_are_valid() -> None:
    assert check(client_graph()) == []
    assert check(client_graph(), collections=None) == []


POLYGON = {
    "type": "Polygon",
    "coordinates": [[[16.1, 48.1], [16.2, 48.1], [16.2, 48.2], [16.1, 48.1]]],
}
SIZE = [{"dimension": d, "value": 64, "unit": "px"} for d in ("x", "y")]
CLIENT_GRAPHS: dict[str, Any] = {
    "resample (sends align)": lambda c: c.resample_spatial(resolution=20, projection=3035),
    "aggregate_spatial": lambda c: c.aggregate_spatial(POLYGON, "mean"),
    "mask_polygon": lambda c: c.mask_polygon(POLYGON),
    "filter_spatial": lambda c: c.filter_spatial(POLYGON),
    "band math": lambda c: c.band("B08") - c.band("B04"),
    "aggregate_temporal_period": lambda c: c.aggregate_temporal_period("month", "median"),
    "interpolation": lambda c: c.apply_dimension(process="array_interpolate_linear", dimension="t"),
    "apply_kernel": lambda c: c.apply_kernel([[1, 1, 1], [1, 1, 1], [1, 1, 1]], factor=1 / 9),
    "apply_neighborhood": lambda c: c.apply_neighborhood(
        lambda d: d.apply_kernel([[1]]), size=SIZE, overlap=SIZE
    ),
    "filter_labels": lambda c: c.filter_labels(lambda v: v == "B04", dimension="bands"),
    "merge_cubes": lambda c: c.merge_cubes(c.resample_cube_spatial(c)),
    "rename and drop": lambda c: c.reduce_temporal("mean").rename_dimension("bands", "b"),
    "mask": lambda c: c.mask(c.band("B04") > 0.5),
    "netCDF": lambda c: c.save_result("netCDF"),
}


@pytest.mark.parametrize("name", list(CLIENT_GRAPHS))
def test_more_client_graphs_are_valid(name: str) -> None:
    cube = DataCube.load_collection(
        "S2",
        connection=None,
        spatial_extent=EXTENT,
        temporal_extent=["2021-06-01", "2021-07-01"],
        bands=["B04", "B08"],
        fetch_metadata=False,
    )
    graph = json.loads(CLIENT_GRAPHS[name](cube).to_json())
    assert check(graph) == []
    ids_only = validate_process(
        graph, known_processes=set(registry.implemented()), collections=COLLECTIONS
    )
    assert ids_only == []  # the official specs (amended for 2.0 parameters) say the same


# --- argument types -------------------------------------------------------------------------------


def test_wrongly_typed_literals() -> None:
    graph = {
        "lc": load(),
        "bbox": node("filter_bbox", data={"from_node": "lc"}, extent={"west": 1, "south": 2}),
        "nd": node("ndvi", data={"from_node": "bbox"}, target_band=5),
        "rd": node(
            "reduce_dimension",
            True,
            data={"from_node": "nd"},
            dimension=["t"],
            reducer=reducer(m=node("max", True, data=DATA)),
        ),
    }
    errors = check(graph)
    found(errors, "ProcessParameterInvalid", "Node 'bbox'", "'extent'", "bounding-box")
    found(errors, "ProcessParameterInvalid", "Node 'nd'", "'target_band'", "got 5")
    found(errors, "ProcessParameterInvalid", "Node 'rd'", "'dimension'", "string")
    assert len(errors) == 3
    error = found(errors, "ProcessParameterInvalid", "Node 'nd'")
    assert error.status == 400 and error.params["parameter"] == "target_band"


def test_results_of_the_wrong_kind() -> None:
    graph = {
        "lc": load(),
        "sum": node("add", x={"from_node": "lc"}, y=1),  # a cube where a number is expected
        "two": node("add", x=1, y=1),
        "bbox": node("filter_bbox", True, data={"from_node": "two"}, extent=EXTENT),
    }
    errors = check(graph)
    found(errors, "ProcessParameterInvalid", "Node 'sum'", "'x'", "node 'lc' (load_collection)")
    found(errors, "ProcessParameterInvalid", "Node 'bbox'", "'data'", "node 'two' (add)")
    assert len(errors) == 2


def test_process_graphs_where_values_are_expected_and_back() -> None:
    graph = {
        "lc": load(),
        "rd": node("reduce_dimension", data={"from_node": "lc"}, dimension="t", reducer=5),
        "ap": node(
            "apply",
            True,
            data={"from_node": "rd"},
            process=reducer(a=node("absolute", True, x={"process_graph": {"c": node("pi", True)}})),
        ),
    }
    errors = check(graph)
    found(errors, "ProcessParameterInvalid", "Node 'rd'", "'reducer'", "process-graph")
    found(
        errors, "ProcessParameterInvalid", "Node 'a' (in 'process' of node 'ap')", "got a process"
    )
    assert len(errors) == 2


# --- band names -----------------------------------------------------------------------------------


def test_wrong_band_names_everywhere_they_can_be_known() -> None:
    graph = {
        "lc": load(bands=["B04", "B99", "nir"]),
        "fb": node("filter_bands", data={"from_node": "lc"}, bands=["B04", "B02"]),
        "nd": node("ndvi", data={"from_node": "lc"}, red="B77"),
        "rd": node(
            "reduce_dimension",
            data={"from_node": "lc"},
            dimension="bands",
            reducer=reducer(e=node("array_element", True, data=DATA, label="B88")),
        ),
        "s1": load("S1", bands=["HH"]),
        "merge": node("merge_cubes", True, cube1={"from_node": "fb"}, cube2={"from_node": "s1"}),
    }
    errors = check(graph)
    found(errors, "ProcessParameterInvalid", "Node 'lc'", "'B99'", "collection 'S2'")
    found(errors, "ProcessParameterInvalid", "Node 'fb'", "'B02'")  # not loaded
    found(errors, "ProcessParameterInvalid", "Node 'nd'", "'B77'")
    found(errors, "ProcessParameterInvalid", "Node 'e' (in 'reducer' of node 'rd')", "'B88'")
    found(errors, "ProcessParameterInvalid", "Node 's1'", "'HH'", "VV, VH")
    assert len(errors) == 5
    # common names and the broader 'rededge' are valid names
    ok = {
        "lc": load(bands=["red", "rededge"]),
        "fb": node("filter_bands", True, data={"from_node": "lc"}, bands=["B04", "rededge071"]),
    }
    assert check(ok) == []


def test_bands_are_not_checked_where_unknown() -> None:
    graph = {
        "lc": load(),
        "rn": node(
            "rename_labels",
            data={"from_node": "lc"},
            dimension="bands",
            target=["a"],
            source=["B04"],
        ),
        "fb": node("filter_bands", True, data={"from_node": "rn"}, bands=["a"]),
    }
    assert check(graph) == []
    only_ids = check({"lc": {**load(bands=["B99"]), "result": True}}, collections={"S2"})
    assert only_ids == []  # ids only: no band lists


# --- parameters -----------------------------------------------------------------------------------


def test_unresolved_parameters() -> None:
    process = {
        "parameters": [{"name": "year", "schema": {"type": "string"}}],
        "process_graph": {
            "lc": load(),
            "ft": node(
                "filter_temporal",
                data={"from_node": "lc"},
                extent=[{"from_parameter": "year"}, {"from_parameter": "until"}],
            ),
            "rd": node(
                "reduce_dimension",
                True,
                data={"from_node": "ft"},
                dimension="t",
                reducer=reducer(m=node("max", True, data={"from_parameter": "dat"})),
            ),
        },
    }
    errors = check(process)
    found(errors, "ProcessGraphInvalid", "Node 'ft'", "'until'", "available: year")
    found(
        errors,
        "ProcessGraphInvalid",
        "Node 'm' (in 'reducer' of node 'rd')",
        "'dat'",
        "context, data, year",
    )
    assert len(errors) == 2
    assert check(process["process_graph"] | {}, arguments=["year", "until"]) != []  # 'dat' stays
    bare = dict(process["process_graph"])
    assert any("'year'" in e.message for e in check(bare))  # a bare graph declares nothing


def test_parameter_schemas_are_checked_where_used() -> None:
    process = {
        "parameters": [{"name": "factor", "schema": {"type": "number"}}],
        "process_graph": {
            "bbox": node("filter_bbox", True, data={"from_parameter": "factor"}, extent=EXTENT)
        },
    }
    found(check(process), "ProcessParameterInvalid", "Node 'bbox'", "parameter 'factor'")


# --- user-defined processes -----------------------------------------------------------------------

USER = {
    "cloudfree": {
        "id": "cloudfree",
        "parameters": [
            {"name": "data", "schema": {"type": "object", "subtype": "datacube"}},
            {"name": "threshold", "schema": {"type": "number"}, "default": 3, "optional": True},
        ],
        "returns": {"schema": {"type": "object", "subtype": "datacube"}},
        "process_graph": {
            "m": node(
                "apply",
                True,
                data=DATA,
                process=reducer(c=node("clip", True, x={"from_parameter": "x"}, min=0, max=1)),
            )
        },
    }
}


def test_user_defined_processes() -> None:
    graph = {
        "lc": load(),
        "cf": node("cloudfree", data={"from_node": "lc"}),
        "bad": node("cloudfree", threshold="x", colour=1),
        "user": {**node("cloudfree", data={"from_node": "cf"}), "namespace": "user"},
        "ghost": {**node("ndvi", True, data={"from_node": "user"}), "namespace": "user"},
    }
    errors = check(graph, user_processes=USER)
    found(errors, "ProcessParameterRequired", "Node 'bad'", "'data'")
    found(errors, "ProcessParameterUnsupported", "Node 'bad'", "'colour'")
    found(errors, "ProcessParameterInvalid", "Node 'bad'", "'threshold'", "number")
    found(errors, "ProcessUnsupported", "Node 'ghost'", "namespace 'user'")
    assert len(errors) == 4
    assert [e.code for e in check({"cf": node("cloudfree", True)})] == ["ProcessUnsupported"]


# --- everything at once, through compile_plan -----------------------------------------------------


def test_compile_plan_reports_every_problem_at_once() -> None:
    graph = {
        "lc": load(bands=["B99"]),
        "x": node("frobnicate"),
        "sum": node("add", x={"from_node": "lc"}, y={"from_parameter": "p"}),
        "sr": node("save_result", True, data={"from_node": "lc"}),
    }
    with pytest.raises(ProcessGraphInvalid) as error:
        compile_plan(graph, known_processes=registry.specs(), collections=COLLECTIONS)
    message = error.value.message
    assert "5 problems" in message
    for code, where in [
        ("ProcessParameterInvalid", "Node 'lc'"),
        ("ProcessUnsupported", "Node 'x'"),
        ("ProcessParameterInvalid", "Node 'sum'"),
        ("ProcessGraphInvalid", "Node 'sum'"),
        ("ProcessParameterRequired", "Node 'sr'"),
    ]:
        assert f"[{code}] {where}" in message, (code, where, message)


def test_single_problems_keep_their_class() -> None:
    with pytest.raises(ProcessParameterRequired, match="Node 'a'"):
        compile_plan(
            {"a": node("add", True, x=1)}, known_processes=registry.specs(), collections=None
        )
    with pytest.raises(ProcessUnsupported):
        compile_plan({"a": node("nope", True)}, known_processes=registry.specs(), collections=None)
    with pytest.raises(ProcessParameterInvalid):
        compile_plan(
            {"a": node("add", True, x="1", y=2)}, known_processes=registry.specs(), collections=None
        )


# --- the schema helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "schema", "ok"),
    [
        (1, {"type": "integer"}, True),
        (1.0, {"type": "integer"}, True),
        (1.5, {"type": "integer"}, False),
        (True, {"type": "number"}, False),
        (float("nan"), {"type": "number"}, True),
        (None, {"type": "number"}, True),  # no-data
        (None, {"type": "string"}, False),
        ("near", {"type": "string", "enum": ["near", "bilinear"]}, True),
        ("nearest", {"type": "string", "enum": ["near", "bilinear"]}, False),
        (-1, {"type": "integer", "minimum": 0}, False),
        ([1, "a"], {"type": "array", "items": {"type": "number"}}, False),
        ({"west": 1}, {"type": "object", "required": ["west", "east"]}, False),
        ({"a": 1}, {"type": "object", "subtype": "datacube"}, False),
        ("x", [{"type": "number"}, {"type": "string"}], True),
        ("x", {"description": "anything"}, True),
    ],
)
def test_literal_matches(value: Any, schema: Any, ok: bool) -> None:
    assert literal_matches(value, schema) is ok


def test_schemas_compatible() -> None:
    cube = {"type": "object", "subtype": "datacube"}
    raster = {"type": "object", "subtype": "raster-cube"}
    vector = {"type": "object", "subtype": "vector-cube"}
    assert schemas_compatible(cube, raster) and schemas_compatible(raster, cube)
    assert not schemas_compatible(raster, vector)
    assert not schemas_compatible({"type": "number"}, cube)
    assert schemas_compatible({"type": "integer"}, {"type": ["number", "null"]})
    assert not schemas_compatible(cube, {"type": "object", "subtype": "bounding-box"})
    assert schemas_compatible({}, cube) and schemas_compatible(cube, {})
