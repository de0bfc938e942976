"""Summaries of measured runs: per-path statistics, ratios, the printed table, SUMMARY JSON."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MB = 1024 * 1024
OURS = ("sync", "batch")


@dataclass
class PathResult:
    """All runs of one path for one workload and size."""

    path: str
    seconds: list[float] = field(default_factory=list)
    peak_mem: list[int] = field(default_factory=list)  # bytes (ours: delta of the stack tree)
    peak_pss: list[int] = field(default_factory=list)  # the same, proportional set size
    error: str | None = None
    comparison: dict[str, Any] = field(default_factory=dict)
    tasks: list[dict[str, float]] = field(default_factory=list)
    work: list[float] = field(default_factory=list)  # batch: the stages' measured seconds
    output: Path | None = None  # the last run's result file
    failures: list[str] = field(default_factory=list)  # runs that failed (retried or final)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.seconds)

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def peak_mb(self) -> float | None:
        return max(self.peak_mem) / MB if self.peak_mem else None

    @property
    def peak_pss_mb(self) -> float | None:
        return max(self.peak_pss) / MB if any(self.peak_pss) else None  # sampled with --pss

    def task_medians(self) -> dict[str, float]:
        names = {name for run in self.tasks for name in run}
        return {
            name: statistics.median(run[name] for run in self.tasks if name in run)
            for name in sorted(names)
        }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def summarize(results: dict[str, dict[str, dict[str, PathResult]]]) -> dict[str, Any]:
    """``{workload: {size: {path: figures}}}`` (the SUMMARY object)."""
    summary: dict[str, Any] = {}
    for workload, sizes in results.items():
        for size, paths in sizes.items():
            floor, local, decode = paths.get("floor"), paths.get("local"), paths.get("decode")
            floor_s = floor.median if floor and floor.ok else None
            decode_s = decode.median if decode and decode.ok else None
            local_s = local.median if local and local.ok else None
            local_mb = local.peak_mb if local and local.ok else None
            local_pss = local.peak_pss_mb if local and local.ok else None
            entry: dict[str, Any] = {}
            for name, result in paths.items():
                figures: dict[str, Any] = {"status": "ok" if result.ok else "unsupported"}
                if result.failures and result.ok:
                    figures["failed_runs"] = result.failures
                if not result.ok:
                    figures["error"] = result.error
                    entry[name] = figures
                    continue
                figures["seconds"] = round(result.median or 0.0, 3)
                figures["runs"] = len(result.seconds)
                figures["peak_mem_mb"] = round(result.peak_mb or 0.0, 1)
                if result.peak_pss_mb is not None:
                    figures["peak_pss_mb"] = round(result.peak_pss_mb, 1)
                if name in OURS or name == "local":
                    key = "ours" if name in OURS else "local"
                    figures[f"{key}_over_floor"] = _ratio(result.median, floor_s)
                if name in OURS:
                    figures["ours_over_local"] = _ratio(result.median, local_s)
                    figures["peak_mem_over_local"] = _ratio(result.peak_mb, local_mb)
                    figures["peak_pss_over_local"] = _ratio(result.peak_pss_mb, local_pss)
                    if result.tasks:
                        tasks = result.task_medians()
                        figures["airflow_task_seconds"] = {k: round(v, 2) for k, v in tasks.items()}
                        work = sum(tasks.values())
                        figures["scheduling_overhead_seconds"] = round(result.median - work, 2)
                    if result.work:
                        work_s = statistics.median(result.work)
                        figures["work_seconds"] = round(work_s, 3)
                        figures["work_over_decode"] = _ratio(work_s, decode_s)
                if result.comparison:
                    figures.update(result.comparison)
                entry[name] = figures
            summary.setdefault(workload, {})[size] = entry
    return summary


def table(summary: dict[str, Any]) -> str:
    header = (
        f"{'workload':8} {'size':6} {'path':14} {'median s':>9} {'peak MB':>8} "
        f"{'/floor':>7} {'/local':>7} {'mem/loc':>7} {'max|diff|':>10} {'diff frac':>9}  note"
    )
    lines = [header, "-" * len(header)]
    for workload, sizes in summary.items():
        for size, paths in sizes.items():
            for path, f in paths.items():
                if f["status"] != "ok":
                    note = f"UNSUPPORTED: {f.get('error', '')}"
                    lines.append(f"{workload:8} {size:6} {path:14} {'-':>9}  {note[:160]}")
                    continue
                over_floor = f.get("ours_over_floor", f.get("local_over_floor"))
                note = f.get("compare_note", "")
                if "scheduling_overhead_seconds" in f:
                    note = f"tasks {f['airflow_task_seconds']} overhead "
                    note += f"{f['scheduling_overhead_seconds']} s {f.get('compare_note', '')}"
                if "work_seconds" in f:
                    note += f" work {f['work_seconds']} s = {_fmt(f['work_over_decode'])} x decode"
                lines.append(
                    f"{workload:8} {size:6} {path:14} {f['seconds']:9.2f} "
                    f"{f['peak_mem_mb']:8.0f} {_fmt(over_floor):>7} "
                    f"{_fmt(f.get('ours_over_local')):>7} {_fmt(f.get('peak_mem_over_local')):>7} "
                    f"{_fmt(f.get('max_abs_diff'), 3):>10} {_fmt(f.get('frac_diff'), 4):>9}  {note}"
                )
    return "\n".join(lines)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and digits == 3:
        return f"{value:.3g}"
    return f"{value:.{digits}f}"
