"""``load_collection``'s ``properties`` filter: STAC search terms plus a local check.

The argument maps a metadata property to a callback process graph that receives the
property's value as parameter ``value`` and returns a boolean::

    {"eo:cloud_cover": {"process_graph": {"cc": {"process_id": "lte",
        "arguments": {"x": {"from_parameter": "value"}, "y": 50}, "result": true}}}}

Callbacks that are one comparison of ``value`` with a constant (``eq``, ``neq``, ``lt``,
``lte``, ``gt``, ``gte``, ``between``) are translated into the search (CQL2-JSON for the
filter extension, or the query extension's syntax). Every callback is also evaluated on each
item's properties, so the result is right even where a server ignores a term, and callbacks
that do not translate (``and``/``or``/``not``, ``array_contains``, text tests) still apply.
A missing property makes the callback's comparisons null: the item does not match.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from openeo_airflow.core.errors import FeatureUnsupported, ProcessParameterInvalid

CQL2_OPS = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "neq": operator.ne,
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
}


@dataclass(frozen=True)
class Comparison:
    """``property <op> value`` with ``op`` one of eq, neq, lt, lte, gt, gte."""

    prop: str
    op: str
    value: Any


@dataclass(frozen=True)
class PropertyFilter:
    """The translated search terms and the callbacks to check on each item."""

    comparisons: list[Comparison] = field(default_factory=list)
    callbacks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def matches(self, properties: Mapping[str, Any]) -> bool:
        return all(
            evaluate(graph, properties.get(prop)) is True for prop, graph in self.callbacks.items()
        )

    def cql2(self) -> dict[str, Any] | None:
        """The comparisons as one CQL2-JSON expression (None when there are none)."""
        args = [
            {"op": CQL2_OPS[c.op], "args": [{"property": c.prop}, c.value]}
            for c in self.comparisons
        ]
        if not args:
            return None
        return args[0] if len(args) == 1 else {"op": "and", "args": args}

    def query(self) -> dict[str, Any] | None:
        """The comparisons in the STAC API query extension's syntax (None when there are none)."""
        terms: dict[str, dict[str, Any]] = {}
        for c in self.comparisons:
            terms.setdefault(c.prop, {})[c.op] = c.value
        return terms or None


def parse_properties(properties: Mapping[str, Any] | None) -> PropertyFilter:
    """Split ``load_collection``'s ``properties`` into search terms and local callbacks."""
    if not properties:
        return PropertyFilter()
    comparisons: list[Comparison] = []
    callbacks: dict[str, dict[str, Any]] = {}
    for prop, callback in properties.items():
        graph = callback.get("process_graph") if isinstance(callback, Mapping) else None
        if not isinstance(graph, dict) or not graph:
            raise ProcessParameterInvalid(
                process="load_collection",
                parameter="properties",
                reason=f"'{prop}' needs a callback {{'process_graph': {{...}}}}.",
            )
        callbacks[prop] = graph
        comparisons.extend(_translate(prop, graph))
    return PropertyFilter(comparisons, callbacks)


def _translate(prop: str, graph: dict[str, Any]) -> list[Comparison]:
    """The search terms equivalent to a one-node callback; [] when it is not that simple."""
    if len(graph) != 1:
        return []
    node = next(iter(graph.values()))
    pid, args = node.get("process_id"), node.get("arguments", {})
    if pid in _COMPARE and set(args) <= {"x", "y"}:
        x, y = args.get("x"), args.get("y")
        if _is_value(x) and _is_constant(y):
            return [Comparison(prop, pid, y)]
        if _is_value(y) and _is_constant(x):
            return [Comparison(prop, _MIRROR[pid], x)]
        return []
    if pid == "between" and _is_value(args.get("x")):
        low, high = args.get("min"), args.get("max")
        if _is_constant(low) and _is_constant(high) and _is_constant(args.get("exclude_max")):
            top = "lt" if args.get("exclude_max") else "lte"
            return [Comparison(prop, "gte", low), Comparison(prop, top, high)]
    return []


_MIRROR = {"eq": "eq", "neq": "neq", "lt": "gt", "lte": "gte", "gt": "lt", "gte": "lte"}


