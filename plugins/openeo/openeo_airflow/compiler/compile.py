"""Process (graph) -> validated, self-contained execution ``Plan``.

``compile_plan`` validates the graph (``validate_process_graph``) and raises on problems: a
single problem is raised as its own error class; several are combined into one
``ProcessGraphInvalid`` listing all of them (code and message each), so a user sees everything
to fix in one round trip.

Process parameters: references ``{"from_parameter": name}`` in the top-level nodes are replaced
by their value (``arguments``, else the parameter's default in the process object), so the plan
does not depend on the process object any more. A reference without a value is an error.
References inside child process graphs (callbacks) are left alone: they name the callback's
own parameters (``data``, ``x``, ``context``...).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

from openeo_airflow.core.errors import (
    CollectionNotFound,
    FeatureUnsupported,
    OpenEOError,
    ProcessGraphInvalid,
    ProcessGraphMissing,
    ProcessParameterInvalid,
)

from .plan import Output, Plan, Source
from .schemas import contains_reference
from .validate import CheckUrl, node_references, validate_process

SOURCE_PROCESSES = ("load_collection", "load_stac", "load_result")
OUTPUT_PROCESS = "save_result"
# Processes computed by the loader while it reads: they must follow their source directly.
LOAD_TIME_PROCESSES = ("sar_backscatter",)


def compile_plan(
    process: Mapping[str, Any],
    *,
    known_processes: Collection[str] | Mapping[str, Mapping[str, Any]],
    collections: Collection[str] | Mapping[str, Any] | None,
    arguments: Mapping[str, Any] | None = None,
    user_processes: Mapping[str, Mapping[str, Any]] | None = None,
    check_url: CheckUrl | None = None,
) -> Plan:
    """Validate ``process`` (a process graph or an openEO process ``{"process_graph": ...}``)
    and build its plan; ``arguments`` are values for the process's parameters.

    ``known_processes``, ``collections`` and ``user_processes`` are as for
    ``validate.validate_process`` (pass ``processes.registry.specs()`` and the collections'
    band names to get every check); ``check_url`` looks at ``load_stac`` URLs."""
    graph, defaults = split_process(process)
    errors = validate_process(
        process,
        known_processes=known_processes,
        collections=collections,
        user_processes=user_processes,
        arguments=list(arguments or {}),
        check_url=check_url,
    )
    if errors:
        raise combine_errors(errors)
    graph = bind_parameters(graph, {**defaults, **(arguments or {})})
    result_node = next(k for k, n in graph.items() if n.get("result") is True)
    sources = [
        _source(node_id, node, collections, graph)
        for node_id, node in graph.items()
        if node["process_id"] in SOURCE_PROCESSES
    ]
    sources = _with_load_time_processes(graph, sources)
    return Plan(
        process_graph=graph, result_node=result_node, sources=sources, output=_output(graph)
    )


def split_process(process: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(process graph, parameter defaults)`` of a process object or a bare process graph."""
    if not isinstance(process, Mapping) or not process:
        raise ProcessGraphMissing()
    inner = process.get("process_graph")
    if "process_graph" in process and not isinstance(inner, dict):
        raise ProcessGraphMissing()
    if not isinstance(inner, dict) or not all(isinstance(n, dict) for n in inner.values()):
        return dict(process), {}
    defaults = {
        p["name"]: p["default"]
        for p in process.get("parameters") or []
        if isinstance(p, dict) and isinstance(p.get("name"), str) and "default" in p
    }
    return inner, defaults


def combine_errors(errors: list[OpenEOError]) -> OpenEOError:
    if len(errors) == 1:
        return errors[0]
    listing = "; ".join(f"[{e.code}] {e.message}" for e in errors)
    return ProcessGraphInvalid(f"The process graph has {len(errors)} problems: {listing}")


