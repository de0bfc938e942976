"""A vector cube as ``spatial_extent``: ``load_geojson`` of GeoJSON in the graph is evaluated
when the plan is made and loads exactly like the same GeoJSON given inline (bounding box read,
pixels outside the polygons null), through ``POST /result`` and a batch job on the real CDSE
Sentinel-2 cube. A vector cube that needs loaded data is refused naming ``spatial_extent``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from openeo_airflow.jobs.backend import Backend
from tests.load_support import (
    OCTOBER,
    Api,
    assert_error,
    backend_fixtures,
    graph,
    load_node,
    read_nc,
    run_job,
    save,
)
from tests.test_geojson_extent import COLLECTION, TRIANGLE

setup, api = backend_fixtures("vector-extent")


def load(extent: Any) -> dict[str, Any]:
    return load_node(
        "load_collection",
        id="TEST_CDSE_S2",
        spatial_extent=extent,
        temporal_extent=OCTOBER,
        bands=["B04", "SCL"],
    )


def by_vector_cube(geojson: dict[str, Any]) -> dict[str, Any]:
    return {
        "process_graph": {
            "geo": {"process_id": "load_geojson", "arguments": {"data": geojson}},
            "load": load({"from_node": "geo"}),
            "save": save("load"),
        }
    }


@pytest.mark.parametrize("geojson", [TRIANGLE, COLLECTION], ids=["polygon", "collection"])
def test_load_geojson_as_extent_loads_like_inline_geojson(
    api: Api, geojson: dict[str, Any]
) -> None:
    vector = api.cube(by_vector_cube(geojson))
    inline = api.cube(graph(load(geojson)))
    assert vector.sizes == inline.sizes
    for band in ("B04", "SCL"):
        np.testing.assert_array_equal(vector[band].values, inline[band].values)
    assert 0 < np.isnan(vector["B04"].values).mean() < 1  # masked, not empty


def test_a_batch_job_takes_it_too(api: Api, setup: tuple[Backend, Path]) -> None:
    _, results = run_job(setup[0], by_vector_cube(COLLECTION), options={"tile-size": 64})
    batch = read_nc(results)
    inline = api.cube(graph(load(COLLECTION)))
    np.testing.assert_array_equal(batch["B04"].values, inline["B04"].values)


def test_a_vector_cube_from_loaded_data_is_refused(api: Api) -> None:
    """Geometries that exist only after loading cannot bound the load itself."""
    process = {
        "process_graph": {
            "first": load(TRIANGLE),
            "vectors": {
                "process_id": "aggregate_spatial",
                "arguments": {
                    "data": {"from_node": "first"},
                    "geometries": TRIANGLE,
                    "reducer": {
                        "process_graph": {
                            "m": {
                                "process_id": "mean",
                                "arguments": {"data": {"from_parameter": "data"}},
                                "result": True,
                            }
                        }
                    },
                },
            },
            "load": load({"from_node": "vectors"}),
            "save": save("load"),
        }
    }
    response = api.post(process)
    assert response.status_code == 400, response.text
    assert_error(response, "ProcessParameterInvalid", "'load'", "spatial_extent", "'vectors'")
