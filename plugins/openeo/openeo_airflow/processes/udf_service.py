"""The UDF runtime service: runs ``udf_worker`` on request, in the UDF container of a Spark pod.

    python -m openeo_airflow.processes.udf_service --socket /var/run/openeo-udf/udf.sock \
        --max-memory-mb 2048 --max-cpu-seconds 600 --max-wall-seconds 900 --workers 2

On Kubernetes it is the UDF sidecar's command (``engine/spark_k8s.py``); the socket and the
exchange folders live in an ``emptyDir`` shared with the Spark container, which runs no user
code. ``run_udf`` (``processes/udf.py``) writes a request folder next to the socket (the
same folder protocol as the local subprocess runner) and sends one JSON line::

    {"folder": "<dir next to the socket>", "memory_bytes": N, "cpu_seconds": N,
     "wall_seconds": N}

The service starts ``python -I -m openeo_airflow.processes.udf_worker`` on that folder with
an empty environment and the requested limits, capped at its own maxima (the Spark side is not
trusted to size the UDF container), kills the worker's process group after the wall-clock
limit, and answers ``{"returncode": N}`` or ``{"timeout": true}``, with the ``limits`` it
applied; a bad request gets
``{"error": "..."}``. ``{"op": "ping"}`` answers ``{"ok": true}``. The result or the user's
traceback is in the folder, written by the worker. A crashing UDF ends its worker only.

Standard library only, and the worker imports numpy, pandas, xarray and ``openeo.udf``: the
UDF image carries this module, ``udf_worker`` and the two package ``__init__`` files, nothing
else of the backend.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socketserver
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORKER = "openeo_airflow.processes.udf_worker"
MAX_REQUEST_BYTES = 64 * 1024


@dataclass(frozen=True)
class Caps:
    """The most any one request may use, and how many UDFs run at once."""

    memory_bytes: int
    cpu_seconds: int
    wall_seconds: float
    workers: int = 1


def run_worker(folder: Path, memory_bytes: int, cpu_seconds: int, wall_seconds: float) -> dict:
    """One UDF run in a child process with limits; the answer to send back."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(folder),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "LANG": "C.UTF-8",
    }
    command = [sys.executable, "-I", "-m", WORKER, str(folder), str(memory_bytes)]
    child = subprocess.Popen(
        [*command, str(cpu_seconds)],
        env=env,
        cwd=folder,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        return {"returncode": child.wait(timeout=wall_seconds)}
    except subprocess.TimeoutExpired:
        # The worker's own children (a UDF may start processes) go with its session.
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        return {"timeout": True}


def answer(request: Any, root: Path, caps: Caps) -> dict:
    """The reply to one decoded request line (runs the worker for a run request)."""
    if not isinstance(request, dict):
        return {"error": "a request is a JSON object"}
    if request.get("op") == "ping":
        return {"ok": True}
    try:
        folder = Path(str(request["folder"])).resolve()
        memory = min(int(request["memory_bytes"]), caps.memory_bytes)
        cpu = min(int(request["cpu_seconds"]), caps.cpu_seconds)
        wall = min(float(request["wall_seconds"]), caps.wall_seconds)
    except (KeyError, TypeError, ValueError):
        return {"error": "expected folder, memory_bytes, cpu_seconds and wall_seconds"}
    # Only folders in the shared volume: the request must not point the worker elsewhere.
    if folder.parent != root or not (folder / "request.json").is_file():
        return {"error": "the folder is not a request folder beside the socket"}
    if min(memory, cpu, wall) <= 0:
        return {"error": "limits must be positive"}
    applied = {"memory_bytes": memory, "cpu_seconds": cpu, "wall_seconds": wall}
    return {**run_worker(folder, memory, cpu, wall), "limits": applied}


class _Handler(socketserver.StreamRequestHandler):
    server: UdfServer

    def handle(self) -> None:
        line = self.rfile.readline(MAX_REQUEST_BYTES)
        try:
            request = json.loads(line)
        except ValueError:
            reply: dict = {"error": "a request is one line of JSON"}
        else:
            with self.server.slots:
                reply = answer(request, self.server.root, self.server.caps)
        self.wfile.write(json.dumps(reply).encode() + b"\n")


class UdfServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, socket_path: Path, caps: Caps) -> None:
        self.root = socket_path.parent.resolve()
        self.caps = caps
        self.slots = threading.BoundedSemaphore(caps.workers)
        socket_path.unlink(missing_ok=True)  # left by a previous run of the container
        super().__init__(str(socket_path), _Handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run openEO Python UDFs on request.")
    parser.add_argument("--socket", required=True, type=Path, help="Unix socket to listen on")
    parser.add_argument("--max-memory-mb", type=int, default=4096, help="per UDF run")
    parser.add_argument("--max-cpu-seconds", type=int, default=600, help="per UDF run")
    parser.add_argument("--max-wall-seconds", type=float, default=900.0, help="per UDF run")
    parser.add_argument("--workers", type=int, default=1, help="UDF runs at the same time")
    args = parser.parse_args(argv)
    caps = Caps(
        memory_bytes=args.max_memory_mb * 1024 * 1024,
        cpu_seconds=args.max_cpu_seconds,
        wall_seconds=args.max_wall_seconds,
        workers=max(1, args.workers),
    )
    args.socket.parent.mkdir(parents=True, exist_ok=True)
    with UdfServer(args.socket, caps) as server:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        print(f"UDF service listening on {args.socket}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
