"""``sar_backscatter`` on Sentinel-1 GRD read from the archive, computed while loading.

Per product, polarisation and output tile, in the image geometry first and then on the cube
grid:

1. the tile's pixel centres are located in the image (``Geocoder``: the product's ground
   control points, interpolated with a C1 cubic over their triangulation in the cube's CRS —
   ellipsoid-based, at the heights the GCPs carry; no DEM);
2. the digital numbers under the tile are read (one window of the measurement GeoTIFF, which
   may be a decimated copy of the product: coordinates are scaled to its size);
3. ``DN^2``, minus the thermal noise (``noise_removal``; negative results clipped to 0, as the
   noise estimate can exceed the weak signals it is subtracted from), divided by the squared
   calibration LUT of the coefficient (``beta0`` -> betaNought, ``sigma0-ellipsoid`` ->
   sigmaNought, ``gamma0-ellipsoid`` -> gamma; ``null``: no calibration, noise-removed
   ``DN^2``), all in linear power;
4. bilinear resampling onto the tile (the spec's interpolation), after calibration so that
   power, not amplitude, is interpolated.

Products of one UTC day form one time step; per pixel the first product with a value wins.
Extra bands: ``mask`` (1 valid, 0 no-data inside the image, NaN outside it) and
``ellipsoid_incidence_angle`` (degrees, from the GCPs). With the deployment's DEM configured
(``OPENEO_AIRFLOW_DEM``), ``gamma0-terrain``, ``local_incidence_angle`` and
``contributing_area`` come from the DEM's slopes and the radar geometry (``io.terrain``);
without one they raise ``DigitalElevationModelInvalid``.
"""

from __future__ import annotations

import math
import os
import threading
import urllib.request
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import xarray as xr
from pyproj import CRS, Transformer
from rasterio.windows import Window
from scipy.interpolate import CloughTocher2DInterpolator
from scipy.ndimage import map_coordinates

from openeo_airflow.catalog.config import BandConfig, CollectionConfig, SarConfig
from openeo_airflow.catalog.sentinel1 import (
    Calibration,
    NoiseModel,
    parse_annotation,
    parse_calibration,
    parse_noise,
)
from openeo_airflow.catalog.stac import StacItem, search_items
from openeo_airflow.core.settings import load_settings
from openeo_airflow.cube import make_cube
from openeo_airflow.io import terrain
from openeo_airflow.io.backscatter import (
    Backscatter,
    DigitalElevationModelInvalid,
    invalid,
    no_dem,
    parse_backscatter,
    unsupported,
)
from openeo_airflow.io.gdal_env import gdal_env
from openeo_airflow.io.grid import DEFAULT_TILE_SIZE, Grid, Tile, target_grid, tiles
from openeo_airflow.io.reader import (
    Steps,
    parse_spatial_extent,
    parse_temporal_extent,
    select_bands,
    time_steps,
)

BACKSCATTER_ATTR = "openeo_airflow:backscatter"
CALIBRATION_LUT = {"beta0": "beta0", "sigma0-ellipsoid": "sigma0", "gamma0-ellipsoid": "gamma0"}
GEOCODING_STEP = 16  # px between exactly geocoded nodes; bilinear in between (smooth mapping)


