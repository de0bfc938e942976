"""GeoJSON ``spatial_extent`` (openEO 2.0): the polygons' bounding box is loaded and every pixel
whose centre lies outside all polygons is null. Checked on the real CDSE Sentinel-2 cube against
an independent computation (pixel centres tested in lon/lat with shapely), through
``POST /result``, through the batch tasks with small tiles (each tile masks itself), and for
``load_stac``; bad GeoJSON is a ``ProcessParameterInvalid`` naming ``spatial_extent``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
import xarray as xr
from pyproj import Transformer

from openeo_airflow.airflow import tasks
from openeo_airflow.io.geometry_mask import geometry_text, inside
from openeo_airflow.io.grid import Tile, snap_grid, tiles
from openeo_airflow.io.reader import LoadOptions, read_steps, resolve_load, stream_steps, time_steps
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
)

TO_LONLAT = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True)


def lonlat_ring(points: list[tuple[float, float]]) -> list[list[float]]:
    ring = [list(TO_LONLAT.transform(x, y)) for x, y in points]
    return [*ring, ring[0]]


# A triangle and a small square inside the CDSE cube's grid (UTM 31N corners, as lon/lat).
TRIANGLE = {
    "type": "Polygon",
    "coordinates": [lonlat_ring([(587900, 5684930), (588300, 5684960), (588000, 5685400)])],
}
SQUARE = {
    "type": "Polygon",
    "coordinates": [lonlat_ring([(588250, 5685300), (588330, 5685300), (588330, 5685420)])],
}
COLLECTION = {
    "type": "FeatureCollection",
    "features": [
        {"type": "Feature", "properties": {}, "geometry": TRIANGLE},
        {"type": "Feature", "properties": {"name": "b"}, "geometry": SQUARE},
    ],
}


setup, api = backend_fixtures("geojson")


def load(extent: Any, process_id: str = "load_collection", **source: Any) -> dict[str, Any]:
    if not source:
        source = {"id": "TEST_CDSE_S2"}
    return graph(
        load_node(
            process_id,
            spatial_extent=extent,
            temporal_extent=OCTOBER,
            bands=["B04", "SCL"],
            **source,
        )
    )


def expected_inside(cube: xr.Dataset, geometry: dict[str, Any]) -> np.ndarray:
    """Pixel centres of the cube, in lon/lat, intersecting the GeoJSON (the spec's rule)."""
    xs, ys = np.meshgrid(cube.x.values, cube.y.values)
    lon, lat = TO_LONLAT.transform(xs, ys)
    shape = shapely.geometry.shape(geometry)
    return np.asarray(shapely.intersects_xy(shape, lon, lat))


def bbox_of(geometry: dict[str, Any]) -> dict[str, Any]:
    west, south, east, north = shapely.geometry.shape(geometry).bounds
    return {"west": west, "south": south, "east": east, "north": north}


@pytest.mark.parametrize(
    "extent",
    [TRIANGLE, {"type": "Feature", "properties": {}, "geometry": TRIANGLE}, COLLECTION],
    ids=["polygon", "feature", "feature-collection"],
)
def test_pixels_outside_the_polygons_are_null(api: Api, extent: dict[str, Any]) -> None:
    geometry = extent if "coordinates" in extent else _union(extent)
    masked = api.cube(load(extent))
    boxed = api.cube(load(bbox_of(geometry)))
    assert masked.sizes == boxed.sizes  # the grid is the polygons' bounding box
    keep = expected_inside(masked, geometry)
    assert 0.2 < keep.mean() < 0.8
    for band in ("B04", "SCL"):
        values, reference = masked[band].values, boxed[band].values
        assert np.isnan(values[:, ~keep]).all()
        np.testing.assert_array_equal(values[:, keep], reference[:, keep])


def test_batch_tiles_mask_like_the_whole_cube(api: Api, setup: tuple[Backend, Path]) -> None:
    job_id, results = run_job(setup[0], load(COLLECTION), options={"tile-size": 64})
    batch = read_nc(results)
    sync = api.cube(load(COLLECTION))
    np.testing.assert_array_equal(batch["B04"].values, sync["B04"].values)
    load_plan = json.loads(tasks.workspace(job_id).load_plan_file("load").read_text())
    assert json.loads(load_plan["options"]["geometry"])["type"] == "MultiPolygon"


def test_load_stac_takes_polygons_too(api: Api, setup: tuple[Backend, Path]) -> None:
    url = str(setup[1] / "cdse" / "catalog.json")
    by_stac = api.cube(load(TRIANGLE, "load_stac", url=url))
    by_collection = api.cube(load(TRIANGLE))
    np.testing.assert_array_equal(by_stac["B04"].values, by_collection["B04"].values)


def test_tile_masks_assemble_into_the_whole_mask() -> None:
    # Batch loads mask each tile on its own grid: the pieces must be the whole cube's mask.
    grid = snap_grid((587880, 5684910, 588340, 5685430), _crs(32631), 10.0)
    text = geometry_text(COLLECTION) or ""
    whole = inside(text, grid)
    pieces = np.zeros_like(whole)
    for tile in tiles(grid, 7):
        pieces[tile.rows, tile.cols] = inside(text, tile.grid)
    np.testing.assert_array_equal(pieces, whole)
    assert 0.2 < whole.mean() < 0.8


def test_the_mask_counts_boundary_points_as_inside() -> None:
    # A pixel centre exactly on the outline intersects the polygon (boundary included).
    grid = snap_grid((0.0, 0.0, 4.0, 4.0), _crs(4326), 1.0)
    square = {"type": "Polygon", "coordinates": [[[0, 0], [2.5, 0], [2.5, 2.5], [0, 2.5], [0, 0]]]}
    mask = inside(geometry_text(square) or "", grid)
    assert mask.sum() == 9 and mask[1:, :3].all()  # centres 0.5, 1.5, 2.5 on both axes


@pytest.mark.parametrize(
    ("extent", "reason"),
    [
        ({"type": "LineString", "coordinates": [[3.0, 51.0], [3.1, 51.1]]}, "LineString"),
        ({"type": "FeatureCollection", "features": []}, "no non-empty"),
        ({"type": "Polygon", "coordinates": [[[3, 95], [4, 95], [4, 96], [3, 95]]]}, "WGS 84"),
    ],
    ids=["line", "empty", "not-lonlat"],
)
def test_bad_geojson_names_spatial_extent(api: Api, extent: dict[str, Any], reason: str) -> None:
    response = api.post(load(extent))
    assert_error(response, "ProcessParameterInvalid", "'spatial_extent'", reason)


def _union(extent: dict[str, Any]) -> dict[str, Any]:
    features = extent.get("features") or [extent]
    shapes = [shapely.geometry.shape(f["geometry"]) for f in features]
    return dict(shapely.geometry.mapping(shapely.union_all(shapes)))


def _crs(epsg: int) -> Any:
    from rasterio.crs import CRS

    return CRS.from_epsg(epsg)


def test_a_streamed_load_hands_over_every_window_as_the_whole_read_has_it(
    setup: tuple[Backend, Path],
) -> None:
    # A staged load writes each window as the reader finishes it (reader.stream_steps): the
    # windows together must be the cube read whole, windows wholly outside the polygons
    # (never read) included, as NaN.
    cfg = setup[0].collections["TEST_CDSE_S2"]
    items, bands, grid = resolve_load(
        cfg, spatial_extent=COLLECTION, temporal_extent=OCTOBER, bands=["B04", "SCL"]
    )
    options = LoadOptions(tile_size=8, workers=2, geometry=geometry_text(COLLECTION))
    steps = time_steps(items, cfg.sentinel2)
    whole = read_steps(steps, bands, grid, options)
    streamed = np.full_like(whole, -1.0)
    skipped = []

    def sink(step: int, band: int, tile: Tile, values: np.ndarray) -> None:
        streamed[step, band, tile.rows, tile.cols] = values
        if not inside(options.geometry or "", tile.grid).any():
            skipped.append(tile)

    stream_steps(steps, bands, grid, options, sink)
    np.testing.assert_array_equal(streamed, whole)
    assert skipped and all(np.isnan(streamed[:, :, t.rows, t.cols]).all() for t in skipped)
