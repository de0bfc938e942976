"""``sum``/``mean`` add slice by slice along outer axes and ``aggregate_temporal_period`` reduces
views: the floats stay those of a plain numpy sum of the NaN-free values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from openeo_airflow.processes.aggregate import aggregate_temporal_period
from openeo_airflow.processes.reducers import mean, sum_
from openeo_airflow.processes.values import LabeledArray


def _values(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Magnitudes from 1e-8 to 1e8 (the order of the additions shows), NaN, 0.0 and -0.0."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(shape) * 10.0 ** rng.integers(-8, 9, shape)
    draw = rng.random(shape)
    values[draw < 0.3] = np.nan
    values[(draw > 0.3) & (draw < 0.4)] = -0.0
    values[(draw > 0.4) & (draw < 0.45)] = 0.0
    return values.astype(np.float32)


def _reference(values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    valid = ~np.isnan(values)
    total = np.sum(np.where(valid, values, 0.0), axis=axis, dtype=np.float64)
    count = valid.sum(axis=axis)
    with np.errstate(all="ignore"):
        total = np.where(count > 0, total, np.nan)
        return total.astype(np.float32), (total / count).astype(np.float32)


@pytest.mark.parametrize(
    ("shape", "dim"),
    [((28, 30, 40), "t"), ((3, 28, 5, 7), "b"), ((30, 1, 1), "t"), ((4, 5, 40), "x")],
)
def test_sum_and_mean_are_bitwise_those_of_numpy(shape: tuple[int, ...], dim: str) -> None:
    dims = ("t", "b", "y", "x")[: len(shape)] if len(shape) == 4 else ("t", "y", "x")
    values = _values(shape)
    cube = xr.DataArray(values, dims=dims)
    axis = dims.index(dim)
    total, average = _reference(values, axis)
    got_total = sum_(LabeledArray(cube, dim)).values
    got_mean = mean(LabeledArray(cube, dim)).values
    assert got_total.dtype == got_mean.dtype == np.float32
    assert got_total.tobytes() == total.tobytes()
    assert got_mean.tobytes() == average.tobytes()
    transposed = xr.DataArray(np.asfortranarray(values), dims=dims)  # not C-contiguous
    assert mean(LabeledArray(transposed, dim)).values.tobytes() == average.tobytes()


def test_without_ignore_nodata_a_null_makes_the_result_null() -> None:
    cube = xr.DataArray(np.array([[1, np.nan], [2, 3]], np.float32), dims=("t", "x"))
    np.testing.assert_array_equal(mean(LabeledArray(cube, "t"), ignore_nodata=False), [1.5, np.nan])
    np.testing.assert_array_equal(mean(LabeledArray(cube, "t")), [1.5, 3])


def _mean_reducer(data: LabeledArray, context: object = None) -> object:
    return mean(data)


def test_periods_of_unordered_dates_reduce_like_ordered_ones() -> None:
    dates = pd.to_datetime(["2022-01-03", "2022-01-20", "2022-02-07", "2022-03-01", "2022-03-09"])
    values = _values((5, 6, 7), seed=3)
    cube = xr.DataArray(values, dims=("t", "y", "x"), coords={"t": dates})
    ordered = aggregate_temporal_period(cube, "month", _mean_reducer)
    shuffled = aggregate_temporal_period(cube.isel(t=[3, 0, 4, 2, 1]), "month", _mean_reducer)
    assert list(ordered.t.values) == ["2022-01", "2022-02", "2022-03"]
    xr.testing.assert_identical(ordered, shuffled)
    np.testing.assert_array_equal(ordered.isel(t=2).values, _reference(values[3:], 0)[1])
