"""Recurring products: a stored process graph + a schedule + a temporal window rule (pure).

Everything here is a decision without effects, so it is table-tested: how a schedule string is
read, which temporal extent a window rule gives for a run's data interval (on the calendar of the
product's time zone), which extent an asset event asks for, the id of the STAC item a run
publishes, how the extent is put into the graph, and which paused state a product shows.
Storage is in ``jobs``, the DAG factory in ``airflow``, HTTP in ``api``.
"""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from croniter import croniter
from dateutil.relativedelta import relativedelta

from openeo_airflow.core.errors import OpenEOError

PRODUCT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DAG_PREFIX = "openeo_product_"
PRODUCT_TAG = "openeo-product"  # every product DAG has it: how they are listed in Airflow
ASSET_SCHEME = "openeo"
WINDOW_RULES = (
    "data-interval",
    "previous-day",
    "previous-week",
    "previous-month",
    "previous-year",
)
# ISO 8601 durations without fractions: P1Y2M3W4DT5H6M7S (weeks may mix, as many parsers allow).
ISO_DURATION = re.compile(
    r"^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$"
)
ASSET_URI = re.compile(r"^([a-z][a-z0-9+.-]*)://\S+$")
# Where an asset event says which dates a run covers (Airflow: the event's ``extra``).
EVENT_FIELD = "extra.temporal_extent"


class ProductInvalid(OpenEOError):
    """Our own code: a product definition that cannot be registered; the message names the field."""

    code = "ProductInvalid"
    status = 400
    template = "Field '{field}': {reason}"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field=field, reason=reason)
        self.field = field


class ProductNotFound(OpenEOError):
    code = "ProductNotFound"
    status = 404
    template = "The product '{identifier}' does not exist."


class ProductNotReady(OpenEOError):
    """Airflow has not picked up the product's DAG yet, or refuses the action right now."""

    code = "ProductNotReady"
    status = 409
    template = "{reason}"


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: a cron expression or an ISO 8601 duration (a fixed interval)."""

    text: str
    cron: str | None = None
    delta: relativedelta | None = None

    @property
    def is_cron(self) -> bool:
        return self.cron is not None


@dataclass
class Product:
    id: str
    owner: str
    window: str
    schedule: str | None = None
    trigger_assets: list[str] = field(default_factory=list)
    timezone: str = "UTC"
    process: dict[str, Any] | None = None
    process_graph_id: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    title: str | None = None
    description: str | None = None
    job_options: dict[str, Any] = field(default_factory=dict)
    paused: bool = False
    start: datetime | None = None
    created: datetime | None = None
    updated: datetime | None = None
    deleted: datetime | None = None

    @property
    def dag_id(self) -> str:
        return DAG_PREFIX + self.id

    @property
    def zone(self) -> ZoneInfo:
        return parse_timezone(self.timezone)

    @property
    def asset_uri(self) -> str:
        """What the product emits after each published run (downstream DAGs schedule on it)."""
        return f"{ASSET_SCHEME}://products/{self.id}"


def parse_schedule(text: str) -> Schedule:
    """A cron expression (5 or 6 fields, or a preset like ``@daily``) or an ISO 8601 duration."""
    text = text.strip()
    match = ISO_DURATION.match(text)
    if match:
        years, months, weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
        delta = relativedelta(
            years=years,
            months=months,
            weeks=weeks,
            days=days,
            hours=hours,
            minutes=minutes,
            seconds=seconds,
        )
        if _reference() + delta <= _reference():
            raise ProductInvalid("schedule", f"the interval '{text}' is empty")
        return Schedule(text=text, delta=delta)
    if text in ("@once", "@continuous") or not croniter.is_valid(text):
        raise ProductInvalid(
            "schedule",
            f"'{text}' is neither a cron expression (e.g. '0 0 1 * *' or '@monthly') "
            "nor an ISO 8601 duration (e.g. 'P1D', 'PT6H')",
        )
    return Schedule(text=text, cron=text)


def parse_timezone(name: object) -> ZoneInfo:
    """An IANA time zone name (``Europe/Brussels``); cron and window rules use its calendar."""
    # The listed names only: ZoneInfo alone would open any file under the tz database.
    if isinstance(name, str) and name in _zone_names():
        return ZoneInfo(name)
    raise ProductInvalid(
        "timezone",
        f"{_short(name)} is not an IANA time zone name (e.g. 'UTC', 'Europe/Brussels')",
    )


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def _reference() -> datetime:
    return datetime(2000, 1, 1, tzinfo=UTC)


def latest_interval(
    schedule: Schedule, now: datetime, zone: tzinfo = UTC
) -> tuple[datetime, datetime]:
    """The latest complete data interval at ``now`` (what a run at ``now`` would process);
    a cron schedule is read on the wall clock of ``zone``, as Airflow's timetable reads it."""
    if schedule.cron is not None:
        it = croniter(schedule.cron, now.astimezone(zone))
        end = it.get_prev(datetime).astimezone(UTC)
        return it.get_prev(datetime).astimezone(UTC), end
    assert schedule.delta is not None
    return now - schedule.delta, now