class Geocoder:
    """Full-resolution image coordinates (line, pixel; pixel centres) of map positions.

    ``shape`` (lines, samples): positions outside the image become NaN. A regular GCP grid
    (as the annotation's) gets one ring of linearly extrapolated points, so the image border
    lies strictly inside the triangulation (GCPs on its hull would fall outside by rounding).
    """

    def __init__(
        self,
        line: np.ndarray,
        pixel: np.ndarray,
        lon: np.ndarray,
        lat: np.ndarray,
        incidence: np.ndarray | None = None,
        shape: tuple[int, int] | None = None,
    ) -> None:
        self.line, self.pixel, self.lon, self.lat = line, pixel, lon, lat
        self.incidence = incidence
        self.shape = shape
        self._fitted: dict[str, CloughTocher2DInterpolator] = {}
        self._lock = threading.Lock()

    def _points(self) -> list[np.ndarray]:
        columns = [self.line, self.pixel, self.lon, self.lat]
        if self.incidence is not None:
            columns.append(self.incidence)
        lines, pixels = np.unique(self.line), np.unique(self.pixel)
        if len(lines) * len(pixels) != len(self.line) or min(len(lines), len(pixels)) < 2:
            return columns  # not a regular grid: no padding
        order = np.lexsort((self.pixel, self.line))
        grids = [c[order].reshape(len(lines), len(pixels)) for c in columns]
        padded = [_extrapolate(_extrapolate(g, axis=0), axis=1) for g in grids]
        return [g.ravel() for g in padded]

    def _interpolator(self, crs: CRS) -> CloughTocher2DInterpolator:
        key = crs.to_wkt()
        with self._lock:
            if key not in self._fitted:
                line, pixel, lon, lat, *rest = self._points()
                to_map = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
                x, y = to_map.transform(lon, lat)
                self._fitted[key] = CloughTocher2DInterpolator(
                    np.column_stack([x, y]), np.column_stack([line, pixel, *rest])
                )
            return self._fitted[key]

    def locate(self, x: np.ndarray, y: np.ndarray, crs: CRS) -> np.ndarray:
        """``(..., 2 or 3)``: line, pixel (and incidence angle) at map points; NaN outside."""
        located = np.asarray(self._interpolator(crs)(x, y))
        if self.shape is not None:
            line, pixel = located[..., 0], located[..., 1]
            outside = (line < -0.5) | (line > self.shape[0] - 0.5)
            outside |= (pixel < -0.5) | (pixel > self.shape[1] - 0.5)
            located[outside] = np.nan
        return located

    def on_grid(self, grid: Grid) -> np.ndarray | None:
        """``(k, height, width)`` line, pixel (, incidence) of each grid pixel centre, or None
        when the grid lies outside the image. Exact at every ``GEOCODING_STEP``-th pixel,
        bilinear in between."""
        nodes_x = _nodes(grid.width)
        nodes_y = _nodes(grid.height)
        t = grid.transform
        xs = t.c + (nodes_x + 0.5) * t.a
        ys = t.f + (nodes_y + 0.5) * t.e
        coarse = self.locate(*np.meshgrid(xs, ys), grid.crs)  # (ny, nx, k)
        if np.isnan(coarse[..., 0]).all():
            return None
        fy = np.interp(np.arange(grid.height), nodes_y, np.arange(len(nodes_y)))
        fx = np.interp(np.arange(grid.width), nodes_x, np.arange(len(nodes_x)))
        return np.stack(
            [_bilinear(coarse[..., k], fy, fx) for k in range(coarse.shape[-1])]
        ).astype(np.float64)


def _extrapolate(grid: np.ndarray, axis: int) -> np.ndarray:
    """One more row (axis 0) or column (axis 1) on each side, continuing the last step."""
    values = np.moveaxis(grid, axis, 0)
    before, after = 2 * values[0] - values[1], 2 * values[-1] - values[-2]
    return np.moveaxis(np.concatenate([before[None], values, after[None]]), 0, axis)


def _nodes(size: int) -> np.ndarray:
    return np.unique(np.append(np.arange(0, size, GEOCODING_STEP), size - 1)).astype(float)


def _bilinear(values: np.ndarray, fy: np.ndarray, fx: np.ndarray) -> np.ndarray:
    """Separable linear interpolation of a node array at fractional node indices."""
    y0 = np.minimum(np.floor(fy).astype(int), values.shape[0] - 1)
    x0 = np.minimum(np.floor(fx).astype(int), values.shape[1] - 1)
    y1, x1 = np.minimum(y0 + 1, values.shape[0] - 1), np.minimum(x0 + 1, values.shape[1] - 1)
    wy, wx = (fy - y0)[:, None], fx - x0
    across0 = values[y0][:, x0] * (1 - wx) + values[y0][:, x1] * wx
    across1 = values[y1][:, x0] * (1 - wx) + values[y1][:, x1] * wx
    return np.asarray(across0 * (1 - wy) + across1 * wy)


