"""Process graph validation and plan compilation (pure: no I/O but the packaged specs)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openeo.rest.datacube import DataCube

from openeo_airflow.compiler.compile import compile_plan
from openeo_airflow.compiler.plan import Output, Plan, Source
from openeo_airflow.compiler.specs import process_spec, required_parameters, spec_ids
from openeo_airflow.compiler.validate import validate_process_graph
from openeo_airflow.core.errors import (
    CollectionNotFound,
    FeatureUnsupported,
    OpenEOError,
    ProcessGraphInvalid,
    ProcessGraphMissing,
    ProcessParameterInvalid,
    ProcessParameterRequired,
    ProcessParameterUnsupported,
    ProcessUnsupported,
)
from tests.graph_builders import EXTENT, load, node

KNOWN = {
    "load_collection",
    "save_result",
    "reduce_dimension",
    "max",
    "add",
    "ndvi",
    "filter_bbox",
    "array_element",
    "lte",
}
COLLECTIONS = {"S2"}


def reducer(*, result: bool = True, **nodes: dict[str, Any]) -> dict[str, Any]:
    return {"process_graph": nodes or {"m": node("max", result, data={"from_parameter": "data"})}}


def graph() -> dict[str, Any]:
    return {
        "lc": load(bands=["B04", "B08"]),
        "nd": node("ndvi", data={"from_node": "lc"}),
        "rd": node("reduce_dimension", data={"from_node": "nd"}, dimension="t", reducer=reducer()),
        "sr": node("save_result", True, data={"from_node": "rd"}, format="GTiff"),
    }


def problems(process_graph: Any, collections: set[str] | None = COLLECTIONS) -> list[OpenEOError]:
    return validate_process_graph(process_graph, known_processes=KNOWN, collections=collections)


def one(errors: list[OpenEOError], kind: type[OpenEOError], *words: str) -> OpenEOError:
    matching = [e for e in errors if isinstance(e, kind)]
    assert len(matching) == 1, errors
    for word in words:
        assert word in matching[0].message, (word, matching[0].message)
    return matching[0]


# --- specs ----------------------------------------------------------------------------------------


def test_specs_load_from_the_installed_package() -> None:
    assert {"ndvi", "load_collection", "save_result"} <= spec_ids()
    assert process_spec("ndvi")["id"] == "ndvi"
    assert required_parameters("save_result") == ["data", "format"]
    copy = process_spec("add")
    copy["id"] = "changed"
    assert process_spec("add")["id"] == "add"
    with pytest.raises(KeyError):
        process_spec("no_such_process")


# --- validation -----------------------------------------------------------------------------------


def test_valid_graph_has_no_problems() -> None:
    assert problems(graph()) == []


@pytest.mark.parametrize("empty", [None, {}, [], "x"])
def test_missing_graph(empty: Any) -> None:
    assert [type(e) for e in problems(empty)] == [ProcessGraphMissing]


def test_malformed_nodes_are_named() -> None:
    g = graph() | {"bad": "not a node", "noid": {"arguments": {}}, "noargs": {"process_id": "add"}}
    errors = problems(g)
    assert len(errors) == 3 and all(isinstance(e, ProcessGraphInvalid) for e in errors)
    messages = " | ".join(e.message for e in errors)
    assert "Node 'bad' is not an object" in messages
    assert "Node 'noid' has no process_id" in messages
    assert "Node 'noargs' has no arguments object" in messages


def test_result_node_count() -> None:
    none = graph()
    none["sr"]["result"] = False
    one(problems(none), ProcessGraphInvalid, "exactly one result node, found 0")
    two = graph()
    two["rd"]["result"] = True
    one(problems(two), ProcessGraphInvalid, "found 2", "rd", "sr")
    in_callback = graph()
    in_callback["rd"]["arguments"]["reducer"] = reducer(result=False)
    one(problems(in_callback), ProcessGraphInvalid, "'reducer' of node 'rd'", "found 0")


def test_reference_to_missing_node_names_both() -> None:
    g = graph()
    g["nd"]["arguments"]["data"] = {"from_node": "ghost"}
    one(problems(g), ProcessGraphInvalid, "Node 'nd'", "'ghost'")


def test_cycle() -> None:
    g = graph()
    g["lc"] = node("add", x={"from_node": "rd"}, y=1)
    error = one(problems(g), ProcessGraphInvalid, "cycle")
    assert "(each node uses the next): lc -> rd -> nd -> lc" in error.message


def test_unknown_process_also_inside_callbacks() -> None:
    g = graph()
    g["rd"]["arguments"]["reducer"] = reducer(m=node("mode", True, data={"from_parameter": "data"}))
    g["x"] = node("frobnicate")
    errors = problems(g)
    unsupported = [e for e in errors if isinstance(e, ProcessUnsupported)]
    assert len(unsupported) == 2
    text = " | ".join(e.message for e in unsupported)
    assert "Node 'x'" in text and "'frobnicate'" in text
    assert "Node 'm' (in 'reducer' of node 'rd')" in text and "'mode'" in text


def test_unknown_namespace() -> None:
    g = graph()
    g["nd"]["namespace"] = "https://example.com/udp.json"
    one(problems(g), ProcessUnsupported, "Node 'nd'", "example.com")


def test_unknown_collection() -> None:
    g = graph()
    g["lc"] = load("NOPE")
    error = one(problems(g), CollectionNotFound, "Node 'lc'", "'NOPE'")
    assert error.status == 404
    assert problems(g, collections=None) == []


def test_missing_and_unknown_parameters() -> None:
    g = graph()
    del g["sr"]["arguments"]["format"]
    g["nd"]["arguments"]["colour"] = "green"
    errors = problems(g)
    one(errors, ProcessParameterRequired, "Node 'sr'", "'format'")
    one(errors, ProcessParameterUnsupported, "Node 'nd'", "'colour'")
    assert len(errors) == 2


def test_all_problems_at_once() -> None:
    g = graph()
    g["lc"] = load("NOPE")
    g["x"] = node("frobnicate", y={"from_node": "ghost"})
    kinds = {type(e) for e in problems(g)}
    assert kinds == {CollectionNotFound, ProcessUnsupported, ProcessGraphInvalid}


def test_properties_callbacks_are_validated() -> None:
    cloud = {"process_graph": {"c": node("lte", True, x={"from_parameter": "value"}, y=20)}}
    g = graph()
    g["lc"] = load(properties={"eo:cloud_cover": cloud})
    assert problems(g) == []
    cloud["process_graph"]["c"]["process_id"] = "lessthan"
    one(problems(g), ProcessUnsupported, "'properties.eo:cloud_cover' of node 'lc'")


# --- compile_plan ---------------------------------------------------------------------------------


def compile_(process: Any, **kwargs: Any) -> Plan:
    return compile_plan(process, known_processes=KNOWN, collections=COLLECTIONS, **kwargs)


def test_plan_from_bare_graph_and_process_object() -> None:
    plan = compile_(graph())
    assert plan.result_node == "sr"
    assert plan.sources == [
        Source(
            node_id="lc",
            process_id="load_collection",
            collection_id="S2",
            spatial_extent=EXTENT,
            temporal_extent=["2021-06-01", "2021-07-01"],
            bands=["B04", "B08"],
        )
    ]
    assert plan.output == Output(node_id="sr", format="GTiff", options={})
    assert compile_({"process_graph": graph()}) == plan
    assert Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_plan_from_the_python_client() -> None:
    cube = DataCube.load_collection(
        "S2",
        connection=None,
        spatial_extent=EXTENT,
        temporal_extent=["2021-06-01", "2021-07-01"],
        bands=["B04", "B08"],
        fetch_metadata=False,
    )
    process = cube.ndvi().max_time().save_result(format="netCDF").to_json()
    plan = compile_(json.loads(process))
    assert [s.collection_id for s in plan.sources] == ["S2"]
    assert plan.output is not None and plan.output.format == "netCDF"


def test_plan_without_save_result() -> None:
    g = graph()
    del g["sr"]
    g["rd"]["result"] = True
    plan = compile_(g)
    assert plan.output is None and plan.result_node == "rd"


def test_first_error_is_raised_alone_and_several_are_combined() -> None:
    g = graph()
    g["lc"] = load("NOPE")
    with pytest.raises(CollectionNotFound, match="Node 'lc'"):
        compile_(g)
    g["x"] = node("frobnicate")
    with pytest.raises(ProcessGraphInvalid, match="2 problems") as error:
        compile_(g)
    assert "[CollectionNotFound]" in error.value.message
    assert "[ProcessUnsupported]" in error.value.message
    with pytest.raises(ProcessGraphMissing):
        compile_({"process_graph": None})


def test_parameters_are_bound_from_arguments_and_defaults() -> None:
    g = graph()
    g["lc"]["arguments"]["temporal_extent"] = {"from_parameter": "period"}
    g["sr"]["arguments"]["format"] = {"from_parameter": "fmt"}
    process = {
        "parameters": [{"name": "period"}, {"name": "fmt", "default": "GTiff"}],
        "process_graph": g,
    }
    plan = compile_(process, arguments={"period": ["2022-01-01", "2022-02-01"]})
    assert plan.sources[0].temporal_extent == ["2022-01-01", "2022-02-01"]
    assert plan.process_graph["lc"]["arguments"]["temporal_extent"] == ["2022-01-01", "2022-02-01"]
    assert plan.output is not None and plan.output.format == "GTiff"
    # callbacks keep their own parameter references
    reducer_graph = plan.process_graph["rd"]["arguments"]["reducer"]["process_graph"]
    assert reducer_graph["m"]["arguments"]["data"] == {"from_parameter": "data"}
    with pytest.raises(ProcessGraphInvalid, match=r"Node 'lc'.*'period'"):
        compile_(process)
    g["lc"]["arguments"]["id"] = {"from_parameter": "collection"}
    process["parameters"].append({"name": "collection", "default": "NOPE"})
    with pytest.raises(CollectionNotFound, match=r"Node 'lc'.*'NOPE'"):
        compile_(process, arguments={"period": None})


def test_source_arguments_must_be_static() -> None:
    g = graph()
    g["bbox"] = node("add", x=1, y=2)
    g["lc"]["arguments"]["spatial_extent"] = {"west": {"from_node": "bbox"}}
    with pytest.raises(ProcessGraphInvalid, match=r"Node 'lc'.*spatial_extent"):
        compile_(g)
    g = graph()
    g["lc"]["arguments"]["bands"] = "B04"
    with pytest.raises(ProcessParameterInvalid, match=r"Node 'lc'.*bands"):
        compile_(g)


def test_several_save_results_are_unsupported() -> None:
    g = graph()
    g["sr2"] = node("save_result", data={"from_node": "nd"}, format="netCDF")
    with pytest.raises(FeatureUnsupported, match=r"'sr'.*'sr2'"):
        compile_(g)
