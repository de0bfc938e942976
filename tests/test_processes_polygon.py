"""``apply_polygon`` from the spec text: each polygon's pixels (centre inside) as a sub cube cut
to the smallest window around them, ``mask_value`` outside the polygon, ``GeometriesOverlap``,
polygons as GeoJSON or a vector cube; through ``POST /result`` with the openEO client (which
sends ``geometries``, the openEO 2.0 name); tiled as untiled."""

from __future__ import annotations

from typing import Any

import numpy as np
import openeo
import pytest
import xarray as xr
from affine import Affine
from openeo.internal.graph_building import PGNode
from pyproj import Transformer
from shapely.geometry import Point, Polygon

from openeo_airflow.core.errors import OpenEOError, ProcessParameterInvalid
from openeo_airflow.cube import make_cube
from openeo_airflow.processes.graph import evaluate
from openeo_airflow.processes.inline import to_json
from openeo_airflow.processes.tiling import evaluate_tiled, node_space
from tests.test_processes_climate import alice  # noqa: F401 (the API server fixture)

CRS = "EPSG:32633"
TRANSFORM = Affine(10, 0, 500_000, 0, -10, 5_000_200)
TIMES = np.array(["2021-06-01", "2021-06-06"], dtype="datetime64[ns]")
TO_LONLAT = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
# In metres (EPSG:32633): a triangle and a square that do not share a pixel centre.
TRIANGLE = [(500_020, 5_000_020), (500_180, 5_000_020), (500_020, 5_000_180)]
SQUARE = [(500_200, 5_000_100), (500_290, 5_000_100), (500_290, 5_000_190), (500_200, 5_000_190)]


def source(height: int = 20, width: int = 33, seed: int = 2) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    data = rng.uniform(1, 2, (2, 2, height, width)).astype(np.float32)
    return make_cube(data, times=TIMES, bands=["B04", "B08"], transform=TRANSFORM, crs=CRS)


def lonlat(ring: list[tuple[float, float]]) -> dict[str, Any]:
    closed = [*ring, ring[0]]
    return {"type": "Polygon", "coordinates": [[list(TO_LONLAT.transform(*p)) for p in closed]]}


def collection(*rings: list[tuple[float, float]]) -> dict[str, Any]:
    features = [{"type": "Feature", "properties": {}, "geometry": lonlat(r)} for r in rings]
    return {"type": "FeatureCollection", "features": features}


def inside(cube: xr.DataArray, ring: list[tuple[float, float]]) -> np.ndarray:
    """Pixels whose centre the polygon contains, by shapely (not the code under test)."""
    polygon = Polygon(ring)
    return np.array([[polygon.contains(Point(x, y)) for x in cube.x.values] for y in cube.y.values])


def node(process_id: str, result: bool = False, **arguments: Any) -> dict[str, Any]:
    return {"process_id": process_id, "arguments": arguments, "result": result}


# Each pixel takes the value of its right-hand neighbour: shows what the process sees there.
SHIFT = {
    "process_graph": {
        "k": node(
            "apply_kernel",
            True,
            data={"from_parameter": "data"},
            kernel=[[0, 0, 0], [0, 0, 1], [0, 0, 0]],
            border=-100,
            replace_invalid=-7,
        )
    }
}


def apply_polygon(cube: xr.DataArray, geometries: Any, process: Any = None, **more: Any) -> Any:
    graph = {
        "p": node(
            "apply_polygon",
            True,
            data={"from_parameter": "cube"},
            geometries=geometries,
            process=process or SHIFT,
            **more,
        )
    }
    return evaluate(graph, arguments={"cube": cube})


def expected_shift(cube: xr.DataArray, ring: list[tuple[float, float]], fill: float) -> np.ndarray:
    """What ``SHIFT`` gives inside one polygon: the right neighbour if it is in the polygon,
    ``fill`` if it is outside it but in the window, the border beyond the window."""
    mask = inside(cube, ring)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    out = np.full(cube.shape, np.nan)
    values = cube.values
    for r in rows:
        for c in np.flatnonzero(mask[r]):
            if c + 1 > cols[-1]:
                out[..., r, c] = -100
            elif mask[r, c + 1]:
                out[..., r, c] = values[..., r, c + 1]
            else:
                out[..., r, c] = fill
    return out


def test_each_polygon_sees_its_masked_window_and_the_rest_is_no_data() -> None:
    cube = source()
    out = apply_polygon(cube, collection(TRIANGLE, SQUARE))
    assert out.dims == cube.dims and out.dtype == cube.dtype
    expected = expected_shift(cube, TRIANGLE, -7)  # masked as no-data: replace_invalid
    square = expected_shift(cube, SQUARE, -7)
    expected = np.where(np.isnan(expected), square, expected)
    np.testing.assert_allclose(out.values, expected, rtol=1e-6)
    assert np.isnan(out.values[..., 0, :]).all()  # no polygon covers the first row


def test_mask_value_fills_the_pixels_outside_the_polygon() -> None:
    cube = source()
    out = apply_polygon(cube, lonlat(TRIANGLE), mask_value=3)
    np.testing.assert_allclose(out.values, expected_shift(cube, TRIANGLE, 3), rtol=1e-6)
    flags = apply_polygon(cube, lonlat(TRIANGLE), mask_value=True)
    assert np.nanmax(flags.values) <= 2 and (flags.values == 1).any()


