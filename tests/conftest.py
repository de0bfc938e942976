"""Shared test fixtures."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Airflow writes its config and logs under AIRFLOW_HOME on import: keep tests out of ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="openeo-airflow-tests-"))

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real Sentinel samples beside the project; tests skip when they are absent."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"real Sentinel sample data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def collections_file(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test collections (static catalogs over the real samples), once per test module."""
    from tests.api_support import build_test_collections

    return build_test_collections(shared_data, tmp_path_factory.mktemp("catalogs"))


@pytest.fixture
def backend(tmp_path: Path, collections_file: Path):  # type: ignore[no-untyped-def]
    """A backend (SQLite registry, local workspace) over the test collections."""
    from tests.api_support import make_backend

    return make_backend(tmp_path / "home", collections_file)


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def postgres_url():  # type: ignore[no-untyped-def]
    """A throwaway PostgreSQL server on loopback (Debian's postgresql, see install-system.sh)."""
    import shutil
    import socket
    import subprocess

    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    # Not under pytest's tmp folders: those are private to root, and the server refuses to run
    # as root, so it runs as the package's `postgres` user.
    base = Path(tempfile.mkdtemp(prefix="openeo-airflow-pg-"))
    data = base / "data"
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if prefix:
        shutil.chown(base, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = lambda *args: subprocess.run([*prefix, *args], check=True, capture_output=True)  # noqa: E731
    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "openeo", "--auth=trust")
    run(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(data.parent / "server.log"),
        "-w",
        "-o",
        f"-p {port} -k {data.parent} -c listen_addresses=127.0.0.1",
        "start",
    )
    try:
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "openeo", "jobs")
        yield f"postgresql+psycopg://openeo@127.0.0.1:{port}/jobs"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop")
        shutil.rmtree(base, ignore_errors=True)
