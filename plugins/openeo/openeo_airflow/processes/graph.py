"""The process graph evaluator.

``evaluate`` computes the value of a graph's result node. Only nodes the result depends on are
evaluated, each at most once. Arguments are resolved recursively: ``{"from_node": id}`` is the
value of that node, ``{"from_parameter": name}`` a parameter of the (child) process graph, and
``{"process_graph": {...}}`` becomes a ``Callback`` the process calls with its parameters.

Callbacks run vectorised: ``reduce_dimension`` calls its reducer once with ``data`` bound to a
``LabeledArray`` (the whole cube, seen along the reduced dimension), ``apply`` calls its process
once with ``x`` bound to the whole cube.

Processes are found by namespace (openEO API 1.2): ``namespace`` missing or ``null`` looks in
the backend's processes first, then asks the ``resolver`` for a user-defined process of that id;
``"backend"`` only looks in the backend's processes; ``"user"`` and any other namespace (a URL,
a provider's name) only ask the resolver. The resolver returns an openEO process object
(``{"process_graph": ..., "parameters": [...]}``) or ``None``; a user-defined process runs in its
own scope (its parameters, with their defaults), and may call other user-defined processes.

Errors: an unknown process raises ``ProcessUnsupported``; openEO errors raised by a process keep
their class and get the node named in their message; any other exception becomes ``Internal``
naming the node.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from openeo_airflow.compiler.compile import split_process
from openeo_airflow.compiler.validate import node_references
from openeo_airflow.core.errors import (
    Internal,
    OpenEOError,
    ProcessGraphInvalid,
    ProcessGraphMissing,
    ProcessParameterRequired,
    ProcessParameterUnsupported,
    ProcessUnsupported,
)

from . import registry

Hook = Callable[[dict[str, Any], str], Any]
Resolver = Callable[[str, str | None], Mapping[str, Any] | None]

BACKEND_NAMESPACES = (None, "backend")
MAX_PROCESS_DEPTH = 32


@dataclass(frozen=True)
class Context:
    """What every (child) graph of one evaluation shares: hooks by process id, the
    user-defined process resolver, and how deep user-defined processes are nested."""

    hooks: Mapping[str, Hook] = field(default_factory=dict)
    resolver: Resolver | None = None
    depth: int = 0


def evaluate(
    process_graph: dict[str, Any],
    *,
    arguments: dict[str, Any] | None = None,
    hooks: Mapping[str, Hook] | None = None,
    node_hooks: Mapping[str, Hook] | None = None,
    resolver: Resolver | None = None,
) -> Any:
    """Evaluate a process graph and return the value of its result node.

    ``process_graph`` is a flat graph ``{node_id: node}`` or an openEO process object
    ``{"process_graph": ..., "parameters": [...]}`` whose parameter defaults apply.
    ``arguments`` gives values for the graph's parameters (``from_parameter``).
    ``hooks`` replace processes by id with ``hook(resolved_arguments, node_id)``: the engine
    plugs in ``load_collection`` (loading or reading the intermediate store) and
    ``save_result``. ``node_hooks`` replace single nodes of the top-level graph by id (the
    tiled evaluation gives each tile its part of a source this way). ``resolver`` looks up
    user-defined processes: ``resolver(process_id, namespace)`` returns a process object or
    ``None`` (see the module docstring).
    """
    graph, scope = split_process(process_graph)
    scope.update(arguments or {})
    context = Context(dict(hooks or {}), resolver)
    return _Evaluation(graph, scope, context, dict(node_hooks or {})).result()


@dataclass
class Callback:
    """A child process graph given as an argument (a reducer, an ``apply`` process...).

    Call it with the callback's parameters, e.g. ``reducer(data=..., context=...)``. Parameters
    of the enclosing graph stay visible inside it. ``process_graph`` is the raw JSON.
    """

    process_graph: dict[str, Any]
    scope: Mapping[str, Any] = field(default_factory=dict)
    context: Context = field(default_factory=Context)
    parent_node: str = ""

    def __call__(self, **parameters: Any) -> Any:
        scope = {**self.scope, **parameters}
        return _Evaluation(self.process_graph, scope, self.context).result()


class _Evaluation:
    """One evaluation of one (child) process graph.

    Node values are memoised until their last consumer has been computed, then dropped, so
    intermediate cubes do not pile up in memory along a long chain of processes.
    """

    def __init__(
        self,
        graph: dict[str, Any],
        scope: Mapping[str, Any],
        context: Context,
        node_hooks: Mapping[str, Hook] | None = None,
    ):
        self.graph = graph
        self.scope = scope
        self.context = context
        self.node_hooks = node_hooks or {}
        self.values: dict[str, Any] = {}
        self.active: set[str] = set()
        self.consumers: Counter[str] = Counter()

    def result(self) -> Any:
        if not isinstance(self.graph, dict) or not self.graph:
            raise ProcessGraphMissing()
        results = [
            node_id
            for node_id, node in self.graph.items()
            if isinstance(node, dict) and node.get("result") is True
        ]
        if len(results) != 1:
            raise ProcessGraphInvalid(
                f"A process graph needs exactly one result node, found {len(results)}"
                + (f": {', '.join(results)}" if results else "")
            )
        self.consumers = self._count_consumers(results[0])
        return self.node(results[0], referrer=None)

    def _count_consumers(self, result_id: str) -> Counter[str]:
        """How often each node is referenced by the nodes the result depends on."""
        counts: Counter[str] = Counter()
        seen: set[str] = set()
        stack = [result_id]
        while stack:
            node_id = stack.pop()
            node = self.graph.get(node_id)
            if node_id in seen or not isinstance(node, dict):
                continue
            seen.add(node_id)
            for target in node_references(node.get("arguments") or {}):
                counts[target] += 1
                stack.append(target)
        return counts

    def _release(self, arguments: Any) -> None:
        for target in node_references(arguments):
            self.consumers[target] -= 1
            if self.consumers[target] <= 0:
                self.values.pop(target, None)

    def node(self, node_id: Any, *, referrer: str | None) -> Any:
        if node_id in self.values:
            return self.values[node_id]
        node = self.graph.get(node_id) if isinstance(node_id, str) else None
        if not isinstance(node, dict):
            where = f"Node '{referrer}' refers" if referrer else "The result refers"
            raise ProcessGraphInvalid(f"{where} to node '{node_id}', which does not exist")
        if node_id in self.active:
            raise ProcessGraphInvalid(f"Node '{node_id}' is part of a cycle")
        self.active.add(node_id)
        try:
            process_id = node.get("process_id")
            if not isinstance(process_id, str):
                raise ProcessGraphInvalid(f"Node '{node_id}' has no valid process_id")
            args = self.resolve(node.get("arguments") or {}, node_id)
            value = self.call(node_id, process_id, node.get("namespace"), args)
        finally:
            self.active.discard(node_id)
        del args
        self._release(node.get("arguments") or {})
        self.values[node_id] = value
        return value

    def resolve(self, value: Any, node_id: str) -> Any:
        if isinstance(value, list):
            return [self.resolve(v, node_id) for v in value]
        if not isinstance(value, dict):
            return value
        if isinstance(value.get("from_node"), str):
            return self.node(value["from_node"], referrer=node_id)
        if isinstance(value.get("from_parameter"), str):
            return self.parameter(value["from_parameter"], node_id)
        if isinstance(value.get("process_graph"), dict):
            return Callback(value["process_graph"], self.scope, self.context, node_id)
        return {k: self.resolve(v, node_id) for k, v in value.items()}

    def parameter(self, name: str, node_id: str) -> Any:
        if name not in self.scope:
            raise ProcessGraphInvalid(
                f"Node '{node_id}' refers to parameter '{name}', which is not defined here"
                f" (available: {', '.join(sorted(self.scope)) or 'none'})"
            )
        return self.scope[name]

    def call(self, node_id: str, process_id: str, namespace: Any, args: dict[str, Any]) -> Any:
        label = f"Node '{node_id}' ({process_id})"
        try:
            return self._run(node_id, process_id, namespace, args, label)
        except OpenEOError as err:
            named = _name_node(err, label)
            if named is err:
                raise
            raise named from err
        except Exception as exc:
            raise Internal(f"{label}: {type(exc).__name__}: {exc}") from exc

    def _run(
        self, node_id: str, process_id: str, namespace: Any, args: dict[str, Any], label: str
    ) -> Any:
        node_hook = self.node_hooks.get(node_id)
        if node_hook is not None:
            return node_hook(args, node_id)
        hook = self.context.hooks.get(process_id)
        if hook is not None and namespace in BACKEND_NAMESPACES:
            return hook(args, node_id)
        fn = registry.get(process_id) if namespace in BACKEND_NAMESPACES else None
        if fn is not None:
            _check_arguments(fn, process_id, args)
            return fn(**args)
        definition = self._user_process(process_id, namespace)
        if definition is None:
            ns = namespace or "backend"
            raise ProcessUnsupported(
                f"{label}: process '{process_id}' is not available in namespace '{ns}'",
                process=process_id,
                namespace=ns,
            )
        return self._run_user_process(process_id, definition, args)

    def _user_process(self, process_id: str, namespace: Any) -> Mapping[str, Any] | None:
        if self.context.resolver is None or namespace == "backend":
            return None
        return self.context.resolver(process_id, namespace)

    def _run_user_process(
        self, process_id: str, definition: Mapping[str, Any], args: dict[str, Any]
    ) -> Any:
        if self.context.depth >= MAX_PROCESS_DEPTH:
            raise ProcessGraphInvalid(
                f"User-defined process '{process_id}' nests more than {MAX_PROCESS_DEPTH}"
                " levels deep (a recursive definition?)"
            )
        graph, defaults = split_process(definition)
        declared = [p for p in definition.get("parameters") or [] if isinstance(p, dict)]
        names = {p.get("name") for p in declared}
        for name in args:
            if name not in names:
                raise ProcessParameterUnsupported(process=process_id, parameter=name)
        for parameter in declared:
            wanted = str(parameter.get("name"))
            if wanted not in args and "default" not in parameter and not parameter.get("optional"):
                raise ProcessParameterRequired(process=process_id, parameter=wanted)
        scope = {**defaults, **args}
        for parameter in declared:  # optional parameters without a default are null
            scope.setdefault(str(parameter.get("name")), None)
        inner = Context(self.context.hooks, self.context.resolver, self.context.depth + 1)
        return _Evaluation(graph, scope, inner).result()


def _name_node(err: OpenEOError, label: str) -> OpenEOError:
    if err.message.startswith("Node '"):
        return err
    return type(err)(f"{label}: {err.message}", **err.params)


@cache
def _signature(fn: registry.ProcessFunction) -> inspect.Signature:
    return inspect.signature(fn)


def _check_arguments(fn: registry.ProcessFunction, process_id: str, args: dict[str, Any]) -> None:
    params = _signature(fn).parameters
    for name in args:
        if name not in params:
            raise ProcessParameterUnsupported(process=process_id, parameter=name)
    for name, param in params.items():
        if param.default is inspect.Parameter.empty and name not in args:
            raise ProcessParameterRequired(process=process_id, parameter=name)