@dataclass(frozen=True)
class Polarisation:
    """One polarisation of a product: its measurement raster and its LUTs (if any)."""

    name: str
    href: str
    lines: int
    samples: int
    calibration: Calibration | None
    noise: NoiseModel | None

    def backscatter(
        self, rows: np.ndarray, cols: np.ndarray, params: Backscatter, product_id: str
    ) -> np.ndarray:
        """Backscatter (linear power) at the full-resolution image coordinates given."""
        result = np.full(rows.shape, np.nan, dtype=np.float32)
        inside = np.isfinite(rows) & np.isfinite(cols)
        if not inside.any():
            return result
        with rasterio.open(self.href) as src:
            sy, sx = src.height / self.lines, src.width / self.samples
            tr, tc = (rows[inside] + 0.5) * sy - 0.5, (cols[inside] + 0.5) * sx - 0.5
            r0, c0 = max(math.floor(tr.min()) - 1, 0), max(math.floor(tc.min()) - 1, 0)
            r1 = min(math.ceil(tr.max()) + 2, src.height)
            c1 = min(math.ceil(tc.max()) + 2, src.width)
            if r0 >= r1 or c0 >= c1:
                return result
            dn = src.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
        power = self.calibrate(dn, r0, c0, (sy, sx), params, product_id)
        sampled = map_coordinates(
            power, [tr - r0, tc - c0], order=1, mode="constant", cval=np.nan, prefilter=False
        )
        result[inside] = sampled
        return result

    def calibrate(
        self,
        dn: np.ndarray,
        row0: int,
        col0: int,
        scale: tuple[float, float],
        params: Backscatter,
        product_id: str,
    ) -> np.ndarray:
        """Noise-removed, calibrated power of a window of digital numbers (NaN where DN is 0,
        the products' no-data). ``scale``: measurement raster size / product image size."""
        power = dn.astype(np.float64) ** 2
        power[dn == 0] = np.nan
        lines = (np.arange(row0, row0 + dn.shape[0]) + 0.5) / scale[0] - 0.5
        pixels = (np.arange(col0, col0 + dn.shape[1]) + 0.5) / scale[1] - 0.5
        if params.noise_removal:
            if self.noise is None:
                raise invalid(
                    "noise_removal",
                    f"product {product_id} has no noise annotation for {self.name}; "
                    "set noise_removal to false",
                )
            power = np.maximum(power - self.noise.evaluate(lines, pixels), 0.0)
        if params.coefficient is not None:
            if self.calibration is None:
                raise invalid(
                    "coefficient",
                    f"product {product_id} has no calibration annotation for {self.name}; "
                    "use coefficient null (non-normalized DN^2)",
                )
            lut = self.calibration.lut(CALIBRATION_LUT[params.coefficient])
            power /= lut.evaluate(lines, pixels) ** 2
        return power.astype(np.float32)


@dataclass(frozen=True)
class GrdProduct:
    item_id: str
    geocoder: Geocoder
    polarisations: dict[str, Polarisation]


def read_text(href: str) -> bytes:
    """A metadata file's bytes: local path, ``file://`` or ``http(s)://``; other schemes
    through fsspec (``s3://`` needs s3fs and the GDAL profile's credentials in the env)."""
    if href.startswith(("http://", "https://")):
        with urllib.request.urlopen(href, timeout=60) as response:
            return bytes(response.read())
    if "://" not in href or href.startswith("file://"):
        return Path(href.removeprefix("file://")).read_bytes()
    import fsspec

    with fsspec.open(href, "rb") as handle:
        return bytes(handle.read())


