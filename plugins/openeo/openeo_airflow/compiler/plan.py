"""The execution plan of a process graph: what the DAG's stages need to know.

A plan is plain data (JSON-serialisable through ``to_dict``/``from_dict``) so it can travel
through XCom, the job registry and SparkApplication arguments.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Source:
    """One data source of the graph: a ``load_collection``, ``load_stac`` or ``load_result``
    node (``process_id``).

    ``backscatter``: the arguments (without ``data``) of a ``sar_backscatter`` node applied
    directly to this source; the loader computes backscatter while reading (``None``: none).
    ``url``: where an ad-hoc source's STAC lives: the URL given to ``load_stac``; for
    ``load_result`` the finished job's results folder, filled in by the job service once it
    has checked the job's owner (``collection_id`` holds the URL / the job id, for logs).
    """

    node_id: str
    process_id: str
    collection_id: str
    spatial_extent: dict[str, Any] | None = None
    temporal_extent: list[str | None] | None = None
    bands: list[str] | None = None
    properties: dict[str, Any] | None = None
    backscatter: dict[str, Any] | None = None
    url: str | None = None


@dataclass(frozen=True)
class Output:
    """The graph's ``save_result`` node (``None`` in a plan when the graph has none)."""

    node_id: str
    format: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    process_graph: dict[str, Any]
    result_node: str
    sources: list[Source]
    output: Output | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        output = data.get("output")
        return cls(
            process_graph=data["process_graph"],
            result_node=data["result_node"],
            sources=[Source(**s) for s in data["sources"]],
            output=Output(**output) if output else None,
        )
