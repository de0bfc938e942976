"""Reading a real Sentinel-2 L2A product as stored (SAFE layout, JPEG2000) through STAC.

``shared/data/safe_T29UNU``: processing baseline 04.00 (``BOA_ADD_OFFSET`` -1000), 60 m
reflectance JP2s and SCL at 20 m and 60 m, EPSG:32629.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.windows import Window

from openeo_airflow.catalog.config import BandConfig, CollectionConfig
from openeo_airflow.catalog.safe import safe_item
from openeo_airflow.catalog.sentinel2 import boa_offset, product_info
from openeo_airflow.catalog.stac import parse_item
from openeo_airflow.io.reader import load_cube

SAFE = Path("safe_T29UNU/S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE")
X0, Y0 = 499980.0, 5900040.0  # upper-left corner of tile 29UNU


@pytest.fixture(scope="module")
def product(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    document = safe_item(shared_data / SAFE)
    root = tmp_path_factory.mktemp("safe")
    (root / "item.json").write_text(json.dumps(document))
    catalog = {"type": "Catalog", "id": "safe", "links": [{"rel": "item", "href": "./item.json"}]}
    (root / "catalog.json").write_text(json.dumps(catalog))
    cfg = CollectionConfig(
        id="S2_SAFE",
        title="T29UNU",
        description="SAFE",
        license="proprietary",
        catalog=str(root / "catalog.json"),
        resolution=60,
        crs="EPSG:32629",
        grid_origin=(X0, Y0),
        sentinel2=True,
        bands=[
            BandConfig("B04", "B04_60m", nodata=0, harmonize=True),
            BandConfig("B8A", "B8A_60m", nodata=0, harmonize=True),
            BandConfig("SCL", "SCL_20m", nodata=0, overviews=False),
        ],
    )
    return {"document": document, "cfg": cfg, "root": shared_data / SAFE}


def extent(col: int, row: int, width: int, height: int, res: float = 60) -> dict[str, Any]:
    return {
        "west": X0 + col * res,
        "east": X0 + (col + width) * res,
        "north": Y0 - row * res,
        "south": Y0 - (row + height) * res,
        "crs": 32629,
    }


def jp2(root: Path, band: str, res: int) -> Path:
    return next(root.glob(f"GRANULE/*/IMG_DATA/R{res}m/*_{band}_{res}m.jp2"))


def test_safe_item_from_product_metadata(product: dict[str, Any]) -> None:
    document = product["document"]
    item = pystac.Item.from_dict(document)  # a well-formed STAC item
    assert item.id == "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454"
    assert document["properties"]["s2:processing_baseline"] == "04.00"
    assert document["properties"]["eo:cloud_cover"] == pytest.approx(59.77, abs=0.01)
    assert {"B04_60m", "B8A_60m", "SCL_20m", "SCL_60m"} <= set(document["assets"])
    assert "B04_10m" not in document["assets"]  # absent from the trimmed product
    b04 = document["assets"]["B04_60m"]
    assert b04["proj:transform"] == [60, 0.0, X0, 0.0, -60, Y0] and b04["proj:shape"] == [
        1830,
        1830,
    ]
    assert b04["raster:bands"][0]["offset"] == pytest.approx(-0.1)
    parsed = parse_item(document, "item.json")
    assert product_info(parsed).baseline == (4, 0) and product_info(parsed).tile == "29UNU"
    assert boa_offset(parsed, "B04_60m") == -1000.0 and boa_offset(parsed, "SCL_20m") == -1000.0
    with rasterio.open(b04["href"]) as src:  # the metadata's grid is the file's grid
        assert src.crs.to_epsg() == 32629 and list(src.transform)[:6] == b04["proj:transform"]


def test_jp2_window_read_with_baseline_offset(product: dict[str, Any]) -> None:
    cube = load_cube(
        product["cfg"],
        spatial_extent=extent(600, 700, 80, 60),
        temporal_extent=["2022-10-05", "2022-10-06"],
        bands=["B04", "B8A"],
    )
    assert cube.shape == (1, 2, 60, 80)
    for index, band in enumerate(("B04", "B8A")):
        with rasterio.open(jp2(product["root"], band, 60)) as src:
            raw = src.read(1, window=Window(600, 700, 80, 60)).astype(np.float32)
        expected = np.where(raw == 0, np.nan, raw - 1000)
        np.testing.assert_array_equal(cube.values[0, index], expected)


def test_reflectance_from_the_raster_extension(product: dict[str, Any]) -> None:
    cfg = replace(product["cfg"], bands=[BandConfig("B04", "B04_60m", scaling="stac")])
    cube = load_cube(
        cfg, spatial_extent=extent(10, 10, 30, 20), temporal_extent=None, bands=["B04"]
    )
    with rasterio.open(jp2(product["root"], "B04", 60)) as src:
        raw = src.read(1, window=Window(10, 10, 30, 20)).astype(np.float32)
    expected = np.where(raw == 0, np.nan, raw * np.float32(0.0001) + np.float32(-0.1))
    np.testing.assert_allclose(cube.values[0, 0], expected, rtol=1e-6)


def test_scl_20m_onto_the_60m_grid(product: dict[str, Any]) -> None:
    cube = load_cube(
        product["cfg"],
        spatial_extent=extent(300, 300, 100, 100),
        temporal_extent=None,
        bands=["SCL"],
    )
    values = cube.values[0, 0]
    with rasterio.open(jp2(product["root"], "SCL", 20)) as src:
        full = src.read(1, window=Window(900, 900, 300, 300))
    # Nearest resampling of 20 m onto 60 m: the centre 20 m pixel of each 3 x 3 block, from
    # the full-resolution classes (JPEG2000's reduced resolutions would blend classes).
    expected = np.where(full == 0, np.nan, full).astype(np.float32)[1::3, 1::3]
    np.testing.assert_array_equal(values, expected)
    # With overviews allowed, the wavelet-reduced level invents values: why SCL opts out.
    blended = load_cube(
        replace(product["cfg"], bands=[BandConfig("SCL", "SCL_20m", nodata=0)]),
        spatial_extent=extent(300, 300, 100, 100),
        temporal_extent=None,
        bands=["SCL"],
    ).values[0, 0]
    assert not set(np.unique(blended).tolist()) <= set(np.unique(full).tolist())
