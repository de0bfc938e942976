"""``sar_backscatter`` in the plan: recorded on the source it follows, refused elsewhere, and a
pass-through at evaluation only for cubes a backscatter loader produced."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import xarray as xr
from affine import Affine

from openeo_airflow.compiler.compile import compile_plan
from openeo_airflow.compiler.plan import Plan
from openeo_airflow.core.errors import FeatureUnsupported
from openeo_airflow.cube import make_cube
from openeo_airflow.engine.stages import evaluate_plan
from openeo_airflow.processes import registry
from tests.graph_builders import load, node

ARGS = {"coefficient": "sigma0-ellipsoid", "mask": True, "noise_removal": False}


def compile_(graph: dict[str, Any]) -> Plan:
    return compile_plan(graph, known_processes=registry.specs(), collections={"S1": ["VV", "VH"]})


def backscatter_graph(**extra: Any) -> dict[str, Any]:
    return {
        "lc": load("S1", bands=["VV"]),
        "sar": node("sar_backscatter", data={"from_node": "lc"}, **ARGS),
        "sr": node("save_result", True, data={"from_node": "sar"}, format="netCDF"),
        **extra,
    }


def cube(**attrs: Any) -> xr.DataArray:
    data = np.ones((1, 1, 2, 2), dtype=np.float32)
    result = make_cube(
        data,
        times=[np.datetime64("2021-01-19")],
        bands=["VV"],
        transform=Affine(10, 0, 0, 0, -10, 20),
        crs="EPSG:32631",
    )
    result.attrs.update(attrs)
    return result


def test_registered_and_listed() -> None:
    assert "sar_backscatter" in registry.implemented()
    assert any(p["id"] == "sar_backscatter" for p in registry.list_processes())


def test_arguments_recorded_on_the_source_and_round_trip() -> None:
    plan = compile_(backscatter_graph())
    (source,) = plan.sources
    assert source.node_id == "lc" and source.backscatter == ARGS
    assert Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    plain = compile_(
        {
            "lc": load("S1"),
            "sr": node("save_result", True, data={"from_node": "lc"}, format="GTiff"),
        }
    )
    assert plain.sources[0].backscatter is None
    # Plans stored before the field existed still load.
    stored = plain.to_dict()
    del stored["sources"][0]["backscatter"]
    assert Plan.from_dict(stored) == plain


def test_must_follow_load_collection_directly() -> None:
    graph = {
        "lc": load("S1"),
        "f": node("filter_bands", data={"from_node": "lc"}, bands=["VV"]),
        "sar": node("sar_backscatter", data={"from_node": "f"}, **ARGS),
        "sr": node("save_result", True, data={"from_node": "sar"}, format="GTiff"),
    }
    with pytest.raises(FeatureUnsupported, match="'data' must come directly"):
        compile_(graph)


def test_a_load_read_by_another_node_too_is_refused() -> None:
    graph = backscatter_graph(
        m=node("merge_cubes", cube1={"from_node": "sar"}, cube2={"from_node": "lc"})
    )
    graph["sr"]["arguments"]["data"] = {"from_node": "m"}
    with pytest.raises(FeatureUnsupported, match="also read by 'm'"):
        compile_(graph)


def test_evaluation_passes_loader_cubes_on_and_refuses_raw_ones() -> None:
    plan = compile_(backscatter_graph())
    marked = cube(**{"openeo_airflow:backscatter": "sigma0-ellipsoid"})
    assert evaluate_plan(plan, {"lc": marked}) is marked
    with pytest.raises(FeatureUnsupported, match="directly from load_collection"):
        evaluate_plan(plan, {"lc": cube()})
