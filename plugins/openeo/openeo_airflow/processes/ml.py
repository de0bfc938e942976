"""Machine learning: random forest training and prediction, and ML models as job results.

Training takes the predictors as a vector cube (e.g. ``aggregate_spatial``'s result: one row of
band values per geometry) and the target as a vector cube or GeoJSON with one value per
geometry, matched by position. The model is a ``RandomForest`` value (scikit-learn underneath)
that flows through the graph like any other; ``predict_random_forest`` is a reducer over the
predictors' dimension and predicts every pixel of the cube in one call.

The spec package we load ships the random forest specs of an older draft (``predictors_vars``,
``target_var``, a required ``dimension``); users' clients send the openEO proposal's parameters
(``predictors``, ``target``; ``data``, ``model``), so these processes carry specs written here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from openeo_airflow.core.errors import ProcessParameterInvalid

from .registry import process
from .space import Global
from .values import LabeledArray, is_number
from .vector import GEOMETRY_DIM, geometries_of

if TYPE_CHECKING:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

CLASSIFICATION, REGRESSION = "classification", "regression"
# Pixels predicted per call: bounds the (pixels x trees) work arrays scikit-learn allocates.
PREDICT_BATCH = 262_144


@dataclass(frozen=True)
class RandomForest:
    """A trained random forest: its task, the predictor names in feature order, the estimator."""

    task: str
    predictors: tuple[str, ...]
    estimator: RandomForestClassifier | RandomForestRegressor

    def predict(self, features: np.ndarray) -> np.ndarray:
        """One prediction per row of ``features`` (float32; NaN where any feature is NaN)."""
        out = np.full(features.shape[0], np.nan, dtype=np.float32)
        valid = np.flatnonzero(np.isfinite(features).all(axis=1))
        for start in range(0, valid.size, PREDICT_BATCH):
            rows = valid[start : start + PREDICT_BATCH]
            out[rows] = self.estimator.predict(features[rows])
        return out


# --- specs (ours, see the module docstring) -------------------------------------------------------

_VECTOR = {"type": "object", "subtype": "datacube", "dimensions": [{"type": "geometry"}]}
_MODEL = {"type": "object", "subtype": "ml-model"}


def _fit_spec(task: str) -> dict[str, Any]:
    default_variables = "`sqrt`" if task == CLASSIFICATION else "`onethird`"
    return {
        "id": f"fit_{'class' if task == CLASSIFICATION else 'regr'}_random_forest",
        "summary": f"Train a random forest {task} model",
        "description": f"Trains a random forest {task} model (Breiman, 2001) on the predictor "
        "values of each training geometry and the target value of the same geometry. "
        "Geometries with a no-data predictor or target are left out. (openEO proposal; this "
        "description is ours.)",
        "categories": ["machine learning"],
        "experimental": True,
        "parameters": [
            {
                "name": "predictors",
                "description": "The predictors as a vector cube with a geometry dimension and "
                "one more dimension (e.g. `bands`) whose labels name the predictors.",
                "schema": _VECTOR,
            },
            {
                "name": "target",
                "description": "One target value per training geometry (same order): a vector "
                "cube, or GeoJSON whose features have a `target` property (or one property).",
                "schema": [_VECTOR, {"type": "object", "subtype": "geojson"}],
            },
            {
                "name": "max_variables",
                "description": "Predictors tried at each split: a number, `all`, `log2`, "
                f"`onethird` or `sqrt`; `null` means {default_variables}.",
                "schema": [
                    {"type": "integer", "minimum": 1},
                    {"type": "string", "enum": ["all", "log2", "onethird", "sqrt"]},
                    {"type": "null"},
                ],
                "default": None,
                "optional": True,
            },
            {
                "name": "num_trees",
                "description": "The number of trees.",
                "schema": {"type": "integer", "minimum": 1},
                "default": 100,
                "optional": True,
            },
            {
                "name": "seed",
                "description": "Seed of the random sampling; the same seed trains the same model.",
                "schema": {"type": ["integer", "null"]},
                "default": None,
                "optional": True,
            },
        ],
        "returns": {"description": "The trained model.", "schema": _MODEL},
    }


PREDICT_SPEC: dict[str, Any] = {
    "id": "predict_random_forest",
    "summary": "Predict with a random forest",
    "description": "Predicts a value from an array of predictor values with a model trained "
    "by `fit_class_random_forest` or `fit_regr_random_forest`; used as the reducer of "
    "`reduce_dimension` over the predictors' dimension. The array's labels are matched to "
    "the model's predictor names. A no-data value gives `null`. (openEO proposal; this "
    "description is ours.)",
    "categories": ["machine learning", "reducer"],
    "experimental": True,
    "parameters": [
        {
            "name": "data",
            "description": "The predictor values.",
            "schema": {"type": "array", "items": {"type": ["number", "null"]}},
        },
        {"name": "model", "description": "A trained random forest.", "schema": _MODEL},
    ],
    "returns": {"description": "The prediction.", "schema": {"type": ["number", "null"]}},
}


# --- training -------------------------------------------------------------------------------------


def _invalid(process_id: str, parameter: str, reason: str) -> ProcessParameterInvalid:
    return ProcessParameterInvalid(process=process_id, parameter=parameter, reason=reason)


def _predictor_table(process_id: str, predictors: Any) -> tuple[np.ndarray, tuple[str, ...]]:
    """(rows = geometries, columns = predictors) and the predictor names."""
    if not isinstance(predictors, xr.DataArray) or GEOMETRY_DIM not in predictors.dims:
        raise _invalid(process_id, "predictors", "expected a vector cube (e.g. aggregate_spatial)")
    others = [d for d in predictors.dims if d != GEOMETRY_DIM]
    # Dimensions of one label (e.g. 't' after a composite) do not count.
    wide = [d for d in others if predictors.sizes[d] > 1] or others[:1]
    cube = predictors.isel({d: 0 for d in others if d not in wide}, drop=True)
    if len(wide) != 1:
        raise _invalid(
            process_id,
            "predictors",
            f"expected dimensions '{GEOMETRY_DIM}' and one predictor dimension (e.g. 'bands'), "
            f"got {list(predictors.dims)}; reduce the others first (e.g. 't')",
        )
    dim = wide[0]
    names = [str(v) for v in cube.coords[dim].values] if dim in cube.coords else []
    if len(set(names)) != cube.sizes[dim]:
        names = [str(i) for i in range(cube.sizes[dim])]
    values = np.asarray(cube.transpose(GEOMETRY_DIM, dim).values, dtype=np.float64)
    return values, tuple(names)


def _target_values(process_id: str, target: Any) -> np.ndarray:
    if isinstance(target, xr.DataArray) and GEOMETRY_DIM in target.dims:
        if target.size != target.sizes[GEOMETRY_DIM]:
            raise _invalid(
                process_id, "target", "expected one value per geometry (a single property/band)"
            )
        raw: list[Any] = list(target.values.ravel())
    elif isinstance(target, dict) and target.get("type") == "FeatureCollection":
        geometries_of(process_id, target, "target")  # a clear error for broken GeoJSON
        raw = [_feature_target(process_id, f) for f in target.get("features") or []]
    else:
        raise _invalid(
            process_id, "target", "expected a vector cube or a GeoJSON FeatureCollection"
        )
    values = np.full(len(raw), np.nan)
    for i, value in enumerate(raw):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if not is_number(value):
            raise _invalid(process_id, "target", f"expected numbers, got {value!r}")
        values[i] = float(value)
    return values


def _feature_target(process_id: str, feature: dict[str, Any]) -> Any:
    properties = feature.get("properties") or {}
    if "target" in properties:
        return properties["target"]
    if len(properties) == 1:
        return next(iter(properties.values()))
    raise _invalid(
        process_id,
        "target",
        f"a feature needs a 'target' property (or exactly one property), got {sorted(properties)}",
    )


def _max_features(process_id: str, max_variables: Any, task: str, n: int) -> Any:
    if max_variables is None:
        max_variables = "sqrt" if task == CLASSIFICATION else "onethird"
    if isinstance(max_variables, int) and not isinstance(max_variables, bool):
        if not 1 <= max_variables <= n:
            raise _invalid(
                process_id, "max_variables", f"{max_variables} is not between 1 and {n} predictors"
            )
        return max_variables
    named = {"all": 1.0, "log2": "log2", "sqrt": "sqrt", "onethird": max(1, n // 3)}
    if max_variables not in named:
        raise _invalid(
            process_id,
            "max_variables",
            f"expected an integer or one of all, log2, onethird, sqrt, got {max_variables!r}",
        )
    return named[max_variables]


def _integer(process_id: str, parameter: str, value: Any, minimum: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(process_id, parameter, f"expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise _invalid(process_id, parameter, f"expected at least {minimum}, got {value}")
    return value


def fit(
    task: str, predictors: Any, target: Any, max_variables: Any, num_trees: Any, seed: Any
) -> RandomForest:
    process_id = _fit_spec(task)["id"]
    features, names = _predictor_table(process_id, predictors)
    values = _target_values(process_id, target)
    if values.size != features.shape[0]:
        raise _invalid(
            process_id,
            "target",
            f"has {values.size} values for {features.shape[0]} predictor geometries",
        )
    trees = _integer(process_id, "num_trees", num_trees, 1)
    random_state = None if seed is None else _integer(process_id, "seed", seed, None)
    max_features = _max_features(process_id, max_variables, task, len(names))
    usable = np.isfinite(features).all(axis=1) & np.isfinite(values)
    if not usable.any():
        raise _invalid(
            process_id, "predictors", "no geometry has both predictor values and a target"
        )
    # Imported here: scikit-learn takes ~1.7 s to import, paid by every task process otherwise.
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    kind = RandomForestClassifier if task == CLASSIFICATION else RandomForestRegressor
    # One job: the machine's cores are shared with the engine's other work.
    estimator = kind(
        n_estimators=trees, max_features=max_features, random_state=random_state, n_jobs=1
    )
    estimator.fit(features[usable], values[usable])
    return RandomForest(task, names, estimator)


# Trained once on the whole training set, not per tile (its input is never a raster tile).
@process("fit_class_random_forest", space=Global(), spec=_fit_spec(CLASSIFICATION))
def fit_class_random_forest(
    predictors: Any, target: Any, max_variables: Any = None, num_trees: Any = 100, seed: Any = None
) -> Any:
    """A random forest classifier of the target's (numeric) classes."""
    return fit(CLASSIFICATION, predictors, target, max_variables, num_trees, seed)


