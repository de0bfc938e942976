"""``climatological_normal`` and ``anomaly`` (openEO processes 2.0), from the spec text: the
periods and their labels, the climatology period, seasons across the turn of the year, no-data,
errors naming the parameter; through ``POST /result`` with the openEO client; on the real
WorldCereal time series; tiled as untiled."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import openeo
import pandas as pd
import pytest
import xarray as xr
from affine import Affine
from openeo.rest.datacube import THIS

from openeo_airflow.core.errors import OpenEOError, ProcessParameterInvalid
from openeo_airflow.cube import make_cube
from openeo_airflow.jobs.backend import DEFAULT_COLLECTIONS
from openeo_airflow.processes import registry
from openeo_airflow.processes.graph import evaluate
from openeo_airflow.processes.inline import to_json
from openeo_airflow.processes.space import LOCAL
from openeo_airflow.processes.tiling import evaluate_tiled
from tests.api_support import USERS, implementation, make_backend, served
from tests.conftest import SHARED

normal = implementation("climatological_normal")
anomaly = implementation("anomaly")
TRANSFORM = Affine(10, 0, 500_010, 0, -10, 5_000_030)
WORLDCEREAL = SHARED / "data" / "worldcereal_31UDS"
S2_FILE = "S2_L2A_10m_00002806639B424A_32631_2017-08-01_2018-11-30.nc"


def series(times: Any, values: Any, height: int = 2, width: int = 3) -> xr.DataArray:
    """A cube whose every pixel holds ``values`` (one per date) plus the pixel's column."""
    times = pd.DatetimeIndex(times).values
    per_date = np.asarray(values, dtype=np.float64)[:, None, None, None]
    data = per_date + np.arange(width)[None, None, None, :] * np.ones((1, 1, height, 1))
    return make_cube(data, times=times, bands=["B"], transform=TRANSFORM, crs="EPSG:32631")


def labels(cube: xr.DataArray) -> list[str]:
    return [str(v) for v in cube.t.values]


# --- climatological_normal ------------------------------------------------------------------------


def test_monthly_normal_averages_each_month_over_the_climatology_years_only() -> None:
    times = pd.date_range("2018-01-01", "2021-12-01", freq="MS") + pd.Timedelta(days=14)
    values = np.arange(len(times), dtype=float)  # 0 in January 2018, 47 in December 2021
    values[times.get_loc(pd.Timestamp("2019-03-15"))] = np.nan  # no-data is ignored
    out = normal(data=series(times, values), period="month", climatology_period=[2019, 2020])
    assert labels(out) == [f"{m:02d}" for m in range(1, 13)]
    assert out.coords["t"].attrs["type"] == "temporal" and out.dims == ("t", "bands", "y", "x")
    pixel = out.isel(bands=0, y=1, x=0).values
    expected = [(12 + m + 24 + m) / 2 for m in range(12)]
    expected[2] = 24 + 2  # March 2019 is no-data: March 2020 alone
    np.testing.assert_allclose(pixel, expected)
    np.testing.assert_allclose(out.isel(bands=0, y=0, x=2).values, np.array(expected) + 2)


def test_default_climatology_period_is_1981_to_2010_and_years_may_be_texts() -> None:
    times = pd.to_datetime(["1980-06-01", "1981-06-01", "2010-06-01", "2011-06-01"])
    cube = series(times, [100, 1, 3, 100])
    default = normal(data=cube, period="month")
    assert float(default.isel(t=5, bands=0, y=0, x=0)) == 2
    texts = normal(data=cube, period="month", climatology_period=["1981", "2010"])
    xr.testing.assert_equal(default, texts)
    assert np.isnan(default.isel(t=0).values).all()  # January has no data


def test_seasons_take_the_december_before_the_period_only_when_the_cube_has_it() -> None:
    times = pd.date_range("2019-12-01", "2021-12-01", freq="MS")
    values = np.arange(len(times), dtype=float)  # December 2019 is 0, December 2021 is 24
    with_december = normal(
        data=series(times, values), period="season", climatology_period=[2020, 2021]
    )
    assert labels(with_december) == ["djf", "mam", "jja", "son"]
    # djf: Dec 2019 + Jan/Feb 2020, Dec 2020 + Jan/Feb 2021; Dec 2021 starts an incomplete one.
    djf, mam = (0 + 1 + 2 + 12 + 13 + 14) / 6, (3 + 4 + 5 + 15 + 16 + 17) / 6
    np.testing.assert_allclose(with_december.isel(bands=0, y=0, x=0).values[:2], [djf, mam])
    without = normal(
        data=series(times[1:], values[1:]), period="season", climatology_period=[2020, 2021]
    )
    # No December 2019: the first winter is left out, the normal is one year shorter.
    np.testing.assert_allclose(float(without.isel(t=0, bands=0, y=0, x=0)), (12 + 13 + 14) / 3)


