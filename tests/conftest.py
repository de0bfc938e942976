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
