"""The local stack: Airflow (api-server with the openEO API, scheduler, dag-processor, triggerer)
on SQLite with the LocalExecutor, all state under one home folder."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

import openeo_airflow
from openeo_airflow.jobs.airflow_client import AirflowClient

PLUGINS_FOLDER = Path(openeo_airflow.__file__).resolve().parents[1]
REPO_ROOT = PLUGINS_FOLDER.parents[1]
DAGS_FOLDER = REPO_ROOT / "dags"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
SERVICE_USER = "openeo-service"
SCHEDULER_IDLE_SLEEP = "0.25"  # seconds
ADMIN_USER = "admin"


@dataclass
class StackConfig:
    home: Path
    port: int = 8080
    users: dict[str, str] = field(default_factory=dict)
    collections: Path | None = None
    parallelism: int = 4
    api_workers: int = 1

    @property
    def base_url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def openeo_url(self) -> str:
        return f"{self.base_url}/openeo/1.2"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"


def _secret(path: Path) -> str:
    """A random secret made once per home folder, so restarts keep sessions and passwords."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def admin_password(config: StackConfig) -> str:
    return _secret(config.home / "secrets" / "airflow-admin")


def stack_env(config: StackConfig) -> dict[str, str]:
    secrets_dir = config.home / "secrets"
    service_password = _secret(secrets_dir / "airflow-service")
    passwords_file = config.airflow_home / "passwords.json"
    passwords_file.parent.mkdir(parents=True, exist_ok=True)
    passwords_file.write_text(
        json.dumps({ADMIN_USER: admin_password(config), SERVICE_USER: service_password})
    )
    env = dict(os.environ)
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(config.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(config.parallelism),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{config.base_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin,{SERVICE_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{config.airflow_home}/airflow.db",
            "AIRFLOW__API__PORT": str(config.port),
            "AIRFLOW__API__BASE_URL": config.base_url,
            "AIRFLOW__API__WORKERS": str(config.api_workers),
            "AIRFLOW__API__SECRET_KEY": _secret(secrets_dir / "api-secret-key"),
            "AIRFLOW__API_AUTH__JWT_SECRET": _secret(secrets_dir / "jwt-secret"),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(config.airflow_home / "logs"),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "OPENEO_AIRFLOW_HOME": str(config.home),
            "OPENEO_AIRFLOW_AIRFLOW_URL": config.base_url,
            "OPENEO_AIRFLOW_AIRFLOW_USER": SERVICE_USER,
            "OPENEO_AIRFLOW_AIRFLOW_PASSWORD": service_password,
        }
    )
    # An idle scheduler sleeps this long between loops (Airflow's default: 1 s), and a job
    # waits for it at every step: the triggered run, then each task after the previous one
    # ended. Measured side by side (2 cores, busy): trigger to run start 0.95 -> 0.47 s
    # (medians), the three steps between a staged job's tasks 1.49 -> 0.76 s; the idle
    # stack's CPU 0.09 -> 0.18 cores (at 0.1 s: 0.26). An operator's own value wins.
    env.setdefault("AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME", SCHEDULER_IDLE_SLEEP)
    if config.collections:
        env["OPENEO_AIRFLOW_COLLECTIONS"] = str(config.collections.resolve())
    return env


def _python_beside(executable: str) -> str:
    """The interpreter of the environment ``executable`` was installed in."""
    python = Path(executable).parent / "python"
    return str(python) if python.exists() else sys.executable


class LocalStack:
    """Starts and stops the Airflow components as child processes."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {}

    def prepare(self) -> dict[str, str]:
        from openeo_airflow.core.settings import load_settings
        from openeo_airflow.jobs.backend import Backend

        config = self.config
        config.home.mkdir(parents=True, exist_ok=True)
        env = self.env = stack_env(config)
        airflow = shutil.which("airflow", path=env["PATH"]) or "airflow"
        subprocess.run(
            [airflow, "db", "migrate"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        backend = Backend(load_settings(env))
        for name, password in config.users.items():
            backend.accounts.set_password(name, password)
        return env

    def start(self) -> None:
        env = self.prepare()
        logs = self.config.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        airflow = shutil.which("airflow", path=env["PATH"]) or "airflow"
        for component in COMPONENTS:
            args = [airflow, component]
            if component == "api-server":
                args += ["--port", str(self.config.port)]
            if component == "scheduler":
                # Its forked workers run the tasks: they start with the engine imported.
                args = [_python_beside(airflow), "-m", "openeo_airflow.cli.scheduler"]
            with open(logs / f"{component}.log", "ab") as out:
                self.processes[component] = subprocess.Popen(
                    args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )

    def wait_ready(self, timeout: float = 300) -> None:
        """Wait until the openEO API answers and Airflow knows the batch DAG (jobs can start)."""
        deadline = time.monotonic() + timeout
        url = self.config.openeo_url + "/"
        while not self._answers(url):
            self._wait_or_fail(deadline, f"The openEO API did not answer at {url}")
        airflow = AirflowClient(
            self.config.base_url, SERVICE_USER, self.env["OPENEO_AIRFLOW_AIRFLOW_PASSWORD"]
        )
        while not airflow.dag_exists():
            self._wait_or_fail(deadline, "Airflow did not register the openeo_batch_job DAG")
        # The api-server builds its execution API (which every task process reports to) on
        # the first request: 8.4 s measured, which the first job's first task used to wait.
        self._answers(
            self.config.base_url + "/execution/health",
            timeout=max(5.0, deadline - time.monotonic()),
        )

    def _answers(self, url: str, timeout: float = 5.0) -> bool:
        try:
            return httpx.get(url, timeout=timeout).status_code == 200
        except httpx.TransportError:
            return False

    def _wait_or_fail(self, deadline: float, message: str) -> None:
        self.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{message} within the start-up timeout; see {self.config.home}/logs"
            )
        time.sleep(1)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                log = self.config.home / "logs" / f"{name}.log"
                raise RuntimeError(
                    f"airflow {name} exited with code {process.returncode}; see {log}"
                )

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self.processes.clear()

    def wait(self) -> int:
        """Block until a component exits (or we are interrupted); returns an exit code."""
        try:
            while True:
                self.check_alive()
                time.sleep(1)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0
