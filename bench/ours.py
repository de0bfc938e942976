"""Our backend: the real local stack (``openeo-airflow up``) driven by the real openEO client.

Paths: ``sync`` (``POST /result`` through ``DataCube.download``) and ``batch`` (a batch job per
run: ``create_job`` + ``start_and_wait`` + result download; ``job_options`` force the engine).
Timing is client side, from the first request to the result file on disk. Memory is the peak
of the stack's whole process tree (api-server, scheduler, dag-processor, triggerer, executor
workers and task processes) minus the tree's RSS just before the run: what the run added.
For batch runs, the Airflow task instances' own durations are read back from Airflow's REST
API, so that scheduling overhead (wall - sum of task durations) and work can be told apart.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import openeo

from bench import measure
from bench.measure import TreeSampler, tree_pss, tree_rss
from bench.workloads import build

USER = ("bench", "bench-password")
# What a user would ask for: one GeoTIFF for a 2-D raster; netCDF for a time series (W2, one
# file instead of one GeoTIFF per date) and for a vector cube (W3).
FORMATS = {"W1": "GTiff", "W2": "netCDF", "W3": "netCDF", "W4": "GTiff"}
STARTUP_TIMEOUT = 300
# The client's status polls (its default grows from 5 s to 60 s): every 0.2 s, so that batch
# times show the backend's latency rather than the polling cadence (at 1 s, a job finishing
# just after a poll waited up to a second more).
POLL = 0.2


@dataclass
class OursRun:
    seconds: float | None
    peak_rss_delta: int
    error: str | None = None
    tasks: dict[str, float] = field(default_factory=dict)  # Airflow task id -> seconds
    work_seconds: float | None = None  # batch: the stages' own measured time (job usage)
    peak_pss_delta: int = 0  # the same as peak_rss_delta, in proportional set size


class Stack:
    """``openeo-airflow up`` as a subprocess in its own session; use as a context manager."""

    def __init__(
        self,
        home: Path,
        collections: Path,
        env: dict[str, str] | None = None,
        source: Path | None = None,
    ) -> None:
        """``source``: a checkout whose ``plugins/openeo`` is run instead of the installed one."""
        self.home = home
        self.collections = collections
        self.env = env or {}
        self.source = source
        self.process: subprocess.Popen[bytes] | None = None
        self.base = ""

    @property
    def url(self) -> str:
        return f"{self.base}/openeo/1.2"

    def __enter__(self) -> Stack:
        self.home.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        command = [str(Path(sys.executable).parent / "openeo-airflow"), "up"]
        command += ["--home", str(self.home), "--port", str(port)]
        command += ["--collections", str(self.collections), "--user", ":".join(USER)]
        env = {**os.environ, **self.env}
        # Own log-server ports: other stacks on this machine hold Airflow's defaults.
        env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(_free_port())
        env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(_free_port())
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        if self.source is not None:  # ahead of the editable install's path entry
            env["PYTHONPATH"] = str(self.source / "plugins" / "openeo")
        log = open(self.home / "up.log", "ab")
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        self.base = f"http://localhost:{port}"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.process.poll() is not None:
                tail = (self.home / "up.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"openeo-airflow up exited: {tail}")
            try:
                if httpx.get(self.url + "/", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"the stack did not answer within {STARTUP_TIMEOUT} s")
            time.sleep(1)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def restart(self) -> None:
        self.__exit__()
        self.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass
        self.process = None

    def connect(self) -> Any:
        return openeo.connect(self.url).authenticate_basic(*USER)

    def task_durations(self, run_id: str) -> dict[str, float]:
        """Seconds per task instance of a batch DAG run (mapped instances summed)."""
        try:
            password = (self.home / "secrets" / "airflow-admin").read_text().strip()
            token = httpx.post(
                f"{self.base}/auth/token", json={"username": "admin", "password": password}
            ).json()["access_token"]
            response = httpx.get(
                f"{self.base}/api/v2/dags/openeo_batch_job/dagRuns/{run_id}/taskInstances",
                headers={"Authorization": f"Bearer {token}"},
            )
            out: dict[str, float] = {}
            for task in response.json().get("task_instances", []):
                start, end = task.get("start_date"), task.get("end_date")
                if start and end:
                    seconds = (_parse(end) - _parse(start)).total_seconds()
                    out[task["task_id"]] = out.get(task["task_id"], 0.0) + seconds
            return out
        except Exception:
            return {}


def snapshot(repo: Path, ref: str, cache: Path) -> tuple[Path, str]:
    """``git archive`` of ``ref`` into ``cache/backend-<sha>`` (reused); returns (path, sha)."""
    sha = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", ref], capture_output=True, text=True, check=True
    ).stdout.strip()
    dest = cache / f"backend-{sha[:12]}"
    if not (dest / "plugins" / "openeo" / "openeo_airflow").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", sha], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest, sha


def run_ours(
    stack: Stack,
    path: str,
    workload: str,
    side_km: float,
    out: Path,
    polygons: dict | None,
    engine: str = "inline",
) -> OursRun:
    """One run of ``workload`` through our ``sync`` or ``batch`` path."""
    connection = stack.connect()
    collection = _collection_id(stack)

    def load(bands, spatial_extent, temporal_extent):  # type: ignore[no-untyped-def]
        return connection.load_collection(
            collection, spatial_extent=spatial_extent, temporal_extent=temporal_extent,
            bands=bands,
        )  # fmt: skip

    fmt = FORMATS[workload]
    assert stack.process is not None
    root = stack.process.pid
    baseline = tree_rss(_psutil_process(root))
    baseline_pss = tree_pss(_psutil_process(root)) if measure.PSS_INTERVAL else 0
    job: Any = None
    started = time.perf_counter()
    with TreeSampler(root) as sampler:
        try:
            cube = build(workload, load, side_km, polygons)
            graph = {"process_graph": cube.save_result(format=fmt).flat_graph()}
            out.with_suffix(".graph.json").write_text(json.dumps(graph, indent=1))
            if path == "sync":
                cube.download(out, format=fmt)
            else:
                job = cube.create_job(out_format=fmt, job_options={"engine": engine})
                try:
                    job.start_and_wait(print=lambda *a, **k: None, max_poll_interval=POLL)
                except Exception as error:
                    raise RuntimeError(_job_error(job, error)) from error
                assets = job.get_results().get_assets()
                data = [a for a in assets if "data" in (a.metadata.get("roles") or ["data"])]
                download_assets(data or assets, out)
        except openeo.rest.OpenEoApiError as error:
            failed = f"{error.code}: {error.message}"
            return OursRun(None, sampler.peak - baseline, failed, *_diagnostics(stack, job))
        except Exception as error:
            failed = f"{type(error).__name__}: {error}"
            return OursRun(None, sampler.peak - baseline, failed, *_diagnostics(stack, job))
        seconds = time.perf_counter() - started
    pss = max(0, sampler.peak_pss - baseline_pss)
    # The bench's own questions to Airflow and the job come after the clock stopped: a user
    # of the batch path does not ask them.
    tasks, work = _diagnostics(stack, job)
    return OursRun(
        seconds, max(0, sampler.peak - baseline), tasks=tasks, work_seconds=work, peak_pss_delta=pss
    )


def _diagnostics(stack: Stack, job: Any) -> tuple[dict[str, float], float | None]:
    """A batch job's Airflow task durations and the work its stages measured."""
    if job is None:
        return {}, None
    try:
        return stack.task_durations(job.job_id), _work_seconds(job)
    except Exception:
        return {}, None


