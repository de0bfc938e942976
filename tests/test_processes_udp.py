"""User-defined processes and namespaces in the evaluator (the resolver hook)."""

from __future__ import annotations

from typing import Any

import pytest

from openeo_airflow.core.errors import (
    ProcessGraphInvalid,
    ProcessParameterRequired,
    ProcessParameterUnsupported,
    ProcessUnsupported,
)
from openeo_airflow.processes.graph import evaluate


def node(process_id: str, result: bool = False, **arguments: Any) -> dict[str, Any]:
    return {"process_id": process_id, "arguments": arguments, "result": result}


P = {"from_parameter": "p"}

# scale(x, factor=10) = x * factor; offset_scale(x) = scale(x) + 1 (a UDP calling a UDP)
USER: dict[str, dict[str, Any]] = {
    "scale": {
        "id": "scale",
        "parameters": [
            {"name": "x", "schema": {"type": "number"}},
            {"name": "factor", "schema": {"type": "number"}, "default": 10, "optional": True},
        ],
        "process_graph": {
            "m": node("multiply", True, x={"from_parameter": "x"}, y={"from_parameter": "factor"})
        },
    },
    "offset_scale": {
        "id": "offset_scale",
        "parameters": [{"name": "x", "schema": {"type": "number"}}],
        "process_graph": {
            "s": node("scale", x={"from_parameter": "x"}),
            "a": node("add", True, x={"from_node": "s"}, y=1),
        },
    },
    "add": {  # shadows the backend's add in the user namespace
        "id": "add",
        "parameters": [{"name": "x"}, {"name": "y"}],
        "process_graph": {"s": node("subtract", True, x={"from_parameter": "x"}, y=1)},
    },
    "loop": {"id": "loop", "parameters": [], "process_graph": {"l": node("loop", True)}},
    "peek": {  # refers to a parameter of its caller, which it must not see
        "id": "peek",
        "parameters": [],
        "process_graph": {"c": node("constant", True, x=P)},
    },
}
calls: list[tuple[str, Any]] = []


def resolver(process_id: str, namespace: str | None) -> dict[str, Any] | None:
    calls.append((process_id, namespace))
    if namespace in (None, "user"):
        return USER.get(process_id)
    if namespace == "https://example.org/processes":
        return USER.get(process_id)
    return None


def run(graph: dict[str, Any], **kwargs: Any) -> Any:
    return evaluate(graph, resolver=resolver, **kwargs)


def test_user_defined_processes_with_defaults_and_nesting() -> None:
    assert run({"n": node("scale", True, x=2)}) == 20
    assert run({"n": node("scale", True, x=2, factor=3)}) == 6
    assert run({"n": node("offset_scale", True, x=2)}) == 21


def test_namespaces() -> None:
    calls.clear()
    assert run({"n": node("add", True, x=2, y=5)}) == 7  # backend first: no resolver call
    assert calls == []
    assert run({"n": {**node("add", True, x=2, y=5), "namespace": "user"}}) == 1
    assert run({"n": {**node("add", True, x=2, y=5), "namespace": "backend"}}) == 7
    remote = {**node("scale", True, x=1), "namespace": "https://example.org/processes"}
    assert run({"n": remote}) == 10
    assert ("scale", "https://example.org/processes") in calls
    with pytest.raises(ProcessUnsupported, match="namespace 'backend'"):
        run({"n": {**node("scale", True, x=1), "namespace": "backend"}})
    with pytest.raises(ProcessUnsupported, match="namespace 'elsewhere'"):
        run({"n": {**node("scale", True, x=1), "namespace": "elsewhere"}})
    with pytest.raises(ProcessUnsupported):
        evaluate({"n": node("scale", True, x=1)})  # no resolver: unknown


def test_user_defined_process_errors() -> None:
    with pytest.raises(ProcessParameterRequired, match=r"Node 'n' \(scale\)"):
        run({"n": node("scale", True, factor=2)})
    with pytest.raises(ProcessParameterUnsupported, match="bogus"):
        run({"n": node("scale", True, x=1, bogus=2)})
    with pytest.raises(ProcessGraphInvalid, match="recursive"):
        run({"n": node("loop", True)})
    with pytest.raises(ProcessGraphInvalid, match="parameter 'p'"):
        run({"n": node("peek", True)}, arguments={"p": 1})


def test_user_defined_process_inside_a_callback() -> None:
    reducer = {"process_graph": {"s": node("scale", True, x={"from_parameter": "x"})}}
    graph = {"a": node("array_apply", True, data=[1, 2], process=reducer)}
    assert run(graph) == [10, 20]
