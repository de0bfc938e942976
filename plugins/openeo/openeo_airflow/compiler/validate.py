"""Static validation of an openEO process: every problem at once, each naming its node.

``validate_process(process, known_processes=..., collections=..., user_processes=...)`` checks a
process object (``{"process_graph": ..., "parameters": [...]}``) or a bare process graph, and
recursively every child process graph (callback) in its arguments:

- structure: nodes are objects with ``process_id`` and ``arguments``, exactly one result node,
  ``from_node`` references to existing nodes, no cycles;
- processes: known in their namespace (``null``: the backend's, then the user's; ``backend``;
  ``user``), required parameters present, no unknown parameters;
- arguments: of the type the parameter's schema allows (a literal against the schema, a
  ``from_node`` by the referenced process's ``returns`` schema, a ``from_parameter`` by the
  parameter's schema; a process graph only where a process is expected);
- parameters: every ``from_parameter`` names a parameter of the process (top level) or of the
  callback and its enclosing graphs;
- data: collections exist, band names exist in the collection (``load_collection``,
  ``filter_bands``, ``ndvi``, ``array_element`` labels over ``bands``), as far as the bands can
  be followed through the graph (``bands.py``).

``known_processes`` is either a collection of process ids (their parameters checked against the
official specs) or a mapping ``{id: spec}`` (e.g. ``processes.registry.specs()``, which
includes our additions). ``collections`` is ``None`` (not checked), a collection of ids, or a
mapping ``{id: band labels or {label: common name}}``. ``user_processes`` maps the ids of the
user's stored processes to their process objects. ``check_url`` (optional, injected because
this layer does no I/O) is called with each literal ``load_stac`` URL and raises an
``OpenEOError`` when the URL cannot be loaded; its reason is reported against the node.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from openeo_airflow.core.errors import (
    CollectionNotFound,
    OpenEOError,
    ProcessGraphInvalid,
    ProcessGraphMissing,
    ProcessParameterInvalid,
    ProcessParameterRequired,
    ProcessParameterUnsupported,
    ProcessUnsupported,
)

from . import bands as band_flow
from .schemas import (
    accepts_process_graph,
    alternatives,
    contains_reference,
    describe,
    literal_matches,
    schemas_compatible,
    types_of,
)
from .specs import process_spec, spec_ids
from .structure import (
    Scope,
    child_graphs,
    cycle_errors,
    node_references,
    parameter_references,
    reference_errors,
    result_node_errors,
    well_formed_nodes,
)

__all__ = ["node_references", "validate_process", "validate_process_graph"]

BACKEND_NAMESPACES = (None, "backend")
USER_NAMESPACE = "user"
KnownProcesses = Collection[str] | Mapping[str, Mapping[str, Any]]
Collections = Collection[str] | Mapping[str, Any] | None
CheckUrl = Callable[[str], None]


def validate_process(
    process: Any,
    *,
    known_processes: KnownProcesses,
    collections: Collections = None,
    user_processes: Mapping[str, Mapping[str, Any]] | None = None,
    arguments: Collection[str] = (),
    check_url: CheckUrl | None = None,
) -> list[OpenEOError]:
    """All problems of an openEO process object or bare process graph; empty if valid.

    ``arguments`` names parameters that will be given values (besides the declared ones).
    """
    if not isinstance(process, Mapping) or not process:
        return [ProcessGraphMissing()]
    if "process_graph" in process:
        graph = process.get("process_graph")
        declared = [p for p in process.get("parameters") or [] if isinstance(p, Mapping)]
        parameters = {str(p.get("name")): p.get("schema") for p in declared}
    else:
        graph, parameters = process, {}
    parameters.update({name: parameters.get(name) for name in arguments})
    return validate_process_graph(
        graph,
        known_processes=known_processes,
        collections=collections,
        user_processes=user_processes,
        parameters=parameters,
        check_url=check_url,
    )


def validate_process_graph(
    process_graph: Any,
    *,
    known_processes: KnownProcesses,
    collections: Collections = None,
    user_processes: Mapping[str, Mapping[str, Any]] | None = None,
    parameters: Mapping[str, Any] | None = None,
    check_url: CheckUrl | None = None,
) -> list[OpenEOError]:
    """All problems of a flat ``{node_id: node}`` graph; empty if valid.

    ``parameters`` (name -> schema) are the parameters top-level nodes may refer to; ``None``
    skips checking top-level ``from_parameter`` references.
    """
    if not isinstance(process_graph, dict) or not process_graph:
        return [ProcessGraphMissing()]
    checker = _Checker(known_processes, collections, user_processes or {}, check_url)
    top = Scope(parameters=dict(parameters) if parameters is not None else None)
    checker.graph(process_graph, top)
    return checker.errors


def _collection_ids(collections: Collections) -> set[str] | None:
    return None if collections is None else {str(c) for c in collections}


class _Checker:
    def __init__(
        self,
        known: KnownProcesses,
        collections: Collections,
        user_processes: Mapping[str, Mapping[str, Any]],
        check_url: CheckUrl | None = None,
    ) -> None:
        self.check_url = check_url
        self.checked_urls: dict[str, OpenEOError | None] = {}  # one look per URL
        self.specs = known if isinstance(known, Mapping) else None
        self.known = set(known)
        self.collections = _collection_ids(collections)
        self.band_config = collections if isinstance(collections, Mapping) else {}
        self.user = user_processes
        self.errors: list[OpenEOError] = []

    # --- graphs ----------------------------------------------------------------------------------

    def graph(self, graph: Any, scope: Scope) -> None:
        if not isinstance(graph, dict) or not graph:
            self.errors.append(ProcessGraphInvalid(f"{scope.graph()} is empty or not an object"))
            return
        nodes, errors = well_formed_nodes(graph, scope)
        self.errors += errors
        self.errors += result_node_errors(graph, scope)
        self.errors += reference_errors(nodes, graph, scope)
        self.errors += cycle_errors(nodes, scope)
        flow = _BandFlow(nodes, self.band_config) if not scope.parent_node else None
        for node_id, node in nodes.items():
            spec = self.process(node_id, node, scope, nodes)
            params = {p.get("name"): p for p in (spec or {}).get("parameters") or []}
            for name, value in node["arguments"].items():
                schema = (params.get(name) or {}).get("schema")
                for argument, child in child_graphs(value, name):
                    child_scope = _callback_scope(node_id, argument, schema, scope)
                    self.graph(child, child_scope)
            if flow is not None and spec is not None:
                self.errors += flow.check(node_id, node, scope)

    # --- processes -------------------------------------------------------------------------------

    def definition(self, process_id: str, namespace: Any) -> Mapping[str, Any] | None:
        """The spec (backend) or process object (user) a node refers to, ``None`` if unknown."""
        if namespace in BACKEND_NAMESPACES and process_id in self.known:
            if self.specs is not None:
                return self.specs[process_id]
            return process_spec(process_id) if process_id in spec_ids() else {}
        if namespace in (None, USER_NAMESPACE):
            return self.user.get(process_id)
        return None

    def process(
        self, node_id: str, node: dict[str, Any], scope: Scope, nodes: dict[str, Any]
    ) -> Mapping[str, Any] | None:
        process_id, namespace = node["process_id"], node.get("namespace")
        where = f"{scope.node(node_id)} ({process_id})"
        spec = self.definition(process_id, namespace)
        if spec is None:
            ns = namespace or "backend"
            self.errors.append(
                ProcessUnsupported(
                    f"{scope.node(node_id)}: process '{process_id}' is not available in"
                    f" namespace '{ns}'",
                    process=process_id,
                    namespace=ns,
                )
            )
            return None
        arguments = node["arguments"]
        if "parameters" in spec:
            self.parameters(where, process_id, spec["parameters"], arguments)
            declared = {p.get("name"): p.get("schema") for p in spec["parameters"]}
            for name, value in arguments.items():
                if name in declared:
                    self.argument(where, process_id, name, declared[name], value, scope, nodes)
        for name, value in arguments.items():
            self.unresolved(where, name, value, scope)
        if process_id == "load_collection":
            self.collection(where, arguments.get("id"))
        if process_id == "load_stac" and isinstance(arguments.get("url"), str):
            self.stac_url(where, arguments["url"])
        return spec

    def parameters(
        self, where: str, process_id: str, declared: list[Any], arguments: dict[str, Any]
    ) -> None:
        for parameter in declared:
            name = parameter.get("name")
            if (
                name not in arguments
                and not parameter.get("optional", False)
                and "default" not in parameter
            ):
                self.errors.append(
                    ProcessParameterRequired(
                        f"{where}: parameter '{name}' is required",
                        process=process_id,
                        parameter=name,
                    )
                )
        allowed = [p.get("name") for p in declared]
        for name in arguments:
            if name not in allowed:
                self.errors.append(
                    ProcessParameterUnsupported(
                        f"{where}: unknown parameter '{name}'"
                        f" (parameters: {', '.join(map(str, allowed))})",
                        process=process_id,
                        parameter=name,
                    )
                )

    # --- arguments -------------------------------------------------------------------------------

    def invalid(self, where: str, process_id: str, name: str, reason: str) -> None:
        self.errors.append(
            ProcessParameterInvalid(
                f"{where}: argument '{name}' is invalid: {reason}",
                process=process_id,
                parameter=name,
                reason=reason,
            )
        )

    def argument(
        self,
        where: str,
        process_id: str,
        name: str,
        schema: Any,
        value: Any,
        scope: Scope,
        nodes: dict[str, Any],
    ) -> None:
        if schema is None:
            return
        expected = describe(schema)
        if isinstance(value, dict) and "process_graph" in value:
            if accepts_process_graph(schema) is None:
                self.invalid(where, process_id, name, f"expected {expected}, got a process")
            return
        if isinstance(value, dict) and isinstance(value.get("from_node"), str):
            target = nodes.get(value["from_node"])
            produced = self.returns(target) if target is not None else None
            if produced is not None and not schemas_compatible(produced, schema):
                source = f"node '{value['from_node']}' ({target['process_id']})"  # type: ignore[index]
                self.invalid(
                    where,
                    process_id,
                    name,
                    f"expected {expected}, but {source} returns {describe(produced)}",
                )
            return
        if isinstance(value, dict) and isinstance(value.get("from_parameter"), str):
            known = scope.parameters or {}
            produced = known.get(value["from_parameter"])
            if produced is not None and not schemas_compatible(produced, schema):
                self.invalid(
                    where,
                    process_id,
                    name,
                    f"expected {expected}, but parameter '{value['from_parameter']}' is"
                    f" {describe(produced)}",
                )
            return
        if contains_reference(value):
            if not _container_allowed(value, schema):
                kind = "an array" if isinstance(value, list) else "an object"
                self.invalid(where, process_id, name, f"expected {expected}, got {kind}")
            return
        if not literal_matches(value, schema):
            self.invalid(where, process_id, name, f"expected {expected}, got {_show(value)}")

    def returns(self, node: Mapping[str, Any]) -> Any:
        """The ``returns`` schema of a node's process (``None``: unknown, anything)."""
        spec = self.definition(node["process_id"], node.get("namespace"))
        returns = (spec or {}).get("returns")
        return returns.get("schema") if isinstance(returns, Mapping) else None

    def unresolved(self, where: str, name: str, value: Any, scope: Scope) -> None:
        if scope.parameters is None:
            return
        for reference in parameter_references(value):
            if reference not in scope.parameters:
                available = ", ".join(sorted(scope.parameters)) or "none"
                self.errors.append(
                    ProcessGraphInvalid(
                        f"{where}: argument '{name}' refers to parameter '{reference}', which is"
                        f" not defined here (available: {available})"
                    )
                )

    def collection(self, where: str, collection_id: Any) -> None:
        if self.collections is None or not isinstance(collection_id, str):
            return
        if collection_id not in self.collections:
            self.errors.append(
                CollectionNotFound(
                    f"{where}: collection '{collection_id}' does not exist",
                    identifier=collection_id,
                )
            )

    def stac_url(self, where: str, url: str) -> None:
        if self.check_url is None:
            return
        if url not in self.checked_urls:
            try:
                self.check_url(url)
                self.checked_urls[url] = None
            except OpenEOError as raised:
                self.checked_urls[url] = raised
        problem = self.checked_urls[url]
        if problem is None:
            return
        if not isinstance(problem, ProcessParameterInvalid):
            self.errors.append(type(problem)(f"{where}: {problem.message}", **problem.params))
            return
        self.invalid(where, "load_stac", "url", str(problem.params.get("reason", problem.message)))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _container_allowed(value: Any, schema: Any) -> bool:
    kind = "array" if isinstance(value, list) else "object"
    for alternative in alternatives(schema):
        kinds = types_of(alternative)
        if kinds is None or kind in kinds:
            return True
    return False


