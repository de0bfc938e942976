"""The shape of a process graph: nodes, references between them, result nodes and cycles.

Pure functions over the JSON; ``validate.py`` uses them for every (child) process graph and
the evaluator uses ``node_references`` to follow the data flow.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from openeo_airflow.core.errors import OpenEOError, ProcessGraphInvalid


@dataclass(frozen=True)
class Scope:
    """Where a (child) graph sits, for messages ('' at the top level), and which parameters
    (``from_parameter``) it may refer to: name -> schema; ``None`` when not known."""

    parent_node: str = ""
    parameter: str = ""
    parameters: dict[str, Any] | None = field(default=None, compare=False)

    def node(self, node_id: str) -> str:
        if not self.parent_node:
            return f"Node '{node_id}'"
        return f"Node '{node_id}' (in '{self.parameter}' of node '{self.parent_node}')"

    def graph(self) -> str:
        if not self.parent_node:
            return "The process graph"
        return f"The process graph in '{self.parameter}' of node '{self.parent_node}'"


def node_references(value: Any) -> Iterator[str]:
    """``from_node`` targets in an argument value (not inside child process graphs)."""
    if isinstance(value, list):
        for item in value:
            yield from node_references(item)
    elif isinstance(value, dict):
        if isinstance(value.get("from_node"), str):
            yield value["from_node"]
        elif "process_graph" not in value:
            for item in value.values():
                yield from node_references(item)


def parameter_references(value: Any) -> Iterator[str]:
    """``from_parameter`` names in an argument value (not inside child process graphs)."""
    if isinstance(value, list):
        for item in value:
            yield from parameter_references(item)
    elif isinstance(value, dict):
        if isinstance(value.get("from_parameter"), str):
            yield value["from_parameter"]
        elif "process_graph" not in value and "from_node" not in value:
            for item in value.values():
                yield from parameter_references(item)


def child_graphs(value: Any, name: str) -> Iterator[tuple[str, Any]]:
    """``(argument name, child process graph)`` pairs in an argument value."""
    if isinstance(value, list):
        for item in value:
            yield from child_graphs(item, name)
    elif isinstance(value, dict):
        if "process_graph" in value:
            yield name, value["process_graph"]
        elif "from_node" not in value and "from_parameter" not in value:
            for key, item in value.items():
                yield from child_graphs(item, f"{name}.{key}")


def well_formed_nodes(
    graph: dict[str, Any], scope: Scope
) -> tuple[dict[str, Any], list[OpenEOError]]:
    """The nodes that are objects with a ``process_id`` and ``arguments``, and the problems."""
    nodes: dict[str, Any] = {}
    errors: list[OpenEOError] = []
    for node_id, node in graph.items():
        where = scope.node(node_id)
        if not isinstance(node, dict):
            errors.append(ProcessGraphInvalid(f"{where} is not an object"))
            continue
        problems = []
        if not isinstance(node.get("process_id"), str) or not node.get("process_id"):
            problems.append("has no process_id")
        if not isinstance(node.get("arguments"), dict):
            problems.append("has no arguments object")
        errors.extend(ProcessGraphInvalid(f"{where} {problem}") for problem in problems)
        if not problems:
            nodes[node_id] = node
    return nodes, errors


def result_node_errors(graph: dict[str, Any], scope: Scope) -> list[OpenEOError]:
    results = [k for k, n in graph.items() if isinstance(n, dict) and n.get("result") is True]
    if len(results) == 1:
        return []
    found = f": {', '.join(results)}" if results else ""
    return [
        ProcessGraphInvalid(
            f"{scope.graph()} needs exactly one result node, found {len(results)}{found}"
        )
    ]


def reference_errors(
    nodes: dict[str, Any], graph: dict[str, Any], scope: Scope
) -> list[OpenEOError]:
    return [
        ProcessGraphInvalid(
            f"{scope.node(node_id)} refers to node '{target}', which does not exist"
        )
        for node_id, node in nodes.items()
        for target in node_references(node["arguments"])
        if target not in graph
    ]


def cycle_errors(nodes: dict[str, Any], scope: Scope) -> list[OpenEOError]:
    edges = {
        n: [t for t in node_references(node["arguments"]) if t in nodes]
        for n, node in nodes.items()
    }
    errors: list[OpenEOError] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in edges:
        if start in state:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(edges[start]))]
        path = [start]
        state[start] = 1
        while stack:
            node_id, targets = stack[-1]
            target = next(targets, None)
            if target is None:
                stack.pop()
                path.pop()
                state[node_id] = 2
            elif state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                errors.append(
                    ProcessGraphInvalid(
                        f"{scope.graph()} has a cycle (each node uses the next):"
                        f" {' -> '.join(cycle)}"
                    )
                )
            elif target not in state:
                state[target] = 1
                path.append(target)
                stack.append((target, iter(edges[target])))
    return errors
