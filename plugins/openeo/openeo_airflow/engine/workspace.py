"""Where a job's intermediate cubes and results live (a shared filesystem path for now)."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable, Mapping
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

    @property
    def intermediate_dir(self) -> Path:
        return self.root / "intermediate"

    def source_cube(self, node_id: str) -> Path:
        return self.intermediate_dir / f"source-{node_id}.cube"

    @property
    def result_cube(self) -> Path:
        return self.intermediate_dir / "result.cube"

    def discard_sources(self) -> None:
        """Remove the stored sources: once the transform's result is in the store, nothing
        reads them (a retried save reads only the result)."""
        for path in self.intermediate_dir.glob("source-*.cube"):
            shutil.rmtree(path, ignore_errors=True)

    def discard_intermediates(self) -> None:
        """Remove the cubes passed between stages (as large as the job's inputs), once the
        results are saved. A short job's cubes then never reach the disk: the kernel drops
        the dirty pages of deleted files instead of writing them back."""
        shutil.rmtree(self.intermediate_dir, ignore_errors=True)

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    def load_plan_file(self, node_id: str) -> Path:
        return self.root / "stages" / f"load-{node_id}.json"

    @property
    def stage_spec_file(self) -> Path:
        """The sizing's decisions the stages run with (tile size, partitions, resources)."""
        return self.root / "stages" / "sizing.json"

    @property
    def user_processes_file(self) -> Path:
        """The owner's user-defined processes as they were when the job started."""
        return self.root / "stages" / "user_processes.json"

    def measurement_file(self, stage: str) -> Path:
        return self.root / "stages" / f"measured-{stage}.json"

    def measurements(self) -> dict[str, Any]:
        """What each stage that has run measured, by stage name."""
        files = sorted((self.root / "stages").glob("measured-*.json"))
        return {path.stem.removeprefix("measured-"): self.read_json(path) for path in files}

    def staging(self, path: Path) -> Path:
        """A private folder beside ``path`` to build it in before publishing it."""
        return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")

    def write_plan(self, plan: Plan) -> None:
        self.write_json(self.plan_file, plan.to_dict())

    def read_plan(self) -> Plan:
        return Plan.from_dict(json.loads(self.plan_file.read_text()))

    def write_json(self, path: Path, data: Any) -> None:
        """Write ``data`` to ``path`` atomically (a retried task never sees half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)

    def read_json(self, path: Path) -> Any:
        return json.loads(path.read_text())

    def resolver(self) -> Callable[[str, str | None], Mapping[str, Any] | None]:
        """The job owner's user-defined processes (stored by the size task), as the
        evaluator's resolver of process ids in the ``user`` namespace."""
        path = self.user_processes_file
        processes: dict[str, Any] = self.read_json(path) if path.exists() else {}

        def resolve(process_id: str, namespace: str | None) -> Mapping[str, Any] | None:
            return processes.get(process_id) if namespace in (None, "user") else None

        return resolve

    def read_result_metadata(self) -> dict[str, Any] | None:
        path = self.results_dir / RESULT_METADATA
        return json.loads(path.read_text()) if path.exists() else None

    def result_file(self, name: str) -> Path | None:
        """A result file by name, never a path outside the results folder."""
        candidate = (self.results_dir / name).resolve()
        if candidate.parent != self.results_dir.resolve() or name == RESULT_METADATA:
            return None
        return candidate if candidate.is_file() else None
