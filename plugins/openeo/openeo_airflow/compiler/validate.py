"""Static validation of an openEO process graph: every problem at once, nothing raised.

Checked, for the graph and recursively for every child process graph (callback) in arguments:
structure (nodes are objects with ``process_id`` and ``arguments``), exactly one result node,
``from_node`` references to existing nodes, no cycles, known processes, known collections
in ``load_collection``, required parameters present and no unknown parameters (from the
official specs). Each message names the node (and, in a callback, the node holding it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from openeo_airflow.core.errors import (
    CollectionNotFound,
    OpenEOError,
    ProcessGraphInvalid,
    ProcessGraphMissing,
    ProcessParameterRequired,
    ProcessParameterUnsupported,
    ProcessUnsupported,
)

from .specs import parameter_names, required_parameters, spec_ids

BACKEND_NAMESPACES = (None, "backend")


def validate_process_graph(
    process_graph: Any,
    *,
    known_processes: Collection[str],
    collections: Collection[str] | None = None,
) -> list[OpenEOError]:
    """All problems of ``process_graph`` (a flat ``{node_id: node}`` graph); empty if valid.

    ``collections=None`` skips the collection check.
    """
    if not isinstance(process_graph, dict) or not process_graph:
        return [ProcessGraphMissing()]
    checker = _Checker(set(known_processes), None if collections is None else set(collections))
    checker.graph(process_graph, _Scope())
    return checker.errors


@dataclass(frozen=True)
class _Scope:
    """Where a (child) graph sits, for messages: '' at the top level."""

    parent_node: str = ""
    parameter: str = ""

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


class _Checker:
    def __init__(self, known: set[str], collections: set[str] | None) -> None:
        self.known = known
        self.collections = collections
        self.errors: list[OpenEOError] = []

    def graph(self, graph: Any, scope: _Scope) -> None:
        if not isinstance(graph, dict) or not graph:
            self.errors.append(ProcessGraphInvalid(f"{scope.graph()} is empty or not an object"))
            return
        nodes = {}
        for node_id, node in graph.items():
            if self.structure(node_id, node, scope):
                nodes[node_id] = node
        self.result_nodes(graph, scope)
        self.references(nodes, graph, scope)
        self.cycles(nodes, scope)
        for node_id, node in nodes.items():
            self.process(node_id, node, scope)
            for name, value in node["arguments"].items():
                for argument, child in child_graphs(value, name):
                    self.graph(child, _Scope(node_id, argument))

    def structure(self, node_id: str, node: Any, scope: _Scope) -> bool:
        where = scope.node(node_id)
        if not isinstance(node, dict):
            self.errors.append(ProcessGraphInvalid(f"{where} is not an object"))
            return False
        problems = []
        if not isinstance(node.get("process_id"), str) or not node.get("process_id"):
            problems.append("has no process_id")
        if not isinstance(node.get("arguments"), dict):
            problems.append("has no arguments object")
        for problem in problems:
            self.errors.append(ProcessGraphInvalid(f"{where} {problem}"))
        return not problems

    def result_nodes(self, graph: dict[str, Any], scope: _Scope) -> None:
        results = [k for k, n in graph.items() if isinstance(n, dict) and n.get("result") is True]
        if len(results) != 1:
            found = f": {', '.join(results)}" if results else ""
            self.errors.append(
                ProcessGraphInvalid(
                    f"{scope.graph()} needs exactly one result node, found {len(results)}{found}"
                )
            )

    def references(self, nodes: dict[str, Any], graph: dict[str, Any], scope: _Scope) -> None:
        for node_id, node in nodes.items():
            for target in node_references(node["arguments"]):
                if target not in graph:
                    self.errors.append(
                        ProcessGraphInvalid(
                            f"{scope.node(node_id)} refers to node '{target}', which does not exist"
                        )
                    )

    def cycles(self, nodes: dict[str, Any], scope: _Scope) -> None:
        edges = {
            n: [t for t in node_references(node["arguments"]) if t in nodes]
            for n, node in nodes.items()
        }
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
                    self.errors.append(
                        ProcessGraphInvalid(
                            f"{scope.graph()} has a cycle (each node uses the next):"
                            f" {' -> '.join(cycle)}"
                        )
                    )
                elif target not in state:
                    state[target] = 1
                    path.append(target)
                    stack.append((target, iter(edges[target])))

    def process(self, node_id: str, node: dict[str, Any], scope: _Scope) -> None:
        process_id = node["process_id"]
        namespace = node.get("namespace")
        where = scope.node(node_id)
        if process_id not in self.known or namespace not in BACKEND_NAMESPACES:
            ns = namespace or "backend"
            self.errors.append(
                ProcessUnsupported(
                    f"{where}: process '{process_id}' is not available in namespace '{ns}'",
                    process=process_id,
                    namespace=ns,
                )
            )
            return
        arguments = node["arguments"]
        if process_id in spec_ids():
            self.parameters(where, process_id, arguments)
        if process_id == "load_collection":
            self.collection(where, arguments.get("id"))

    def parameters(self, where: str, process_id: str, arguments: dict[str, Any]) -> None:
        for name in required_parameters(process_id):
            if name not in arguments:
                self.errors.append(
                    ProcessParameterRequired(
                        f"{where} ({process_id}): parameter '{name}' is required",
                        process=process_id,
                        parameter=name,
                    )
                )
        allowed = parameter_names(process_id)
        for name in arguments:
            if name not in allowed:
                self.errors.append(
                    ProcessParameterUnsupported(
                        f"{where} ({process_id}): unknown parameter '{name}'"
                        f" (parameters: {', '.join(allowed)})",
                        process=process_id,
                        parameter=name,
                    )
                )

    def collection(self, where: str, collection_id: Any) -> None:
        if self.collections is None or not isinstance(collection_id, str):
            return
        if collection_id not in self.collections:
            self.errors.append(
                CollectionNotFound(
                    f"{where} (load_collection): collection '{collection_id}' does not exist",
                    identifier=collection_id,
                )
            )
