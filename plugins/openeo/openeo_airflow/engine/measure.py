"""What a piece of work cost, measured where it ran: wall and CPU time, peak memory, bytes read.

Peak memory is sampled (resident set size of this process every few milliseconds), because
``ru_maxrss`` only ever grows over a process's life and Spark's Python workers and Airflow's
task processes run many pieces of work one after the other. A piece's peak is reported both
absolute and above the process's resident size when it started (what the piece itself needed,
which is what the sizing predicts). Bytes read are the process's ``rchar`` (every byte that
came in through read calls: local files and network alike).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

from openeo_airflow.core.memory import release_freed_memory

MB = 1024 * 1024
SAMPLE_SECONDS = 0.005
# Samples between two listings of child processes (every 0.25 s: listing reads every process
# in /proc, 1-6 ms; a UDF child takes longer than that to start, so its peak is still seen).
# The first listing comes with the second sample, not the first: a piece of work has no
# children when it starts, and a short one then ends without waiting for a listing.
CHILDREN_EVERY = 50
# Set by the spark-local engine for its Python workers: their memory limit in MiB. On
# Kubernetes the container limit plays this role (the kernel kills the container).
WORKER_MEMORY_ENV = "OPENEO_AIRFLOW_WORKER_MEMORY_MB"


@dataclass
class Measurement:
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_mb: float = 0.0  # above the resident size at the start
    peak_rss_mb: float = 0.0  # absolute
    bytes_read: int = 0
    megapixels: float = 0.0
    pieces: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _read_chars(process: psutil.Process) -> int:
    try:
        return int(getattr(process.io_counters(), "read_chars", 0))
    except (psutil.Error, AttributeError, NotImplementedError):
        return 0


@contextmanager
def meter() -> Iterator[Measurement]:
    """Measure the body; the yielded ``Measurement`` is filled in when the body ends (the
    body may set ``megapixels`` and ``extra`` itself)."""
    process = psutil.Process()
    result = Measurement()
    start_rss = process.memory_info().rss
    peak = [start_rss]
    done = threading.Event()

    limit = int(os.environ.get(WORKER_MEMORY_ENV, "0") or 0) * MB

    children: list[psutil.Process] = []

    def sample() -> None:
        ticks = 0
        while not done.wait(SAMPLE_SECONDS):
            if ticks % CHILDREN_EVERY == 1:  # listing processes costs more than one sample
                children[:] = _children(process)
            ticks += 1
            # Child processes (a UDF's) count, as they do against a container's limit.
            rss = process.memory_info().rss + sum(_rss(child) for child in children)
            if rss > peak[0]:
                peak[0] = rss
            if limit and rss > limit:
                _kill_over_limit(rss, limit)

    sampler = threading.Thread(target=sample, name="meter", daemon=True)
    start_wall, start_cpu, start_read = (
        time.perf_counter(),
        time.process_time(),
        _read_chars(process),
    )
    sampler.start()
    try:
        yield result
    finally:
        done.set()
        sampler.join()
        peak[0] = max(peak[0], process.memory_info().rss)
        result.seconds = time.perf_counter() - start_wall
        result.cpu_seconds = time.process_time() - start_cpu
        result.bytes_read = max(0, _read_chars(process) - start_read)
        result.peak_mb = (peak[0] - start_rss) / MB
        result.peak_rss_mb = peak[0] / MB
        release_freed_memory()


def sum_usage(usages: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """The usage that loaders report themselves (e.g. Sentinel Hub processing units), summed
    by name over the parts of a stage or job."""
    total: dict[str, Any] = {}
    for usage in usages:
        for name, entry in (usage or {}).items():
            before = total.get(name, {}).get("value", 0.0)
            total[name] = {
                "value": before + float(entry.get("value", 0)),
                "unit": entry.get("unit"),
            }
    return total


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def _rss(process: psutil.Process) -> int:
    try:
        return int(process.memory_info().rss)
    except psutil.Error:  # it ended between listing and reading
        return 0


def _kill_over_limit(rss: int, limit: int) -> None:
    """Die like a container over its memory limit (an address-space limit would make GDAL and
    PROJ fail at random allocations long before the resident size is reached)."""
    sys.stderr.write(
        f"MemoryError: worker {os.getpid()} uses {rss // MB} MiB, over its limit of "
        f"{limit // MB} MiB; killed\n"
    )
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def combine(parts: Iterable[Measurement], seconds: float | None = None) -> Measurement:
    """A stage's measurement from its pieces: sums of work, maxima of memory; ``seconds`` is
    the stage's own wall time (pieces ran in parallel, so their sum is not)."""
    parts = list(parts)
    total = Measurement(
        seconds=seconds if seconds is not None else sum(p.seconds for p in parts),
        cpu_seconds=sum(p.cpu_seconds for p in parts),
        peak_mb=max((p.peak_mb for p in parts), default=0.0),
        peak_rss_mb=max((p.peak_rss_mb for p in parts), default=0.0),
        bytes_read=sum(p.bytes_read for p in parts),
        megapixels=sum(p.megapixels for p in parts),
        pieces=sum(p.pieces for p in parts),
    )
    return total
