"""Recurring products: register, list, pause, resume, backfill, delete (one Airflow DAG each).

The products table is the source of truth: the DAG file (``dags/openeo_products.py``) reads it
on every parse, so a new product becomes a DAG within the DAG processor's refresh, without a
restart. Actions that must reach a DAG that exists already (pause, backfill, delete) also go to
Airflow's REST API, like every other call of the openEO API to Airflow.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from openeo_airflow.core.errors import OpenEOError
from openeo_airflow.core.products import (
    PRODUCT_ID,
    WINDOW_RULES,
    Product,
    ProductInvalid,
    ProductNotReady,
    Schedule,
    check_asset_uris,
    check_window,
    extent_strings,
    first_start,
    latest_interval,
    local_instant,
    parse_schedule,
    parse_timezone,
    paused_state,
    run_process,
    window,
)
from openeo_airflow.jobs.product_airflow import ProductAirflow
from openeo_airflow.jobs.product_catalog import ProductCatalog
from openeo_airflow.jobs.product_store import ProductStore
from openeo_airflow.jobs.service import JobService
from openeo_airflow.jobs.user_processes import UserProcesses
from openeo_airflow.sizing.resources import validate_job_options

log = logging.getLogger(__name__)
REPROCESS = ("none", "failed", "completed")


class ProductService:
    def __init__(
        self,
        store: ProductStore,
        catalog: ProductCatalog,
        airflow: ProductAirflow,
        jobs: JobService,
        user_processes: UserProcesses,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self._airflow = airflow
        self._jobs = jobs
        self._user_processes = user_processes

    def register(self, owner: str, fields: dict[str, Any], now: datetime | None = None) -> Product:
        """Validate a product definition and store it; every refusal names its field."""
        now = now or datetime.now(UTC)
        product = self._parse(owner, fields)
        schedule = parse_schedule(product.schedule) if product.schedule else None
        check_window(product, schedule, now)
        self._check_process(product, schedule, now)
        taken = self.store.find(product.id)
        if taken is not None and (taken.owner != owner or taken.deleted is None):
            raise ProductInvalid("id", f"a product '{product.id}' exists already")
        product.start = first_start(schedule, now, product.zone) if schedule else now
        return self.store.put(product)

    def get(self, owner: str, product_id: str) -> Product:
        """The owner's product with the paused state Airflow has for its DAG."""
        product = self.store.get(owner, product_id)
        product.paused = paused_state(product.paused, self._airflow.paused(product.dag_id))
        return product

    def of(self, owner: str) -> list[Product]:
        """The owner's products with Airflow's paused states (one call for all of them)."""
        products = self.store.of(owner)
        if products:
            states = self._airflow.paused_states()
            for product in products:
                product.paused = paused_state(product.paused, states.get(product.dag_id))
        return products

    def _parse(self, owner: str, fields: dict[str, Any]) -> Product:
        product_id = fields.get("id")
        if not isinstance(product_id, str) or not PRODUCT_ID.match(product_id):
            raise ProductInvalid("id", "1 to 64 letters, digits, '_' or '-' are required")
        process, graph_id = fields.get("process"), fields.get("process_graph_id")
        if (process is None) == (graph_id is None):
            raise ProductInvalid(
                "process", "give either 'process' (a process graph) or 'process_graph_id'"
            )
        if process is not None and not isinstance(process, dict):
            raise ProductInvalid("process", "must be an openEO process with a 'process_graph'")
        arguments = fields.get("arguments") or {}
        if not isinstance(arguments, dict):
            raise ProductInvalid("arguments", "must be an object of parameter values")
        schedule, assets = fields.get("schedule"), fields.get("trigger_assets") or []
        if schedule is not None and not isinstance(schedule, str):
            raise ProductInvalid("schedule", "must be a cron expression or an ISO 8601 duration")
        if not isinstance(assets, list):
            raise ProductInvalid("trigger_assets", "must be a list of asset URIs")
        if not schedule and not assets:
            raise ProductInvalid("schedule", "give a 'schedule' or 'trigger_assets' (or both)")
        check_asset_uris(assets)
        timezone = fields.get("timezone", "UTC")
        parse_timezone(timezone)
        rule = fields.get("window")
        if rule not in WINDOW_RULES:
            raise ProductInvalid(
                "window", f"unknown rule {rule!r}; one of {', '.join(WINDOW_RULES)}"
            )
        job_options = fields.get("job_options") or {}
        try:
            validate_job_options(dict(job_options))
        except OpenEOError as exc:
            raise ProductInvalid("job_options", exc.message) from exc
        return Product(
            id=product_id,
            owner=owner,
            window=rule,
            schedule=schedule or None,
            trigger_assets=assets,
            timezone=timezone,
            process=process,
            process_graph_id=graph_id,
            arguments=arguments,
            title=fields.get("title"),
            description=fields.get("description"),
            job_options=job_options,
            paused=bool(fields.get("paused", False)),
        )

    def _check_process(self, product: Product, schedule: Schedule | None, now: datetime) -> None:
        """The graph as a run would get it (for a sample window) must be a valid job."""
        stored = None
        if product.process_graph_id:
            stored = self._user_processes.find(product.owner, product.process_graph_id)
            if stored is None:
                raise ProductInvalid(
                    "process_graph_id",
                    f"there is no user-defined process '{product.process_graph_id}' "
                    "(store it with PUT /process_graphs/{id} first)",
                )
        zone = product.zone
        interval = latest_interval(schedule, now, zone) if schedule else (now, now)
        extent = extent_strings(*window(product.window, *interval, zone))
        field = "process_graph_id" if product.process_graph_id else "process"
        try:
            process = run_process(product, stored, extent)
        except (AttributeError, TypeError) as exc:
            raise ProductInvalid(field, "is not an openEO process graph") from exc
        problems = self._jobs.problems(product.owner, process)
        if problems:
            listing = "; ".join(f"[{p.code}] {p.message}" for p in problems)
            raise ProductInvalid(field, f"the process graph is invalid: {listing}")

    def process_for_run(self, product: Product, extent: list[str]) -> dict[str, Any]:
        stored = None
        if product.process_graph_id:
            stored = self._user_processes.get(product.owner, product.process_graph_id)
        return run_process(product, stored, extent)

    def set_paused(self, owner: str, product_id: str, paused: bool) -> Product:
        product = self.store.get(owner, product_id)
        # Both: Airflow for the DAG it has, the table for a DAG it has not parsed yet.
        self.store.set_paused(product_id, paused)
        self._airflow.set_paused(product.dag_id, paused)
        return self.get(owner, product_id)

    def backfill(
        self, owner: str, product_id: str, start: datetime, end: datetime, reprocess: str
    ) -> dict[str, Any]:
        """Runs for the data intervals that start in ``[start, end)``; with ``reprocess``
        ``failed`` (default) a failed interval runs again and replaces nothing else. Naive
        bounds are on the product's wall clock (its months start at its midnight)."""
        product = self.store.get(owner, product_id)
        start, end = (local_instant(v, product.zone) for v in (start, end))
        if not product.schedule:
            raise ProductInvalid("schedule", "a product without a schedule cannot be backfilled")
        if reprocess not in REPROCESS:
            raise ProductInvalid("reprocess", f"one of {', '.join(REPROCESS)}")
        if end <= start:
            raise ProductInvalid("end", "must be after 'start'")
        if paused_state(product.paused, self._airflow.paused(product.dag_id)):
            raise ProductNotReady(reason="The product is paused; resume it to backfill.")
        # Airflow takes logical dates (interval starts) with both bounds included.
        result = self._airflow.backfill(
            product.dag_id, start, end - timedelta(microseconds=1), reprocess
        )
        return {"backfill_id": result.get("id"), "start": start, "end": end}

    def delete(self, owner: str, product_id: str) -> None:
        """The DAG goes (its runs too); the published collection stays and is still served."""
        product = self.store.get(owner, product_id)
        self.store.mark_deleted(product_id)
        try:
            self._airflow.set_paused(product.dag_id, True)
            if not self._airflow.delete_dag(product.dag_id):
                log.warning("DAG %s has running tasks; it stays paused (stale)", product.dag_id)
        except OpenEOError as exc:
            # The DAG file no longer yields it: Airflow marks it stale at the next parse.
            log.warning("Could not delete DAG %s in Airflow: %s", product.dag_id, exc.message)
