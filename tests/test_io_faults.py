"""Faults while loading: transient errors retried, soft errors tolerated and named, hard
failures naming the asset; GDAL profiles applied identically and secrets never logged."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.errors import RasterioIOError

from openeo_airflow.catalog.config import BandConfig, CollectionConfig
from openeo_airflow.core.errors import Internal
from openeo_airflow.io import source
from openeo_airflow.io.gdal_env import (
    PROFILES,
    credentials,
    gdal_env,
    gdal_options,
    profile_environment,
    redacted,
)
from openeo_airflow.io.grid import snap_grid
from openeo_airflow.io.reader import LoadOptions, load_cube, load_items
from openeo_airflow.io.source import AssetError, RetryPolicy, is_transient

RKH = Path("cogs_29RKH/S2A_29RKH_20200219_0_L2A")
ORIGIN = (199980.0, 2800020.0)
EXTENT = {"west": 209980, "east": 212980, "south": 2787020, "north": 2790020, "crs": 32629}


def item(item_id: str, day: str, href: str) -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "bbox": [-11.98, 24.29, -10.87, 25.31],
        "geometry": None,
        "properties": {"datetime": f"2020-02-{day}T11:00:00Z", "proj:epsg": 32629},
        "links": [],
        "assets": {"B04": {"href": href}},
    }


@pytest.fixture(scope="module")
def faulty(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> CollectionConfig:
    """Four dates: two readable, one missing file, one corrupt file."""
    root = tmp_path_factory.mktemp("faulty")
    corrupt = root / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00 this is not a TIFF")
    good = str(shared_data / RKH / "B04.tif")
    documents = [
        item("good-1", "10", good),
        item("missing", "11", str(root / "missing.tif")),
        item("corrupt", "12", str(corrupt)),
        item("good-2", "13", good),
    ]
    (root / "items.json").write_text(
        json.dumps({"type": "FeatureCollection", "features": documents})
    )
    return CollectionConfig(
        id="F",
        title="F",
        description="faulty",
        license="proprietary",
        catalog=str(root / "items.json"),
        resolution=100,
        grid_origin=ORIGIN,
        bands=[BandConfig("B04", "B04", nodata=0)],
    )


def load(cfg: CollectionConfig, **kwargs: Any) -> Any:
    return load_cube(
        cfg,
        spatial_extent=EXTENT,
        temporal_extent=["2020-02-01", "2020-03-01"],
        bands=None,
        **kwargs,
    )


def test_hard_failure_names_the_asset_and_reason(faulty: CollectionConfig) -> None:
    with pytest.raises(Internal) as error:
        load(faulty)
    message = error.value.message
    assert "missing/B04" in message and "missing.tif" in message
    assert "No such file" in message or "does not exist" in message
    assert "tolerates 0" in message


def test_soft_errors_skip_and_log_every_unreadable_asset(
    faulty: CollectionConfig, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="openeo_airflow.io.reader"):
        cube = load(faulty, soft_errors=0.5)
    assert cube.sizes["t"] == 4
    nan = np.isnan(cube.values[:, 0]).all(axis=(1, 2))
    assert nan.tolist() == [False, True, True, False]
    skipped = [r.getMessage() for r in caplog.records if "Skipping" in r.getMessage()]
    assert len(skipped) == 2
    assert any("missing/B04" in m for m in skipped) and any("corrupt/B04" in m for m in skipped)
    # 2 of 4 unreadable: a ratio of 0.25 is not enough.
    with pytest.raises(Internal, match="2 of 4 assets unreadable"):
        load(faulty, soft_errors=0.25)


def test_transient_errors_are_retried(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = rasterio.open
    calls: list[str] = []

    def flaky(href: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(str(href))
        if len(calls) <= 2:
            raise RasterioIOError("CURL error: Connection reset by peer")
        return real_open(href, *args, **kwargs)

    monkeypatch.setattr(rasterio, "open", flaky)
    href = str(shared_data / RKH / "B04.tif")
    grid = snap_grid((209980, 2787020, 212980, 2790020), rasterio.crs.CRS.from_epsg(32629), 100)
    waits: list[float] = []
    band = BandConfig("B04", "B04", nodata=0)
    with gdal_env("local"):
        values = source.read_values(
            href,
            band,
            source.Decoding(nodata=0),
            grid,
            retry=RetryPolicy(attempts=3, delay=0.5),
            sleep=waits.append,
        )
    assert values is not None and not np.isnan(values).any()
    assert waits == [0.5, 1.0] and len(calls) == 3
    # Out of attempts: the error says so and is marked transient.
    calls.clear()
    monkeypatch.setattr(rasterio, "open", lambda *a, **k: flaky.__call__("x") and None)
    with pytest.raises(AssetError) as error, gdal_env("local"):
        source.read_values(
            href,
            band,
            source.Decoding(nodata=0),
            grid,
            retry=RetryPolicy(attempts=2, delay=0),
            sleep=waits.append,
        )
    assert error.value.transient and "Connection reset" in error.value.reason


def test_permanent_errors_are_not_retried(tmp_path: Path) -> None:
    assert not is_transient("/x/missing.tif: No such file or directory")
    assert not is_transient("HTTP response code: 404")
    assert not is_transient("'x.tif' not recognized as being in a supported file format")
    assert is_transient("HTTP response code: 503") and is_transient("Operation timed out")
    waits: list[float] = []
    grid = snap_grid((0, 0, 100, 100), rasterio.crs.CRS.from_epsg(32629), 10)
    with pytest.raises(AssetError) as error, gdal_env("local"):
        source.read_values(
            str(tmp_path / "nope.tif"),
            BandConfig("B", "B"),
            source.Decoding(nodata=0),
            grid,
            sleep=waits.append,
        )
    assert not error.value.transient and waits == []


def test_loader_runs_tiles_inside_the_profile_in_every_thread(
    shared_data: Path, faulty: CollectionConfig
) -> None:
    from openeo_airflow.catalog.stac import search_items

    items = [i for i in search_items(faulty) if i.id.startswith("good")]
    grid = snap_grid(
        (199980, 2700020, 299980, 2800020), rasterio.crs.CRS.from_epsg(32629), 100, ORIGIN
    )
    band = [BandConfig("B04", "B04", nodata=0)]
    one = load_items(items, band, grid, options=LoadOptions(tile_size=128, workers=1))
    many = load_items(items, band, grid, options=LoadOptions(tile_size=128, workers=4))
    np.testing.assert_array_equal(one.values, many.values)
    with rasterio.open(shared_data / RKH / "B04.tif") as src:
        expected = src.read(1, window=((0, 1000), (0, 1000))).astype(np.float32)
    np.testing.assert_array_equal(one.values[0, 0], expected)


# --------------------------------------------------------------------------- GDAL profiles


def test_profiles_hold_the_recommended_remote_settings() -> None:
    assert set(PROFILES) >= {"local", "https", "cdse-s3", "cloudferro-s3", "tsystems-s3", "aws-s3"}
    for name in ("https", "cdse-s3", "cloudferro-s3", "tsystems-s3", "aws-s3"):
        options = gdal_options(name)
        assert options["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
        assert options["GDAL_HTTP_MERGE_CONSECUTIVE_RANGES"] == "YES"
        assert options["CPL_VSIL_CURL_CHUNK_SIZE"] == str(10 * 1024 * 1024)
        assert options["GDAL_HTTP_TCP_KEEPALIVE"] == "YES"
        assert int(options["GDAL_HTTP_MAX_RETRY"]) > 0 and int(options["GDAL_HTTP_RETRY_DELAY"]) > 0
        assert options["VSI_CACHE"] == "TRUE"
        assert int(options["GDAL_HTTP_LOW_SPEED_TIME"]) > 0
        assert int(options["GDAL_HTTP_LOW_SPEED_LIMIT"]) > 0
        assert not any("SECRET" in k or "ACCESS_KEY" in k for k in options)
    assert gdal_options("cdse-s3")["AWS_S3_ENDPOINT"] == "eodata.dataspace.copernicus.eu"
    assert profile_environment("https")["VSI_CACHE"] == "TRUE"
    with pytest.raises(ValueError, match="known profiles"):
        gdal_options("nope")


def test_credentials_come_from_the_environment_and_are_never_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from rasterio._env import get_gdal_config

    from openeo_airflow.io import gdal_env as module

    secret = "s3cr3t-value-123"
    monkeypatch.setenv("CDSE_S3_ACCESS_KEY", "AKIDEXAMPLE")
    monkeypatch.setenv("CDSE_S3_SECRET_KEY", secret)
    monkeypatch.setattr(module, "_logged", set())
    assert credentials("cdse-s3") == {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": secret,
    }
    assert credentials("cdse-s3", env={}) == {} and credentials("local") == {}
    with caplog.at_level(logging.INFO, logger="openeo_airflow.io.gdal_env"), gdal_env("cdse-s3"):
        assert get_gdal_config("AWS_S3_ENDPOINT") == "eodata.dataspace.copernicus.eu"
        assert get_gdal_config("AWS_SECRET_ACCESS_KEY") == secret
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "cdse-s3" in logged and secret not in logged and "AKIDEXAMPLE" not in logged
    assert redacted({"AWS_SECRET_ACCESS_KEY": "x", "GDAL_HTTP_TIMEOUT": "1"}) == {
        "AWS_SECRET_ACCESS_KEY": "***",
        "GDAL_HTTP_TIMEOUT": "1",
    }
    assert "CDSE_S3_SECRET_KEY" in os.environ  # untouched


def test_integer_upsampling_equals_the_warper(shared_data: Path) -> None:
    """SCL at 200 m onto a 100 m grid (shifted by odd pixels): repeat == GDAL nearest warp."""
    from openeo_airflow.io.source import (
        _missing,
        _read_repeated,
        _read_warped,
        _upsampling_factor,
    )

    band = BandConfig("SCL", "SCL", nodata=0)
    crs = rasterio.crs.CRS.from_epsg(32629)
    grid = snap_grid((200080, 2700320, 230380, 2799920), crs, 100, ORIGIN)
    with rasterio.open(shared_data / RKH / "SCL.tif") as src:
        assert _upsampling_factor(src, grid) == 2
        fast = _read_repeated(src, 0, grid, 2)
        slow = _read_warped(src, 0, band, grid)
    np.testing.assert_array_equal(fast[0], slow[0])
    np.testing.assert_array_equal(_missing(fast[0], 0, fast[1]), _missing(slow[0], 0, slow[1]))
