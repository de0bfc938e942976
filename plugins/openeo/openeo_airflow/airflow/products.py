"""The DAG factory for recurring products: one DAG per product, ``openeo_product_<id>``.

Each DAG has the batch DAG's shape (``size -> load[] -> transform -> save``, the same task
bodies) plus ``publish``: ``size`` creates the run's openEO job (owner = the product's owner)
with the temporal extent its window rule gives for the run's data interval (or the one the
triggering asset events ask for in ``extra.temporal_extent``); ``publish`` copies
the results in as the item of the product's STAC collection for that interval (a re-run
replaces it) and emits the product's Airflow Asset, so downstream DAGs can schedule on it.

The timetable always has a data interval: a cron schedule becomes
``CronDataIntervalTimetable`` in the product's time zone (Airflow 3 turns a plain cron string
into ``CronTriggerTimetable`` without one), an ISO 8601 duration ``DeltaDataIntervalTimetable``
(fixed lengths: it has no time zone; the product's zone only aligns its start).
Parsing this module stays cheap: task bodies import the job machinery lazily.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import (
    DAG,
    Asset,
    AssetAny,
    AssetOrTimeSchedule,
    CronDataIntervalTimetable,
    DeltaDataIntervalTimetable,
    get_current_context,
    task,
)

from openeo_airflow.airflow.batch_dag import load, save, transform
from openeo_airflow.core.products import (
    PRODUCT_TAG,
    Product,
    ProductInvalid,
    extent_strings,
    item_id,
    parse_schedule,
    run_extent,
)

log = logging.getLogger(__name__)


def timetable(product: Product) -> Any:
    """The DAG's ``schedule``: a data-interval timetable, the trigger assets, or both."""
    time_based: Any = None
    if product.schedule:
        schedule = parse_schedule(product.schedule)
        if schedule.cron is not None:
            time_based = CronDataIntervalTimetable(schedule.cron, timezone=product.timezone)
        else:
            assert schedule.delta is not None
            delta = schedule.delta
            # A fixed-length delta as a timedelta: the plainer form for Airflow's serializer.
            if not (delta.years or delta.months):
                d = delta
                delta = timedelta(days=d.days, hours=d.hours, minutes=d.minutes, seconds=d.seconds)
            time_based = DeltaDataIntervalTimetable(delta)
    assets = [Asset(uri) for uri in product.trigger_assets]
    if time_based is not None and assets:
        return AssetOrTimeSchedule(timetable=time_based, assets=AssetAny(*assets))
    if assets:
        return AssetAny(*assets)
    return time_based


def run_interval(context: Any) -> tuple[datetime, datetime]:
    """The run's data interval; a run without one (asset-triggered, or triggered by hand
    without a logical date) gets the empty interval at the time it was asked for."""
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is not None and end is not None:
        return _utc(start), _utc(end)
    run = context["dag_run"]
    moment = _utc(getattr(run, "run_after", None) or datetime.now(UTC))
    return moment, moment


def event_extras(context: Any) -> list[dict[str, Any]]:
    """The ``extra`` of every asset event that triggered the run (none for other runs)."""
    events = context.get("triggering_asset_events") or {}
    return [dict(event.extra or {}) for found in events.values() for event in found]


def _utc(value: datetime) -> datetime:
    return datetime.fromtimestamp(value.timestamp(), UTC)


def _on_failure(context: Any) -> None:
    from openeo_airflow.airflow import tasks

    job_id = context["ti"].xcom_pull(task_ids="size", key="job_id")
    if job_id:
        exception = context.get("exception")
        reason = f"{type(exception).__name__}: {exception}" if exception else None
        tasks.mark_failed(str(job_id), context["ti"].task_id, reason)


