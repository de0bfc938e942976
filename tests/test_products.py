"""Recurring products, the pure parts: schedules, window rules, item ids, the run's graph, and
the DAG each product becomes (built and parsed by Airflow's own DagBag)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dateutil.relativedelta import relativedelta

from openeo_airflow.core.products import (
    Product,
    ProductInvalid,
    check_window,
    event_extent,
    extent_strings,
    first_start,
    item_id,
    latest_interval,
    parse_schedule,
    parse_timezone,
    paused_state,
    run_extent,
    run_process,
    window,
)

BRUSSELS = parse_timezone("Europe/Brussels")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def brussels(*args: int) -> datetime:
    return datetime(*args, tzinfo=BRUSSELS)


@pytest.mark.parametrize(
    ("rule", "start", "end", "expected"),
    [
        # A monthly cron run: its interval is the month, and so is the previous month.
        ("data-interval", utc(2024, 1, 1), utc(2024, 2, 1), (utc(2024, 1, 1), utc(2024, 2, 1))),
        ("previous-month", utc(2024, 1, 1), utc(2024, 2, 1), (utc(2024, 1, 1), utc(2024, 2, 1))),
        # A daily run in mid-March processes February (the last complete month).
        ("previous-month", utc(2024, 3, 14), utc(2024, 3, 15), (utc(2024, 2, 1), utc(2024, 3, 1))),
        # Across the year boundary.
        ("previous-month", utc(2023, 12, 31), utc(2024, 1, 1), (utc(2023, 12, 1), utc(2024, 1, 1))),
        (
            "previous-day",
            utc(2024, 3, 14, 6),
            utc(2024, 3, 14, 12),
            (utc(2024, 3, 13), utc(2024, 3, 14)),
        ),
        # Weeks start on Monday (ISO): 2024-03-14 is a Thursday.
        ("previous-week", utc(2024, 3, 14), utc(2024, 3, 14), (utc(2024, 3, 4), utc(2024, 3, 11))),
        ("previous-week", utc(2024, 3, 4), utc(2024, 3, 11), (utc(2024, 3, 4), utc(2024, 3, 11))),
        ("previous-year", utc(2024, 5, 1), utc(2024, 5, 2), (utc(2023, 1, 1), utc(2024, 1, 1))),
        # An hourly interval is kept to the second.
        (
            "data-interval",
            utc(2024, 3, 14, 6),
            utc(2024, 3, 14, 7),
            (utc(2024, 3, 14, 6), utc(2024, 3, 14, 7)),
        ),
    ],
)
def test_window_rules(rule: str, start: datetime, end: datetime, expected: tuple) -> None:
    assert window(rule, start, end) == expected


def test_window_of_a_run_without_interval_uses_its_trigger_time() -> None:
    moment = utc(2024, 3, 14, 9, 30)
    assert window("previous-day", moment, moment) == (utc(2024, 3, 13), utc(2024, 3, 14))
    first, last = window("data-interval", moment, moment)
    assert first == last  # empty: refused at registration for asset-triggered products


@pytest.mark.parametrize(
    ("rule", "end", "expected"),
    [
        # The May run of a monthly cron in Brussels ends at local midnight, 22:00 UTC the day
        # before: read in UTC that would be 31 May and give April.
        ("previous-month", brussels(2024, 6, 1), (utc(2024, 4, 30, 22), utc(2024, 5, 31, 22))),
        # March holds the switch to summer time: it starts at +01:00 and ends at +02:00.
        ("previous-month", brussels(2024, 4, 1), (utc(2024, 2, 29, 23), utc(2024, 3, 31, 22))),
        # 27 October 2024 has 25 hours in Brussels.
        ("previous-day", brussels(2024, 10, 28, 9), (utc(2024, 10, 26, 22), utc(2024, 10, 27, 23))),
        # Thursday 14 March 2024, 00:30 in Brussels is still Wednesday 23:30 in UTC.
        (
            "previous-week",
            brussels(2024, 3, 14, 0, 30),
            (utc(2024, 3, 3, 23), utc(2024, 3, 10, 23)),
        ),
        ("previous-year", brussels(2024, 1, 1), (utc(2022, 12, 31, 23), utc(2023, 12, 31, 23))),
    ],
)
def test_window_rules_follow_the_product_time_zone(
    rule: str, end: datetime, expected: tuple
) -> None:
    assert window(rule, end, end, BRUSSELS) == expected
    # The same instant read in UTC is another calendar day: the zone is what decides.
    assert window(rule, end, end) != expected


def test_cron_in_a_time_zone_runs_on_its_wall_clock() -> None:
    monthly = parse_schedule("0 0 1 * *")
    now = utc(2024, 5, 31, 23)  # 1 June, 01:00 in Brussels
    assert latest_interval(monthly, now, BRUSSELS) == (utc(2024, 4, 30, 22), utc(2024, 5, 31, 22))
    assert latest_interval(monthly, now) == (utc(2024, 4, 1), utc(2024, 5, 1))
    assert first_start(monthly, now, BRUSSELS) == utc(2024, 5, 31, 22)
    # A duration starts on the local day boundary.
    assert first_start(parse_schedule("P1D"), utc(2024, 1, 10, 12), BRUSSELS) == utc(2024, 1, 9, 23)


@pytest.mark.parametrize(
    "name", ["Mars/Olympus", "utc", "Europe", "../etc/passwd", "/etc/localtime", "", None, 1]
)
def test_unknown_time_zones_are_refused(name: object) -> None:
    with pytest.raises(ProductInvalid) as raised:
        parse_timezone(name)
    assert raised.value.field == "timezone" and "IANA time zone" in raised.value.message


def test_unknown_window_rule() -> None:
    with pytest.raises(ProductInvalid, match="Field 'window': unknown rule 'last-fortnight'"):
        window("last-fortnight", utc(2024, 1, 1), utc(2024, 1, 2))


def test_window_check_refuses_an_empty_extent_for_asset_triggers() -> None:
    product = Product(id="p", owner="o", window="data-interval", trigger_assets=["s3://b/x"])
    with pytest.raises(ProductInvalid) as raised:
        check_window(product, None, utc(2024, 1, 1))
    assert raised.value.field == "window" and "empty temporal extent" in raised.value.message
    product.window = "previous-day"
    check_window(product, None, utc(2024, 1, 1))
    product.schedule, product.window, product.trigger_assets = "@daily", "data-interval", []
    check_window(product, parse_schedule("@daily"), utc(2024, 1, 1))


@pytest.mark.parametrize(
    ("text", "cron", "delta"),
    [
        ("0 0 1 * *", "0 0 1 * *", None),
        ("@monthly", "@monthly", None),
        ("*/5 * * * *", "*/5 * * * *", None),
        ("P1D", None, relativedelta(days=1)),
        ("PT6H", None, relativedelta(hours=6)),
        ("P1M", None, relativedelta(months=1)),
        ("P1W", None, relativedelta(days=7)),
    ],
)
def test_schedules(text: str, cron: str | None, delta: relativedelta | None) -> None:
    schedule = parse_schedule(text)
    assert (schedule.cron, schedule.delta) == (cron, delta)


@pytest.mark.parametrize(
    "text", ["0 0 32 * *", "every day", "* * *", "@once", "PT0S", "P", "P1.5D"]
)
def test_invalid_schedules(text: str) -> None:
    with pytest.raises(ProductInvalid) as raised:
        parse_schedule(text)
    assert raised.value.field == "schedule"
    assert raised.value.status == 400 and raised.value.code == "ProductInvalid"


def test_latest_interval_and_first_start() -> None:
    now = utc(2024, 3, 14, 9, 30, 20)
    monthly, minutely = parse_schedule("0 0 1 * *"), parse_schedule("* * * * *")
    assert latest_interval(monthly, now) == (utc(2024, 2, 1), utc(2024, 3, 1))
    # The first run covers the interval the product was registered in.
    assert first_start(monthly, now) == utc(2024, 3, 1)
    assert first_start(minutely, now) == utc(2024, 3, 14, 9, 30)
    assert first_start(parse_schedule("P1D"), now) == utc(2024, 3, 14)
    assert first_start(parse_schedule("PT6H"), now) == utc(2024, 3, 14, 9)
    assert latest_interval(parse_schedule("PT6H"), now) == (now - timedelta(hours=6), now)


@pytest.mark.parametrize(
    ("extras", "zone", "expected"),
    [
        ([{}], UTC, None),
        ([{"scene": "S2B"}], UTC, None),
        (
            [{"temporal_extent": ["2024-05-01", "2024-06-01"]}],
            UTC,
            (utc(2024, 5, 1), utc(2024, 6, 1)),
        ),
        # Dates are midnights of the product's zone; explicit offsets are kept.
        (
            [{"temporal_extent": ["2024-05-01", "2024-06-01T00:00:00Z"]}],
            BRUSSELS,
            (utc(2024, 4, 30, 22), utc(2024, 6, 1)),
        ),
        (
            [{"temporal_extent": ["2024-05-01T06:00:00", "2024-05-01T07:00:00+00:00"]}],
            BRUSSELS,
            (utc(2024, 5, 1, 4), utc(2024, 5, 1, 7)),
        ),
        # Several events behind one run: the union; events without an extent do not count.
        (
            [
                {"temporal_extent": ["2024-05-03", "2024-05-04"]},
                {"scene": "x"},
                {"temporal_extent": ["2024-05-01", "2024-05-02"]},
            ],
            UTC,
            (utc(2024, 5, 1), utc(2024, 5, 4)),
        ),
    ],
)
def test_event_extent(extras: list, zone: object, expected: object) -> None:
    assert event_extent(extras, zone) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("2024-05", "expected [start, end]"),
        (["2024-05-01"], "expected [start, end]"),
        (["2024-05-01", None], "expected a date"),
        (["2024-05-01", "next week"], "expected a date"),
        (["2024-13-01", "2024-14-01"], "expected a date"),
        ([20240501, 20240601], "expected a date"),
        (["2024-06-01", "2024-05-01"], "not before its end"),
        (["2024-05-01", "2024-05-01"], "not before its end"),
    ],
)
def test_bad_event_extents_name_the_field(value: object, words: str) -> None:
    with pytest.raises(ProductInvalid) as raised:
        event_extent([{"temporal_extent": value}])
    assert raised.value.field == "extra.temporal_extent" and words in raised.value.message


def test_run_extent_prefers_the_asset_event() -> None:
    p = Product(id="p", owner="o", window="previous-day", timezone="Europe/Brussels")
    moment = utc(2024, 6, 10, 12)
    asked = [{"temporal_extent": ["2024-05-01", "2024-06-01"]}]
    month = (utc(2024, 4, 30, 22), utc(2024, 5, 31, 22))
    assert run_extent(p, (moment, moment), asked) == (month, month)
    day = (utc(2024, 6, 8, 22), utc(2024, 6, 9, 22))
    assert run_extent(p, (moment, moment), [{"scene": "x"}]) == ((moment, moment), day)


@pytest.mark.parametrize(
    ("stored", "in_airflow", "shown"),
    [(False, None, False), (True, None, True), (False, True, True), (True, False, False)],
)
def test_paused_state_is_airflows_once_it_has_the_dag(
    stored: bool, in_airflow: bool | None, shown: bool
) -> None:
    assert paused_state(stored, in_airflow) is shown


def test_item_id_comes_from_the_data_interval() -> None:
    assert item_id(utc(2023, 10, 1), utc(2023, 11, 1)) == "20231001T000000Z_20231101T000000Z"
    cet = datetime(2023, 10, 1, 2, tzinfo=UTC).astimezone()
    assert item_id(cet, utc(2023, 11, 1)).startswith("20231001T020000Z_")


def test_extent_strings() -> None:
    assert extent_strings(utc(2023, 10, 1), utc(2023, 11, 1)) == ["2023-10-01", "2023-11-01"]
    assert extent_strings(utc(2023, 10, 1, 6), utc(2023, 10, 1, 7)) == [
        "2023-10-01T06:00:00Z",
        "2023-10-01T07:00:00Z",
    ]


GRAPH = {
    "load": {
        "process_id": "load_collection",
        "arguments": {"id": "S2", "spatial_extent": None, "temporal_extent": ["2000-01-01", None]},
    },
    "save": {
        "process_id": "save_result",
        "arguments": {"data": {"from_node": "load"}, "format": "GTiff"},
        "result": True,
    },
}


def test_run_process_fills_every_load_collection() -> None:
    product = Product(id="p", owner="o", window="data-interval", process={"process_graph": GRAPH})
    process = run_process(product, None, ["2023-10-01", "2023-11-01"])
    assert process["process_graph"]["load"]["arguments"]["temporal_extent"] == [
        "2023-10-01",
        "2023-11-01",
    ]
    assert GRAPH["load"]["arguments"]["temporal_extent"] == ["2000-01-01", None]  # not mutated


def test_run_process_of_a_stored_process_binds_arguments_and_extent() -> None:
    stored = {
        "id": "ndvi_of",
        "parameters": [
            {"name": "format", "schema": {"type": "string"}},
            {"name": "temporal_extent", "schema": {}},
            {"name": "other", "schema": {}, "default": 1},
        ],
        "process_graph": GRAPH,
    }
    product = Product(
        id="p", owner="o", window="previous-month", process_graph_id="ndvi_of",
        arguments={"format": "netCDF"},
    )  # fmt: skip
    process = run_process(product, stored, ["2023-10-01", "2023-11-01"])
    defaults = {p["name"]: p.get("default") for p in process["parameters"]}
    assert defaults == {
        "format": "netCDF",
        "temporal_extent": ["2023-10-01", "2023-11-01"],
        "other": 1,
    }
    assert "id" not in process


# --- the DAG factory (imports Airflow) ---


def product(**fields: object) -> Product:
    values: dict = {
        "id": "ndvi",
        "owner": "alice",
        "window": "data-interval",
        "schedule": "0 0 1 * *",
        "process": {"process_graph": GRAPH},
        "start": utc(2024, 1, 1),
        "created": utc(2024, 1, 5),
    }
    values.update(fields)
    return Product(**values)  # type: ignore[arg-type]


def test_timetables_have_a_data_interval() -> None:
    from airflow.sdk import (
        AssetOrTimeSchedule,
        CronDataIntervalTimetable,
        DeltaDataIntervalTimetable,
    )
    from airflow.sdk.definitions.asset import AssetAny

    from openeo_airflow.airflow.products import timetable

    cron = timetable(product())
    assert isinstance(cron, CronDataIntervalTimetable) and cron.expression == "0 0 1 * *"
    delta = timetable(product(schedule="PT6H"))
    assert isinstance(delta, DeltaDataIntervalTimetable) and delta.delta == timedelta(hours=6)
    monthly = timetable(product(schedule="P1M"))
    assert monthly.delta == relativedelta(months=1)
    assets = timetable(product(schedule=None, window="previous-day", trigger_assets=["s3://b/x"]))
    assert isinstance(assets, AssetAny)
    both = timetable(product(trigger_assets=["s3://b/x"], window="previous-day"))
    assert isinstance(both, AssetOrTimeSchedule)


def test_cron_timetable_in_a_time_zone_survives_serialization() -> None:
    """The scheduler's view (after the DAG processor's serialization) of a Brussels monthly
    product: its intervals are Brussels months, and the window rule agrees with them."""
    import pendulum
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables.base import TimeRestriction

    from openeo_airflow.airflow.products import build_product_dag

    brussels_product = product(timezone="Europe/Brussels", window="previous-month")
    dag = DagSerialization.from_dict(DagSerialization.to_dict(build_product_dag(brussels_product)))
    earliest = pendulum.instance(utc(2024, 4, 15))
    info = dag.timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=earliest, latest=None, catchup=True),
    )
    assert info is not None and info.data_interval is not None
    start, end = info.data_interval.start, info.data_interval.end
    assert (start, end) == (utc(2024, 4, 30, 22), utc(2024, 5, 31, 22))
    assert window("previous-month", start, end, brussels_product.zone) == (start, end)


def test_product_dag_shape_and_asset() -> None:
    from openeo_airflow.airflow.products import build_product_dag

    dag = build_product_dag(product(paused=True))
    assert dag.dag_id == "openeo_product_ndvi"
    assert dag.is_paused_upon_creation is True and dag.catchup is False
    assert set(dag.task_dict) == {"size", "load", "transform", "save", "publish"}
    assert dag.task_dict["load"].upstream_task_ids == {"size"}
    assert dag.task_dict["publish"].upstream_task_ids == {"save"}
    outlets = dag.task_dict["publish"].outlets
    assert [o.uri for o in outlets] == ["openeo://products/ndvi"]


def test_dag_file_yields_one_dag_per_registered_product(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DAG file read by Airflow's own DagBag: new rows become DAGs, deleted rows vanish."""
    from airflow.dag_processing.dagbag import DagBag

    from openeo_airflow.core.settings import load_settings
    from openeo_airflow.jobs.backend import Backend
    from openeo_airflow.jobs.product_store import ProductStore

    monkeypatch.setenv("OPENEO_AIRFLOW_HOME", str(tmp_path))
    store = ProductStore(Backend(load_settings()).engine)
    store.put(product(id="a"))
    store.put(product(id="b", schedule=None, window="previous-day", trigger_assets=["s3://b/x"]))
    dag_file = Path(__file__).resolve().parents[1] / "dags" / "openeo_products.py"

    bag = DagBag(dag_folder=str(dag_file))
    assert not bag.import_errors
    assert set(bag.dag_ids) == {"openeo_product_a", "openeo_product_b"}

    store.mark_deleted("a")
    bag = DagBag(dag_folder=str(dag_file))
    assert set(bag.dag_ids) == {"openeo_product_b"}


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"schedule": "P1M"},
        {"schedule": "PT6H"},
        {"schedule": None, "window": "previous-day", "trigger_assets": ["s3://b/x"]},
        {"window": "previous-day", "trigger_assets": ["s3://b/x"]},
    ],
)
def test_product_dags_serialize(fields: dict) -> None:
    """What the DAG processor stores for the scheduler: the timetable must survive it."""
    from airflow.serialization.serialized_objects import DagSerialization

    from openeo_airflow.airflow.products import build_product_dag

    dag = DagSerialization.from_dict(DagSerialization.to_dict(build_product_dag(product(**fields))))
    if fields.get("schedule", "0 0 1 * *"):
        assert dag.timetable.periodic  # backfills need a periodic timetable