def _work_seconds(job: Any) -> float | None:
    """What the job's stages measured as their own duration (load, transform and save, or
    the fused run): the work without Airflow's scheduling and task start-up."""
    duration = (job.describe().get("usage") or {}).get("duration") or {}
    return float(duration["value"]) if "value" in duration else None


def download_assets(assets: list[Any], out: Path) -> None:
    """One asset to ``out``; several GeoTIFFs (one per date) stacked into one file."""
    if len(assets) == 1:
        assets[0].download(out)
        return
    import numpy as np
    import rasterio

    parts = sorted(assets, key=lambda a: a.name)
    layers, profile = [], None
    for index, asset in enumerate(parts):
        part = out.with_name(f"{out.stem}.part{index}{out.suffix}")
        asset.download(part)
        with rasterio.open(part) as src:
            layers.append(src.read())
            profile = src.profile
        part.unlink()
    stack = np.concatenate(layers)
    assert profile is not None
    profile.update(count=stack.shape[0], driver="GTiff")
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(stack)


def _job_error(job: Any, error: Exception) -> str:
    try:
        messages = [entry["message"] for entry in job.logs(level="error")]
        if not messages:
            last = [e["message"] for e in job.logs()][-2:]
            messages = [f"{error} (no error in the job log; last entries: {last})"]
    except Exception:
        messages = []
    return " | ".join(messages[-3:]) or str(error)


def _collection_id(stack: Stack) -> str:
    import yaml

    return str(yaml.safe_load(stack.collections.read_text())["collections"][0]["id"])


def _psutil_process(pid: int) -> Any:
    import psutil

    return psutil.Process(pid)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