def _is_value(arg: Any) -> bool:
    return isinstance(arg, dict) and arg.get("from_parameter") == "value"


def _is_constant(arg: Any) -> bool:
    return arg is None or isinstance(arg, str | int | float | bool)


# --------------------------------------------------------------------------- evaluation


def evaluate(graph: dict[str, Any], value: Any) -> Any:
    """Run a scalar callback process graph with parameter ``value``; returns its result."""
    results: dict[str, Any] = {}
    result_ids = [nid for nid, node in graph.items() if node.get("result")]
    if len(result_ids) != 1:
        raise ProcessParameterInvalid(
            process="load_collection",
            parameter="properties",
            reason="A callback needs exactly one result node.",
        )

    def run(node_id: str) -> Any:
        if node_id not in results:
            node = graph[node_id]
            args = {k: resolve(v) for k, v in node.get("arguments", {}).items()}
            results[node_id] = _call(node["process_id"], args)
        return results[node_id]

    def resolve(arg: Any) -> Any:
        if isinstance(arg, dict):
            if "from_node" in arg:
                return run(arg["from_node"])
            if "from_parameter" in arg:
                if arg["from_parameter"] in ("value", "x"):
                    return value
                raise ProcessParameterInvalid(
                    process="load_collection",
                    parameter="properties",
                    reason=f"Unknown parameter '{arg['from_parameter']}' in a callback.",
                )
            return {k: resolve(v) for k, v in arg.items()}
        if isinstance(arg, list):
            return [resolve(v) for v in arg]
        return arg

    return run(result_ids[0])


def _call(process: str, args: dict[str, Any]) -> Any:
    if process in _COMPARE:
        x, y = args.get("x"), args.get("y")
        if x is None or y is None:
            return None
        if (
            process in ("eq", "neq")
            and isinstance(x, str)
            and isinstance(y, str)
            and args.get("case_sensitive", True) is False
        ):
            x, y = x.lower(), y.lower()
        try:
            return _COMPARE[process](x, y)
        except TypeError:
            return None if process not in ("eq", "neq") else process == "neq"
    if process in _SIMPLE:
        return _SIMPLE[process](args)
    raise FeatureUnsupported(
        f"load_collection: process '{process}' is not supported in a 'properties' callback; "
        "use comparisons (eq, neq, lt, lte, gt, gte, between), and/or/not/xor, "
        "array_contains, text_begins/text_ends/text_contains, is_nodata/is_valid."
    )


def _between(args: dict[str, Any]) -> Any:
    x, low, high = args.get("x"), args.get("min"), args.get("max")
    if x is None or low is None or high is None:
        return None
    try:
        return low <= x < high if args.get("exclude_max") else low <= x <= high
    except TypeError:
        return None


def _logic(kind: str) -> Callable[[dict[str, Any]], Any]:
    def apply(args: dict[str, Any]) -> Any:
        x, y = args.get("x"), args.get("y")
        if kind == "and":
            return False if False in (x, y) else (None if None in (x, y) else True)
        if kind == "or":
            return True if True in (x, y) else (None if None in (x, y) else False)
        return None if None in (x, y) else bool(x) != bool(y)

    return apply


def _text(test: Callable[[str, str], bool]) -> Callable[[dict[str, Any]], Any]:
    def apply(args: dict[str, Any]) -> Any:
        data, pattern = args.get("data"), args.get("pattern")
        if not isinstance(data, str) or not isinstance(pattern, str):
            return None
        if args.get("case_sensitive", True) is False:
            data, pattern = data.lower(), pattern.lower()
        return test(data, pattern)

    return apply


_SIMPLE: dict[str, Callable[[dict[str, Any]], Any]] = {
    "between": _between,
    "and": _logic("and"),
    "or": _logic("or"),
    "xor": _logic("xor"),
    "not": lambda a: None if a.get("x") is None else not a["x"],
    "is_nodata": lambda a: a.get("x") is None,
    "is_valid": lambda a: a.get("x") is not None,
    "array_contains": lambda a: isinstance(a.get("data"), list) and a.get("value") in a["data"],
    "text_begins": _text(str.startswith),
    "text_ends": _text(str.endswith),
    "text_contains": _text(str.__contains__),
}
