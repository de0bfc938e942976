"""Python UDFs (run_udf): the openeo.udf entry points, in a child process with limits."""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np
import pytest
import xarray as xr
from affine import Affine

from openeo_airflow.core.errors import OpenEOError
from openeo_airflow.cube import make_cube
from openeo_airflow.processes.graph import evaluate
from openeo_airflow.processes.udf import UdfLimits, run_in_subprocess, udf_runtimes

TIMES = np.array(["2021-06-01", "2021-06-06", "2021-06-11"], dtype="datetime64[ns]")


@pytest.fixture
def cube() -> xr.DataArray:
    data = np.arange(3 * 2 * 4 * 5, dtype=np.float32).reshape(3, 2, 4, 5)
    data[1, 0, 0, 0] = np.nan
    transform = Affine(10, 0, 500_000, 0, -10, 5_000_000)
    return make_cube(data, times=TIMES, bands=["B04", "B08"], transform=transform, crs=32633)


def node(process_id: str, result: bool = False, **arguments: Any) -> dict[str, Any]:
    return {"process_id": process_id, "arguments": arguments, "result": result}


def udf_callback(code: str, **extra: Any) -> dict[str, Any]:
    arguments = {"data": {"from_parameter": extra.pop("parameter", "x")}, "udf": code}
    return {"process_graph": {"u": node("run_udf", True, runtime="Python", **arguments, **extra)}}


def run(graph: dict[str, Any], cube: xr.DataArray) -> Any:
    return evaluate(graph, hooks={"load_collection": lambda a, n: cube})


LOAD = {"lc": node("load_collection", id="S2", spatial_extent=None, temporal_extent=None)}

DOUBLE = textwrap.dedent(
    """
    from openeo.udf import XarrayDataCube

    def apply_datacube(cube: XarrayDataCube, context: dict) -> XarrayDataCube:
        return XarrayDataCube(cube.get_array() * context.get("factor", 2))
    """
)


def test_apply_datacube_inside_apply(cube: xr.DataArray) -> None:
    graph = LOAD | {
        "ap": node(
            "apply",
            True,
            data={"from_node": "lc"},
            process=udf_callback(DOUBLE, context={"factor": 3}),
        ),
    }
    result = run(graph, cube)
    np.testing.assert_array_equal(result.values, cube.values * 3)
    assert result.dims == cube.dims and "spatial_ref" in result.coords
    np.testing.assert_array_equal(result.t.values, cube.t.values)


def test_reducer_udf_drops_the_dimension(cube: xr.DataArray) -> None:
    code = textwrap.dedent(
        """
        def apply_datacube(cube, context):
            from openeo.udf import XarrayDataCube
            return XarrayDataCube(cube.get_array().max(dim="t"))
        """
    )
    graph = LOAD | {
        "rd": node(
            "reduce_dimension",
            True,
            data={"from_node": "lc"},
            dimension="t",
            reducer=udf_callback(code, parameter="data"),
        ),
    }
    result = run(graph, cube)
    np.testing.assert_array_equal(result.values, np.nanmax(cube.values, axis=0))
    assert result.dims == ("bands", "y", "x")


def test_apply_timeseries(cube: xr.DataArray) -> None:
    code = textwrap.dedent(
        """
        import pandas as pd

        def apply_timeseries(series: pd.Series, context: dict) -> pd.Series:
            return series.interpolate().fillna(-1) - series.index.day
        """
    )
    graph = LOAD | {
        "ad": node(
            "apply_dimension",
            True,
            data={"from_node": "lc"},
            dimension="t",
            process=udf_callback(code, parameter="data"),
        ),
    }
    result = run(graph, cube)
    expected = cube.values.astype(float).copy()
    expected[1, 0, 0, 0] = (expected[0, 0, 0, 0] + expected[2, 0, 0, 0]) / 2
    expected -= np.array([1, 6, 11]).reshape(3, 1, 1, 1)
    np.testing.assert_allclose(result.values, expected)


def test_failing_udf_shows_only_the_users_traceback(cube: xr.DataArray) -> None:
    code = textwrap.dedent(
        """
        def helper(value):
            return value / 0

        def apply_datacube(cube, context):
            return helper(1)
        """
    )
    with pytest.raises(OpenEOError) as error:
        run(
            LOAD
            | {"ap": node("apply", True, data={"from_node": "lc"}, process=udf_callback(code))},
            cube,
        )
    message = error.value.message
    assert error.value.code == "UdfError" and error.value.status == 400
    assert "ZeroDivisionError" in message and "in helper" in message and "<udf>" in message
    assert "udf_worker" not in message and "openeo_airflow" not in message.replace(
        "Node 'u' (run_udf)", ""
    )


def test_the_udf_does_not_see_the_backends_environment(
    cube: xr.DataArray, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENEO_AIRFLOW_SECRET", "do-not-leak")
    code = textwrap.dedent(
        """
        import os

        def apply_datacube(cube, context):
            assert "OPENEO_AIRFLOW_SECRET" not in os.environ, "leaked"
            return cube
        """
    )
    result = run_in_subprocess(code, cube, {})
    np.testing.assert_array_equal(result.values, cube.values)


def test_limits_stop_a_udf(cube: xr.DataArray) -> None:
    hog = "def apply_datacube(cube, context):\n    return bytearray(8 * 1024**3)\n"
    with pytest.raises(OpenEOError, match=r"MemoryError|limit"):
        run_in_subprocess(hog, cube, {}, UdfLimits(memory_bytes=1024**3))
    spin = "def apply_datacube(cube, context):\n    while True:\n        pass\n"
    with pytest.raises(OpenEOError, match=r"longer than 2 s|limit"):
        run_in_subprocess(spin, cube, {}, UdfLimits(wall_seconds=2, cpu_seconds=60))


def test_runtime_and_version_are_checked(cube: xr.DataArray) -> None:
    for runtime, version, code in [
        ("R", None, "InvalidRuntime"),
        ("Python", "2.7", "InvalidVersion"),
    ]:
        graph = LOAD | {
            "ap": node(
                "apply",
                True,
                data={"from_node": "lc"},
                process={
                    "process_graph": {
                        "u": node(
                            "run_udf",
                            True,
                            data={"from_parameter": "x"},
                            udf=DOUBLE,
                            runtime=runtime,
                            version=version,
                        )
                    }
                },
            )
        }
        with pytest.raises(OpenEOError) as error:
            run(graph, cube)
        assert error.value.code == code


def test_udf_runtimes_lists_python_and_its_libraries() -> None:
    runtimes = udf_runtimes()
    python = runtimes["Python"]
    assert python["type"] == "language"
    libraries = python["versions"][python["default"]]["libraries"]
    assert {"numpy", "xarray", "openeo"} <= set(libraries)
