"""``run_udf``: Python UDFs in a separate process with resource limits.

The user's code never runs in the backend's process: ``run_udf`` writes the data (``.npy`` and
JSON) to a temporary folder, starts ``python -I -m openeo_airflow.processes.udf_worker`` with
an empty environment (no credentials, no settings), an address-space limit, a CPU-time limit
and a wall-clock timeout, and reads the result back the same way (never pickle). A failing UDF
raises ``UdfError`` carrying the traceback of the user's code only.

Two runners, chosen by the settings ``udf_runner`` / ``udf_socket`` (``select_runner``):
``subprocess`` (the default) starts the worker itself; ``service`` asks the UDF runtime service
(``udf_service``) listening on a Unix socket to start it, with the request folder beside the
socket. On Kubernetes the service runs in a sidecar container from the UDF image, sharing only
an ``emptyDir`` with the Spark container (``engine/spark_k8s.py``): the Spark container runs no
user code. Both runners run the same worker on the same folder protocol.

What the UDF sees (the ``openeo.udf`` API): ``apply_datacube(cube, context)`` receives the
data as an ``XarrayDataCube``: inside ``apply`` the whole cube (tile), inside
``reduce_dimension``/``apply_dimension`` the cube with the dimension being processed (the
result must drop it, or keep it, respectively), inside ``apply_neighborhood`` each
neighbourhood. ``apply_timeseries(series, context)`` receives each pixel's time series.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from openeo_airflow.core.errors import FeatureUnsupported, Internal, ProcessParameterInvalid
from openeo_airflow.core.settings import load_settings

from .exceptions import process_error
from .registry import process
from .space import Global
from .udf_worker import labels_from_json, labels_to_json
from .values import LabeledArray, canonical_order

RUNTIME = "Python"
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
# What UDFs may import: the UDF image's images/udf/requirements.in, pinned to the versions of
# the backend's lock, so both runners offer the same (tests/test_udf_service.py).
LIBRARIES = ("numpy", "pandas", "xarray", "scipy", "openeo")
WORKER = "openeo_airflow.processes.udf_worker"
SUBPROCESS, SERVICE = "subprocess", "service"
RUNNERS = (SUBPROCESS, SERVICE)
# The service's wall-clock limit ends the worker first; this covers the exchange around it.
SERVICE_MARGIN_SECONDS = 60.0
MIB = 1024 * 1024
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UdfLimits:
    """Resources one UDF run may use (the engine may pass others, e.g. from job options)."""

    memory_bytes: int = 4 * 1024**3
    cpu_seconds: int = 600
    wall_seconds: float = 900.0


LIMITS = UdfLimits()


@dataclass(frozen=True)
class Runner:
    """Where a UDF runs: a child process of ours, or the service listening on ``socket``."""

    kind: str
    socket: Path | None = None


def udf_runtimes() -> dict[str, Any]:
    """The ``GET /udf_runtimes`` document: Python with its version and library versions."""
    libraries = {}
    for name in LIBRARIES:
        try:
            libraries[name] = {"version": importlib.metadata.version(name)}
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        RUNTIME: {
            "title": "Python",
            "description": "Python UDFs with the openEO UDF API (openeo.udf): apply_datacube, "
            "apply_timeseries. Each UDF runs in its own process with memory and time limits "
            "(on Kubernetes, in its own container).",
            "type": "language",
            "default": PYTHON_VERSION,
            "versions": {PYTHON_VERSION: {"libraries": libraries}},
        }
    }


def _check_runtime(runtime: Any, version: Any) -> None:
    if not isinstance(runtime, str) or runtime.lower() != RUNTIME.lower():
        raise process_error("run_udf", "InvalidRuntime", f"Supported: {RUNTIME}.")
    if version is not None and str(version) not in (PYTHON_VERSION, "3", platform.python_version()):
        raise process_error("run_udf", "InvalidVersion", f"Supported: {PYTHON_VERSION}.")


def _code(udf: Any) -> str:
    if not isinstance(udf, str) or not udf.strip():
        raise ProcessParameterInvalid(
            process="run_udf", parameter="udf", reason="no UDF code given"
        )
    if udf.startswith(("http://", "https://")) or ("\n" not in udf and udf.endswith(".py")):
        raise FeatureUnsupported(
            "run_udf: UDFs are accepted as code in the process graph; URLs and uploaded files"
            " are not supported yet."
        )
    return udf


def select_runner(name: str, socket_path: str) -> Runner:
    """Where UDFs run, from the settings ``udf_runner`` and ``udf_socket`` (pure)."""
    kind = (name or SUBPROCESS).strip().lower()
    if kind not in RUNNERS:
        raise ValueError(f"unknown UDF runner {name!r}; expected one of {', '.join(RUNNERS)}")
    if kind == SERVICE and not socket_path:
        raise ValueError("the UDF service runner needs the path of the service's socket")
    return Runner(kind, Path(socket_path) if kind == SERVICE else None)


def _configured_runner() -> Runner:
    settings = load_settings()
    try:
        return select_runner(settings.udf_runner, settings.udf_socket)
    except ValueError as exc:
        log.error("run_udf: %s", exc)
        raise Internal("run_udf: the UDF runtime of this backend is misconfigured.") from exc


def run_udf_code(
    runner: Runner, code: str, cube: xr.DataArray, context: Any, limits: UdfLimits = LIMITS
) -> xr.DataArray:
    """Run a UDF's entry point on ``cube`` with ``runner``; the resulting cube."""
    if runner.socket is not None:
        return run_in_service(runner.socket, code, cube, context, limits)
    return run_in_subprocess(code, cube, context, limits)


