"""Random forests: training on vector cubes, prediction as a ``reduce_dimension`` reducer over
bands, bad input, a classification of real Sentinel-2 data (labels from NDVI classes, checked
against every pixel), tiled against untiled prediction, and the openEO client's random
forest methods through ``POST /result``."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openeo
import pytest
import xarray as xr
from affine import Affine
from pyproj import Transformer

from openeo_airflow.cube import make_cube
from openeo_airflow.jobs.backend import Backend
from openeo_airflow.processes.graph import evaluate
from openeo_airflow.processes.ml import RandomForest, predict_random_forest
from openeo_airflow.processes.tiling import evaluate_tiled
from openeo_airflow.processes.values import LabeledArray, LabeledList
from openeo_airflow.processes.vector import load_geojson
from tests.api_support import USERS, served
from tests.load_support import CDSE_EXTENT, OCTOBER, backend_over_catalogs
from tests.test_processes_tiling import callback, node, ref
from tests.test_processes_vectors import expect_error

WORLDCEREAL_S2 = "worldcereal_31UDS/S2_L2A_10m_00002806639B424A_32631_2017-08-01_2018-11-30.nc"
BANDS = ["B02", "B03", "B04", "B08"]


# --- small vector cubes ---------------------------------------------------------------------------


def training(n: int = 200, seed: int = 0) -> tuple[xr.DataArray, np.ndarray]:
    """Predictors (geometry x bands a, b, c) at ``n`` points; ``c`` is noise. Classes: which
    of a or b is larger, plus 2 when a > 0.8."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(0, 1, (n, 3))
    classes = (values[:, 0] > values[:, 1]).astype(float) + 2 * (values[:, 0] > 0.8)
    points = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {},
                "geometry": {"type": "Point", "coordinates": [i * 1e-3, 0.0]},
            }
            for i in range(n)
        ],
    }
    shell = load_geojson(points)
    cube = xr.DataArray(
        values,
        dims=("geometry", "bands"),
        coords={"geometry": shell.geometry, "bands": ["a", "b", "c"]},
    )
    return cube, classes


def as_target(values: np.ndarray, name: str = "target") -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {name: None if np.isnan(v) else float(v)},
                "geometry": {"type": "Point", "coordinates": [i * 1e-3, 0.0]},
            }
            for i, v in enumerate(values)
        ],
    }


def fit(process_id: str = "fit_class_random_forest", **arguments: Any) -> Any:
    return evaluate({"f": node(process_id, True, **arguments)})


def predict(model: RandomForest, values: np.ndarray, labels: list[str]) -> np.ndarray:
    """The model over a raster cube whose bands are ``values``' columns (laid out as y x x)."""
    side = int(np.sqrt(values.shape[0]))
    data = values[: side * side].T.reshape(1, len(labels), side, side).astype(np.float32)
    cube = make_cube(
        data,
        times=np.array(["2021-06-01"], dtype="datetime64[ns]"),
        bands=labels,
        transform=Affine(10, 0, 500_000, 0, -10, 5_000_000),
        crs="EPSG:32631",
    )
    graph = {
        "r": node(
            "reduce_dimension",
            True,
            data=cube,
            dimension="bands",
            reducer=callback(
                "predict_random_forest",
                data={"from_parameter": "data"},
                model={"from_parameter": "context"},
            ),
            context=model,
        )
    }
    return np.asarray(evaluate(graph).values).reshape(-1)


def test_classification_learns_the_classes() -> None:
    cube, classes = training()
    model = fit(predictors=cube, target=as_target(classes), num_trees=50, seed=1)
    assert isinstance(model, RandomForest) and model.predictors == ("a", "b", "c")
    test_cube, test_classes = training(n=400, seed=5)
    predicted = predict(model, test_cube.values, ["a", "b", "c"])
    accuracy = np.mean(predicted == test_classes[: predicted.size])
    assert accuracy > 0.9, accuracy
    assert set(np.unique(predicted)) <= {0.0, 1.0, 2.0, 3.0}


