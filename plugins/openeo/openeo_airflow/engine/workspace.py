"""Where a job's intermediate cubes and results live (a shared filesystem path for now)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openeo_airflow.compiler.plan import Plan

RESULT_METADATA = "_openeo_results.json"


@dataclass(frozen=True)
class JobWorkspace:
    root: Path

    @classmethod
    def for_job(cls, jobs_dir: Path, job_id: str) -> JobWorkspace:
        return cls(jobs_dir / job_id)

    @property
    def plan_file(self) -> Path:
        return self.root / "plan.json"

    def source_cube(self, node_id: str) -> Path:
        return self.root / "intermediate" / f"source-{node_id}.zarr"

    @property
    def result_cube(self) -> Path:
        return self.root / "intermediate" / "result.zarr"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    def write_plan(self, plan: Plan) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.plan_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(plan.to_dict()))
        tmp.replace(self.plan_file)

    def read_plan(self) -> Plan:
        return Plan.from_dict(json.loads(self.plan_file.read_text()))

    def read_result_metadata(self) -> dict[str, Any] | None:
        path = self.results_dir / RESULT_METADATA
        return json.loads(path.read_text()) if path.exists() else None

    def result_file(self, name: str) -> Path | None:
        """A result file by name, never a path outside the results folder."""
        candidate = (self.results_dir / name).resolve()
        if candidate.parent != self.results_dir.resolve() or name == RESULT_METADATA:
            return None
        return candidate if candidate.is_file() else None
