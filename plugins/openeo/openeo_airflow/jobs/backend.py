"""The backend's long-lived services, built lazily from settings (no I/O at construction)."""

from __future__ import annotations

import secrets
import threading
from functools import cached_property
from pathlib import Path

from sqlalchemy import Engine

from openeo_airflow.catalog.adhoc import allowed_roots, probe_stac
from openeo_airflow.catalog.config import CollectionConfig, load_collections
from openeo_airflow.core.settings import Settings
from openeo_airflow.jobs.accounts import Accounts
from openeo_airflow.jobs.airflow_client import AirflowClient
from openeo_airflow.jobs.database import make_engine, migrate
from openeo_airflow.jobs.oidc import OidcVerifier, parse_providers
from openeo_airflow.jobs.product_airflow import ProductAirflow
from openeo_airflow.jobs.product_catalog import ProductCatalog
from openeo_airflow.jobs.product_store import ProductStore
from openeo_airflow.jobs.products import ProductService
from openeo_airflow.jobs.registry import JobRegistry
from openeo_airflow.jobs.service import JobService
from openeo_airflow.jobs.user_processes import UserProcesses

DEFAULT_COLLECTIONS = Path(__file__).resolve().parents[1] / "catalog" / "collections.default.yaml"


class Backend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()

    @cached_property
    def engine(self) -> Engine:
        with self._lock:
            engine = make_engine(self.settings.database_url)
            migrate(engine)
            return engine

    @cached_property
    def registry(self) -> JobRegistry:
        return JobRegistry(self.engine)

    @cached_property
    def user_processes(self) -> UserProcesses:
        return UserProcesses(self.engine)

    @cached_property
    def accounts(self) -> Accounts:
        return Accounts(self.engine, self.settings.token_ttl_seconds)

    @cached_property
    def oidc(self) -> OidcVerifier:
        return OidcVerifier(parse_providers(self.settings.oidc_providers))

    @cached_property
    def airflow(self) -> AirflowClient:
        s = self.settings
        return AirflowClient(s.airflow_url, s.airflow_user, s.airflow_password)

    @cached_property
    def jobs(self) -> JobService:
        return JobService(
            self.registry,
            self.airflow,
            self.collection_bands,
            self.settings.jobs_dir,
            self.user_processes,
            self.check_stac_url,
        )

    @cached_property
    def products(self) -> ProductService:
        """Recurring products (one DAG each); their STAC items under ``WORKSPACE/products``."""
        s = self.settings
        return ProductService(
            ProductStore(self.engine),
            ProductCatalog(s.workspace / "products"),
            ProductAirflow(s.airflow_url, s.airflow_user, s.airflow_password),
            self.jobs,
            self.user_processes,
        )

    def check_stac_url(self, url: str) -> None:
        """``load_stac``'s look at a URL before a job runs, under the loader's path policy."""
        probe_stac(url, allowed_roots(self.collections.values()))

    @property
    def collection_bands(self) -> dict[str, dict[str, str | None]]:
        """Band names (with common names) per collection, for validation."""
        return {
            cid: {band.name: band.common_name for band in config.bands}
            for cid, config in self.collections.items()
        }

    @cached_property
    def signing_key(self) -> bytes:
        """Key for result download links: configured, or made once per home folder."""
        if self.settings.secret:
            return self.settings.secret.encode()
        path = self.settings.home / "secret.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_hex(32))
            path.chmod(0o600)
        return path.read_text().strip().encode()

    @cached_property
    def collections(self) -> dict[str, CollectionConfig]:
        return load_collections(self.settings.collections_file or DEFAULT_COLLECTIONS)
