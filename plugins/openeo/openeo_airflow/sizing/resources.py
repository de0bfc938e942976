"""What a stage gets to run with, and the user's ``job_options`` that override the sizing (pure).

Memory is in MiB throughout. Pod memory on Kubernetes is memory + overhead; PySpark's default
overhead on Kubernetes is 40 % of the memory with a 384 MiB floor, which is the default here too
(the Python workers live in the overhead, not in the JVM heap).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import Any

from openeo_airflow.core.errors import ProcessParameterInvalid

OVERHEAD_FACTOR = 0.4
OVERHEAD_FLOOR_MB = 384
ENGINES = ("inline", "spark-local", "spark-k8s")


@dataclass(frozen=True)
class Resources:
    """Spark resources of one stage (the inline engine uses ``partitions`` only)."""

    driver_cores: int = 1
    driver_memory_mb: int = 1024
    executor_cores: int = 1
    executor_memory_mb: int = 1024
    executor_memory_overhead_mb: int = OVERHEAD_FLOOR_MB
    executors: int = 1
    max_executors: int = 1
    partitions: int = 1

    @property
    def executor_pod_mb(self) -> int:
        return self.executor_memory_mb + self.executor_memory_overhead_mb

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Resources:
        return cls(**{k: int(v) for k, v in data.items() if k in cls.__dataclass_fields__})


def overhead_mb(memory_mb: int) -> int:
    return max(OVERHEAD_FLOOR_MB, round(memory_mb * OVERHEAD_FACTOR))


_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNIT_MB = {"": 1 / (1024 * 1024), "k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}


def parse_memory_mb(value: Any) -> int:
    """A Spark-style memory size (``"4g"``, ``"512m"``, ``"2GiB"``, or an integer of MiB)."""
    if isinstance(value, bool):
        raise ValueError("not a memory size")
    if isinstance(value, int | float):
        return int(value)
    match = _MEMORY.match(str(value))
    if not match:
        raise ValueError("not a memory size")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * _UNIT_MB[unit])


@dataclass(frozen=True)
class OptionSpec:
    """One supported job option, as listed at ``GET /processing_parameters``."""

    name: str
    description: str
    schema: dict[str, Any]
    default: Any


JOB_OPTIONS = (
    OptionSpec(
        "engine",
        "Where the stages run; the sizing picks one when unset.",
        {"type": "string", "enum": list(ENGINES)},
        None,
    ),
    OptionSpec(
        "tile-size",
        "Output tile edge in pixels (work unit of a stage).",
        {"type": "integer", "minimum": 64, "maximum": 4096},
        None,
    ),
    OptionSpec(
        "executor-memory", "Spark executor memory (JVM heap), e.g. '2g'.", {"type": "string"}, None
    ),
    OptionSpec(
        "executor-memoryOverhead",
        "Memory beyond the heap per executor, for Python workers and GDAL, e.g. '1g'.",
        {"type": "string"},
        None,
    ),
    OptionSpec(
        "executor-cores",
        "Cores per executor.",
        {"type": "integer", "minimum": 1, "maximum": 16},
        None,
    ),
    OptionSpec(
        "max-executors",
        "Upper bound of executors (dynamic allocation).",
        {"type": "integer", "minimum": 1, "maximum": 1000},
        None,
    ),
    OptionSpec("driver-memory", "Spark driver memory, e.g. '1g'.", {"type": "string"}, None),
    OptionSpec(
        "driver-cores",
        "Spark driver cores.",
        {"type": "integer", "minimum": 1, "maximum": 16},
        None,
    ),
    OptionSpec(
        "fuse-stages",
        "Run a small inline job's load, transform and save in one task, in memory (true), or "
        "as separate tasks through the intermediate store (false); the sizing decides when unset.",
        {"type": "boolean"},
        None,
    ),
    OptionSpec(
        "soft-errors",
        "Share (0..1) of unreadable input files a job may skip.",
        {"type": "number", "minimum": 0, "maximum": 1},
        0,
    ),
)
_BY_NAME = {spec.name: spec for spec in JOB_OPTIONS}
_MEMORY_OPTIONS = {
    "executor-memory": ("executor_memory_mb", 256, 256 * 1024),
    "executor-memoryOverhead": ("executor_memory_overhead_mb", 128, 256 * 1024),
    "driver-memory": ("driver_memory_mb", 256, 256 * 1024),
}
_COUNT_OPTIONS = {
    "executor-cores": "executor_cores",
    "max-executors": "max_executors",
    "driver-cores": "driver_cores",
}


def _invalid(name: str, value: Any, why: str) -> ProcessParameterInvalid:
    return ProcessParameterInvalid(f"job_options '{name}': {value!r} {why}")


def validate_job_options(options: dict[str, Any]) -> dict[str, Any]:
    """The known options of ``options``, checked; unknown ones are kept for other components
    (e.g. ``soft-errors`` is read by the loader), nonsense values raise a clear error."""
    for name, value in options.items():
        spec = _BY_NAME.get(name)
        if spec is None:
            continue
        if name in _MEMORY_OPTIONS:
            _, low, high = _MEMORY_OPTIONS[name]
            try:
                mb = parse_memory_mb(value)
            except ValueError:
                raise _invalid(
                    name, value, "is not a memory size such as '2g' or '512m'."
                ) from None
            if not low <= mb <= high:
                raise _invalid(name, value, f"must lie between {low} MiB and {high // 1024} GiB.")
            continue
        schema = spec.schema
        if schema["type"] == "boolean" and not isinstance(value, bool):
            raise _invalid(name, value, "must be true or false.")
        if schema.get("enum") and value not in schema["enum"]:
            raise _invalid(name, value, f"must be one of {', '.join(schema['enum'])}.")
        if schema["type"] in ("integer", "number"):
            kinds = int if schema["type"] == "integer" else int | float
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise _invalid(name, value, f"must be a {schema['type']}.")
            if not schema["minimum"] <= value <= schema["maximum"]:
                raise _invalid(
                    name, value, f"must lie between {schema['minimum']} and {schema['maximum']}."
                )
    return options


def apply_overrides(resources: Resources, options: dict[str, Any]) -> Resources:
    """``resources`` with the user's resource options (already validated) put in."""
    changes: dict[str, int] = {}
    for name, (field, _low, _high) in _MEMORY_OPTIONS.items():
        if name in options:
            changes[field] = parse_memory_mb(options[name])
    for name, field in _COUNT_OPTIONS.items():
        if name in options:
            changes[field] = int(options[name])
    if "executor-memory" in options and "executor-memoryOverhead" not in options:
        changes["executor_memory_overhead_mb"] = overhead_mb(changes["executor_memory_mb"])
    updated = replace(resources, **changes)
    if updated.executors > updated.max_executors:
        updated = replace(updated, executors=updated.max_executors)
    return updated
