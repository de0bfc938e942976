"""The sizing decision for a job (pure).

This first version only chooses the engine and tile size from configuration and the user's
``job_options``; predicting memory, executors and duration from the plan and the catalog is the
sizing issue's work.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from openeo_airflow.compiler.plan import Plan
from openeo_airflow.core.errors import ProcessParameterInvalid

ENGINES = ("inline", "spark-local", "spark-k8s")
AVAILABLE_ENGINES = ("inline",)
DEFAULT_TILE = 512


@dataclass(frozen=True)
class Sizing:
    engine: str
    tile_size: int
    sources: list[str]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def size_job(plan: Plan, job_options: dict[str, Any] | None = None) -> Sizing:
    options = job_options or {}
    engine = str(options.get("engine", "inline"))
    if engine not in AVAILABLE_ENGINES:
        raise ProcessParameterInvalid(
            f"job_options 'engine': '{engine}' is not available here; "
            f"choose one of {', '.join(AVAILABLE_ENGINES)}."
        )
    tile = options.get("tile-size", DEFAULT_TILE)
    if not isinstance(tile, int) or not 64 <= tile <= 4096:
        raise ProcessParameterInvalid(
            f"job_options 'tile-size': {tile!r} must be an integer between 64 and 4096."
        )
    reason = "forced by job_options" if "engine" in options else "default engine"
    return Sizing(
        engine=engine,
        tile_size=tile,
        sources=[s.node_id for s in plan.sources],
        reason=reason,
    )