def _write_request(folder: Path, code: str, cube: xr.DataArray, context: Any) -> None:
    coords = {str(d): labels_to_json(cube.coords[d].values) for d in cube.dims if d in cube.coords}
    request = {
        "code": code,
        "context": context,
        "dims": [str(d) for d in cube.dims],
        "coords": coords,
    }
    (folder / "request.json").write_text(json.dumps(request, default=str))
    np.save(folder / "data.npy", np.asarray(cube.values, dtype=float), allow_pickle=False)


def run_in_subprocess(
    code: str, cube: xr.DataArray, context: Any, limits: UdfLimits = LIMITS
) -> xr.DataArray:
    """Run a UDF's entry point on ``cube`` in a child process; the resulting cube."""
    with tempfile.TemporaryDirectory(prefix="openeo-udf-") as tmp:
        folder = Path(tmp)
        _write_request(folder, code, cube, context)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tmp,
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "LANG": "C.UTF-8",
        }
        try:
            done = subprocess.run(
                [
                    sys.executable,
                    "-I",
                    "-m",
                    WORKER,
                    tmp,
                    str(limits.memory_bytes),
                    str(limits.cpu_seconds),
                ],
                env=env,
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=limits.wall_seconds,
                start_new_session=True,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise _timeout(limits) from exc
        return _read_result(folder, cube, done.returncode, limits)


def run_in_service(
    socket_path: Path, code: str, cube: xr.DataArray, context: Any, limits: UdfLimits = LIMITS
) -> xr.DataArray:
    """Run a UDF through the UDF runtime service listening on ``socket_path`` (a Unix socket
    in a volume shared with the service's container); the resulting cube."""
    with tempfile.TemporaryDirectory(prefix="openeo-udf-", dir=socket_path.parent) as tmp:
        folder = Path(tmp)
        _write_request(folder, code, cube, context)
        request = {
            "folder": tmp,
            "memory_bytes": limits.memory_bytes,
            "cpu_seconds": limits.cpu_seconds,
            "wall_seconds": limits.wall_seconds,
        }
        reply = _ask_service(socket_path, request, limits.wall_seconds + SERVICE_MARGIN_SECONDS)
        applied = reply.get("limits")
        if isinstance(applied, dict):  # the service's maxima may be lower than ours
            limits = UdfLimits(**applied)
        if reply.get("timeout"):
            raise _timeout(limits)
        if not isinstance(reply.get("returncode"), int):
            log.error("The UDF service refused a request: %s", reply.get("error", reply))
            raise Internal("run_udf: the UDF runtime service refused the request.")
        return _read_result(folder, cube, reply["returncode"], limits)


def _ask_service(socket_path: Path, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as channel:
        channel.settimeout(timeout)
        try:
            channel.connect(str(socket_path))
        except OSError as exc:
            log.error("The UDF service at %s does not answer: %s", socket_path, exc)
            raise Internal("run_udf: the UDF runtime service does not answer.") from exc
        try:
            channel.sendall(json.dumps(request).encode() + b"\n")
            with channel.makefile("rb") as replies:
                reply = json.loads(replies.readline())
        except (OSError, ValueError) as exc:
            # On Kubernetes: most likely its container went over its memory limit.
            log.error("The UDF service at %s stopped during a request: %s", socket_path, exc)
            raise Internal(
                "run_udf: the UDF runtime stopped while running the UDF (out of memory?)."
            ) from exc
    return reply if isinstance(reply, dict) else {}


def _timeout(limits: UdfLimits) -> Exception:
    return process_error(
        "run_udf", "UdfError", f"The UDF ran longer than {limits.wall_seconds:.0f} s."
    )


def _read_result(
    folder: Path, cube: xr.DataArray, returncode: int, limits: UdfLimits
) -> xr.DataArray:
    error = folder / "error.json"
    if error.exists():
        report = json.loads(error.read_text())
        trace = report["traceback"]
        if report.get("memory"):
            trace += f"The UDF exceeded its memory limit of {limits.memory_bytes // MIB} MiB.\n"
        raise process_error("run_udf", "UdfError", "\n" + trace)
    if returncode != 0 or not (folder / "result.json").exists():
        reason = (
            f"it was stopped: memory ({limits.memory_bytes // MIB} MiB) or CPU time "
            f"({limits.cpu_seconds} s) limit?"
            if returncode < 0
            else f"exit code {returncode}"
        )
        raise process_error(
            "run_udf", "UdfError", f"The UDF process ended without a result: {reason}."
        )
    meta = json.loads((folder / "result.json").read_text())
    values = np.load(folder / "result.npy", allow_pickle=False)
    coords: dict[str, Any] = {
        name: labels_from_json(entry) for name, entry in meta["coords"].items()
    }
    result = xr.DataArray(values, dims=meta["dims"], coords=coords)
    if "spatial_ref" in cube.coords and {"x", "y"} <= set(result.dims):
        result = result.assign_coords(spatial_ref=cube.coords["spatial_ref"])
    for dim in result.dims:
        if dim in cube.coords and dim in result.coords and cube.coords[dim].attrs:
            result.coords[dim].attrs.update(cube.coords[dim].attrs)
    return result


@process("run_udf", space=Global())
def run_udf(data: Any, udf: Any, runtime: Any, version: Any = None, context: Any = None) -> Any:
    _check_runtime(runtime, version)
    code = _code(udf)
    runner = _configured_runner()
    if isinstance(data, LabeledArray):
        result = run_udf_code(runner, code, data.cube, context)
        return (
            LabeledArray(result, data.dim) if data.dim in result.dims else canonical_order(result)
        )
    if isinstance(data, xr.DataArray):
        return canonical_order(run_udf_code(runner, code, data, context))
    if isinstance(data, list) and all(isinstance(v, int | float) or v is None for v in data):
        values = xr.DataArray(
            np.array([np.nan if v is None else v for v in data], dtype=float), dims="values"
        )
        result = run_udf_code(runner, code, values, context)
        return [None if np.isnan(v) else float(v) for v in np.asarray(result.values).ravel()]
    raise ProcessParameterInvalid(
        process="run_udf", parameter="data", reason="expected a data cube or an array of numbers"
    )