def open_product(item: StacItem, bands: Sequence[BandConfig], sar: SarConfig) -> GrdProduct:
    """The parts of a GRD product (a STAC item) that backscatter needs for ``bands``."""
    annotation = None
    pols: dict[str, Polarisation] = {}
    for band in bands:
        pol = band.name.lower()
        href = item.assets.get(band.asset)
        if href is None:
            continue
        meta = {
            key: item.assets.get(template.format(pol=pol))
            for key, template in (
                ("annotation", sar.annotation_asset),
                ("calibration", sar.calibration_asset),
                ("noise", sar.noise_asset),
            )
        }
        if annotation is None and meta["annotation"]:
            annotation = parse_annotation(read_text(meta["annotation"]))
        if annotation is not None:
            lines, samples = annotation.lines, annotation.samples
        else:
            with rasterio.open(href) as src:
                lines, samples = src.height, src.width
        pols[band.name] = Polarisation(
            name=band.name,
            href=href,
            lines=lines,
            samples=samples,
            calibration=parse_calibration(read_text(meta["calibration"]))
            if meta["calibration"]
            else None,
            noise=parse_noise(read_text(meta["noise"])) if meta["noise"] else None,
        )
    if annotation is not None:
        a = annotation
        geocoder = Geocoder(
            a.gcp_line, a.gcp_pixel, a.gcp_lon, a.gcp_lat, a.gcp_incidence, (a.lines, a.samples)
        )
    elif pols:
        geocoder = tiff_geocoder(next(iter(pols.values())).href)
    else:
        raise invalid("data", f"product {item.id} has none of the requested polarisations")
    return GrdProduct(item.id, geocoder, pols)


def tiff_geocoder(href: str) -> Geocoder:
    """A geocoder from the GCPs stored in a measurement GeoTIFF (no annotation at hand).

    GDAL's GCP pixel/line count from the raster's corner; ours from pixel centres."""
    with rasterio.open(href) as src:
        gcps, crs = src.gcps
        shape = (src.height, src.width)
    if not gcps:
        raise invalid("data", f"{href} has no ground control points to geocode it with")
    if crs is not None and CRS.from_user_input(crs.to_wkt()) != CRS.from_epsg(4326):
        raise invalid("data", f"{href}: GCPs in {crs}, expected EPSG:4326")
    points = np.array([(g.row - 0.5, g.col - 0.5, g.x, g.y) for g in gcps])
    return Geocoder(points[:, 0], points[:, 1], points[:, 2], points[:, 3], shape=shape)


def configured_dem() -> str | None:
    """The deployment's DEM (``OPENEO_AIRFLOW_DEM``), if any."""
    return load_settings().dem or None


def check_archive_support(params: Backscatter, cfg: CollectionConfig, dem: str | None) -> None:
    """Refuse, naming the parameter, what the geocoding (and the DEM, if any) cannot give."""
    if cfg.sar is None:
        raise invalid("data", f"collection '{cfg.id}' is not a Sentinel-1 GRD collection")
    if params.terrain and dem is None:
        raise no_dem("coefficient", cfg.id, f"{params.coefficient!r} is terrain-based")
    if params.coefficient == "sigma0-terrain":
        raise unsupported("coefficient", "the DEM gives gamma0-terrain here, not sigma0-terrain")
    if params.elevation_model is not None:
        if dem is None:
            raise no_dem("elevation_model", cfg.id, f"names {params.elevation_model!r}")
        raise DigitalElevationModelInvalid(
            f"sar_backscatter: 'elevation_model' {params.elevation_model!r}: this deployment "
            "computes terrain-based values with its own DEM only; leave 'elevation_model' null."
        )
    for name in ("contributing_area", "local_incidence_angle"):
        if getattr(params, name) and dem is None:
            raise no_dem(name, cfg.id, "is a DEM-based band")
    for key in params.options:
        raise unsupported(f"options.{key}", "GRD from the archive takes no options")