def bind_parameters(graph: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``graph`` with top-level ``from_parameter`` references replaced by values."""
    bound = {}
    for node_id, node in graph.items():
        args = {k: _bind(v, values, node_id) for k, v in node["arguments"].items()}
        bound[node_id] = {**node, "arguments": args}
    return bound


def _bind(value: Any, values: Mapping[str, Any], node_id: str) -> Any:
    if isinstance(value, list):
        return [_bind(v, values, node_id) for v in value]
    if not isinstance(value, dict) or "process_graph" in value or "from_node" in value:
        return value
    if "from_parameter" in value:
        name = value["from_parameter"]
        if name not in values:
            raise ProcessGraphInvalid(
                f"Node '{node_id}' refers to parameter '{name}', which has no value"
                " (no argument given and no default)"
            )
        return values[name]
    return {k: _bind(v, values, node_id) for k, v in value.items()}


def _static(node_id: str, process_id: str, name: str, value: Any) -> Any:
    if any(True for _ in node_references(value)):
        raise ProcessGraphInvalid(
            f"Node '{node_id}' ({process_id}): argument '{name}' comes from another node;"
            " data sources need values known before processing starts"
        )
    return value


def _typed(
    node_id: str, process_id: str, name: str, value: Any, kind: type, *, nullable: bool = True
) -> Any:
    value = _static(node_id, process_id, name, value)
    if (value is None and nullable) or isinstance(value, kind):
        return value
    raise ProcessParameterInvalid(
        f"Node '{node_id}' ({process_id}): '{name}' must be a {kind.__name__}, got {value!r}",
        process=process_id,
        parameter=name,
        reason=f"expected a {kind.__name__}",
    )


def _source(
    node_id: str,
    node: dict[str, Any],
    collections: Collection[str] | None,
    graph: dict[str, Any],
) -> Source:
    process_id, args = node["process_id"], node["arguments"]
    url = None
    if process_id == "load_stac":
        # The URL doubles as the source's name in logs; the engine reads it (catalog.adhoc).
        url = _typed(node_id, process_id, "url", args.get("url"), str, nullable=False)
        collection_id = url
    else:
        collection_id = _typed(node_id, process_id, "id", args.get("id"), str, nullable=False)
    if (
        process_id == "load_collection"
        and collections is not None
        and (collection_id not in collections)
    ):
        raise CollectionNotFound(
            f"Node '{node_id}' ({process_id}): collection '{collection_id}' does not exist",
            identifier=collection_id,
        )
    return Source(
        node_id=node_id,
        process_id=process_id,
        collection_id=collection_id,
        spatial_extent=_typed(
            node_id,
            process_id,
            "spatial_extent",
            _vector_extent(graph, node_id, process_id, args.get("spatial_extent")),
            dict,
        ),
        temporal_extent=_typed(
            node_id, process_id, "temporal_extent", args.get("temporal_extent"), list
        ),
        bands=_typed(node_id, process_id, "bands", args.get("bands"), list),
        properties=_typed(node_id, process_id, "properties", args.get("properties"), dict),
        url=url,
    )


def _vector_extent(graph: dict[str, Any], node_id: str, process_id: str, extent: Any) -> Any:
    """A ``spatial_extent`` given by a vector cube is evaluated now when it needs no loaded
    data (``load_geojson`` of GeoJSON in the graph); it then loads as a GeoJSON extent."""
    if not (isinstance(extent, dict) and isinstance(extent.get("from_node"), str)):
        return extent
    node = graph[extent["from_node"]]  # validation checked the reference
    data = node["arguments"].get("data")
    literal = isinstance(data, dict) and not contains_reference(data)
    if node["process_id"] == "load_geojson" and literal:
        return data
    reason = (
        f"node '{extent['from_node']}' ({node['process_id']}) cannot be evaluated before "
        "loading: give a bounding box, GeoJSON, or load_geojson of GeoJSON in the graph"
    )
    raise ProcessParameterInvalid(
        f"Node '{node_id}' ({process_id}): argument 'spatial_extent' is invalid: {reason}",
        process=process_id,
        parameter="spatial_extent",
        reason=reason,
    )


def _with_load_time_processes(graph: dict[str, Any], sources: list[Source]) -> list[Source]:
    """Attach each ``sar_backscatter`` to the source it follows, so the loader computes it.

    It must take its data straight from a ``load_collection`` that nothing else reads: the
    loaded cube *is* the backscatter, so another reader would silently get backscatter too.
    """
    by_node = {s.node_id: s for s in sources}
    for node_id, node in graph.items():
        if node["process_id"] not in LOAD_TIME_PROCESSES:
            continue
        process_id, args = node["process_id"], node["arguments"]
        data = args.get("data")
        source_id = data.get("from_node") if isinstance(data, dict) else None
        if source_id not in by_node:
            raise FeatureUnsupported(
                f"Node '{node_id}' ({process_id}): 'data' must come directly from a "
                "load_collection node; it is computed while the collection is read"
            )
        readers = sorted(
            other
            for other, other_node in graph.items()
            if other != node_id
            and any(ref == source_id for ref in node_references(other_node["arguments"]))
        )
        if readers or by_node[source_id].backscatter is not None:
            raise FeatureUnsupported(
                f"Node '{node_id}' ({process_id}): its load_collection '{source_id}' is also "
                f"read by {', '.join(repr(r) for r in readers) or 'another sar_backscatter'};"
                " load the collection once per use"
            )
        arguments = {
            name: _static(node_id, process_id, name, value)
            for name, value in args.items()
            if name != "data"
        }
        by_node[source_id] = replace(by_node[source_id], backscatter=arguments)
    return [by_node[s.node_id] for s in sources]


def _output(graph: dict[str, Any]) -> Output | None:
    nodes = [k for k, n in graph.items() if n["process_id"] == OUTPUT_PROCESS]
    if not nodes:
        return None
    if len(nodes) > 1:
        raise FeatureUnsupported(
            f"Nodes {', '.join(repr(n) for n in nodes)}: only one save_result per process"
            " graph is supported"
        )
    node_id = nodes[0]
    args = graph[node_id]["arguments"]
    fmt = _typed(node_id, OUTPUT_PROCESS, "format", args.get("format"), str, nullable=False)
    options = _typed(node_id, OUTPUT_PROCESS, "options", args.get("options"), dict)
    return Output(node_id=node_id, format=fmt, options=options or {})