def first_start(schedule: Schedule, registered: datetime, zone: tzinfo = UTC) -> datetime:
    """The DAG's start date (UTC): the start of the interval in which the product was
    registered, so the first run covers that interval (and a minute schedule runs within a
    minute). A duration starts on the hour or day boundary of ``zone``."""
    local = registered.astimezone(zone)
    if schedule.cron is not None:
        start: datetime = croniter(schedule.cron, local).get_prev(datetime)
        return start.astimezone(UTC)
    assert schedule.delta is not None
    span = (registered + schedule.delta) - registered
    unit = "day" if span >= timedelta(days=1) else "hour" if span >= timedelta(hours=1) else ""
    start = local.replace(second=0, microsecond=0)
    if unit in ("day", "hour"):
        start = start.replace(minute=0)
    if unit == "day":
        start = start.replace(hour=0)
    return start.astimezone(UTC)


def window(
    rule: str, start: datetime, end: datetime, zone: tzinfo = UTC
) -> tuple[datetime, datetime]:
    """The temporal extent ``[from, to)`` (UTC) a run processes, from its data interval.

    ``data-interval`` is the interval itself. The calendar rules take the last complete
    calendar period of ``zone`` before the interval's end: a monthly run whose interval ends on
    1 March processes February whatever the interval (in Brussels, February starts on
    31 January 23:00 UTC); an asset-triggered run (no interval: ``start == end`` = the trigger
    time) processes the period before its trigger.
    """
    if rule == "data-interval":
        return start.astimezone(UTC), end.astimezone(UTC)
    # Aware arithmetic on one ZoneInfo is wall-clock arithmetic: a day back from local
    # midnight is the previous local midnight, whatever DST did in between.
    day = end.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    if rule == "previous-day":
        first, last = day - timedelta(days=1), day
    elif rule == "previous-week":
        last = day - timedelta(days=day.weekday())
        first = last - timedelta(weeks=1)
    elif rule == "previous-month":
        last = day.replace(day=1)
        first = last - relativedelta(months=1)
    elif rule == "previous-year":
        last = day.replace(month=1, day=1)
        first = last - relativedelta(years=1)
    else:
        raise ProductInvalid("window", f"unknown rule '{rule}'; one of {', '.join(WINDOW_RULES)}")
    return first.astimezone(UTC), last.astimezone(UTC)


def check_window(product: Product, schedule: Schedule | None, now: datetime) -> None:
    """Refuse a rule that gives an empty extent for the product's runs (checked on a sample)."""
    if product.window not in WINDOW_RULES:
        window(product.window, now, now)  # raises the unknown-rule error
    zone = product.zone
    samples = []
    if schedule is not None:
        samples.append(("scheduled runs", latest_interval(schedule, now, zone)))
    if product.trigger_assets:
        samples.append(("runs triggered by assets (they have no data interval)", (now, now)))
    for what, (start, end) in samples:
        first, last = window(product.window, start, end, zone)
        if first >= last:
            raise ProductInvalid(
                "window",
                f"rule '{product.window}' yields an empty temporal extent for {what}; "
                f"use a calendar rule such as 'previous-day'",
            )


def item_id(start: datetime, end: datetime) -> str:
    """The STAC item id of a run: from its data interval, so a re-run replaces its item."""
    return f"{_compact(start)}_{_compact(end)}"


