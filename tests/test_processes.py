"""Process registry, evaluator and implementations, on small synthetic cubes.

Expected values are computed independently with numpy. The last part runs the official
openEO processes test cases (read in place from /work/shared, skipped if missing).
"""

from __future__ import annotations

import inspect
import math
import warnings
import weakref
from typing import Any

import numpy as np
import pytest
import xarray as xr
from affine import Affine
from openeo.rest.datacube import DataCube
from pyproj import Transformer

from openeo_airflow.core.errors import (
    Internal,
    OpenEOError,
    ProcessGraphInvalid,
    ProcessParameterInvalid,
    ProcessParameterRequired,
    ProcessUnsupported,
)
from openeo_airflow.cube import cube_crs, make_cube
from openeo_airflow.processes import registry
from openeo_airflow.processes.graph import evaluate
from openeo_airflow.processes.specs import process_spec, spec_ids
from openeo_airflow.processes.values import canonical_order

TIMES = np.array(["2021-06-01", "2021-06-06", "2021-06-11"], dtype="datetime64[ns]")
TRANSFORM = Affine(10, 0, 500000, 0, -10, 5000000)


def synthetic() -> np.ndarray:
    rng = np.random.default_rng(42)
    data = rng.uniform(0.0, 0.6, (3, 3, 4, 5)).astype(np.float32)
    data[:, 2] = rng.integers(3, 7, (3, 4, 5))  # SCL classes 3..6
    data[0, 0, 0, 0] = np.nan  # B04 nodata at t0
    data[:, 1, 3, 4] = np.nan  # B08 nodata at all dates: all-NaN pixel
    data[1, 0, 1, 1] = data[1, 1, 1, 1] = 0.0  # nir + red == 0
    return data


@pytest.fixture
def cube() -> xr.DataArray:
    return make_cube(
        synthetic(), times=TIMES, bands=["B04", "B08", "SCL"], transform=TRANSFORM, crs=32633
    )


