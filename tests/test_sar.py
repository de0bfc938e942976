"""``sar_backscatter`` on GRD read from the archive: calibration, noise, geocoding, errors.

Real data (``shared/data``): the calibration / noise / annotation XML of two IW GRDH products
(``s1_safe_metadata``: 2015, IPF < 2.9 noise; 2021, range x azimuth noise), and the digital
numbers + GCPs of a third scene (``s1_grd_raw``, decimated to 1280 x 837).
The end-to-end product ``DERIVED`` combines the 2021 product's XML with the 2018 scene's
digital numbers as its (decimated) measurement: real LUTs and geolocation, real SAR texture;
the values are not those of the 2021 acquisition, so only relations are checked on it.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.warp import reproject

from openeo_airflow.catalog.config import BandConfig, CollectionConfig, SarConfig
from openeo_airflow.catalog.sentinel1 import (
    grd_item,
    parse_annotation,
    parse_calibration,
    parse_noise,
)
from openeo_airflow.compiler.plan import Plan
from openeo_airflow.core.errors import ProcessParameterInvalid, ProcessParameterUnsupported
from openeo_airflow.cube import cube_crs, cube_transform
from openeo_airflow.engine.planning import shape_job
from openeo_airflow.io.backscatter import Backscatter, DigitalElevationModelInvalid
from openeo_airflow.io.grid import Grid, utm_crs
from openeo_airflow.io.sar import (
    BACKSCATTER_ATTR,
    Geocoder,
    Polarisation,
    load_backscatter,
    tiff_geocoder,
)
from tests.load_support import backscatter_source, load_tiled

P2021 = "S1A_IW_GRDH_1SDV_20210119T031653_20210119T031718_036201_043ED0_8255"
P2015 = "S1A_IW_GRDH_1SDV_20150203T043109_20150203T043134_004454_00574F_6D00"
RAW = "s1_grd_raw/S1A_IW_GRDH_1SDV_20180716T004042_20180716T004107_022812_02792A_FD5B"


def xml(shared: Path, product: str, pattern: str) -> bytes:
    with zipfile.ZipFile(shared / "s1_safe_metadata" / f"{product}.zip") as archive:
        name = next(n for n in archive.namelist() if re.search(pattern, n))
        return archive.read(name)


def vector_values(
    text: bytes, vector: str, index: int, tag: str
) -> tuple[int, list[float], list[float]]:
    """Line, pixels and LUT values of the ``index``-th vector, read straight from the XML."""
    blocks = re.findall(rf"<{vector}>(.*?)</{vector}>", text.decode(), flags=re.S)
    block = blocks[index]
    line = int(re.search(r"<line>(\d+)</line>", block).group(1))  # type: ignore[union-attr]
    pixels = [float(v) for v in re.search(r"<pixel[^>]*>([^<]*)</pixel>", block).group(1).split()]  # type: ignore[union-attr]
    values = [float(v) for v in re.search(rf"<{tag}[^>]*>([^<]*)</{tag}>", block).group(1).split()]  # type: ignore[union-attr]
    return line, pixels, values


# --- calibration and noise, checked by hand at chosen pixels ------------------------------------


def test_calibration_by_hand_2021(shared_data: Path) -> None:
    cal_xml = xml(shared_data, P2021, r"calibration/calibration-.*-vv-")
    noise_xml = xml(shared_data, P2021, r"calibration/noise-.*-vv-")
    pol = Polarisation(
        "VV", "unused", 16854, 25931, parse_calibration(cal_xml), parse_noise(noise_xml)
    )
    # Chosen pixel: between calibration vectors 5 and 6, between pixel samples 100 and 101.
    l5, px, s5 = vector_values(cal_xml, "calibrationVector", 5, "sigmaNought")
    l6, _, s6 = vector_values(cal_xml, "calibrationVector", 6, "sigmaNought")
    line, pixel = l5 + 250, px[100] + 0.5 * (px[101] - px[100])
    assert pixel == int(pixel)
    w_line = 250 / (l6 - l5)
    sigma_lut = (1 - w_line) * (0.5 * s5[100] + 0.5 * s5[101]) + w_line * (
        0.5 * s6[100] + 0.5 * s6[101]
    )
    # Noise: the range LUT (bilinear between its own vectors) times the azimuth profile of
    # the swath block the pixel lies in.
    text = noise_xml.decode()
    ranges = re.findall(r"<noiseRangeVector>.*?</noiseRangeVector>", text, flags=re.S)
    lines = [int(re.search(r"<line>(\d+)</line>", r).group(1)) for r in ranges]  # type: ignore[union-attr]
    k = max(i for i, v in enumerate(lines) if v <= line)
    n0 = np.interp(pixel, *vector_values(noise_xml, "noiseRangeVector", k, "noiseRangeLut")[1:])
    n1 = np.interp(pixel, *vector_values(noise_xml, "noiseRangeVector", k + 1, "noiseRangeLut")[1:])
    w = (line - lines[k]) / (lines[k + 1] - lines[k])
    range_noise = (1 - w) * n0 + w * n1
    block = next(
        b
        for b in re.findall(r"<noiseAzimuthVector>.*?</noiseAzimuthVector>", text, flags=re.S)
        if int(re.search(r"<firstRangeSample>(\d+)<", b).group(1)) <= pixel  # type: ignore[union-attr]
        and pixel <= int(re.search(r"<lastRangeSample>(\d+)<", b).group(1))  # type: ignore[union-attr]
    )
    az_lines = [float(v) for v in re.search(r"<line[^>]*>([^<]*)</line>", block).group(1).split()]  # type: ignore[union-attr]
    az_values = [
        float(v) for v in re.search(r"<noiseAzimuthLut[^>]*>([^<]*)<", block).group(1).split()
    ]  # type: ignore[union-attr]
    noise = range_noise * np.interp(line, az_lines, az_values)
    dn = np.full((3, 3), 150, dtype=np.uint16)
    window = (int(line) - 1, int(pixel) - 1)
    params = Backscatter(coefficient="sigma0-ellipsoid")
    got = pol.calibrate(dn, *window, (1.0, 1.0), params, "test")[1, 1]
    expected = (150.0**2 - noise) / sigma_lut**2
    assert got == pytest.approx(expected, rel=1e-5)
    # Without noise removal: DN^2 / A^2; beta0 / gamma0 use their own LUTs.
    raw = pol.calibrate(
        dn, *window, (1.0, 1.0), Backscatter("sigma0-ellipsoid", noise_removal=False), "t"
    )
    assert raw[1, 1] == pytest.approx(150.0**2 / sigma_lut**2, rel=1e-5)
    _, _, b5 = vector_values(cal_xml, "calibrationVector", 5, "betaNought")
    on_node = pol.calibrate(
        dn, l5 - 1, int(px[100]) - 1, (1.0, 1.0), Backscatter("beta0", noise_removal=False), "t"
    )
    assert on_node[1, 1] == pytest.approx(150.0**2 / b5[100] ** 2, rel=1e-6)
    # A weak signal under the noise floor clips to 0, and DN 0 (no data) stays NaN.
    weak = np.array([[0, 1, 1], [1, 1, 1], [1, 1, 1]], dtype=np.uint16)
    clipped = pol.calibrate(weak, *window, (1.0, 1.0), params, "t")
    assert np.isnan(clipped[0, 0]) and clipped[1, 1] == 0.0


def test_noise_before_ipf_2_9_by_hand(shared_data: Path) -> None:
    noise_xml = xml(shared_data, P2015, r"calibration/noise-.*-vh-")
    model = parse_noise(noise_xml)
    assert not model.azimuth  # the old format: one LUT grid
    l3, px, v3 = vector_values(noise_xml, "noiseVector", 3, "noiseLut")
    l4, _, v4 = vector_values(noise_xml, "noiseVector", 4, "noiseLut")
    rows = np.array([l3, (l3 + l4) / 2])
    cols = np.array([px[7], (px[7] + px[8]) / 2])
    got = model.evaluate(rows, cols)
    assert got[0, 0] == pytest.approx(v3[7])
    middle = (v3[7] + v3[8] + v4[7] + v4[8]) / 4
    assert got[1, 1] == pytest.approx(middle)


# --- geocoding against the ground control points ------------------------------------------------


def held_out_residual(geocoder: Geocoder, spacing: tuple[float, float]) -> np.ndarray:
    """Fit on every other GCP row and column (plus the last ones), locate the others:
    residual in metres (image-coordinate error times pixel spacing)."""
    lines, pixels = np.unique(geocoder.line), np.unique(geocoder.pixel)
    keep_lines = {*lines[::2], lines[-1]}
    keep_pixels = {*pixels[::2], pixels[-1]}
    train = np.array(
        [
            a in keep_lines and b in keep_pixels
            for a, b in zip(geocoder.line, geocoder.pixel, strict=True)
        ]
    )
    sub = Geocoder(*(v[train] for v in (geocoder.line, geocoder.pixel, geocoder.lon, geocoder.lat)))
    crs = utm_crs(float(geocoder.lon.mean()), float(geocoder.lat.mean()))
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(
        geocoder.lon[~train], geocoder.lat[~train]
    )
    got = sub.locate(np.asarray(x), np.asarray(y), crs)
    return np.asarray(
        np.hypot(
            (got[:, 0] - geocoder.line[~train]) * spacing[0],
            (got[:, 1] - geocoder.pixel[~train]) * spacing[1],
        )
    )


def test_geocoding_hits_the_gcps_and_interpolates_between_them(shared_data: Path) -> None:
    a = parse_annotation(xml(shared_data, P2021, r"annotation/s1a-.*-vv-"))
    geocoder = Geocoder(a.gcp_line, a.gcp_pixel, a.gcp_lon, a.gcp_lat, a.gcp_incidence)
    crs = utm_crs(float(a.gcp_lon.mean()), float(a.gcp_lat.mean()))
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(a.gcp_lon, a.gcp_lat)
    at_gcps = geocoder.locate(np.asarray(x), np.asarray(y), crs)
    metres = np.hypot(
        (at_gcps[:, 0] - a.gcp_line) * a.azimuth_spacing,
        (at_gcps[:, 1] - a.gcp_pixel) * a.range_spacing,
    )
    # Exact at the GCPs themselves (a few on the image border fall outside the hull by
    # rounding and are NaN: outside the image).
    inside = np.isfinite(metres)
    assert inside.mean() > 0.9 and metres[inside].max() < 0.01
    assert np.allclose(at_gcps[inside, 2], a.gcp_incidence[inside])
    # Held out: GCP heights vary (terrain), so positions between GCPs are interpolated, not
    # known; the residual measures that interpolation. Reported figures in the final note.
    residual = held_out_residual(geocoder, (a.azimuth_spacing, a.range_spacing))
    p95 = np.percentile(residual, 95)
    print(f"2021 held-out GCP residual: median {np.median(residual):.0f} m, p95 {p95:.0f} m")
    assert np.median(residual) < 150
    raw = tiff_geocoder(str(shared_data / RAW / "measurement/iw-vv.tiff"))
    residual = held_out_residual(raw, (200.0, 200.0))  # 10 m GRDH pixels decimated ~20x
    worst = residual.max()
    print(f"2018 held-out GCP residual: median {np.median(residual):.0f} m, max {worst:.0f} m")
    assert np.median(residual) < 100 and residual.max() < 250


def test_grid_geocoding_bilinear_between_exact_nodes(shared_data: Path) -> None:
    a = parse_annotation(xml(shared_data, P2015, r"annotation/s1a-.*-vv-"))
    geocoder = Geocoder(a.gcp_line, a.gcp_pixel, a.gcp_lon, a.gcp_lat)
    crs = utm_crs(float(a.gcp_lon.mean()), float(a.gcp_lat.mean()))
    cx, cy = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(
        a.gcp_lon.mean(), a.gcp_lat.mean()
    )
    from affine import Affine

    grid = Grid(crs, Affine(10, 0, cx, 0, -10, cy), 300, 200)
    located = geocoder.on_grid(grid)
    assert located is not None
    xs = grid.transform.c + (np.arange(300) + 0.5) * 10
    ys = grid.transform.f - (np.arange(200) + 0.5) * 10
    exact = geocoder.locate(*np.meshgrid(xs, ys), crs)
    assert np.abs(located[0] - exact[..., 0]).max() < 0.05  # pixels
    assert np.abs(located[1] - exact[..., 1]).max() < 0.05


# --- loading: the archive path end to end ------------------------------------------------------


def catalog(root: Path, items: list[dict[str, Any]]) -> str:
    root.mkdir(parents=True, exist_ok=True)
    links = []
    for index, item in enumerate(items):
        (root / f"item{index}.json").write_text(json.dumps(item))
        links.append({"rel": "item", "href": f"./item{index}.json"})
    (root / "catalog.json").write_text(
        json.dumps(
            {
                "type": "Catalog",
                "id": "s1",
                "stac_version": "1.0.0",
                "description": "test",
                "links": links,
            }
        )
    )
    return str(root / "catalog.json")


def collection(href: str, crs: str | None = None, resolution: float = 200) -> CollectionConfig:
    bands = [
        BandConfig("VV", "vv", nodata=0, resampling="bilinear", overviews=False),
        BandConfig("VH", "vh", nodata=0, resampling="bilinear", overviews=False),
    ]
    return CollectionConfig(
        id="S1_TEST",
        title="S1",
        description="S1",
        license="proprietary",
        catalog=href,
        resolution=resolution,
        crs=crs,
        bands=bands,
        sar=SarConfig(),
    )


@pytest.fixture(scope="module")
def raw_scene(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> CollectionConfig:
    """The decimated 2018 scene: DN and GCPs only (no XML)."""
    root = shared_data / RAW
    info = json.loads((root / "productInfo.json").read_text())
    footprint = {"type": "Polygon", "coordinates": info["footprint"]["coordinates"]}
    lons = [p[0] for p in footprint["coordinates"][0]]
    lats = [p[1] for p in footprint["coordinates"][0]]
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": info["id"],
        "geometry": footprint,
        "bbox": [min(lons), min(lats), max(lons), max(lats)],
        "properties": {"datetime": "2018-07-16T00:40:42Z"},
        "links": [],
        "assets": {pol: {"href": str(root / f"measurement/iw-{pol}.tiff")} for pol in ("vv", "vh")},
    }
    return collection(catalog(tmp_path_factory.mktemp("raw"), [item]), crs="EPSG:32643")


RAW_EXTENT = {"west": 76.0, "south": 9.6, "east": 77.5, "north": 10.8}


def test_raw_scene_geocoded_like_gdal_gcp_warp(
    raw_scene: CollectionConfig, shared_data: Path
) -> None:
    cube = load_backscatter(
        raw_scene,
        spatial_extent=RAW_EXTENT,
        temporal_extent=None,
        bands=["VV"],
        arguments={"coefficient": None, "noise_removal": False, "mask": True},
    )
    assert list(cube.bands.values) == ["VV", "mask"] and cube.dtype == np.float32
    assert cube.attrs[BACKSCATTER_ATTR] == "none"
    ours = np.sqrt(cube.sel(bands="VV").values[0])  # DN^2 -> amplitude
    with rasterio.open(shared_data / RAW / "measurement/iw-vv.tiff") as src:
        gcps, gcp_crs = src.gcps
        dn = src.read(1)
    gdal = np.full(ours.shape, np.nan, dtype=np.float32)
    reproject(
        dn,
        gdal,
        gcps=gcps,
        src_crs=gcp_crs,
        dst_transform=cube_transform(cube),
        dst_crs="EPSG:32643",
        resampling=Resampling.bilinear,
        src_nodata=0,
        dst_nodata=np.nan,
    )
    both = np.isfinite(ours) & np.isfinite(gdal) & (gdal > 0)
    assert both.mean() > 0.9
    assert np.corrcoef(np.log(ours[both]), np.log(gdal[both]))[0, 1] > 0.9
    # No shift between the two: the cross-correlation peaks at (0, 0).
    a, b = (np.nan_to_num(np.log1p(v)) for v in (ours, gdal))
    a, b = a - a.mean(), b - b.mean()
    peak = np.unravel_index(
        np.argmax(np.real(np.fft.ifft2(np.fft.fft2(a) * np.conj(np.fft.fft2(b))))), a.shape
    )
    assert peak == (0, 0)
    mask = cube.sel(bands="mask").values[0]
    assert set(np.unique(mask[np.isfinite(mask)])) <= {0.0, 1.0}
    assert np.array_equal(mask == 1, np.isfinite(cube.sel(bands="VV").values[0]))


def test_what_the_raw_scene_cannot_give_names_the_parameter(
    raw_scene: CollectionConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENEO_AIRFLOW_DEM", raising=False)  # no DEM in this deployment

    def load(**arguments: Any) -> Any:
        return load_backscatter(
            raw_scene,
            spatial_extent=RAW_EXTENT,
            temporal_extent=None,
            bands=["VV"],
            arguments=arguments,
        )

    with pytest.raises(DigitalElevationModelInvalid, match="'coefficient'"):
        load()  # the spec's default, gamma0-terrain, needs a DEM
    with pytest.raises(DigitalElevationModelInvalid, match="'elevation_model'"):
        load(coefficient="sigma0-ellipsoid", elevation_model="COPERNICUS_30")
    with pytest.raises(DigitalElevationModelInvalid, match="'local_incidence_angle'"):
        load(coefficient="sigma0-ellipsoid", local_incidence_angle=True)
    with pytest.raises(ProcessParameterUnsupported, match=r"options\.speckle"):
        load(coefficient="sigma0-ellipsoid", options={"speckle": "lee"})
    with pytest.raises(ProcessParameterInvalid, match="noise_removal"):
        load(coefficient="sigma0-ellipsoid")  # no noise XML for this product
    with pytest.raises(ProcessParameterInvalid, match="coefficient"):
        load(coefficient="sigma0-ellipsoid", noise_removal=False)  # no calibration XML
    with pytest.raises(ProcessParameterInvalid, match="ellipsoid_incidence_angle"):
        load(coefficient=None, noise_removal=False, ellipsoid_incidence_angle=True)
    with pytest.raises(ProcessParameterInvalid, match="coefficient"):
        load(coefficient="sigma1")


@pytest.fixture(scope="module")
def derived(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> CollectionConfig:
    """The 2021 product's XML with the 2018 scene's DN as its decimated measurement."""
    safe = tmp_path_factory.mktemp("derived") / f"{P2021}.SAFE"
    with zipfile.ZipFile(shared_data / "s1_safe_metadata" / f"{P2021}.zip") as archive:
        for name in archive.namelist():
            if name.endswith(".xml") and "/annotation/" in name:
                target = safe / name.split(".SAFE/", 1)[1]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(name))
    (safe / "measurement").mkdir()
    for pol in ("vv", "vh"):
        with rasterio.open(shared_data / RAW / f"measurement/iw-{pol}.tiff") as src:
            dn = src.read(1)
        profile = {
            "driver": "GTiff",
            "dtype": "uint16",
            "width": dn.shape[1],
            "height": dn.shape[0],
            "count": 1,
            "tiled": True,
        }
        with rasterio.open(
            safe / "measurement" / f"s1a-iw-grd-{pol}-derived.tiff", "w", **profile
        ) as dst:
            dst.write(dn, 1)
    return collection(catalog(safe.parent / "catalog", [grd_item(safe)]))


DERIVED_EXTENT = {"west": 33.2, "south": -18.5, "east": 33.7, "north": -18.0}


def test_derived_product_coefficients_follow_the_incidence_angle(derived: CollectionConfig) -> None:
    """gamma0 = sigma0 / cos(theta) and beta0 = sigma0 / sin(theta) on the ellipsoid: the
    LUTs, the geocoding and the incidence band must agree pixel by pixel."""

    def load(coefficient: str, **more: Any) -> Any:
        return load_backscatter(
            derived,
            spatial_extent=DERIVED_EXTENT,
            temporal_extent=None,
            bands=["VV", "VH"],
            arguments={"coefficient": coefficient, **more},
        )

    sigma = load("sigma0-ellipsoid", ellipsoid_incidence_angle=True, mask=True)
    assert list(sigma.bands.values) == ["VV", "VH", "mask", "ellipsoid_incidence_angle"]
    assert str(sigma.t.values[0])[:10] == "2021-01-19"
    theta = np.radians(sigma.sel(bands="ellipsoid_incidence_angle").values[0])
    assert np.nanmin(np.degrees(theta)) > 29 and np.nanmax(np.degrees(theta)) < 47
    gamma = load("gamma0-ellipsoid")
    beta = load("beta0")
    s, g, b = (c.sel(bands="VV").values[0] for c in (sigma, gamma, beta))
    ok = (s > 0) & np.isfinite(theta)
    assert ok.mean() > 0.8
    assert np.median(np.abs(g[ok] / s[ok] * np.cos(theta[ok]) - 1)) < 0.01
    assert np.median(np.abs(b[ok] / s[ok] * np.sin(theta[ok]) - 1)) < 0.01
    # Linear power of real-world magnitude: sigma0 VV mostly between -25 and 0 dB.
    db = 10 * np.log10(s[ok])
    assert -25 < np.median(db) < 0


def test_batch_loads_grd_per_tile_as_the_whole_cube(
    derived: CollectionConfig, tmp_path: Path
) -> None:
    """Each output tile geocoded into its own image window gives the whole cube's values: the
    geocoding's exact nodes restart at every tile edge, so pixels between nodes may move by
    a bilinear interpolation error (far below a pixel), hence a tolerance."""
    arguments = {"coefficient": "sigma0-ellipsoid", "mask": True, "ellipsoid_incidence_angle": True}
    source = backscatter_source(derived.id, DERIVED_EXTENT, None, ["VV", "VH"], arguments)
    whole = load_backscatter(
        derived,
        spatial_extent=DERIVED_EXTENT,
        temporal_extent=None,
        bands=["VV", "VH"],
        arguments=arguments,
    )
    tiled, measured = load_tiled(source, derived, tmp_path, tile_size=64)
    assert tiled.sizes == whole.sizes and measured.megapixels == pytest.approx(whole.size / 1e6)
    assert tiled.attrs[BACKSCATTER_ATTR] == "sigma0-ellipsoid"
    assert list(tiled.bands.values) == ["VV", "VH", "mask", "ellipsoid_incidence_angle"]
    np.testing.assert_array_equal(tiled.x.values, whole.x.values)
    a, b = tiled.values, whole.values
    np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b))
    ok = np.isfinite(a)
    assert ok.mean() > 0.5
    relative = np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-12)
    assert np.median(relative) < 1e-6  # most pixels: the same float32 value
    assert np.percentile(relative, 99) < 2e-3 and relative.max() < 0.05
    angle = tiled.sel(bands="ellipsoid_incidence_angle").values
    np.testing.assert_allclose(
        angle, whole.sel(bands="ellipsoid_incidence_angle").values, atol=1e-3, equal_nan=True
    )
    # The sizing sees a tileable source: the plan's shape is the cube's.
    node = {"process_id": "load_collection", "arguments": {"id": derived.id}, "result": True}
    plan = Plan(process_graph={"load": node}, result_node="load", sources=[source], output=None)
    shape = shape_job(plan, {derived.id: derived}, "local", {})
    assert [load.node_id for load in shape.loads] == ["load"]
    assert shape.sources[0].steps == 1 and shape.sources[0].bands == 4
    assert (shape.sources[0].height, shape.sources[0].width) == whole.shape[2:]


# -- terrain-based values from a configured DEM (derived DEMs with known answers) ---------------


def write_dem(path: Path, cube: Any, height: Any, margin: int = 8) -> str:
    """A DEM GeoTIFF on ``cube``'s grid grown by ``margin`` pixels: ``height(x, y)`` metres at
    the pixel centres (x, y in the cube's CRS)."""
    transform = cube_transform(cube) * Affine.translation(-margin, -margin)
    rows, cols = cube.sizes["y"] + 2 * margin, cube.sizes["x"] + 2 * margin
    x = transform.c + (np.arange(cols) + 0.5) * transform.a
    y = transform.f + (np.arange(rows) + 0.5) * transform.e
    values = np.broadcast_to(height(*np.meshgrid(x, y)), (rows, cols)).astype(np.float32)
    profile = {"driver": "GTiff", "dtype": "float32", "width": cols, "height": rows, "count": 1}
    with rasterio.open(path, "w", crs=cube_crs(cube), transform=transform, **profile) as dst:
        dst.write(values, 1)
    return str(path)


def towards_sensor(shared_data: Path, crs: Any) -> np.ndarray:
    """Unit map vector from far to near range, from the annotation's raw GCPs (first line)."""
    annotation = parse_annotation(xml(shared_data, P2021, r"annotation/s1a-.*-vv-"))
    first = annotation.gcp_line == annotation.gcp_line.min()
    pixels = annotation.gcp_pixel[first]
    near, far = np.argmin(pixels), np.argmax(pixels)
    to_map = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    lon, lat = annotation.gcp_lon[first], annotation.gcp_lat[first]
    x, y = to_map.transform(lon[[near, far]], lat[[near, far]])
    step = np.array([x[0] - x[1], y[0] - y[1]])
    return np.asarray(step / np.linalg.norm(step))


def test_terrain_values_from_derived_dems(
    derived: CollectionConfig, shared_data: Path, tmp_path: Path
) -> None:
    def load(coefficient: str, dem: str | None = None, **more: Any) -> Any:
        return load_backscatter(
            derived,
            spatial_extent=DERIVED_EXTENT,
            temporal_extent=None,
            bands=["VV"],
            arguments={"coefficient": coefficient, **more},
            dem=dem,
        )

    sigma = load("sigma0-ellipsoid", ellipsoid_incidence_angle=True)
    theta = sigma.sel(bands="ellipsoid_incidence_angle").values[0]
    s = sigma.sel(bands="VV").values[0]
    ok = (s > 0) & np.isfinite(theta)
    assert ok.mean() > 0.8

    # A flat DEM: the local incidence angle is the ellipsoid's, gamma0-terrain is
    # sigma0 / cos(ellipsoid incidence), as gamma0-ellipsoid's LUT gives it.
    flat = write_dem(tmp_path / "flat.tif", sigma, lambda x, y: 0 * x + 250.0)
    on_flat = load("gamma0-terrain", flat, local_incidence_angle=True, contributing_area=True)
    assert list(on_flat.bands.values) == ["VV", "contributing_area", "local_incidence_angle"]
    assert on_flat.attrs[BACKSCATTER_ATTR] == "gamma0-terrain"
    lia = on_flat.sel(bands="local_incidence_angle").values[0]
    np.testing.assert_allclose(lia[ok], theta[ok], atol=1e-3)
    g_flat = on_flat.sel(bands="VV").values[0]
    np.testing.assert_allclose(g_flat[ok], s[ok] / np.cos(np.radians(theta[ok])), rtol=1e-4)
    lut = load("gamma0-ellipsoid").sel(bands="VV").values[0]
    assert np.median(np.abs(g_flat[ok] / lut[ok] - 1)) < 0.01
    area = on_flat.sel(bands="contributing_area").values[0]
    np.testing.assert_allclose(area[ok], derived.resolution**2, rtol=1e-5)

    # Planes tilted by 10 degrees: towards the sensor the local incidence angle shrinks by
    # 10 degrees; along the track it grows with cos(local) = cos(ellipsoid) * cos(10 degrees).
    alpha = np.radians(10.0)
    hx, hy = towards_sensor(shared_data, cube_crs(sigma))
    facing = write_dem(
        tmp_path / "facing.tif", sigma, lambda x, y: -np.tan(alpha) * (hx * x + hy * y)
    )
    on_facing = load("gamma0-terrain", facing, local_incidence_angle=True, contributing_area=True)
    lia = on_facing.sel(bands="local_incidence_angle").values[0]
    assert np.nanmax(np.abs(lia[ok] - (theta[ok] - 10.0))) < 0.3
    ratio = on_facing.sel(bands="VV").values[0][ok] / g_flat[ok]
    expected = np.cos(np.radians(theta[ok])) / np.cos(np.radians(theta[ok] - 10.0))
    np.testing.assert_allclose(ratio, expected, rtol=6e-3)
    area = on_facing.sel(bands="contributing_area").values[0]
    np.testing.assert_allclose(area[ok], derived.resolution**2 / np.cos(alpha), rtol=1e-4)

    along = write_dem(tmp_path / "along.tif", sigma, lambda x, y: np.tan(alpha) * (hx * y - hy * x))
    ratio = load("gamma0-terrain", along).sel(bands="VV").values[0][ok] / g_flat[ok]
    # (the range direction turns by a fraction of a degree over the scene: first order here)
    assert abs(np.median(ratio) * np.cos(alpha) - 1) < 1e-3
    np.testing.assert_allclose(ratio, 1 / np.cos(alpha), rtol=6e-3)

    # What the DEM cannot give still names the parameter.
    with pytest.raises(ProcessParameterUnsupported, match="'coefficient'"):
        load("sigma0-terrain", flat)
    with pytest.raises(DigitalElevationModelInvalid, match="'elevation_model'"):
        load("gamma0-terrain", flat, elevation_model="COPERNICUS_30")
    with pytest.raises(DigitalElevationModelInvalid, match="cannot be read"):
        load("gamma0-terrain", str(tmp_path / "missing.tif"))


def test_batch_terrain_values_per_tile_with_the_deployments_dem(
    derived: CollectionConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arguments = {"coefficient": "gamma0-terrain", "local_incidence_angle": True}
    source = backscatter_source(derived.id, DERIVED_EXTENT, None, ["VV"], arguments)
    with pytest.raises(DigitalElevationModelInvalid, match="'coefficient'"):
        load_tiled(source, derived, tmp_path / "none", tile_size=96)  # no DEM configured
    grid = load_backscatter(
        derived,
        spatial_extent=DERIVED_EXTENT,
        temporal_extent=None,
        bands=["VV"],
        arguments={"coefficient": "beta0"},
    )
    ramp = write_dem(tmp_path / "ramp.tif", grid, lambda x, y: 0.05 * (x - x.min()))
    monkeypatch.setenv("OPENEO_AIRFLOW_DEM", ramp)  # what the size task's plan records
    tiled, _ = load_tiled(source, derived, tmp_path / "ws", tile_size=96)
    whole = load_backscatter(
        derived,
        spatial_extent=DERIVED_EXTENT,
        temporal_extent=None,
        bands=["VV"],
        arguments=arguments,
    )
    assert list(tiled.bands.values) == ["VV", "local_incidence_angle"]
    a, b = tiled.values, whole.values
    ok = np.isfinite(a) & np.isfinite(b)
    assert ok.mean() > 0.4 and np.array_equal(np.isfinite(a), np.isfinite(b))
    relative = np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-12)
    assert np.median(relative) < 1e-6 and np.percentile(relative, 99) < 2e-3