def _compact(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def extent_strings(start: datetime, end: datetime) -> list[str]:
    """An openEO temporal extent: dates when both bounds are midnight, else RFC 3339 times."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if all(v.hour == v.minute == v.second == v.microsecond == 0 for v in (start, end)):
        return [start.date().isoformat(), end.date().isoformat()]
    return [v.strftime("%Y-%m-%dT%H:%M:%SZ") for v in (start, end)]


def run_process(
    product: Product, stored: dict[str, Any] | None, extent: list[str]
) -> dict[str, Any]:
    """The job's process for one run: the product's graph (inline, or the stored user-defined
    process with the product's arguments as parameter defaults) with the run's extent.

    Every top-level ``load_collection`` gets the extent as ``temporal_extent``, and so does a
    process parameter called ``temporal_extent`` (for graphs that filter by it later).
    """
    source = stored if product.process_graph_id else product.process
    if not source:
        raise ProductInvalid("process", "the product has no process graph")
    process = copy.deepcopy(source)
    if "process_graph" not in process:
        process = {"process_graph": process}
    values = {**product.arguments, "temporal_extent": extent}
    parameters = []
    for parameter in process.get("parameters") or []:
        name = parameter.get("name")
        parameters.append({**parameter, "default": values[name]} if name in values else parameter)
    if parameters:
        process["parameters"] = parameters
    for node in process["process_graph"].values():
        if node.get("process_id") == "load_collection":
            node.setdefault("arguments", {})["temporal_extent"] = list(extent)
    process.pop("id", None)
    return process


def event_extent(
    extras: list[dict[str, Any]], zone: tzinfo = UTC
) -> tuple[datetime, datetime] | None:
    """The extent ``[from, to)`` (UTC) the triggering asset events ask for, or ``None``.

    An event's ``extra`` may hold ``temporal_extent``: two dates (midnight of ``zone``) or
    RFC 3339 date-times (without an offset: on the wall clock of ``zone``). Several events
    behind one run give the union of their extents; events without one are ignored.
    """
    found = []
    for extra in extras:
        if isinstance(extra, dict) and "temporal_extent" in extra:
            found.append(_event_bounds(extra["temporal_extent"], zone))
    if not found:
        return None
    return min(first for first, _ in found), max(last for _, last in found)


def _event_bounds(value: object, zone: tzinfo) -> tuple[datetime, datetime]:
    if not (isinstance(value, list) and len(value) == 2):
        raise ProductInvalid(
            EVENT_FIELD, f"the asset event gives {_short(value)}; expected [start, end], two dates"
        )
    first, last = (_instant(v, zone) for v in value)
    if first >= last:
        raise ProductInvalid(EVENT_FIELD, f"the asset event's start is not before its end: {value}")
    return first, last


def local_instant(value: datetime, zone: tzinfo) -> datetime:
    """``value`` in UTC; a naive one is read on the wall clock of ``zone``."""
    return (value if value.tzinfo else value.replace(tzinfo=zone)).astimezone(UTC)


def _instant(value: object, zone: tzinfo) -> datetime:
    if isinstance(value, str):
        text = value.strip().replace("z", "Z").replace("Z", "+00:00")
        try:
            if "T" not in text and " " not in text:
                day = date.fromisoformat(text)
                return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
            return local_instant(datetime.fromisoformat(text), zone)
        except ValueError:
            pass
    raise ProductInvalid(
        EVENT_FIELD,
        f"the asset event gives {_short(value)}; expected a date ('2024-05-01') or an RFC 3339 "
        "date-time ('2024-05-01T00:00:00Z')",
    )


def _short(value: object) -> str:
    # Event payloads come from other systems: quote them, but not at any length.
    return repr(value)[:80]


def run_extent(
    product: Product, interval: tuple[datetime, datetime], extras: list[dict[str, Any]]
) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    """A run's item interval and temporal extent: the extent its triggering asset events ask
    for (both), else its data interval and what the window rule makes of it."""
    asked = event_extent(extras, product.zone)
    if asked is not None:
        return asked, asked
    return interval, window(product.window, *interval, product.zone)


def paused_state(stored: bool, in_airflow: bool | None) -> bool:
    """What a product shows: Airflow's state of its DAG (paused in the Airflow UI counts);
    before Airflow has parsed the DAG (``None``), the state it will be created with."""
    return stored if in_airflow is None else in_airflow


def check_asset_uris(uris: list[str]) -> None:
    for uri in uris:
        match = ASSET_URI.match(uri) if isinstance(uri, str) else None
        if not match or match.group(1) == "airflow":
            raise ProductInvalid(
                "trigger_assets",
                f"{uri!r} is not an asset URI (scheme://path, e.g. 's3://bucket/scenes'; "
                "the 'airflow' scheme is reserved)",
            )