def test_a_vector_cube_of_polygons_and_empty_or_distant_polygons() -> None:
    cube = source()
    polygons = node("load_geojson", data=collection(TRIANGLE, SQUARE))
    graph = {
        "v": polygons,
        "p": node(
            "apply_polygon",
            True,
            data={"from_parameter": "cube"},
            geometries={"from_node": "v"},
            process=SHIFT,
        ),
    }
    from_vector = evaluate(graph, arguments={"cube": cube})
    xr.testing.assert_identical(from_vector, apply_polygon(cube, collection(TRIANGLE, SQUARE)))
    far = [(600_000, 5_100_000), (600_100, 5_100_000), (600_100, 5_100_100)]
    empty = {"type": "Polygon", "coordinates": []}
    out = apply_polygon(cube, {"type": "GeometryCollection", "geometries": [lonlat(far), empty]})
    assert np.isnan(out.values).all()


def test_overlapping_polygons_are_the_spec_exception() -> None:
    shifted = [(x + 50, y) for x, y in TRIANGLE]
    with pytest.raises(OpenEOError) as raised:
        apply_polygon(source(), collection(TRIANGLE, shifted))
    assert raised.value.code == "GeometriesOverlap" and raised.value.status == 400
    assert "pixel(s) overlap" in str(raised.value) and "'p'" in str(raised.value)


@pytest.mark.parametrize(
    ("change", "parameter"),
    [
        ("point", "geometries"),
        ("nothing", "geometries"),
        ("not geojson", "geometries"),
        ("mask text", "mask_value"),
        ("reducing process", "process"),
        ("no raster", "data"),
    ],
)
def test_bad_arguments_name_the_parameter(change: str, parameter: str) -> None:
    cube, geometries, process, more = source(), lonlat(TRIANGLE), None, {}
    if change == "point":
        geometries = {"type": "Point", "coordinates": list(TO_LONLAT.transform(500_050, 5_000_050))}
    elif change == "nothing":
        geometries = {"type": "FeatureCollection", "features": []}
    elif change == "not geojson":
        geometries = {"west": 1}
    elif change == "mask text":
        more = {"mask_value": "outside"}
    elif change == "reducing process":
        process = {
            "process_graph": {
                "r": node(
                    "reduce_dimension",
                    True,
                    data={"from_parameter": "data"},
                    dimension="t",
                    reducer={
                        "process_graph": {"m": node("max", True, data={"from_parameter": "data"})}
                    },
                )
            }
        }
    elif change == "no raster":
        cube = cube.isel(x=0, drop=True)
    with pytest.raises(ProcessParameterInvalid) as raised:
        apply_polygon(cube, geometries, process, **more)
    assert f"'{parameter}'" in str(raised.value) and "apply_polygon" in str(raised.value)


def test_apply_polygon_needs_the_whole_extent() -> None:
    assert node_space(node("apply_polygon", geometries=lonlat(TRIANGLE), process=SHIFT)).is_global


# --- through POST /result with the openEO client --------------------------------------------------


def test_apply_polygon_through_post_result(alice: openeo.Connection) -> None:  # noqa: F811
    cube = source(12, 12)
    inline = alice.datacube_from_process("load_inline_cube", data=to_json(cube))
    double = PGNode("multiply", x={"from_parameter": "x"}, y=2)
    per_pixel = PGNode("apply", data={"from_parameter": "data"}, process={"process_graph": double})
    doubled = inline.apply_polygon(geometries=lonlat(TRIANGLE), process=per_pixel, mask_value=0)
    result: Any = alice.execute(doubled.save_result(format="JSON"))
    values = np.array(result["data"], dtype=np.float64)
    mask = inside(cube, TRIANGLE)
    np.testing.assert_allclose(values[..., mask], cube.values[..., mask] * 2, rtol=1e-6)
    assert np.isnan(values[..., ~mask]).all()
    overlapping = inline.apply_polygon(geometries=collection(TRIANGLE, TRIANGLE), process=per_pixel)
    with pytest.raises(openeo.rest.OpenEoApiError) as raised:
        alice.execute(overlapping.save_result(format="JSON"))
    assert (raised.value.http_status_code, raised.value.code) == (400, "GeometriesOverlap")


# --- tiled as untiled -----------------------------------------------------------------------------


def test_tiled_equals_untiled() -> None:
    cube = source(37, 41, seed=6)
    cube[1, :, 5:9, 10:14] = np.nan
    graph = {
        "lc": node("load_collection", id="S2"),
        "p": node(
            "apply_polygon",
            True,
            data={"from_node": "lc"},
            geometries=collection(TRIANGLE, SQUARE),
            process=SHIFT,
            mask_value=0.5,
        ),
    }
    untiled = evaluate(graph, node_hooks={"lc": lambda _a, _n: cube})
    assert np.isfinite(untiled.values).sum() > 200
    for tile_size in (8, 16):
        tiled = evaluate_tiled(graph, {"lc": cube}, tile_size=tile_size)
        assert tiled.dims == untiled.dims
        np.testing.assert_allclose(tiled.values, untiled.values, rtol=1e-6, equal_nan=True)