def test_tropical_seasons_need_november_and_december_before_the_period() -> None:
    times = pd.date_range("2019-11-01", "2021-12-01", freq="MS")
    values = np.arange(len(times), dtype=float)  # November 2019 is 0
    out = normal(
        data=series(times, values), period="tropical-season", climatology_period=[2020, 2021]
    )
    assert labels(out) == ["ndjfma", "mjjaso"]
    first = [0, 1, 2, 3, 4, 5, 12, 13, 14, 15, 16, 17]  # Nov 2019-Apr 2020, Nov 2020-Apr 2021
    np.testing.assert_allclose(float(out.isel(t=0, bands=0, y=0, x=0)), np.mean(first))
    no_november = np.delete(np.arange(len(times)), 0)
    out = normal(
        data=series(times[no_november], values[no_november]),
        period="tropical-season",
        climatology_period=[2020, 2021],
    )
    np.testing.assert_allclose(float(out.isel(t=0, bands=0, y=0, x=0)), np.mean(first[6:]))


def test_days_count_on_a_365_day_calendar() -> None:
    times = pd.to_datetime(["2019-02-28", "2019-03-01", "2020-02-28", "2020-02-29", "2020-03-01"])
    out = normal(
        data=series(times, [1, 10, 3, 5, 20]), period="day", climatology_period=[2019, 2020]
    )
    assert len(out.t) == 365 and labels(out)[:2] == ["001", "002"] and labels(out)[-1] == "365"
    pixel = out.isel(bands=0, y=0, x=0).values
    assert pixel[58] == 3  # day 059: 28 Feb 2019, 28 and 29 Feb 2020
    assert pixel[59] == 15  # day 060: 1 March in both years
    assert np.isnan(pixel[0])


def test_climatology_period_gives_one_label() -> None:
    times = pd.to_datetime(["2019-05-01", "2020-07-01", "2021-01-01"])
    out = normal(
        data=series(times, [2, 4, 100]),
        period="climatology-period",
        climatology_period=[2019, 2020],
    )
    assert labels(out) == ["climatology-period"]
    assert float(out.isel(t=0, bands=0, y=0, x=0)) == 3


@pytest.mark.parametrize(
    ("arguments", "parameter", "words"),
    [
        ({"period": "week"}, "period", "expected one of"),
        ({"period": "month", "climatology_period": [2030, 2031]}, "climatology_period", "no dates"),
        ({"period": "month", "climatology_period": [2021, 2020]}, "climatology_period", "after"),
        ({"period": "month", "climatology_period": ["x", 1]}, "climatology_period", "two years"),
    ],
)
def test_normal_errors_name_the_parameter(
    arguments: dict[str, Any], parameter: str, words: str
) -> None:
    cube = series(pd.to_datetime(["2020-01-01", "2020-02-01"]), [1, 2])
    with pytest.raises(ProcessParameterInvalid) as raised:
        normal(data=cube, **arguments)
    assert f"'{parameter}'" in str(raised.value) and words in str(raised.value)


def test_normal_needs_a_temporal_dimension() -> None:
    cube = series(pd.to_datetime(["2020-01-01"]), [1]).isel(t=0, drop=True)
    with pytest.raises(OpenEOError) as raised:
        normal(data=cube, period="month")
    assert raised.value.code == "DimensionNotAvailable"


# --- anomaly --------------------------------------------------------------------------------------


def monthly_normals(values: list[float]) -> xr.DataArray:
    cube = series(pd.date_range("2020-01-01", periods=12, freq="MS"), values)
    return normal(data=cube, period="month", climatology_period=[2020, 2020])


def test_anomaly_subtracts_the_normal_of_each_period_label() -> None:
    normals = monthly_normals([float(m * 100) for m in range(1, 13)])
    aggregated = series(pd.date_range("2022-01-01", periods=3, freq="MS"), [150, 260, 330])
    aggregated = aggregated.assign_coords(t=["2022-01", "2022-02", "2022-03"])
    aggregated.coords["t"].attrs["type"] = "temporal"
    out = anomaly(data=aggregated, normals=normals, period="month")
    assert labels(out) == ["2022-01", "2022-02", "2022-03"] and out.dims == aggregated.dims
    # Both cubes add the column number to every pixel, so it cancels out.
    np.testing.assert_allclose(out.values[:, 0, 1, :], [[50] * 3, [60] * 3, [30] * 3])