def prepare_backscatter(
    cfg: CollectionConfig,
    *,
    spatial_extent: dict[str, Any] | None,
    temporal_extent: Sequence[str | None] | None,
    bands: Sequence[str] | None,
    arguments: Mapping[str, Any],
    properties: dict[str, Any] | None = None,
    dem: str | None = None,
) -> tuple[Backscatter, Steps, list[BandConfig], Grid]:
    """Check the arguments, search the products and fix the cube grid (I/O: the search)."""
    params = parse_backscatter(arguments)
    check_archive_support(params, cfg, dem)
    selected = select_bands(cfg, bands)
    extent = parse_spatial_extent(spatial_extent)
    start, end = parse_temporal_extent(temporal_extent)
    search_bbox = None
    if extent is not None:
        bbox, bbox_crs = extent
        to_wgs84 = Transformer.from_crs(bbox_crs, "EPSG:4326", always_xy=True)
        search_bbox = to_wgs84.transform_bounds(*bbox, densify_pts=21)
    items = search_items(cfg, search_bbox, start, end, properties=properties)
    if extent is None and items:
        boxes = np.array([item.bbox for item in items])
        union = (boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max())
        extent = (tuple(float(v) for v in union), rasterio.crs.CRS.from_epsg(4326))  # type: ignore[assignment]
    return params, time_steps(items), selected, target_grid(cfg, extent, [], selected)


def load_backscatter(
    cfg: CollectionConfig,
    *,
    spatial_extent: dict[str, Any] | None,
    temporal_extent: Sequence[str | None] | None,
    bands: Sequence[str] | None,
    arguments: Mapping[str, Any],
    properties: dict[str, Any] | None = None,
    gdal_profile: str = "local",
    tile_size: int = DEFAULT_TILE_SIZE,
    workers: int | None = None,
    dem: str | None = None,
) -> xr.DataArray:
    """``load_collection`` + ``sar_backscatter(arguments)`` as one ``(t, bands, y, x)`` cube.
    ``dem``: a DEM GeoTIFF (default: the deployment's)."""
    dem = dem or configured_dem()
    params, steps, selected, grid = prepare_backscatter(
        cfg,
        spatial_extent=spatial_extent,
        temporal_extent=temporal_extent,
        bands=bands,
        arguments=arguments,
        properties=properties,
        dem=dem,
    )
    data = backscatter_steps(
        steps,
        selected,
        grid,
        params,
        cfg.sar or SarConfig(),
        cfg.gdal_profile or gdal_profile,
        tile_size=tile_size,
        workers=workers,
        dem=dem,
    )
    cube = make_cube(
        data,
        times=np.array([np.datetime64(day.isoformat(), "ns") for day, _ in steps]),
        bands=[b.name for b in selected] + params.extra_bands,
        transform=grid.transform,
        crs=grid.crs.to_wkt(),
    )
    cube.attrs[BACKSCATTER_ATTR] = params.coefficient or "none"
    return cube


def backscatter_steps(
    steps: Steps,
    bands: Sequence[BandConfig],
    grid: Grid,
    params: Backscatter,
    sar: SarConfig,
    gdal_profile: str = "local",
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    workers: int | None = None,
    dem: str | None = None,
) -> np.ndarray:
    """``(steps, bands + extra bands, y, x)`` backscatter on ``grid`` (the whole cube or one
    output tile); within a step (a UTC day) the first product with a value wins."""
    names = [b.name for b in bands] + params.extra_bands
    data = np.full((len(steps), len(names), grid.height, grid.width), np.nan, dtype=np.float32)
    products = _Products(bands, sar)

    def fill(index: int, tile: Tile) -> None:
        with gdal_env(gdal_profile):
            for item in steps[index][1]:
                target = data[index, :, tile.rows, tile.cols]
                values = product_tile(products.get(item), bands, tile.grid, params, dem)
                if values is not None:
                    np.copyto(target, values, where=np.isnan(target))
                if not np.isnan(target).any():
                    break

    work = [(i, tile) for i in range(len(steps)) for tile in tiles(grid, tile_size)]
    if grid.width and grid.height and work:
        count = workers or min(4, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=max(1, min(count, len(work)))) as pool:
            for future in [pool.submit(fill, *unit) for unit in work]:
                future.result()
    return data