@process("fit_regr_random_forest", space=Global(), spec=_fit_spec(REGRESSION))
def fit_regr_random_forest(
    predictors: Any, target: Any, max_variables: Any = None, num_trees: Any = 100, seed: Any = None
) -> Any:
    """A random forest regression of the target's values."""
    return fit(REGRESSION, predictors, target, max_variables, num_trees, seed)


# --- prediction -----------------------------------------------------------------------------------


def _feature_order(model: RandomForest, labels: list[Any], size: int) -> list[int]:
    """Positions along the data's dimension of the model's predictors, in the model's order."""
    names = [str(v) for v in labels]
    if set(model.predictors) <= set(names):
        return [names.index(p) for p in model.predictors]
    if not names and size == len(model.predictors):
        return list(range(size))
    raise _invalid(
        "predict_random_forest",
        "data",
        f"the model was trained on predictors {list(model.predictors)}, the data has "
        f"{names or size}",
    )


@process("predict_random_forest", spec=PREDICT_SPEC)
def predict_random_forest(data: Any, model: Any) -> Any:
    """The model's prediction for every pixel at once (a reducer: ``data`` is the cube seen
    along the predictors' dimension)."""
    if not isinstance(model, RandomForest):
        raise _invalid(
            "predict_random_forest",
            "model",
            "expected a model from fit_class_random_forest or fit_regr_random_forest",
        )
    if isinstance(data, LabeledArray):
        cube = data.cube
        order = _feature_order(model, data.labels(), cube.sizes[data.dim])
        picked = cube.isel({data.dim: order}).transpose(..., data.dim)
        template = picked.isel({data.dim: 0}, drop=True)
        features = np.asarray(picked.values, dtype=np.float64).reshape(-1, len(order))
        predicted = model.predict(features).reshape(template.shape)
        return template.copy(data=predicted)
    if isinstance(data, list):
        labels = getattr(data, "labels", [])
        order = _feature_order(model, labels, len(data))
        values = [np.nan if data[i] is None else data[i] for i in order]
        if not all(is_number(v) for v in values):
            raise _invalid("predict_random_forest", "data", "expected an array of numbers")
        value = float(model.predict(np.asarray([values], dtype=np.float64))[0])
        return None if math.isnan(value) else value
    raise _invalid("predict_random_forest", "data", f"expected an array, got {data!r}")