@task
def size(product_id: str) -> list[str]:
    """Create the run's openEO job from the product, then size it like any batch job."""
    from openeo_airflow.airflow import tasks
    from openeo_airflow.core.models import JobStatus

    context = get_current_context()
    b = tasks.backend()
    product = b.products.store.find(product_id)
    if product is None or product.deleted:
        raise ValueError(f"The product '{product_id}' does not exist any more.")
    interval, (first, last) = run_extent(product, run_interval(context), event_extras(context))
    if first >= last:
        raise ProductInvalid(
            "window", f"rule '{product.window}' gives an empty extent for this run ({interval})"
        )
    extent = extent_strings(first, last)
    run_id = context["dag_run"].run_id
    job = b.registry.create(
        product.owner,
        b.products.process_for_run(product, extent),
        title=f"{product.title or product.id} {extent[0]}/{extent[1]}",
        description=f"Run '{run_id}' of the product '{product.id}'",
        job_options=product.job_options,
    )
    # No run_id on the job: the job service reconciles run ids against the batch DAG.
    b.registry.set_status(job.id, JobStatus.QUEUED)
    b.registry.add_log(
        job.id, "info", f"Job created by product '{product.id}' for {extent} (run '{run_id}')"
    )
    ti = context["ti"]
    ti.xcom_push(key="job_id", value=job.id)
    ti.xcom_push(key="extent", value=extent)
    ti.xcom_push(key="interval", value=[v.isoformat() for v in interval])
    sizing = tasks.size(job.id)
    ti.xcom_push(key="sizing", value=sizing)
    return list(sizing["sources"])


@task
def publish(product_id: str, files: list[str]) -> str:
    """Put the run's results into the product's collection; the outlet emits the Asset event."""
    from openeo_airflow.airflow import tasks
    from openeo_airflow.core.models import JobStatus

    context = get_current_context()
    ti = context["ti"]
    job_id = str(ti.xcom_pull(task_ids="size", key="job_id"))
    extent = list(ti.xcom_pull(task_ids="size", key="extent"))
    start, end = (datetime.fromisoformat(v) for v in ti.xcom_pull(task_ids="size", key="interval"))
    b = tasks.backend()
    job = b.registry.get(job_id)
    if job.status is not JobStatus.FINISHED:
        raise ValueError(f"Job {job_id} is {job.status.value}, not finished: nothing to publish")
    ws = tasks.workspace(job_id)
    identifier = item_id(start, end)
    b.products.catalog.publish(
        product_id,
        identifier,
        extent=extent,
        data_interval=(start, end),
        job_id=job_id,
        results_dir=ws.results_dir,
        metadata=ws.read_result_metadata() or {},
    )
    product = b.products.store.find(product_id)
    if product is not None:
        event: dict[str, Any] = {
            "item_id": identifier,
            "temporal_extent": extent,
            "job_id": job_id,
        }
        context["outlet_events"][Asset(product.asset_uri)].extra = event
    b.registry.add_log(job_id, "info", f"Published as item '{identifier}' of '{product_id}'")
    return identifier


def build_product_dag(product: Product) -> DAG:
    with DAG(
        dag_id=product.dag_id,
        description=product.title or f"openEO product {product.id}",
        doc_md=product.description,
        schedule=timetable(product),
        start_date=product.start or product.created,
        catchup=False,
        is_paused_upon_creation=product.paused,
        max_active_runs=1,
        tags=["openeo", PRODUCT_TAG],
        default_args={
            "owner": product.owner,
            "retries": 0,
            "on_failure_callback": _on_failure,
            "execution_timeout": timedelta(hours=12),
        },
        render_template_as_native_obj=True,
    ) as dag:
        sized: Any = size(product.id)
        loaded: Any = load.expand(node_id=sized)
        transformed: Any = transform(loaded)
        saved: Any = save(transformed)
        publish.override(outlets=[Asset(product.asset_uri)])(product.id, saved)
    return dag


def build_product_dags(products: list[Product]) -> dict[str, DAG]:
    """One DAG per product; a product whose DAG cannot be built is logged and skipped, so one
    bad row never hides the others."""
    dags = {}
    for product in products:
        try:
            dags[product.dag_id] = build_product_dag(product)
        except Exception:
            log.exception("Product %s: its DAG could not be built", product.id)
    return dags


def registered_products() -> list[Product]:
    """The products table as the DAG file sees it at each parse (no restart for new ones)."""
    from openeo_airflow.core.settings import load_settings
    from openeo_airflow.jobs.backend import Backend
    from openeo_airflow.jobs.product_store import ProductStore

    engine = Backend(load_settings()).engine
    try:
        return ProductStore(engine).active()
    finally:
        engine.dispose()