def test_anomaly_accepts_normals_labelled_with_numbers_and_yearly_periods() -> None:
    monthly = monthly_normals([float(m) for m in range(1, 13)])
    numbered = monthly.assign_coords(t=list(range(1, 13)))
    numbered.coords["t"].attrs["type"] = "temporal"
    dates = series(pd.to_datetime(["2023-02-01", "2023-11-30"]), [5, 20])
    out = anomaly(data=dates, normals=numbered, period="month")
    np.testing.assert_allclose(out.isel(bands=0, y=0, x=0).values, [3, 9])
    yearly = series(pd.to_datetime(["2021-01-01", "2022-01-01"]), [1, 2])
    yearly = yearly.assign_coords(t=["2021", "2022"])
    yearly.coords["t"].attrs["type"] = "temporal"
    data = series(pd.to_datetime(["2021-03-01", "2022-08-01", "2023-01-01"]), [10, 20, 30])
    out = anomaly(data=data, normals=yearly, period="year")
    pixel = out.isel(bands=0, y=0, x=0).values
    np.testing.assert_allclose(pixel[:2], [9, 18])
    assert np.isnan(pixel[2])


def test_anomaly_of_dates_uses_their_period_and_missing_normals_give_no_data() -> None:
    normals = monthly_normals([10.0] * 12).isel(t=slice(0, 11))  # no December normal
    dates = series(pd.to_datetime(["2023-01-05", "2023-01-25", "2023-12-24"]), [11, 13, 99])
    out = anomaly(data=dates, normals=normals, period="month")
    pixel = out.isel(bands=0, y=0, x=0).values
    np.testing.assert_allclose(pixel[:2], [1, 3])
    assert np.isnan(pixel[2])
    assert out.t.values.dtype.kind == "M"  # the data's labels stay


def test_anomaly_with_seasons_days_years_and_a_single_period() -> None:
    times = pd.to_datetime(["2019-12-10", "2020-02-29", "2020-07-01"])
    cube = series(times, [5, 7, 9])
    seasons = normal(data=cube, period="season", climatology_period=[2020, 2020])
    out = anomaly(data=cube, normals=seasons, period="season")
    np.testing.assert_allclose(out.isel(bands=0, y=0, x=0).values, [-1, 1, 0])
    single = normal(data=cube, period="climatology-period", climatology_period=[2019, 2020])
    out = anomaly(data=cube, normals=single, period="single-period")
    np.testing.assert_allclose(out.isel(bands=0, y=0, x=0).values, [-2, 0, 2])
    days = normal(data=cube, period="day", climatology_period=[2020, 2020])
    day_labels = cube.assign_coords(t=["2019-344", "2020-060", "2020-183"])
    out = anomaly(data=day_labels, normals=days, period="day")
    pixel = out.isel(bands=0, y=0, x=0).values  # 2020-060 is 29 Feb: folded into day 059
    assert np.isnan(pixel[0]) and pixel[1] == 0 and pixel[2] == 0


@pytest.mark.parametrize(
    ("change", "parameter", "words"),
    [
        ("period", "period", "unknown period"),
        ("labels", "data", "neither a date nor"),
        ("dimension", "normals", "not in 'data'"),
        ("grid", "normals", "other dimensions differ"),
        ("single", "normals", "exactly one normal"),
    ],
)
def test_anomaly_errors_name_the_parameter(change: str, parameter: str, words: str) -> None:
    normals = monthly_normals([1.0] * 12)
    data = series(pd.to_datetime(["2023-01-05"]), [3])
    period = "month"
    if change == "period":
        period = "fortnight"
    elif change == "labels":
        data = data.assign_coords(t=["spring"])
    elif change == "dimension":
        normals = normals.expand_dims(extra=["a"])
    elif change == "grid":
        normals = normals.assign_coords(x=normals.x.values + 5)
    elif change == "single":
        period = "climatology-period"
    with pytest.raises(ProcessParameterInvalid) as raised:
        anomaly(data=data, normals=normals, period=period)
    assert f"'{parameter}'" in str(raised.value) and words in str(raised.value)


# --- through POST /result with the openEO client --------------------------------------------------


@pytest.fixture(scope="module")
def alice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openeo.Connection]:
    """The openEO API served by uvicorn on a loopback port, and alice's connection."""
    backend = make_backend(tmp_path_factory.mktemp("home"), DEFAULT_COLLECTIONS)
    with served(backend) as url:
        yield openeo.connect(url).authenticate_basic("alice", USERS["alice"])