def _callback_scope(node_id: str, argument: str, schema: Any, parent: Scope) -> Scope:
    """A callback sees its own parameters (from the parameter's schema) and its parents'."""
    callback = accepts_process_graph(schema) if schema is not None else None
    if (
        callback is None
        or not isinstance(callback.get("parameters"), list)
        or parent.parameters is None
    ):
        return Scope(node_id, argument, None)  # unknown: do not check references
    own = {str(p.get("name")): p.get("schema") for p in callback["parameters"]}
    return Scope(node_id, argument, {**parent.parameters, **own})


class _BandFlow:
    """Band names, checked where they can be known (top-level graph only)."""

    def __init__(self, nodes: dict[str, Any], config: Mapping[str, Any]) -> None:
        self.nodes, self.config = nodes, config
        self.memo: dict[str, band_flow.Bands | None] = {}
        self.active: set[str] = set()

    def of_value(self, value: Any) -> band_flow.Bands | None:
        if isinstance(value, dict) and isinstance(value.get("from_node"), str):
            return self.of_node(value["from_node"])
        return None

    def of_node(self, node_id: str) -> band_flow.Bands | None:
        if node_id in self.memo:
            return self.memo[node_id]
        node = self.nodes.get(node_id)
        if node is None or node_id in self.active:
            return None
        self.active.add(node_id)
        result = band_flow.propagate(
            node["process_id"], node["arguments"], self.of_value, self.load
        )
        self.active.discard(node_id)
        self.memo[node_id] = result
        return result

    def load(self, arguments: Mapping[str, Any]) -> band_flow.Bands | None:
        collection_id = arguments.get("id")
        if not isinstance(collection_id, str) or collection_id not in self.config:
            return None
        bands = band_flow.collection_bands(self.config[collection_id])
        wanted = arguments.get("bands")
        if bands is None or not band_flow.is_literal_list(wanted):
            return bands
        chosen = [label for name in wanted for label in band_flow.select(bands, name)]
        return {label: bands[label] for label in dict.fromkeys(chosen)}

    def check(self, node_id: str, node: dict[str, Any], scope: Scope) -> list[OpenEOError]:
        process_id, args = node["process_id"], node["arguments"]
        where = f"{scope.node(node_id)} ({process_id})"
        if process_id == "load_collection":
            collection_id = args.get("id")
            available = (
                band_flow.collection_bands(self.config.get(collection_id))
                if isinstance(collection_id, str)
                else None
            )
            return _band_errors(
                where,
                process_id,
                "bands",
                args.get("bands"),
                available,
                f"collection '{collection_id}'",
            )
        data = self.of_value(args.get("data"))
        if data is None:
            return []
        if process_id == "filter_bands":
            return _band_errors(where, process_id, "bands", args.get("bands"), data, "the data")
        if process_id == "ndvi":
            return [
                e
                for name in ("nir", "red")
                if isinstance(args.get(name), str)
                for e in _band_errors(where, process_id, name, [args[name]], data, "the data")
            ]
        if (
            process_id in ("reduce_dimension", "apply_dimension")
            and args.get("dimension") == "bands"
        ):
            return self.labels_in_callback(node_id, args, data)
        return []

    def labels_in_callback(
        self, node_id: str, args: dict[str, Any], data: band_flow.Bands
    ) -> list[OpenEOError]:
        errors: list[OpenEOError] = []
        for argument, child in child_graphs({k: v for k, v in args.items() if k != "data"}, "arg"):
            if not isinstance(child, dict):
                continue
            for child_id, child_node in child.items():
                if (
                    not isinstance(child_node, dict)
                    or child_node.get("process_id") != "array_element"
                ):
                    continue
                child_args = child_node.get("arguments") or {}
                label = child_args.get("label")
                if child_args.get("data") == {"from_parameter": "data"} and isinstance(label, str):
                    scope = Scope(node_id, argument.removeprefix("arg."))
                    where = f"{scope.node(child_id)} (array_element)"
                    errors += _band_errors(
                        where, "array_element", "label", [label], data, "the data"
                    )
        return errors


def _band_errors(
    where: str,
    process_id: str,
    parameter: str,
    wanted: Any,
    available: band_flow.Bands | None,
    owner: str,
) -> list[OpenEOError]:
    if available is None or not band_flow.is_literal_list(wanted):
        return []
    valid = band_flow.names(available)
    return [
        ProcessParameterInvalid(
            f"{where}: band '{name}' is not a band of {owner} (bands: {', '.join(valid)})",
            process=process_id,
            parameter=parameter,
            reason=f"band '{name}' does not exist",
        )
        for name in wanted
        if not band_flow.select(available, name)
    ]
