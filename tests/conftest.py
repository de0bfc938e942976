"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real Sentinel samples beside the project; tests skip when they are absent."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"real Sentinel sample data not found at {SHARED_DATA}")
    return SHARED_DATA