def test_normal_and_anomaly_through_post_result(alice: openeo.Connection) -> None:
    times = pd.date_range("2019-01-01", "2020-12-01", freq="MS")
    values = np.arange(len(times), dtype=float)
    values[5] = np.nan
    cube = alice.datacube_from_process("load_inline_cube", data=to_json(series(times, values)))
    normals = cube.process(
        "climatological_normal", data=THIS, period="month", climatology_period=[2019, 2020]
    )
    anomalies = cube.process("anomaly", data=THIS, normals=normals, period="month")
    result: Any = alice.execute(anomalies.save_result(format="JSON"))
    assert result["order"] == ["t", "bands", "y", "x"]
    pixel = np.array([row[0][0][0] for row in result["data"]], dtype=np.float64)
    expected = np.where(np.arange(24) < 12, -6.0, 6.0)
    expected[5], expected[17] = np.nan, 0.0  # June 2019 no-data: June's normal is June 2020
    np.testing.assert_allclose(pixel, expected)
    bad = cube.process(
        "climatological_normal", data=THIS, period="month", climatology_period=["1990", "1991"]
    )
    with pytest.raises(openeo.rest.OpenEoApiError) as raised:
        alice.execute(bad.save_result(format="JSON"))
    error = raised.value
    assert (error.http_status_code, error.code) == (400, "ProcessParameterInvalid")
    assert "climatological_normal" in error.message and "'climatology_period'" in error.message


# --- real data ------------------------------------------------------------------------------------


def worldcereal() -> xr.DataArray:
    path = WORLDCEREAL / S2_FILE
    if not path.exists():
        pytest.skip(f"real data not found: {path} (see ../shared/data/README.md)")
    with xr.open_dataset(path) as ds:
        times = ds.timestamp.values
        data = np.stack([ds[b].values for b in ("B04", "B08")], axis=1).astype(np.float32)
        x, y = ds.x.values, ds.y.values
    res = float(x[1] - x[0])
    transform = Affine(res, 0, x[0] - res / 2, 0, -res, y[0] + res / 2)
    return make_cube(data, times=times, bands=["B04", "B08"], transform=transform, crs="EPSG:32631")


def test_monthly_normal_and_anomaly_of_the_worldcereal_series() -> None:
    cube = worldcereal()
    assert cube.sizes["t"] == 118
    normals = normal(data=cube, period="month", climatology_period=[2017, 2018])
    assert labels(normals) == [f"{m:02d}" for m in range(1, 13)]
    # An independent reference: xarray's own grouping by calendar month.
    reference = cube.groupby("t.month").mean("t", skipna=True)
    np.testing.assert_allclose(normals.values, reference.values, rtol=1e-5, equal_nan=True)
    anomalies = anomaly(data=cube, normals=normals, period="month")
    assert anomalies.dims == cube.dims and anomalies.sizes["t"] == 118
    # Per pixel and month, anomalies average to zero wherever the month has data.
    mean_anomaly = anomalies.groupby("t.month").mean("t", skipna=True)
    valid = np.isfinite(reference.values)
    assert valid.mean() > 0.9
    np.testing.assert_allclose(mean_anomaly.values[valid], 0, atol=1e-5)
    ndvi_like = anomalies.sel(bands="B08") - anomalies.sel(bands="B04")
    assert float(np.nanstd(ndvi_like.values)) > 0.01  # real seasonal signal left over


# --- tiled as untiled -----------------------------------------------------------------------------


def test_tiled_equals_untiled() -> None:
    rng = np.random.default_rng(5)
    times = pd.date_range("2019-11-20", "2021-02-10", freq="17D")
    data = rng.uniform(0, 1, (len(times), 2, 37, 41)).astype(np.float32)
    data[3, :, 4:9, 8:15] = np.nan
    source = make_cube(
        data, times=times.values, bands=["B04", "B08"], transform=TRANSFORM, crs="EPSG:32633"
    )
    graph = {
        "lc": {"process_id": "load_collection", "arguments": {"id": "S2"}},
        "n": {
            "process_id": "climatological_normal",
            "arguments": {
                "data": {"from_node": "lc"},
                "period": "season",
                "climatology_period": [2020, 2020],
            },
        },
        "a": {
            "process_id": "anomaly",
            "arguments": {
                "data": {"from_node": "lc"},
                "normals": {"from_node": "n"},
                "period": "season",
            },
            "result": True,
        },
    }
    reference = evaluate(graph, node_hooks={"lc": lambda _a, _n: source})
    assert np.isfinite(reference.values).mean() > 0.9
    for tile_size in (8, 16):
        tiled = evaluate_tiled(graph, {"lc": source}, tile_size=tile_size)
        assert tiled.dims == reference.dims
        np.testing.assert_array_equal(tiled.t.values, reference.t.values)
        np.testing.assert_allclose(tiled.values, reference.values, rtol=1e-6, equal_nan=True)


def test_normal_and_anomaly_run_per_tile() -> None:
    for process_id in ("climatological_normal", "anomaly"):
        entry = registry.entry(process_id)
        assert entry is not None and entry.space == LOCAL
