"""Vector cube processes (vector_buffer, vector_reproject, vector_to_*_points, filter_vector):
the behaviour their specs describe, bad input, and one graph through ``POST /result`` with the
openEO client against the app served over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import openeo
import pytest
import shapely
import xarray as xr
from pyproj import CRS, Transformer

from openeo_airflow.core.errors import OpenEOError
from openeo_airflow.jobs.backend import Backend
from openeo_airflow.processes.graph import evaluate
from tests.api_support import USERS, make_backend, served

UTM = 32631
TO_LONLAT = Transformer.from_crs(UTM, 4326, always_xy=True)


def lonlat_ring(left: float, bottom: float, right: float, top: float) -> list[list[float]]:
    corners = [(left, bottom), (right, bottom), (right, top), (left, top), (left, bottom)]
    return [list(TO_LONLAT.transform(*c)) for c in corners]


def feature(geometry: dict[str, Any], **properties: Any) -> dict[str, Any]:
    return {"type": "Feature", "properties": properties, "geometry": geometry}


# A 200 m x 100 m field, a point, a 300 m line (all in Belgium, UTM 31N), and an empty polygon.
FIELD = {"type": "Polygon", "coordinates": [lonlat_ring(600_000, 5_650_000, 600_200, 5_650_100)]}
POINT = {"type": "Point", "coordinates": list(TO_LONLAT.transform(600_500, 5_650_500))}
LINE = {
    "type": "LineString",
    "coordinates": [list(TO_LONLAT.transform(601_000 + dx, 5_650_000)) for dx in (0, 300)],
}
FEATURES = {
    "type": "FeatureCollection",
    "features": [
        feature(FIELD, crop=1),
        feature(POINT, crop=2),
        feature(LINE, crop=3),
    ],
}


def node(process_id: str, result: bool = False, **arguments: Any) -> dict[str, Any]:
    return {"process_id": process_id, "arguments": arguments, "result": result}


def run(process_id: str, data: Any = None, **arguments: Any) -> Any:
    """``process_id`` on the FEATURES vector cube (properties ``crop``) or on ``data``."""
    graph = {
        "g": node("load_geojson", data=FEATURES, properties=["crop"]),
        "p": node(process_id, True, **arguments),
    }
    key = "geometries" if process_id == "vector_buffer" else "data"
    graph["p"]["arguments"].setdefault(key, {"from_node": "g"} if data is None else data)
    return evaluate(graph)


def in_utm(cube: xr.DataArray) -> list[Any]:
    crs = CRS.from_wkt(cube.geometry.attrs["crs_wkt"])
    to_utm = Transformer.from_crs(crs, UTM, always_xy=True)
    return [
        shapely.transform(g, lambda xy: np.column_stack(to_utm.transform(xy[:, 0], xy[:, 1])))
        for g in cube.geometry.values
    ]


@contextmanager
def expect_error(code: str, *words: str) -> Iterator[None]:
    """The block raises the openEO error ``code`` whose message names every one of ``words``."""
    with pytest.raises(OpenEOError) as caught:
        yield
    assert caught.value.code == code, caught.value
    for word in words:
        assert word in str(caught.value), caught.value


# --- vector_buffer --------------------------------------------------------------------------------


def test_buffer_in_metres_on_lonlat_geometries() -> None:
    grown = run("vector_buffer", distance=10)
    field, disc, sausage = in_utm(grown)
    # The field grows by 10 m on each side, with rounded corners: 220 x 120 - 4 corners.
    assert field.area == pytest.approx(220 * 120 - (4 - np.pi) * 100, rel=2e-3)
    assert disc.area == pytest.approx(np.pi * 100, rel=1e-2)
    assert sausage.area == pytest.approx(300 * 20 + np.pi * 100, rel=1e-2)
    assert all(g.geom_type == "Polygon" for g in (field, disc, sausage))
    np.testing.assert_array_equal(grown.values, [[1], [2], [3]])  # properties preserved
    assert CRS.from_wkt(grown.geometry.attrs["crs_wkt"]) == CRS.from_epsg(4326)


def test_negative_buffer_shrinks_and_may_empty() -> None:
    shrunk = in_utm(run("vector_buffer", distance=-20))
    assert shrunk[0].area == pytest.approx(160 * 60, rel=2e-3)
    assert shrunk[1].is_empty and shrunk[2].is_empty  # a point or a line has no inside
    assert run("vector_buffer", distance=-60).geometry.values[0].is_empty


def test_buffer_in_a_projected_crs_and_in_feet() -> None:
    projected = run("vector_reproject", projection=UTM)
    grown = evaluate({"b": node("vector_buffer", True, geometries=projected, distance=5)})
    assert grown.geometry.values[0].area == pytest.approx(210 * 110 - (4 - np.pi) * 25, rel=1e-3)
    # EPSG:2272 (Pennsylvania South, US feet): 5 m is 16.4 ft.
    feet = evaluate(
        {
            "g": node("load_geojson", data={"type": "Point", "coordinates": [-77.0, 40.0]}),
            "r": node("vector_reproject", data={"from_node": "g"}, projection=2272),
            "b": node("vector_buffer", True, geometries={"from_node": "r"}, distance=5),
        }
    )
    radius_ft = np.sqrt(feet.geometry.values[0].area / np.pi)
    assert radius_ft == pytest.approx(5 / 0.3048006096, rel=1e-2)


@pytest.mark.parametrize("distance", [0, "10", None, float("nan")])
def test_buffer_rejects_a_bad_distance(distance: Any) -> None:
    with expect_error("ProcessParameterInvalid", "vector_buffer", "distance"):
        run("vector_buffer", distance=distance)


def test_buffer_rejects_what_is_not_geometries() -> None:
    with expect_error("ProcessParameterInvalid", "vector_buffer", "geometries"):
        run("vector_buffer", data=[1, 2], distance=5)
    with expect_error("ProcessParameterInvalid", "geometries", "GeoJSON"):
        run("vector_buffer", data={"type": "Polygon", "coordinates": [[1]]}, distance=5)


# --- vector_reproject -----------------------------------------------------------------------------


def test_reproject_changes_only_the_geometries() -> None:
    projected = run("vector_reproject", projection=UTM)
    assert CRS.from_wkt(projected.geometry.attrs["crs_wkt"]) == CRS.from_epsg(UTM)
    field = projected.geometry.values[0]
    assert field.bounds == pytest.approx((600_000, 5_650_000, 600_200, 5_650_100), abs=1e-3)
    np.testing.assert_array_equal(projected.values, [[1], [2], [3]])
    wkt = CRS.from_epsg(3035).to_wkt()
    assert CRS.from_wkt(run("vector_reproject", projection=wkt).geometry.attrs["crs_wkt"]) == (
        CRS.from_epsg(3035)
    )


def test_reproject_bad_input() -> None:
    with expect_error("ProcessParameterInvalid", "projection"):
        run("vector_reproject", projection=999_999)
    with expect_error("ProcessParameterInvalid", "projection"):
        run("vector_reproject", projection="not a crs")
    with expect_error("DimensionNotAvailable", "'geoms'"):
        run("vector_reproject", projection=UTM, dimension="geoms")


# --- vector_to_random_points ----------------------------------------------------------------------


def test_random_points_are_inside_and_repeat_with_the_seed() -> None:
    points = run("vector_to_random_points", geometry_count=5, seed=42)
    again = run("vector_to_random_points", geometry_count=5, seed=42)
    other = run("vector_to_random_points", geometry_count=5, seed=43)
    assert [g.wkt for g in points.geometry.values] == [g.wkt for g in again.geometry.values]
    assert [g.wkt for g in points.geometry.values] != [g.wkt for g in other.geometry.values]
    field, point, line = in_utm(points)
    assert field.geom_type == "MultiPoint" and len(field.geoms) == 5
    assert len({p.wkt for p in field.geoms}) == 5  # each point once
    assert all(600_000 < p.x < 600_200 and 5_650_000 < p.y < 5_650_100 for p in field.geoms)
    assert len(point.geoms) == 1  # a point has just itself to offer
    assert all(abs(p.y - 5_650_000) < 0.01 and 601_000 <= p.x <= 601_300 for p in line.geoms)
    np.testing.assert_array_equal(points.values, [[1], [2], [3]])


def test_random_points_counts_and_ungrouped() -> None:
    one_each = run("vector_to_random_points", seed=1)
    assert [len(g.geoms) for g in one_each.geometry.values] == [1, 1, 1]
    shared = run("vector_to_random_points", total_count=7, group=False, seed=1)
    # 7 shared over 3 geometries: 3, 2, 2; the point can give only 1.
    assert shared.sizes["geometry"] == 3 + 1 + 2
    assert all(g.geom_type == "Point" for g in shared.geometry.values)
    np.testing.assert_array_equal(shared.values.ravel(), [1, 1, 1, 2, 3, 3])
    capped = run("vector_to_random_points", geometry_count=2, total_count=9, seed=1)
    assert [len(g.geoms) for g in capped.geometry.values] == [2, 1, 2]


def test_random_points_pass_empty_geometries_through() -> None:
    empty = {"type": "Polygon", "coordinates": []}
    data = {"type": "FeatureCollection", "features": [feature(FIELD), feature(empty)]}
    grouped = run("vector_to_random_points", data=data, seed=3)
    assert grouped.geometry.values[1].is_empty
    assert run("vector_to_random_points", data=data, group=False, seed=3).sizes["geometry"] == 1


def test_random_points_bad_input() -> None:
    with expect_error("CountMismatch", "total_count", "3 geometries"):
        run("vector_to_random_points", total_count=2)
    with expect_error("ProcessParameterInvalid", "geometry_count"):
        run("vector_to_random_points", geometry_count=0)
    with expect_error("ProcessParameterInvalid", "seed"):
        run("vector_to_random_points", seed="x")
    with expect_error("ProcessParameterInvalid", "group"):
        run("vector_to_random_points", group="yes")


# --- vector_to_regular_points ---------------------------------------------------------------------


def test_regular_points_grid_line_steps_and_points() -> None:
    points = run("vector_to_regular_points", distance=50)
    field, point, line = in_utm(points)
    # A 50 m grid over 200 x 100 m from the upper-left corner: 4 x 2 cell centres.
    # (The grid is laid out in a local metric projection of the lon/lat input: within 3 m.)
    xy = sorted(((p.x, p.y) for p in field.geoms), key=lambda c: (round(c[0], -1), round(c[1], -1)))
    expected = [(600_000 + x, 5_650_000 + y) for x in (25, 75, 125, 175) for y in (25, 75)]
    np.testing.assert_allclose(xy, expected, atol=3)
    assert [round(p.x) for p in line.geoms] == [601_000, 601_050, 601_100, 601_150, 601_200,
                                                601_250, 601_300]  # fmt: skip
    assert (round(point.geoms[0].x), round(point.geoms[0].y)) == (600_500, 5_650_500)


def test_regular_points_too_coarse_gives_the_first_coordinate() -> None:
    sparse = in_utm(run("vector_to_regular_points", distance=1000, group=False))
    assert (round(sparse[0].x), round(sparse[0].y)) == (600_000, 5_650_000)
    assert len(sparse) == 3  # field, point, line: one each


@pytest.mark.parametrize("distance", [0, -5, "1"])
def test_regular_points_bad_distance(distance: Any) -> None:
    with expect_error("ProcessParameterInvalid", "vector_to_regular_points", "distance"):
        run("vector_to_regular_points", distance=distance)


def test_distances_on_a_rotated_pole_grid() -> None:
    """Geographic coordinates other than plain lon/lat are measured in metres too."""
    rotated = CRS.from_proj4("+proj=ob_tran +o_proj=longlat +o_lat_p=40 +lon_0=10 +datum=WGS84")
    data = run("vector_reproject", projection=rotated.to_wkt())
    grown = evaluate({"b": node("vector_buffer", True, geometries=data, distance=10)})
    disc = in_utm(grown)[1]
    assert disc.area == pytest.approx(np.pi * 100, rel=1e-2)


# --- filter_vector --------------------------------------------------------------------------------


def test_filter_vector_relations() -> None:
    around_field = {
        "type": "Polygon",
        "coordinates": [lonlat_ring(599_900, 5_649_900, 600_600, 5_650_600)],
    }
    within = run("filter_vector", geometries=around_field, relation="within")
    np.testing.assert_array_equal(within.values.ravel(), [1, 2])
    intersects = run("filter_vector", geometries=around_field)
    np.testing.assert_array_equal(intersects.values.ravel(), [1, 2])
    disjoint = run("filter_vector", geometries=around_field, relation="disjoint")
    np.testing.assert_array_equal(disjoint.values.ravel(), [3])
    inside_field = {"type": "Point", "coordinates": list(TO_LONLAT.transform(600_100, 5_650_050))}
    contains = run("filter_vector", geometries=inside_field, relation="contains")
    assert [g.geom_type for g in contains.geometry.values] == ["Polygon"]
    nothing = run("filter_vector", geometries=inside_field, relation="equals")
    assert nothing.sizes["geometry"] == 0


def test_filter_vector_with_a_projected_base_cube_and_bad_relation() -> None:
    base = evaluate(
        {
            "g": node("load_geojson", data=LINE),
            "b": node("vector_buffer", geometries={"from_node": "g"}, distance=5),
            "r": node("vector_reproject", True, data={"from_node": "b"}, projection=UTM),
        }
    )
    kept = run("filter_vector", geometries=base)
    np.testing.assert_array_equal(kept.values.ravel(), [3])
    with expect_error("ProcessParameterInvalid", "relation", "'near'"):
        run("filter_vector", geometries=base, relation="near")


# --- through the API with the openEO client -------------------------------------------------------


def empty_backend(root: Path) -> Backend:
    collections = root / "collections.yaml"
    collections.write_text("collections: []\n")
    return make_backend(root / "home", collections)


def test_buffered_points_graph_through_post_result(tmp_path: Path) -> None:
    with served(empty_backend(tmp_path)) as url:
        connection = openeo.connect(url).authenticate_basic("alice", USERS["alice"])
        fields = connection.load_geojson(FEATURES, properties=["crop"])
        buffered = fields.process("vector_buffer", geometries=fields, distance=10)
        points = buffered.process(
            "vector_to_regular_points", data=buffered, distance=40, group=False
        )
        inside = points.process("filter_vector", data=points, geometries=FIELD, relation="within")
        kept = inside.process("vector_reproject", data=inside, projection=UTM)
        result = kept.process("save_result", data=kept, format="JSON").execute()
        with pytest.raises(openeo.rest.OpenEoApiError) as failed:
            fields.process("vector_buffer", geometries=fields, distance=0).execute()
    assert failed.value.http_status_code == 400
    assert failed.value.code == "ProcessParameterInvalid" and "distance" in failed.value.message
    dimension = result["dimensions"]["geometry"]
    assert dimension["reference_system"] == f"EPSG:{UTM}"
    labels = dimension["values"]
    assert result["order"] == ["geometry", "properties"]
    assert labels and all(g["type"] == "Point" for g in labels)
    # A 40 m grid over the field grown by 10 m: 5 x 3 centres, all inside the field.
    assert result["data"] == [[1]] * 15
    xy = sorted(
        (g["coordinates"] for g in labels), key=lambda c: (round(c[0], -1), round(c[1], -1))
    )
    expected = [(600_010 + 40 * i, 5_650_010 + 40 * j) for i in range(5) for j in range(3)]
    np.testing.assert_allclose(xy, expected, atol=3)
