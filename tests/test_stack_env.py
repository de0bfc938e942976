"""The Airflow settings `openeo-airflow up` gives its components."""

import subprocess
import sys
from pathlib import Path

import pytest

from openeo_airflow.cli.stack import SCHEDULER_IDLE_SLEEP, StackConfig, stack_env


def test_the_scheduler_sleeps_briefly_when_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME", raising=False)
    env = stack_env(StackConfig(home=tmp_path))
    assert env["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] == SCHEDULER_IDLE_SLEEP
    assert float(SCHEDULER_IDLE_SLEEP) < 1  # Airflow's default: a second per step of a job


def test_an_operators_idle_sleep_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME", "2")
    env = stack_env(StackConfig(home=tmp_path))
    assert env["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] == "2"


def test_the_scheduler_imports_the_task_code_and_nothing_else_before_it_forks() -> None:
    # The LocalExecutor's workers and their task processes are forks of the scheduler: they
    # find the engine imported. No thread, database engine or backend may cross the fork.
    code = (
        "import sys, threading\n"
        "from openeo_airflow.cli.scheduler import preload\n"
        "preload()\n"
        "from openeo_airflow.airflow import tasks\n"
        "from airflow.sdk.api.client import Client\n"
        "wanted = ('xarray', 'rasterio', 'h5netcdf', 'openeo_airflow.engine.streaming', 'dask')\n"
        "print(threading.active_count(), tasks.backend.cache_info().currsize,"
        " all(m in sys.modules for m in wanted),"
        " Client._get_ssl_context_cached.cache_info().currsize)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    # the last figure: the execution-API client's certificates, loaded once for all workers
    assert done.stdout.splitlines()[-1].split() == ["1", "0", "True", "1"]


def test_the_stack_starts_its_scheduler_through_the_preloading_entry(tmp_path: Path) -> None:
    from openeo_airflow.cli import stack

    python = stack._python_beside(sys.executable)
    assert Path(python).exists()
    done = subprocess.run(
        [python, "-m", "openeo_airflow.cli.scheduler", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "scheduler" in done.stdout
