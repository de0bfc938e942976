"""Small builders for hand-written process graphs in the compiler tests."""

from __future__ import annotations

from typing import Any

EXTENT = {"west": 16.1, "south": 48.1, "east": 16.2, "north": 48.2}


def node(process_id: str, result: bool = False, **arguments: Any) -> dict[str, Any]:
    return {"process_id": process_id, "arguments": arguments, "result": result}


def load(collection: str = "S2", **extra: Any) -> dict[str, Any]:
    return node(
        "load_collection",
        id=collection,
        spatial_extent=EXTENT,
        temporal_extent=["2021-06-01", "2021-07-01"],
        **extra,
    )
