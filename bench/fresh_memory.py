"""What fresh memory costs a new process on this machine, against memory just freed.

    .venv/bin/python bench/fresh_memory.py [--mb 256] [--runs 3]

A batch task is a new process: every array it makes is memory the kernel hands it for the
first time. The API server that answers synchronous requests lives on and reuses its heap.
On a virtual machine whose guest reports free pages to its host (Linux ``page_reporting``,
virtio-balloon), memory freed by any process goes back to the host, and the next first touch
of it faults in the host too: the development VM this harness was written on paid 2-5 ms per
MB that way, against 0.1-0.2 ms per MB for memory freed a moment before. That difference alone
can double a batch job's work time against the same work in the server, so the e2e bench
prints it beside its tables (``fresh_memory.json`` in the results folder).

Each run waits ``--settle`` seconds (the kernel reports freed pages after about two), then
starts a new Python process that fills ``--mb`` of new memory, frees it, and fills the same
amount again; it prints one JSON object: the medians in ms per MB and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Runs in the new process: first touch, then the same size again right after the free.
_CHILD = """
import json, sys, time
import numpy as np
size = int(sys.argv[1]) * 2**20
times = []
for _ in range(2):
    started = time.perf_counter()
    block = np.ones(size // 8)
    times.append(time.perf_counter() - started)
    del block
print(json.dumps(times))
"""


def _reporting() -> dict[str, Any]:
    """Whether the guest reports free pages to its host, and how much it reported so far."""
    root = Path("/sys/module/page_reporting/parameters")
    if not root.is_dir():
        return {"page_reporting": False}
    out: dict[str, Any] = {"page_reporting": True}
    for name in ("page_reporting_order", "reported_kib"):
        path = root / name
        if path.exists():
            out[name] = path.read_text().strip()
    return out


def probe(mb: int = 256, runs: int = 3, settle: float = 3.0) -> dict[str, Any]:
    """Medians over ``runs`` new processes: ms per MB for fresh memory and for reused memory."""
    fresh, reused = [], []
    for _ in range(runs):
        time.sleep(settle)
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(mb)], capture_output=True, text=True, check=True
        )
        first, second = json.loads(done.stdout)
        fresh.append(first * 1000 / mb)
        reused.append(second * 1000 / mb)
    fresh_ms, reused_ms = statistics.median(fresh), statistics.median(reused)
    return {
        "mb": mb,
        "runs": runs,
        "fresh_ms_per_mb": round(fresh_ms, 3),
        "reused_ms_per_mb": round(reused_ms, 3),
        "fresh_over_reused": round(fresh_ms / reused_ms, 1) if reused_ms > 0 else None,
        **_reporting(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=3.0)
    args = parser.parse_args(argv)
    print(json.dumps(probe(args.mb, args.runs, args.settle)))


if __name__ == "__main__":
    main()
