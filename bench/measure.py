"""Peak memory of a process tree, sampled with psutil, and measured subprocess runs.

Memory is the sum of the resident set sizes (RSS) of a root process and all its descendants,
sampled every 50 ms in a background thread. RSS counts shared pages once per process (forked
Airflow workers share their parent's pages), so a tree's sum overstates what it takes from the
machine; we use the same measure for every path. Beside it, the sum of the proportional set
sizes (PSS: a page shared by n processes counts 1/n in each), which does not overstate it; for
a single process (the floor, the peer) the two are about the same. PSS is costly to read (the
kernel walks the page tables: 178 ms of CPU per sample of the local stack's tree), so it is
only sampled when asked for (``PSS_INTERVAL``, ``e2e_bench.py --pss``), once a second: a run
that samples it is slowed down, and its times are not comparable.
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

INTERVAL = 0.05
PSS_INTERVAL: float | None = None  # seconds between PSS samples; None: no PSS


def _tree_sum(root: psutil.Process, size: Callable[[psutil.Process], int]) -> int:
    total = 0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += size(process)
    return total


def tree_rss(root: psutil.Process) -> int:
    return _tree_sum(root, lambda p: int(p.memory_info().rss))


def tree_pss(root: psutil.Process) -> int:
    return _tree_sum(root, lambda p: int(p.memory_full_info().pss))


class TreeSampler:
    """Samples ``tree_rss(pid)`` and ``tree_pss(pid)`` until stopped; ``peak`` and
    ``peak_pss`` are the largest samples."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self.peak_pss = 0
        self._pss_at = -math.inf
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            self._sample()

    def _sample(self) -> None:
        self.peak = max(self.peak, tree_rss(self.root))
        now = time.monotonic()
        if PSS_INTERVAL is not None and now - self._pss_at >= PSS_INTERVAL:
            self._pss_at = now
            self.peak_pss = max(self.peak_pss, tree_pss(self.root))


@dataclass
class RunResult:
    seconds: float | None  # as reported by the child (work after imports)
    wall: float  # the whole subprocess, interpreter start included
    peak_rss: int
    error: str | None = None
    peak_pss: int = 0


def run_measured(command: list[str], env: dict[str, str], timeout: float) -> RunResult:
    """Run ``command``; its last stdout line is a JSON object with ``seconds`` or ``error``."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    with TreeSampler(process.pid) as sampler:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            return RunResult(
                None, time.perf_counter() - started, sampler.peak, "timeout", sampler.peak_pss
            )
    wall = time.perf_counter() - started
    lines = [line for line in out.splitlines() if line.startswith("{")]
    report: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    if process.returncode != 0 or not report:
        tail = (err or out).strip().splitlines()[-5:]
        error = f"exit {process.returncode}: {' | '.join(tail)}"
        return RunResult(None, wall, sampler.peak, error, sampler.peak_pss)
    if "error" in report:
        return RunResult(None, wall, sampler.peak, str(report["error"]), sampler.peak_pss)
    return RunResult(float(report["seconds"]), wall, sampler.peak, peak_pss=sampler.peak_pss)
