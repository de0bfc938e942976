"""Comparisons and logic on cubes: the fast paths (booleans the processes made are not
converted again; null-free booleans skip the null handling) give the spec's results."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import xarray as xr

from openeo_airflow.processes.cube import mask
from openeo_airflow.processes.logic import and_, eq, gt, neq, not_, or_, xor
from openeo_airflow.processes.values import boolean_nulls, boolean_pattern

N = np.nan
TRUTH = {"and": and_, "or": or_, "xor": xor}


def _spec(process_id: str, a: float, b: float) -> float:
    """The three-valued truth tables of the openEO spec, value by value."""
    if process_id == "and":
        return 0.0 if 0.0 in (a, b) else N if np.isnan(a + b) else 1.0
    if process_id == "or":
        return 1.0 if 1.0 in (a, b) else N if np.isnan(a + b) else 0.0
    return N if np.isnan(a + b) else float(a != b)


def _cube(values: list[float], dtype: type = np.float32, name: str = "c") -> xr.DataArray:
    return xr.DataArray(
        np.array(values, dtype),
        dims="x",
        coords={"x": np.arange(len(values)), "spatial_ref": xr.DataArray(0, attrs={"crs": "w"})},
        name=name,
        attrs={"kept": 1},
    )


PAIRS = list(itertools.product([1.0, 0.0, N], repeat=2))
X = _cube([a for a, _ in PAIRS])
Y = _cube([b for _, b in PAIRS])


def _boolean(values: xr.DataArray) -> xr.DataArray:
    """The same values as a boolean the processes made (``eq(x, 1)``), null where x is."""
    return eq(values, 1)


@pytest.mark.parametrize("process_id", sorted(TRUTH))
@pytest.mark.parametrize("made", [(False, False), (True, False), (True, True)])
def test_truth_tables_with_and_without_known_booleans(
    process_id: str, made: tuple[bool, bool]
) -> None:
    x = _boolean(X) if made[0] else X
    y = _boolean(Y) if made[1] else Y
    out = TRUTH[process_id](x, y)
    expected = [_spec(process_id, a, b) for a, b in PAIRS]
    np.testing.assert_array_equal(out.values, np.array(expected, np.float32))
    assert out.dtype == np.float32
    assert out.attrs == {"kept": 1} and out.coords["spatial_ref"].attrs == {"crs": "w"}


@pytest.mark.parametrize("process_id", sorted(TRUTH))
def test_null_free_booleans_take_the_short_path_with_the_same_result(process_id: str) -> None:
    a, b = _boolean(_cube([1, 1, 0, 0])), _boolean(_cube([1, 0, 1, 0]))
    assert boolean_nulls(a) is False and boolean_nulls(b) is False
    out = TRUTH[process_id](a, b)
    expected = [_spec(process_id, p, q) for p, q in [(1, 1), (1, 0), (0, 1), (0, 0)]]
    np.testing.assert_array_equal(out.values, expected)
    assert boolean_nulls(out) is False
    assert boolean_nulls(TRUTH[process_id](a, _cube([N, N, N, N]))) is True


def test_numbers_are_true_when_non_zero_and_inputs_stay_unchanged() -> None:
    x = _cube([2.5, -1, 0, N, 1e-50], np.float64)
    before = x.copy(deep=True)
    np.testing.assert_array_equal(not_(x).values, [0, 0, 1, N, 1])  # 1e-50 is 0 in float32
    np.testing.assert_array_equal(or_(x, False).values, [1, 1, 0, N, 0])
    np.testing.assert_array_equal(and_(True, x).values, [1, 1, 0, N, 0])
    np.testing.assert_array_equal(or_(x, None).values, [1, 1, N, N, N])
    np.testing.assert_array_equal(and_(_cube([0, 1], np.int16), _cube([1, 1], bool)).values, [0, 1])
    xr.testing.assert_identical(x, before)


def test_comparisons_write_null_where_an_operand_is_null() -> None:
    x = _cube([1, 2, N, 3])
    y = _cube([1, N, 1, 2])
    np.testing.assert_array_equal(eq(x, y).values, [1, N, N, 0])
    np.testing.assert_array_equal(neq(x, y).values, [0, N, N, 1])
    np.testing.assert_array_equal(gt(x, 1.5).values, [0, 1, N, 1])
    np.testing.assert_array_equal(eq(x, 2.1, delta=0.2).values, [0, 1, N, 0])
    np.testing.assert_array_equal(neq(x, 2.1, delta=0.2).values, [1, 0, N, 1])
    assert boolean_nulls(gt(x, 1.5)) is True and boolean_nulls(gt(y.fillna(0), 1)) is False
    out = gt(x, y)
    assert out.dtype == np.float32 and out.name == "c" and out.attrs == {"kept": 1}
    assert gt(x, _cube([0, 0, 0, 0], name="other")).name is None


def test_cubes_broadcast_and_align_as_xarray_arithmetic_does() -> None:
    grid = xr.DataArray(np.arange(6, dtype=np.float32).reshape(2, 3), dims=("t", "x"))
    row = xr.DataArray(np.array([1, N, 4], np.float32), dims="x")
    out = gt(grid, row)
    assert out.dims == ("t", "x")
    np.testing.assert_array_equal(out.values, [[0, N, 0], [1, N, 1]])
    shifted = _cube([0, 1, 1]).assign_coords(x=[1, 2, 3])
    joined = or_(_cube([1, 0, 0]), shifted)
    assert list(joined.x.values) == [1, 2]
    np.testing.assert_array_equal(joined.values, [0, 1])


def test_zero_dimensional_cubes_and_scalars() -> None:
    assert or_(True, None) is True and and_(False, None) is False and xor(True, None) is None
    assert not_(0) is True and not_(None) is None
    single = xr.DataArray(np.float32(N))
    np.testing.assert_array_equal(or_(_cube([1, 0]), single).values, [1, N])
    np.testing.assert_array_equal(eq(_cube([1, 0]), single).values, [N, N])
    assert float(not_(xr.DataArray(np.float32(5)))) == 0.0


def test_mask_with_a_known_boolean_masks_like_a_plain_number_cube() -> None:
    """``mask`` tests a boolean the processes made with one comparison (``!= 1``); a cube of
    the same 1/0/NaN values that is not known as a boolean goes the general way. Same result."""
    data = _cube([float(i) for i in range(len(PAIRS))])
    known = or_(X, Y)
    assert boolean_nulls(known) is not None
    plain = known.copy(data=np.array(known.values))
    assert boolean_nulls(plain) is None
    for replacement in (None, -1.0):
        fast, general = mask(data, known, replacement), mask(data, plain, replacement)
        np.testing.assert_array_equal(fast.values, general.values)
    expected = np.where(known.values == 1, np.nan, data.values)
    np.testing.assert_array_equal(mask(data, known).values, expected)


def test_comparisons_of_one_band_share_their_nulls_and_still_follow_the_spec() -> None:
    # A cloud mask: one band compared with several classes, the comparisons joined with or.
    # Their nulls sit where the band has NaN, so or/and take one pass; a boolean with nulls
    # elsewhere must not take that path.
    scl = _cube([3.0, 8.0, N, 4.0, 9.0, N, 3.0], name="scl")
    other = _cube([N, 1.0, 1.0, N, 0.0, N, 1.0], name="other")
    cloudy = or_(or_(eq(scl, 3), eq(scl, 8)), eq(scl, 9))
    shared = boolean_pattern(eq(scl, 3))
    assert shared is not None and boolean_pattern(cloudy) is shared
    np.testing.assert_array_equal(cloudy.values, np.array([1, 1, N, 0, 1, N, 1], np.float32))
    both = and_(eq(scl, 3), eq(scl, 3))
    np.testing.assert_array_equal(both.values, np.array([1, 0, N, 0, 0, N, 1], np.float32))
    mixed = {name: TRUTH[name](eq(scl, 3), eq(other, 1)) for name in ("and", "or")}
    for name, out in mixed.items():
        expected = [
            _spec(name, float(a == 3) if a == a else N, float(b == 1) if b == b else N)
            for a, b in zip(scl.values, other.values, strict=True)
        ]
        np.testing.assert_array_equal(out.values, np.array(expected, np.float32))
        assert boolean_pattern(out) is None
