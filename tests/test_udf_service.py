"""The UDF runtime service (``processes/udf_service.py``): the real service process on a Unix
socket in a temporary folder, real UDFs sent to it through ``run_udf`` with the service runner
(the code path of a Spark pod with the UDF sidecar), a batch job on the inline engine through
it, and the UDF image's requirements installed into a clean virtualenv that serves UDFs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from affine import Affine
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from openeo_airflow.core.errors import Internal, OpenEOError
from openeo_airflow.core.models import JobStatus
from openeo_airflow.cube import make_cube
from openeo_airflow.jobs.backend import Backend
from openeo_airflow.processes.graph import evaluate
from openeo_airflow.processes.udf import (
    LIBRARIES,
    Runner,
    UdfLimits,
    run_in_service,
    select_runner,
    udf_runtimes,
)
from tests.load_support import (
    CDSE_EXTENT,
    OCTOBER,
    backend_over_catalogs,
    graph,
    load_node,
    read_nc,
    run_job,
    save,
)
from tests.test_deploy_files import ROOT, copy_sources, dockerignore_patterns, is_ignored

SERVICE_MAX_MB = 1536
UDF_IMAGE = ROOT / "images" / "udf"
TIMES = np.array(["2021-06-01", "2021-06-06", "2021-06-11"], dtype="datetime64[ns]")


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    socket: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None


def start_service(python: Path | str, folder: Path, env: dict[str, str] | None = None) -> Service:
    sock = folder / "udf.sock"
    command = [str(python), "-I", "-m", "openeo_airflow.processes.udf_service", "--socket"]
    process = subprocess.Popen(
        [*command, str(sock), "--max-memory-mb", str(SERVICE_MAX_MB), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=folder,
    )
    deadline = time.monotonic() + 60
    while not sock.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the UDF service did not start: {process.stderr!r}")
        time.sleep(0.05)
    return Service(process, sock)


def stop(service: Service) -> int:
    service.process.send_signal(signal.SIGTERM)
    return service.process.wait(timeout=30)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    running = start_service(sys.executable, tmp_path_factory.mktemp("udf-service"))
    yield running
    assert stop(running) == 0


@pytest.fixture
def service_env(service: Service, monkeypatch: pytest.MonkeyPatch) -> Service:
    monkeypatch.setenv("OPENEO_AIRFLOW_UDF_RUNNER", "service")
    monkeypatch.setenv("OPENEO_AIRFLOW_UDF_SOCKET", str(service.socket))
    return service


@pytest.fixture
def cube() -> xr.DataArray:
    data = np.arange(3 * 2 * 4 * 5, dtype=np.float32).reshape(3, 2, 4, 5)
    transform = Affine(10, 0, 500_000, 0, -10, 5_000_000)
    return make_cube(data, times=TIMES, bands=["B04", "B08"], transform=transform, crs="EPSG:32633")


def node(process_id: str, result: bool = False, **arguments: Any) -> dict[str, Any]:
    return {"process_id": process_id, "arguments": arguments, "result": result}


def apply_udf(code: str, context: Any = None) -> dict[str, Any]:
    """load_collection -> apply(run_udf(code))."""
    udf = node("run_udf", True, data={"from_parameter": "x"}, udf=code, runtime="Python")
    if context is not None:
        udf["arguments"]["context"] = context
    return {
        "lc": node("load_collection", id="S2", spatial_extent=None, temporal_extent=None),
        "ap": node("apply", True, data={"from_node": "lc"}, process={"process_graph": {"u": udf}}),
    }


def run(code: str, cube: xr.DataArray, context: Any = None) -> Any:
    return evaluate(apply_udf(code, context), hooks={"load_collection": lambda a, n: cube})


def udf_error(code: str, cube: xr.DataArray) -> OpenEOError:
    with pytest.raises(OpenEOError) as caught:
        run(code, cube)
    return caught.value


# The UDF checks that its parent is the service: proof that the service ran it.
SCALE = textwrap.dedent(
    """
    import os
    from openeo.udf import XarrayDataCube

    def apply_datacube(cube: XarrayDataCube, context: dict) -> XarrayDataCube:
        assert os.getppid() == context["service_pid"], "not run by the UDF service"
        return XarrayDataCube(cube.get_array() * context["factor"])
    """
)


# --- runner selection (pure) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "sock", "expected"),
    [
        ("", "", Runner("subprocess")),
        ("subprocess", "/s/udf.sock", Runner("subprocess")),
        ("Service", "/s/udf.sock", Runner("service", Path("/s/udf.sock"))),
    ],
)
def test_select_runner(name: str, sock: str, expected: Runner) -> None:
    assert select_runner(name, sock) == expected


@pytest.mark.parametrize(("name", "sock"), [("docker", "/s"), ("service", "")])
def test_select_runner_refuses_what_it_cannot_run(name: str, sock: str) -> None:
    with pytest.raises(ValueError):
        select_runner(name, sock)


def test_a_misconfigured_runner_is_an_openeo_error(
    cube: xr.DataArray, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENEO_AIRFLOW_UDF_RUNNER", "kubernetes")
    with pytest.raises(Internal, match="misconfigured"):
        run(SCALE, cube, {"factor": 2, "service_pid": 0})


# --- real UDFs through the service -------------------------------------------------------------


def test_apply_datacube_with_context_runs_in_the_service(
    service_env: Service, cube: xr.DataArray
) -> None:
    result = run(SCALE, cube, {"factor": 3, "service_pid": service_env.pid})
    np.testing.assert_array_equal(result.values, cube.values * 3)
    assert result.dims == cube.dims and "spatial_ref" in result.coords
    np.testing.assert_array_equal(result.t.values, cube.t.values)


def test_the_subprocess_runner_is_not_the_service(cube: xr.DataArray, service: Service) -> None:
    # Without the settings, run_udf starts the worker itself: the UDF's check fails.
    with pytest.raises(OpenEOError, match="not run by the UDF service"):
        run(SCALE, cube, {"factor": 2, "service_pid": service.pid})


def test_apply_timeseries_with_context(service_env: Service, cube: xr.DataArray) -> None:
    code = textwrap.dedent(
        """
        import pandas as pd

        def apply_timeseries(series: pd.Series, context: dict) -> pd.Series:
            assert isinstance(series.index, pd.DatetimeIndex)
            return series.cumsum() + context["offset"]
        """
    )
    result = run(code, cube, {"offset": 100})
    expected = cube.cumsum(dim="t") + 100
    np.testing.assert_allclose(result.transpose(*cube.dims).values, expected.values)


def test_a_failing_udf_gives_its_traceback_without_backend_internals(
    service_env: Service, cube: xr.DataArray
) -> None:
    code = textwrap.dedent(
        """
        def helper(x):
            raise ValueError(f"no good: {x}")

        def apply_datacube(cube, context):
            return helper(42)
        """
    )
    error = udf_error(code, cube)
    assert error.code == "UdfError"
    assert 'File "<udf>", line 6, in apply_datacube' in error.message
    assert 'File "<udf>", line 3, in helper' in error.message
    assert "ValueError: no good: 42" in error.message
    for internal in ("openeo_airflow", "udf_worker", "site-packages", str(service_env.socket)):
        assert internal not in error.message


def test_a_udf_over_its_memory_limit_is_a_clear_error(
    service_env: Service, cube: xr.DataArray
) -> None:
    code = textwrap.dedent(
        """
        import numpy as np

        def apply_datacube(cube, context):
            return np.ones((3 * 1024, 1024, 1024), dtype=np.uint8)
        """
    )
    error = udf_error(code, cube)  # run_udf asks for 4 GiB; the service caps it at 1536 MiB
    assert error.code == "UdfError"
    assert f"exceeded its memory limit of {SERVICE_MAX_MB} MiB" in error.message
    assert "line 5, in apply_datacube" in error.message


def test_the_service_survives_a_crashing_udf(service_env: Service, cube: xr.DataArray) -> None:
    crash = "import os, signal\ndef apply_datacube(cube, context):\n    os.kill(os.getpid(), 9)\n"
    error = udf_error(crash, cube)
    assert "ended without a result" in error.message and "memory" in error.message
    assert service_env.alive()
    result = run(SCALE, cube, {"factor": 2, "service_pid": service_env.pid})
    np.testing.assert_array_equal(result.values, cube.values * 2)


def test_the_wall_clock_limit_ends_the_udf(service: Service, cube: xr.DataArray) -> None:
    code = "import time\ndef apply_datacube(cube, context):\n    time.sleep(60)\n"
    started = time.monotonic()
    with pytest.raises(OpenEOError, match="longer than 2 s"):
        run_in_service(service.socket, code, cube, None, UdfLimits(wall_seconds=2.0))
    assert time.monotonic() - started < 30
    assert service.alive()


def ask(sock: Path, line: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as channel:
        channel.settimeout(30)
        channel.connect(str(sock))
        channel.sendall(line)
        with channel.makefile("rb") as replies:
            return json.loads(replies.readline())


def test_the_service_runs_only_request_folders_beside_its_socket(
    service: Service, tmp_path: Path
) -> None:
    (tmp_path / "request.json").write_text("{}")
    request = {"folder": str(tmp_path), "memory_bytes": 1, "cpu_seconds": 1, "wall_seconds": 1}
    assert "beside the socket" in ask(service.socket, json.dumps(request).encode() + b"\n")["error"]
    assert "JSON" in ask(service.socket, b"not json\n")["error"]
    assert "expected folder" in ask(service.socket, b'{"folder": "x"}\n')["error"]
    assert ask(service.socket, b'{"op": "ping"}\n') == {"ok": True}


def test_an_absent_service_is_an_openeo_error_without_paths(
    cube: xr.DataArray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENEO_AIRFLOW_UDF_RUNNER", "service")
    monkeypatch.setenv("OPENEO_AIRFLOW_UDF_SOCKET", str(tmp_path / "udf.sock"))
    with pytest.raises(Internal) as caught:
        run(SCALE, cube, {"factor": 2, "service_pid": 0})
    assert "does not answer" in caught.value.message
    assert str(tmp_path) not in caught.value.message


# --- a batch job with a UDF on the inline engine -------------------------------------------------


@pytest.fixture(scope="module")
def jobs(
    tmp_path_factory: pytest.TempPathFactory, shared_data: Path, service: Service
) -> Iterator[Backend]:
    yield from (
        backend
        for backend, _ in backend_over_catalogs(
            tmp_path_factory,
            shared_data,
            "udf-jobs",
            UDF_RUNNER="service",
            UDF_SOCKET=str(service.socket),
        )
    )


def load_s2() -> dict[str, Any]:
    return load_node(
        "load_collection",
        id="TEST_CDSE_S2",
        spatial_extent=CDSE_EXTENT,
        temporal_extent=OCTOBER,
        bands=["B04", "B08"],
    )


def udf_job(code: str, context: dict[str, Any]) -> dict[str, Any]:
    udf = node("run_udf", True, data={"from_parameter": "x"}, udf=code, runtime="Python")
    udf["arguments"]["context"] = context
    apply = load_node("apply", data={"from_node": "load"}, process={"process_graph": {"u": udf}})
    return {"process_graph": {"load": load_s2(), "apply": apply, "save": save("apply")}}


def test_a_batch_job_runs_its_udf_in_the_service(jobs: Backend, service: Service) -> None:
    _, plain = run_job(jobs, graph(load_s2()))
    _, scaled = run_job(jobs, udf_job(SCALE, {"factor": 2, "service_pid": service.pid}))
    expected, result = read_nc(plain), read_nc(scaled)
    assert result["B04"].shape == expected["B04"].shape and result["B04"].size > 1000
    for band in ("B04", "B08"):
        np.testing.assert_allclose(result[band].values, expected[band].values * 2)


def test_a_failing_udf_in_a_batch_job_logs_the_users_traceback(jobs: Backend) -> None:
    code = "def apply_datacube(cube, context):\n    raise RuntimeError('cloud mask missing')\n"
    job = jobs.registry.create("alice", udf_job(code, {}), job_options={"engine": "inline"})
    jobs.registry.set_status(job.id, JobStatus.QUEUED)
    from openeo_airflow.airflow import tasks

    with pytest.raises(OpenEOError, match="cloud mask missing"):
        spec = tasks.size(job.id)
        if not (spec["fused"] and tasks.fused(job.id)):
            for source in spec["sources"]:
                tasks.load(job.id, source)
            tasks.transform(job.id)
    errors = "\n".join(e.message for e in jobs.registry.logs(job.id, level="error"))
    assert "RuntimeError: cloud mask missing" in errors
    assert 'File "<udf>", line 2, in apply_datacube' in errors
    for internal in ("openeo_airflow", "udf_worker", "site-packages"):
        assert internal not in errors


# --- the UDF image ------------------------------------------------------------------------------


def test_udf_runtimes_lists_the_libraries_of_the_udf_image() -> None:
    pins = {}
    for line in (UDF_IMAGE / "requirements.in").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            pins[canonicalize_name(requirement.name)] = str(requirement.specifier).lstrip("=")
    assert set(pins) == {canonicalize_name(n) for n in LIBRARIES}
    (version,) = udf_runtimes()["Python"]["versions"].values()
    listed = {canonicalize_name(n): e["version"] for n, e in version["libraries"].items()}
    # The backend's venv (the subprocess runner) provides the versions the image pins.
    assert listed == pins
    locked = (UDF_IMAGE / "requirements.txt").read_text()
    for name, pinned in pins.items():
        assert f"\n{name}=={pinned}\n" in locked, f"regenerate requirements.txt for {name}"


def test_the_udf_image_copies_only_the_service_and_the_worker() -> None:
    dockerfile = UDF_IMAGE / "Dockerfile"
    patterns = dockerignore_patterns(dockerfile)
    sources = copy_sources(dockerfile)
    package = [s for s in sources if s.startswith("plugins/")]
    assert sorted(Path(s).name for s in package) == [
        "__init__.py",
        "__init__.py",
        "udf_service.py",
        "udf_worker.py",
    ]
    for source in sources:
        assert (ROOT / source).is_file() and not is_ignored(source, patterns), source
    assert is_ignored("plugins/openeo/openeo_airflow/engine/stages.py", patterns)


def test_the_udf_image_requirements_serve_udfs_from_a_clean_venv(
    tmp_path: Path, cube: xr.DataArray
) -> None:
    """The image's Python side rebuilt the way its Dockerfile builds it; the service from that
    venv serves a UDF that this process (the Spark side) sends."""
    from tests.test_deploy_images import _clean_env, _tool, _uv

    uv = _tool("uv")
    if uv is None:
        pytest.skip("uv not installed (scripts/install.sh installs it into .venv)")
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, venv], check=True)
    python = venv / "bin" / "python"
    _uv(uv, "pip", "install", "--quiet", "--no-deps", "--python", python,
        "-r", UDF_IMAGE / "requirements.txt")  # fmt: skip
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    for source in copy_sources(UDF_IMAGE / "Dockerfile"):
        if source.startswith("plugins/openeo/"):
            target = Path(site) / Path(source).relative_to("plugins/openeo")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / source, target)
    check = "import openeo.udf, scipy, rasterio"
    missing = subprocess.run([python, "-I", "-c", check], capture_output=True, text=True)
    assert "No module named 'rasterio'" in missing.stderr  # the raster stack stays out
    folder = tmp_path / "shared"
    folder.mkdir()
    process = start_service(python, folder, env=_clean_env())
    try:
        code = "def apply_datacube(cube, context):\n    return cube.get_array() + 1\n"
        result = run_in_service(folder / "udf.sock", code, cube, None)
        np.testing.assert_array_equal(result.values, cube.values + 1)
    finally:
        stop(process)
    assert os.listdir(folder) == ["udf.sock"]  # the request folder went with the request


def test_a_spark_k8s_job_gives_only_its_transform_the_udf_sidecar(
    jobs: Backend, service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spark-k8s engine's task code path unchanged up to the submission; the cluster is a
    stand-in that runs what the driver would (the stage, tiles in process) with the env the
    manifest gives the driver's Spark container, the UDF socket moved to the test's service."""
    from openeo_airflow.airflow import tasks
    from openeo_airflow.engine import entrypoint, tiled
    from openeo_airflow.engine.spark_k8s import UDF_SOCKET
    from openeo_airflow.engine.workspace import JobWorkspace

    submitted: list[dict[str, Any]] = []

    def cluster(context: Any, manifest: dict[str, Any], **_: Any) -> dict[str, Any]:
        submitted.append(manifest)
        arguments = manifest["spec"]["arguments"]
        workspace = JobWorkspace(Path(arguments[arguments.index("--workspace") + 1]))
        stage = arguments[arguments.index("--stage") + 1]
        source = arguments[arguments.index("--node") + 1] if "--node" in arguments else None
        tile_size = workspace.read_json(workspace.stage_spec_file)["tile_size"]
        with monkeypatch.context() as driver_env:
            for entry in manifest["spec"]["driver"]["env"]:
                driver_env.setenv(
                    entry["name"], entry["value"].replace(UDF_SOCKET, str(service.socket))
                )
            measured = entrypoint.run_stage(
                workspace, stage, source, tile_size, tiled.inline_mapper
            )
        name = entrypoint.stage_name(stage, source)
        workspace.write_json(workspace.measurement_file(name), measured.to_dict())
        return {"name": manifest["metadata"]["name"], "namespace": "", "reattached": False}

    monkeypatch.setattr("openeo_airflow.airflow.spark_k8s.run_spark_application", cluster)
    monkeypatch.delenv("OPENEO_AIRFLOW_UDF_RUNNER")  # the Airflow worker itself: no service
    process = udf_job(SCALE, {"factor": 2, "service_pid": service.pid})
    job = jobs.registry.create("alice", process, job_options={"engine": "spark-k8s"})
    jobs.registry.set_status(job.id, JobStatus.QUEUED)
    context = {"ti": type("TaskInstance", (), {"try_number": 1})()}
    spec = tasks.size(job.id)
    assert spec["engine"] == "spark-k8s" and not spec.get("fused")
    for source in spec["sources"]:
        tasks.load(job.id, source, context)
    tasks.transform(job.id, context)
    tasks.save(job.id, context)
    assert jobs.registry.get(job.id).status is JobStatus.FINISHED
    stages = {m["spec"]["arguments"][3]: m["spec"] for m in submitted}
    assert set(stages) == {"load", "transform", "save"}
    for stage, pod_spec in stages.items():
        for role in ("driver", "executor"):
            assert ("initContainers" in pod_spec[role]) is (stage == "transform")
    result = read_nc(tasks.workspace(job.id).results_dir)
    assert np.isfinite(result["B04"].values).sum() > 1000


def test_a_service_that_dies_during_a_udf_is_a_clear_error(
    tmp_path: Path, cube: xr.DataArray
) -> None:
    dying = start_service(sys.executable, tmp_path)
    code = "import time\ndef apply_datacube(cube, context):\n    time.sleep(6)\n"
    threading.Timer(3.0, dying.process.kill).start()  # as the kernel's OOM killer would
    with pytest.raises(Internal, match=r"stopped while running the UDF \(out of memory\?\)"):
        run_in_service(dying.socket, code, cube, None)
    dying.process.wait(timeout=30)