def run(graph: dict[str, Any], cube: xr.DataArray | None = None, **kwargs: Any) -> Any:
    hooks = {"load_collection": lambda args, node_id: cube} if cube is not None else {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarnings may leak
        return evaluate(graph, hooks=hooks, **kwargs)


def client_cube(bands: list[str] | None = None) -> DataCube:
    return DataCube.load_collection(
        "S2",
        connection=None,
        spatial_extent={"west": 16.1, "south": 48.1, "east": 16.2, "north": 48.2},
        temporal_extent=["2021-06-01", "2021-07-01"],
        bands=bands or ["B04", "B08", "SCL"],
        fetch_metadata=False,
    )


def node(process_id: str, result: bool = False, **arguments: Any) -> dict[str, Any]:
    return {"process_id": process_id, "arguments": arguments, "result": result}


LOAD = {"lc": node("load_collection", id="S2", spatial_extent=None, temporal_extent=None)}


def with_load(process_id: str, **arguments: Any) -> dict[str, Any]:
    return {**LOAD, "p": node(process_id, True, data={"from_node": "lc"}, **arguments)}


# --- registry and specs -------------------------------------------------------------------------


# Official processes listed with a wider schema than the official one, and why.
WIDENED = {
    "load_stac": "local paths under allowed roots, and GeoJSON spatial extents",
    "climatological_normal": "climatology_period as integer years (2.0) or texts (1.x)",
    "apply_polygon": "geometries also as GeoJSON, as its description says",
}
# Official ids whose installed spec is an older draft than what clients send (processes/ml.py).
OWN_SPEC = {"fit_regr_random_forest", "predict_random_forest"}


def test_listing_is_exactly_the_implemented_processes_with_their_specs() -> None:
    listing = registry.list_processes()
    assert [p["id"] for p in listing] == registry.implemented()
    assert {"load_collection", "save_result", "ndvi", "reduce_dimension"} <= set(
        registry.implemented()
    )
    official = spec_ids()
    for entry in listing:
        assert {"id", "description", "parameters", "returns"} <= entry.keys()
        listed = {k: v for k, v in entry.items() if k != registry.ADDITION_FLAG}
        assert listed == {k: v for k, v in registry.spec_of(entry["id"]).items() if k in listed}
        if entry.get(registry.ADDITION_FLAG):
            assert entry["id"] not in official  # an addition is not an official process
        elif entry["id"] in WIDENED:
            # Deliberately wider than the official schema (see processes/loading.py): the
            # same parameters, in the same order, with the same return value.
            spec = process_spec(entry["id"])
            names = [p["name"] for p in listed["parameters"]]
            assert names == [p["name"] for p in spec["parameters"]]
            assert listed["returns"] == spec["returns"]
        elif entry["id"] in official and entry["id"] not in OWN_SPEC:
            spec = process_spec(entry["id"])
            assert listed == {k: v for k, v in spec.items() if k in listed}
    additions = {e["id"] for e in listing if e.get(registry.ADDITION_FLAG)}
    assert additions == {"load_inline_cube"}


def test_python_signatures_match_the_spec_parameters() -> None:
    for process_id in registry.implemented():
        fn = registry.get(process_id)
        assert fn is not None
        params = inspect.signature(fn).parameters
        spec = registry.spec_of(process_id)["parameters"]
        assert list(params) == [p["name"] for p in spec], process_id
        for p in spec:
            default = params[p["name"]].default
            if not p.get("optional"):
                assert default is inspect.Parameter.empty, (process_id, p["name"])
            elif p.get("default") in ([], {}):
                assert default is None, (process_id, p["name"])
            elif "default" in p:
                assert default == p["default"], (process_id, p["name"])


# --- evaluator ------------------------------------------------------------------------------------


def test_parameters_defaults_and_memoisation() -> None:
    calls: list[str] = []

    def counting(args: dict[str, Any], node_id: str) -> Any:
        calls.append(node_id)
        return args["x"] + args["y"]

    process = {
        "parameters": [{"name": "a", "default": 2}, {"name": "b", "default": 10}],
        "process_graph": {
            "s": node("add", x={"from_parameter": "a"}, y={"from_parameter": "b"}),
            "m": node("multiply", True, x={"from_node": "s"}, y={"from_node": "s"}),
            "unused": node("add", x=1, y=1),
        },
    }
    assert evaluate(process, hooks={"add": counting}) == 144
    assert calls == ["s"]  # once, and the unreachable node never
    assert evaluate(process, arguments={"b": 1}) == 9


def test_intermediate_values_are_released_after_their_last_use() -> None:
    refs: list[weakref.ref[Any]] = []
    alive: list[bool] = []

    class Big:
        pass

    def source(args: dict[str, Any], node_id: str) -> Any:
        value = Big()
        refs.append(weakref.ref(value))
        return value

    def probe(args: dict[str, Any], node_id: str) -> Any:
        alive.append(refs[0]() is not None)
        return Big()

    graph = {
        "a": node("load_collection"),
        "b": node("apply", data={"from_node": "a"}),
        "c": node("apply", True, data={"from_node": "b"}),
    }
    evaluate(graph, hooks={"load_collection": source, "apply": probe})
    assert alive == [True, False]  # 'a' is gone once 'b', its only consumer, is computed


def test_errors_name_the_node() -> None:
    with pytest.raises(ProcessUnsupported, match=r"Node 'x'.*'nope'.*'backend'"):
        evaluate({"x": node("nope", True)})
    with pytest.raises(ProcessUnsupported, match="namespace 'user'"):
        evaluate({"x": {**node("add", True, x=1, y=2), "namespace": "user"}})
    with pytest.raises(Internal, match=r"Node 'lc' \(load_collection\): No data loader"):
        evaluate(LOAD | {"s": node("save_result", True, data={"from_node": "lc"}, format="GTiff")})
    with pytest.raises(Internal, match=r"Node 'h' \(add\): ZeroDivisionError"):
        evaluate({"h": node("add", True, x=1, y=0)}, hooks={"add": lambda a, n: 1 / a["y"]})
    with pytest.raises(ProcessParameterRequired, match=r"Node 'a' \(add\)"):
        evaluate({"a": node("add", True, x=1)})
    with pytest.raises(ProcessGraphInvalid, match="Node 'a' refers to node 'zz'"):
        evaluate({"a": node("add", True, x={"from_node": "zz"}, y=1)})
    with pytest.raises(ProcessGraphInvalid, match="cycle"):
        evaluate(
            {
                "a": node("add", True, x={"from_node": "b"}, y=1),
                "b": node("add", x={"from_node": "a"}, y=1),
            }
        )
    with pytest.raises(ProcessGraphInvalid, match="parameter 'p'"):
        evaluate({"a": node("add", True, x={"from_parameter": "p"}, y=1)})


def test_openeo_errors_keep_their_class_and_name_the_callback_node(cube: xr.DataArray) -> None:
    reducer = {"e": node("array_element", True, data={"from_parameter": "data"}, label="B99")}
    graph = with_load("reduce_dimension", dimension="bands", reducer={"process_graph": reducer})
    with pytest.raises(OpenEOError, match=r"Node 'e' \(array_element\).*B99.*B04, B08, SCL") as e:
        run(graph, cube)
    assert e.value.code == "ArrayElementNotAvailable" and e.value.status == 400


# --- client-generated graphs ----------------------------------------------------------------------


def test_cloud_mask_ndvi_max_time_end_to_end(cube: xr.DataArray) -> None:
    s2 = client_cube()
    scl = s2.band("SCL")
    clouds = ~((scl == 4) | (scl == 5))
    result = s2.filter_bands(["B04", "B08"]).mask(clouds).ndvi(nir="B08", red="B04").max_time()
    out = run(result.save_result(format="GTiff").flat_graph(), cube)

    data = synthetic().astype(np.float64)
    red, nir, classes = data[:, 0], data[:, 1], data[:, 2]
    with np.errstate(all="ignore"):
        ndvi = (nir - red) / (nir + red)
    ndvi[(nir + red) == 0] = np.nan
    ndvi[~np.isin(classes, [4, 5])] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = np.nanmax(ndvi, axis=0)
    assert out.dims == ("y", "x") and out.dtype == np.float32
    np.testing.assert_allclose(out.values, expected, rtol=1e-6)
    assert np.array_equal(np.isnan(out.values), np.isnan(expected))
    assert cube_crs(out) == cube_crs(cube)


def test_client_band_math_and_logic(cube: xr.DataArray) -> None:
    s2 = client_cube()
    nir, red, scl = s2.band("B08"), s2.band("B04"), s2.band("SCL")
    index = run(((nir - red) / (nir + red) * 2).flat_graph(), cube)
    data = synthetic()
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(
            index.values, (data[:, 1] - data[:, 0]) / (data[:, 1] + data[:, 0]) * 2, rtol=1e-6
        )
    assert index.dims == ("t", "y", "x") and index.dtype == np.float32

    flags = run(((nir > 0.3) & ~(scl == 4) | (red < 0.1)).flat_graph(), cube).values
    expected = np.vectorize(reference_flags)(data[:, 1], data[:, 2], data[:, 0])
    np.testing.assert_array_equal(flags, expected.astype(np.float32))


def tri(value: float) -> bool | None:
    return None if np.isnan(value) else bool(value)


def and3(a: bool | None, b: bool | None) -> bool | None:
    return False if False in (a, b) else None if None in (a, b) else True


def or3(a: bool | None, b: bool | None) -> bool | None:
    return True if True in (a, b) else None if None in (a, b) else False


def reference_flags(nir: float, scl: float, red: float) -> float:
    """(nir > 0.3) & ~(scl == 4) | (red < 0.1) with openEO null semantics, one pixel."""
    gt = None if np.isnan(nir) else nir > 0.3
    not_eq = None if np.isnan(scl) else scl != 4
    lt = None if np.isnan(red) else red < 0.1
    result = or3(and3(gt, not_eq), lt)
    return np.nan if result is None else float(result)


def test_client_apply_count_and_median(cube: xr.DataArray) -> None:
    import openeo.processes as P

    s2 = client_cube()
    data = synthetic()
    scaled = run(s2.apply(lambda x: x * 2 + 1).flat_graph(), cube)
    np.testing.assert_array_equal(scaled.values, data * 2 + 1)
    assert scaled.dtype == np.float32

    lsr = run(s2.linear_scale_range(0, 0.5, 0, 255).flat_graph(), cube)
    np.testing.assert_allclose(lsr.values, np.clip(data, 0, 0.5) / 0.5 * 255, rtol=1e-6)

    counted = s2.reduce_dimension("t", lambda d: P.count(d, condition=lambda x: x > 0.3))
    expected_count = (data > 0.3).sum(axis=0)
    np.testing.assert_array_equal(run(counted.flat_graph(), cube).values, expected_count)

    med = run(s2.reduce_dimension(dimension="t", reducer="median").flat_graph(), cube)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(med.values, np.nanmedian(data, axis=0), rtol=1e-6)


# --- reducers on cubes ----------------------------------------------------------------------------

NUMPY_REDUCERS = {
    "max": np.nanmax,
    "min": np.nanmin,
    "mean": np.nanmean,
    "median": np.nanmedian,
    "sum": np.nansum,
    "product": np.nanprod,
    "sd": lambda a, axis: np.nanstd(a, axis=axis, ddof=1),
    "variance": lambda a, axis: np.nanvar(a, axis=axis, ddof=1),
}


@pytest.mark.parametrize("reducer", sorted(NUMPY_REDUCERS))
@pytest.mark.parametrize("ignore_nodata", [True, False])
def test_reducers_over_time(cube: xr.DataArray, reducer: str, ignore_nodata: bool) -> None:
    callback = {
        "r": node(reducer, True, data={"from_parameter": "data"}, ignore_nodata=ignore_nodata)
    }
    out = run(
        with_load("reduce_dimension", dimension="t", reducer={"process_graph": callback}), cube
    )
    data = synthetic().astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = NUMPY_REDUCERS[reducer](data, axis=0)
    allnan = np.isnan(data).all(axis=0)
    expected[allnan] = np.nan  # nansum/nanprod give 0/1 there; openEO: null
    if not ignore_nodata:
        expected[np.isnan(data).any(axis=0)] = np.nan
    assert out.dims == ("bands", "y", "x") and out.dtype == np.float32
    np.testing.assert_allclose(out.values, expected, rtol=1e-5)
    assert np.array_equal(np.isnan(out.values), np.isnan(expected))


@pytest.mark.parametrize(("reducer", "position"), [("first", 0), ("last", -1)])
def test_first_last_skip_nodata(cube: xr.DataArray, reducer: str, position: int) -> None:
    out = run(
        with_load(
            "reduce_dimension",
            dimension="t",
            reducer={"process_graph": {"r": node(reducer, True, data={"from_parameter": "data"})}},
        ),
        cube,
    )
    data = synthetic()
    expected = data[position].copy()
    if position == 0:
        expected[0, 0, 0] = data[1, 0, 0, 0]  # t0 is NaN there: the next valid one
    np.testing.assert_array_equal(out.values, expected)


def test_array_element_by_index_and_temporal_label(cube: xr.DataArray) -> None:
    by_index = {"e": node("array_element", True, data={"from_parameter": "data"}, index=1)}
    out = run(
        with_load("reduce_dimension", dimension="bands", reducer={"process_graph": by_index}), cube
    )
    np.testing.assert_array_equal(out.values, synthetic()[:, 1])
    by_date = {
        "e": node(
            "array_element", True, data={"from_parameter": "data"}, label="2021-06-06T00:00:00Z"
        )
    }
    out = run(
        with_load("reduce_dimension", dimension="t", reducer={"process_graph": by_date}), cube
    )
    np.testing.assert_array_equal(out.values, synthetic()[1])
    assert "t" not in out.coords


def test_reducer_that_does_not_reduce_is_rejected(cube: xr.DataArray) -> None:
    identity = {"a": node("absolute", True, x={"from_parameter": "data"})}
    with pytest.raises(ProcessParameterInvalid, match=r"Node 'a' \(absolute\).*array_element"):
        run(with_load("reduce_dimension", dimension="t", reducer={"process_graph": identity}), cube)
    with pytest.raises(OpenEOError, match=r"DimensionNotAvailable.*'time'") as e:
        run(
            with_load("reduce_dimension", dimension="time", reducer={"process_graph": identity}),
            cube,
        )
    assert e.value.code == "DimensionNotAvailable"


# --- cube processes -------------------------------------------------------------------------------


def test_filter_bbox_in_cube_crs_and_in_lonlat(cube: xr.DataArray) -> None:
    utm = {"west": 500010, "east": 500040, "south": 4999970, "north": 4999990, "crs": 32633}
    out = run(with_load("filter_bbox", extent=utm), cube)
    assert list(out.x.values) == [500015, 500025, 500035]
    assert list(out.y.values) == [4999985, 4999975]
    to_lonlat = Transformer.from_crs(32633, 4326, always_xy=True)
    west, south, east, north = to_lonlat.transform_bounds(500010, 4999970, 500040, 4999990)
    lonlat = {"west": west, "south": south, "east": east, "north": north}  # default EPSG:4326
    out = run(with_load("filter_bbox", extent=lonlat), cube)
    assert list(out.x.values) == [500015, 500025, 500035]
    assert list(out.y.values) == [4999985, 4999975]
    np.testing.assert_array_equal(out.values, synthetic()[:, :, 1:3, 1:4])


def test_filter_temporal_left_closed_and_open_ends(cube: xr.DataArray) -> None:
    def dates(extent: list[str | None]) -> list[str]:
        out = run(with_load("filter_temporal", extent=extent), cube)
        return [str(t)[:10] for t in out.t.values]

    assert dates(["2021-06-01", "2021-06-11"]) == ["2021-06-01", "2021-06-06"]
    assert dates(["2021-06-06T00:00:00Z", None]) == ["2021-06-06", "2021-06-11"]
    assert dates([None, "2021-06-06T00:00:01+00:00"]) == ["2021-06-01", "2021-06-06"]
    with pytest.raises(OpenEOError, match="TemporalExtentEmpty"):
        dates(["2021-06-11", "2021-06-01"])


def test_filter_bands_by_name_and_common_name(cube: xr.DataArray) -> None:
    out = run(with_load("filter_bands", bands=["nir", "B04"]), cube)
    assert list(out.bands.values) == ["B08", "B04"]
    np.testing.assert_array_equal(out.values, synthetic()[:, [1, 0]])
    with pytest.raises(ProcessParameterInvalid, match=r"Node 'p'.*'B99'.*B04, B08, SCL"):
        run(with_load("filter_bands", bands=["B99"]), cube)


def test_ndvi_defaults_target_band_and_zero_denominator(cube: xr.DataArray) -> None:
    data = synthetic()
    red, nir = data[:, 0], data[:, 1]
    with np.errstate(all="ignore"):
        expected = (nir - red) / (nir + red)
    expected[(nir + red) == 0] = np.nan
    out = run(with_load("ndvi"), cube)  # defaults: common names nir/red -> B08/B04
    assert out.dims == ("t", "y", "x") and out.dtype == np.float32
    np.testing.assert_allclose(out.values, expected, rtol=1e-6)
    assert np.isnan(out.values[1, 1, 1])  # 0 / 0
    appended = run(with_load("ndvi", target_band="NDVI"), cube)
    assert list(appended.bands.values) == ["B04", "B08", "SCL", "NDVI"]
    np.testing.assert_array_equal(appended.sel(bands="NDVI").values, out.values)
    with pytest.raises(OpenEOError, match="BandExists"):
        run(with_load("ndvi", target_band="SCL"), cube)
    with pytest.raises(OpenEOError, match=r"NirBandAmbiguous.*'B09'"):
        run(with_load("ndvi", nir="B09"), cube)


def test_normalized_difference_scalars() -> None:
    assert evaluate({"n": node("normalized_difference", True, x=3, y=1)}) == 0.5
    assert math.isnan(evaluate({"n": node("normalized_difference", True, x=1, y=-1)}))
    assert evaluate({"n": node("normalized_difference", True, x=None, y=1)}) is None


def test_mask_without_bands_nan_does_not_mask_and_replacement(cube: xr.DataArray) -> None:
    data = synthetic()
    flags = (data[:, 2] == 4).astype(np.float32)
    flags[0, 2, 2] = np.nan  # null in the mask: keeps the pixel
    mask_cube = cube.isel(bands=0, drop=True).copy(data=flags)
    hooks = {"load_collection": lambda a, n: cube, "const": lambda a, n: mask_cube}
    graph = with_load("mask", mask={"from_node": "m"}, replacement=-1)
    graph["m"] = node("const")
    out = evaluate(graph, hooks=hooks)
    expected = np.where((flags == 1)[:, None], -1, data)
    np.testing.assert_array_equal(out.values, expected)
    assert out.dtype == np.float32 and out.dims == cube.dims
    assert out.values[0, 0, 2, 2] == data[0, 0, 2, 2]


def test_apply_scalar_result_is_broadcast(cube: xr.DataArray) -> None:
    graph = with_load("apply", process={"process_graph": {"c": node("add", True, x=1, y=2)}})
    out = run(graph, cube)
    assert out.shape == cube.shape and float(out.max()) == float(out.min()) == 3


def test_dimension_processes(cube: xr.DataArray) -> None:
    labels = run(with_load("dimension_labels", dimension="t"), cube)
    assert labels == ["2021-06-01T00:00:00Z", "2021-06-06T00:00:00Z", "2021-06-11T00:00:00Z"]
    renamed = run(
        with_load("rename_labels", dimension="bands", target=["red"], source=["B04"]), cube
    )
    assert list(renamed.bands.values) == ["red", "B08", "SCL"]
    with pytest.raises(OpenEOError, match="LabelsNotEnumerated"):
        run(with_load("rename_labels", dimension="bands", target=["a", "b", "c"]), cube)
    added = run(with_load("add_dimension", name="layer", label="one"), cube)
    assert added.dims == ("layer", "t", "bands", "y", "x")
    single = cube.isel(t=[0])
    dropped = evaluate(
        with_load("drop_dimension", name="t"), hooks={"load_collection": lambda a, n: single}
    )
    assert dropped.dims == ("bands", "y", "x")
    with pytest.raises(OpenEOError, match="DimensionLabelCountMismatch"):
        run(with_load("drop_dimension", name="t"), cube)


def test_logic_on_arrays_follows_null_semantics() -> None:
    x = xr.DataArray(np.array([1, 1, 1, 0, 0, 0, np.nan, np.nan, np.nan], np.float32), dims="x")
    y = xr.DataArray(np.array([1, 0, np.nan] * 3, np.float32), dims="x")
    n = np.nan
    tables = {
        "and": [1, 0, n, 0, 0, 0, n, 0, n],
        "or": [1, 1, 1, 1, 0, n, 1, n, n],
        "xor": [0, 1, n, 1, 0, n, n, n, n],
    }
    for process_id, expected in tables.items():
        out = evaluate(
            {"a": node(process_id, True, x={"from_parameter": "x"}, y={"from_parameter": "y"})},
            arguments={"x": x, "y": y},
        )
        np.testing.assert_array_equal(out.values, np.array(expected, np.float32), process_id)
        assert out.dtype == np.float32
    compared = evaluate(
        {"c": node("gt", True, x={"from_parameter": "x"}, y=0.5)}, arguments={"x": x}
    )
    np.testing.assert_array_equal(compared.values, [1, 1, 1, 0, 0, 0, n, n, n])


def test_canonical_order_puts_other_dimensions_first() -> None:
    data = xr.DataArray(np.zeros((2, 3, 4)), dims=("x", "other", "t"))
    assert canonical_order(data).dims == ("other", "t", "x")
