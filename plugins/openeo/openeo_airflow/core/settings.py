"""Settings from the environment, read once per process by whoever needs them.

Nothing here runs at import time: the DAG processor and Spark executors import this package too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PREFIX = "OPENEO_AIRFLOW_"


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    workspace: Path
    collections_file: Path | None
    airflow_url: str
    airflow_user: str
    airflow_password: str
    sync_max_pixels: int = 50_000_000
    sync_workers: int = 2
    token_ttl_seconds: int = 24 * 3600
    gdal_profile: str = "local"
    secret: str = ""
    oidc_providers: str = ""

    @property
    def jobs_dir(self) -> Path:
        return self.workspace / "jobs"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env

    def get(name: str, default: str) -> str:
        return env.get(PREFIX + name, default)

    home = Path(get("HOME", str(Path.home() / ".openeo-airflow"))).expanduser().resolve()
    collections = get("COLLECTIONS", "")
    return Settings(
        home=home,
        database_url=get("DATABASE_URL", f"sqlite:///{home / 'openeo.db'}"),
        workspace=Path(get("WORKSPACE", str(home / "workspace"))),
        collections_file=Path(collections) if collections else None,
        airflow_url=get("AIRFLOW_URL", "http://localhost:8080").rstrip("/"),
        airflow_user=get("AIRFLOW_USER", "openeo-service"),
        airflow_password=get("AIRFLOW_PASSWORD", ""),
        sync_max_pixels=int(get("SYNC_MAX_PIXELS", "50000000")),
        sync_workers=int(get("SYNC_WORKERS", "2")),
        token_ttl_seconds=int(get("TOKEN_TTL_SECONDS", str(24 * 3600))),
        gdal_profile=get("GDAL_PROFILE", "local"),
        secret=get("SECRET", ""),
        oidc_providers=get("OIDC_PROVIDERS", ""),
    )