def product_tile(
    product: GrdProduct,
    bands: Sequence[BandConfig],
    grid: Grid,
    params: Backscatter,
    dem: str | None = None,
) -> np.ndarray | None:
    """``(bands + extra bands, height, width)`` backscatter of one product on one tile."""
    located = product.geocoder.on_grid(grid)
    if located is None:
        return None
    rows, cols = located[0], located[1]
    relief = _terrain(product, grid, located, dem) if _needs_dem(params) else None
    # gamma0-terrain: sigma0 on the ellipsoid, then over the local incidence angle's cosine.
    calibrated = replace(params, coefficient="sigma0-ellipsoid") if params.terrain else params
    layers = []
    for band in bands:
        pol = product.polarisations.get(band.name)
        layers.append(
            np.full(rows.shape, np.nan, dtype=np.float32)
            if pol is None
            else pol.backscatter(rows, cols, calibrated, product.item_id)
        )
    if params.terrain and relief is not None:
        cosine = np.cos(np.radians(relief[0]))
        with np.errstate(invalid="ignore", divide="ignore"):
            factor = np.where(cosine > 0, 1.0 / cosine, np.nan)  # radar shadow: no value
        layers = [(layer * factor).astype(np.float32) for layer in layers]
    outside = ~np.isfinite(rows)
    if params.mask:
        mask = np.isfinite(layers[0]).astype(np.float32)
        mask[outside] = np.nan
        layers.append(mask)
    if params.contributing_area and relief is not None:
        layers.append(relief[1].astype(np.float32))
    if params.local_incidence_angle and relief is not None:
        layers.append(relief[0].astype(np.float32))
    if params.ellipsoid_incidence_angle:
        layers.append(_incidence(located, product.item_id, "ellipsoid_incidence_angle"))
    return np.stack(layers)


def _needs_dem(params: Backscatter) -> bool:
    return params.terrain or params.local_incidence_angle or params.contributing_area


def _incidence(located: np.ndarray, product_id: str, parameter: str) -> np.ndarray:
    if located.shape[0] < 3:
        raise invalid(parameter, f"product {product_id} has no annotation with incidence angles")
    return located[2].astype(np.float32)


def _terrain(product: GrdProduct, grid: Grid, located: np.ndarray, dem: str | None) -> np.ndarray:
    """``(2, h, w)``: local incidence angle (degrees) and contributing area (m^2) on the tile.
    The range direction comes from the geocoding of the grid shifted one pixel east / north."""
    if dem is None:  # check_archive_support refuses this earlier; a plan made without a DEM
        raise invalid("elevation_model", "no digital elevation model is configured")
    incidence = _incidence(located, product.item_id, "coefficient")
    east = product.geocoder.on_grid(grid.window(0, 1, grid.height, grid.width))
    north = product.geocoder.on_grid(grid.window(-1, 0, grid.height, grid.width))
    nan = np.full(located[1].shape, np.nan)
    rx, ry = grid.resolution
    range_east = (east[1] - located[1]) / rx if east is not None else nan
    range_north = (north[1] - located[1]) / ry if north is not None else nan
    normals = terrain.surface_normals(terrain.read_dem(dem, grid), grid.resolution)
    looks = terrain.look_vectors(range_east, range_north, incidence)
    return np.stack(
        [terrain.local_incidence(normals, looks), terrain.contributing_area(normals, (rx, ry))]
    )


class _Products:
    """Products opened once per worker process (XML parsed, geocoding fitted once), shared by
    threads and by the tiles of a batch load that run one after the other in that process.
    The few most recent are kept: tiles of one load follow each other."""

    size = 4
    opened: OrderedDict[tuple[Any, ...], GrdProduct] = OrderedDict()
    locks: dict[tuple[Any, ...], threading.Lock] = {}
    lock = threading.Lock()

    def __init__(self, bands: Sequence[BandConfig], sar: SarConfig) -> None:
        self.bands, self.sar = list(bands), sar

    def get(self, item: StacItem) -> GrdProduct:
        key = (item.id, tuple(item.assets.get(b.asset) for b in self.bands), self.sar)
        with self.lock:
            lock = self.locks.setdefault(key, threading.Lock())
        with lock:
            with self.lock:
                found = self.opened.get(key)
                if found is not None:
                    self.opened.move_to_end(key)
                    return found
            product = open_product(item, self.bands, self.sar)
            with self.lock:
                self.opened[key] = product
                while len(self.opened) > self.size:
                    dropped, _ = self.opened.popitem(last=False)
                    self.locks.pop(dropped, None)
            return product