def test_the_same_seed_trains_the_same_forest() -> None:
    cube, classes = training()
    test_cube, _ = training(n=400, seed=5)
    runs = [
        predict(
            fit(predictors=cube, target=as_target(classes), num_trees=5, seed=s),
            test_cube.values,
            ["a", "b", "c"],
        )
        for s in (7, 7, 8)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_regression_and_bands_in_another_order() -> None:
    cube, _ = training()
    target = 3 * cube.values[:, 0] - cube.values[:, 1]
    model = fit(
        "fit_regr_random_forest",
        predictors=cube,
        target=as_target(target, "yield"),
        max_variables="all",
        seed=0,
    )
    assert model.task == "regression"
    test_cube, _ = training(n=400, seed=5)
    shuffled = test_cube.values[:, [2, 0, 1]]  # c, a, b: matched by label
    predicted = predict(model, shuffled, ["c", "a", "b"])
    expected = (3 * test_cube.values[:, 0] - test_cube.values[:, 1])[: predicted.size]
    residual = np.sum((predicted - expected) ** 2) / np.sum((expected - expected.mean()) ** 2)
    assert residual < 0.05, residual


def test_no_data_is_left_out_of_training_and_predicts_null() -> None:
    cube, classes = training()
    cube = cube.copy()
    cube[0, 0] = np.nan
    classes[1] = np.nan
    model = fit(predictors=cube, target=as_target(classes), num_trees=3, seed=0, max_variables=2)
    values = training(n=16, seed=9)[0].values.copy()
    values[3, 1] = np.nan
    predicted = predict(model, values, ["a", "b", "c"])
    assert np.isnan(predicted[3]) and np.isfinite(np.delete(predicted, 3)).all()
    one = predict_random_forest(LabeledList([0.9, 0.1, None], ["a", "b", "c"]), model)
    assert one is None
    assert predict_random_forest(LabeledList([0.9, 0.1, 0.5], ["a", "b", "c"]), model) in (1.0, 3.0)


def test_target_as_a_vector_cube() -> None:
    cube, classes = training()
    target = cube.isel(bands=0, drop=True).copy(data=classes)
    model = fit(predictors=cube, target=target, num_trees=5, seed=0, max_variables="log2")
    assert model.estimator.n_estimators == 5


@pytest.mark.parametrize(
    ("arguments", "code", "words"),
    [
        ({"predictors": [1, 2]}, "ProcessParameterInvalid", ["predictors", "vector cube"]),
        (
            {"target": {"type": "Point", "coordinates": [0, 0]}},
            "ProcessParameterInvalid",
            ["target"],
        ),
        ({"max_variables": 4}, "ProcessParameterInvalid", ["max_variables", "3 predictors"]),
        ({"max_variables": "half"}, "ProcessParameterInvalid", ["max_variables", "'half'"]),
        ({"num_trees": 0}, "ProcessParameterInvalid", ["num_trees"]),
        ({"seed": 1.5}, "ProcessParameterInvalid", ["seed"]),
    ],
)
def test_training_bad_input(arguments: dict[str, Any], code: str, words: list[str]) -> None:
    cube, classes = training(n=20)
    with expect_error(code, "fit_class_random_forest", *words):
        fit(**{"predictors": cube, "target": as_target(classes), **arguments})


def test_training_target_mismatches() -> None:
    cube, classes = training(n=20)
    with expect_error("ProcessParameterInvalid", "target", "19 values for 20"):
        fit(predictors=cube, target=as_target(classes[:19]))
    words = as_target(classes)
    words["features"][0]["properties"] = {"target": "wheat"}
    with expect_error("ProcessParameterInvalid", "target", "'wheat'"):
        fit(predictors=cube, target=words)
    words["features"][0]["properties"] = {"a": 1, "b": 2}
    with expect_error("ProcessParameterInvalid", "target", "'target' property"):
        fit(predictors=cube, target=words)
    with expect_error("ProcessParameterInvalid", "predictors", "no geometry"):
        fit(predictors=cube, target=as_target(np.full(20, np.nan)))
    with expect_error("ProcessParameterInvalid", "predictors", "one predictor dimension"):
        fit(predictors=cube.expand_dims(t=2), target=as_target(classes))


def test_prediction_bad_input() -> None:
    cube, classes = training(n=20)
    model = fit(predictors=cube, target=as_target(classes), num_trees=2, seed=0)
    with expect_error("ProcessParameterInvalid", "predict_random_forest", "model"):
        predict_random_forest(LabeledList([1, 2, 3], ["a", "b", "c"]), {"type": "rf"})
    raster = xr.DataArray(
        np.zeros((2, 3, 3)), dims=("bands", "y", "x"), coords={"bands": ["a", "x"]}
    )
    with expect_error(
        "ProcessParameterInvalid", "predict_random_forest", "data", "['a', 'b', 'c']"
    ):
        predict_random_forest(LabeledArray(raster, "bands"), model)


# --- real data: NDVI classes of a Belgian field patch ---------------------------------------------

LONLAT = Transformer.from_crs(32631, 4326, always_xy=True)


def worldcereal_date(shared_data: Path, day: str) -> xr.DataArray:
    """The WorldCereal patch (64 x 64 px at 10 m, EPSG:32631) on ``day``, bands B02-B08."""
    with xr.open_dataset(shared_data / WORLDCEREAL_S2) as ds:
        one = ds.sel(timestamp=day)  # a day: the dates within it (one here)
        data = np.stack([one[b].values for b in BANDS], axis=1).astype(np.float32)
        times = one.timestamp.values
        x, y = ds.x.values, ds.y.values
    res = float(x[1] - x[0])
    transform = Affine(res, 0, x[0] - res / 2, 0, -res, y[0] + res / 2)
    return make_cube(data, times=times, bands=BANDS, transform=transform, crs="EPSG:32631")


# 0, 1 or 2 for NDVI below 0.4, up to 0.65, above: the labels the forest must learn.
NDVI_CLASSES = {
    "process_graph": {
        "lo": node("gt", x={"from_parameter": "x"}, y=0.4),
        "hi": node("gt", x={"from_parameter": "x"}, y=0.65),
        "sum": node("add", True, x=ref("lo"), y=ref("hi")),
    }
}


def classification_graph(cube: xr.DataArray) -> dict[str, Any]:
    """Train on 150 random points of the patch (predictors: the 4 bands there; target: the
    NDVI class there), then predict every pixel from its bands; the result: [prediction,
    NDVI class] along ``bands``."""
    left, bottom = float(cube.x.min()), float(cube.y.min())
    right, top = float(cube.x.max()), float(cube.y.max())
    ring = [
        list(LONLAT.transform(x, y))
        for x, y in [(left, bottom), (right, bottom), (right, top), (left, top), (left, bottom)]
    ]
    data = {"from_parameter": "data"}
    return {
        "lc": node("load_collection", id="S2", spatial_extent=None, temporal_extent=None),
        "ndvi": node("ndvi", data=ref("lc"), nir="B08", red="B04"),
        "classes": node("apply", data=ref("ndvi"), process=NDVI_CLASSES),
        "area": node("load_geojson", data={"type": "Polygon", "coordinates": [ring]}),
        "points": node(
            "vector_to_random_points", data=ref("area"), total_count=150, group=False, seed=11
        ),
        "predictors": node(
            "aggregate_spatial",
            data=ref("lc"),
            geometries=ref("points"),
            reducer=callback("mean", data=data),
        ),
        "target": node(
            "aggregate_spatial",
            data=ref("classes"),
            geometries=ref("points"),
            reducer=callback("mean", data=data),
        ),
        "model": node(
            "fit_class_random_forest",
            predictors=ref("predictors"),
            target=ref("target"),
            num_trees=40,
            seed=3,
        ),
        "predicted": node(
            "reduce_dimension",
            data=ref("lc"),
            dimension="bands",
            reducer=callback(
                "predict_random_forest", data=data, model={"from_parameter": "context"}
            ),
            context=ref("model"),
            result=True,
        ),
    }


def with_result(graph: dict[str, Any], node_id: str) -> dict[str, Any]:
    return {k: {**v, "result": k == node_id} for k, v in graph.items()}


def test_random_forest_classifies_real_sentinel2_pixels(shared_data: Path) -> None:
    cube = worldcereal_date(shared_data, "2018-06-23")
    graph = classification_graph(cube)
    predicted = evaluate(graph, node_hooks={"lc": lambda _a, _n: cube})
    classes = evaluate(with_result(graph, "classes"), node_hooks={"lc": lambda _a, _n: cube})
    truth = classes.values.ravel()
    guess = predicted.values.ravel()
    assert guess.size == 64 * 64 and np.isfinite(guess).all()
    accuracy = np.mean(guess == truth)
    majority = np.max(np.unique(truth, return_counts=True)[1]) / truth.size
    # Learnt from 150 of 4096 pixels: the thresholds hold on the other pixels too.
    assert accuracy > 0.9 and accuracy > majority + 0.3, (accuracy, majority)


@pytest.mark.parametrize("tile_size", [32])
def test_tiled_prediction_equals_untiled(shared_data: Path, tile_size: int) -> None:
    cube = worldcereal_date(shared_data, "2018-06-23")
    graph = classification_graph(cube)
    reference = evaluate(graph, node_hooks={"lc": lambda _a, _n: cube})
    tiled = evaluate_tiled(graph, {"lc": cube}, tile_size=tile_size)
    assert tiled.dims == reference.dims
    np.testing.assert_array_equal(tiled.values, reference.values)
    np.testing.assert_array_equal(tiled.x.values, reference.x.values)


# --- through the API with the openEO client -------------------------------------------------------


@pytest.fixture(scope="module")
def backend(
    tmp_path_factory: pytest.TempPathFactory, shared_data: Path
) -> Iterator[tuple[Backend, Path]]:
    yield from backend_over_catalogs(tmp_path_factory, shared_data, "ml")


def test_classification_through_post_result(backend: tuple[Backend, Path]) -> None:
    """The client's random forest methods over the CDSE cube's October median: NDVI above
    0.5 learnt from 120 random points, predicted for every pixel."""
    west, south, east, north = (CDSE_EXTENT[k] for k in ("west", "south", "east", "north"))
    corners = [(west, south), (east, south), (east, north), (west, north), (west, south)]
    area = {"type": "Polygon", "coordinates": [[list(LONLAT.transform(*c)) for c in corners]]}
    with served(backend[0]) as url:
        connection = openeo.connect(url).authenticate_basic("alice", USERS["alice"])
        cube = connection.load_collection(
            "TEST_CDSE_S2", spatial_extent=CDSE_EXTENT, temporal_extent=OCTOBER, bands=BANDS
        ).reduce_dimension(dimension="t", reducer="median")
        classes: openeo.DataCube = cube.ndvi(nir="B08", red="B04") > 0.5
        sites = connection.load_geojson(area)
        points = sites.process(
            "vector_to_random_points", data=sites, total_count=120, group=False, seed=5
        )
        # The client types `target` as GeoJSON; the proposal (and we) take a vector cube too.
        target: Any = classes.aggregate_spatial(points, "mean")
        model = cube.aggregate_spatial(points, "mean").fit_class_random_forest(
            target=target, num_trees=30, seed=2
        )
        predicted: openeo.DataCube = cube.predict_random_forest(model, dimension="bands")
        guess = xr.open_dataset(io.BytesIO(predicted.download(format="netCDF")))
        truth = xr.open_dataset(io.BytesIO(classes.download(format="netCDF")))
        bad = cube.aggregate_spatial(points, "mean").fit_class_random_forest(
            target=target, max_variables=9
        )
        with pytest.raises(openeo.rest.OpenEoApiError) as failed:
            cube.predict_random_forest(bad, dimension="bands").download(format="netCDF")
    assert failed.value.http_status_code == 400
    assert failed.value.code == "ProcessParameterInvalid"
    assert "max_variables" in failed.value.message and "4 predictors" in failed.value.message
    g = next(iter(guess.data_vars.values())).values.ravel()
    t = next(iter(truth.data_vars.values())).values.ravel()
    valid = np.isfinite(g) & np.isfinite(t)
    assert valid.mean() > 0.5
    accuracy = np.mean(g[valid] == t[valid])
    assert accuracy > 0.9, accuracy
