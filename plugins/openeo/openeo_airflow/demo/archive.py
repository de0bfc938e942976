"""A generated, Sentinel-2-L2A-like demo archive as a static STAC collection of COGs.

The data is SYNTHETIC: a deterministic landscape of fields, a river and a lake under moving
clouds with shadows, made from a seed. It exists so that the backend can be demonstrated and
tested end to end without downloading anything. The layout is the one our static-STAC reader
expects::

    <dest>/catalog.json                 STAC Collection, one "item" link per item
    <dest>/items/<item_id>.json         STAC Items (proj:epsg, eo:cloud_cover, generated: true)
    <dest>/data/<item_id>/<BAND>.tif    COGs: B02/B03/B04/B08 uint16 at 10 m, SCL uint8 at 20 m
    <dest>/collections.yaml             collection config for the collection loader
    <dest>/.demo-archive.json           marker with the generation parameters (idempotency)

Reflectance is stored as DN = reflectance * 10000 (the baseline-04.00 +1000 offset is NOT
applied; items carry no processing baseline). No-data is 0 in every band.

The STAC/COG writing helpers (``write_cog``, ``cog_asset``, ``stac_item``,
``write_static_collection``, ``write_collection_config``) are public so that test fixtures
derive catalogs in exactly the same layout.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import yaml
from affine import Affine
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_bounds

DEMO_COLLECTION_ID = "SENTINEL2_L2A_DEMO"
DEMO_EPSG = 32631
DEMO_ORIGIN = (600_000.0, 5_650_000.0)  # upper-left corner (x, y) in EPSG:32631, Belgium
DEMO_START = datetime(2023, 7, 2, 10, 50, 31, tzinfo=UTC)
DEMO_REVISIT_DAYS = 5
REFLECTANCE_BANDS = ("B02", "B03", "B04", "B08")
ARCHIVE_FORMAT = 1  # bump when the generated content changes: invalidates existing archives
MARKER_NAME = ".demo-archive.json"
CONFIG_NAME = "collections.yaml"

COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
STAC_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
]

# Surface DN (reflectance * 10000) for B02, B03, B04, B08.
_SOIL = np.array([900.0, 1200.0, 1500.0, 2300.0], dtype=np.float32)
_VEGETATION = np.array([350.0, 650.0, 350.0, 3800.0], dtype=np.float32)
_WATER = np.array([550.0, 500.0, 300.0, 180.0], dtype=np.float32)
_CLOUD = np.array([7000.0, 6900.0, 6800.0, 7200.0], dtype=np.float32)
_NOISE = np.array([20.0, 20.0, 25.0, 60.0], dtype=np.float32)


# --------------------------------------------------------------------------- STAC / COG writing


def write_cog(
    path: Path, data: np.ndarray, *, transform: Affine, epsg: int, categorical: bool
) -> None:
    """Write one band as a deflate-compressed COG (256 px blocks, nodata 0, internal overviews)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = data.shape
    with rasterio.open(
        path,
        "w",
        driver="COG",
        width=width,
        height=height,
        count=1,
        dtype=data.dtype.name,
        crs=f"EPSG:{epsg}",
        transform=transform,
        nodata=0,
        compress="deflate",
        predictor=2,
        blocksize=256,
        resampling="nearest" if categorical else "average",
    ) as dst:
        dst.write(data, 1)


def cog_asset(href: str, path: Path, *, title: str | None = None) -> dict[str, Any]:
    """A STAC asset for a raster file, with proj:shape/proj:transform read from the file."""
    with rasterio.open(path) as src:
        t = src.transform
        asset: dict[str, Any] = {
            "href": href,
            "type": COG_MEDIA_TYPE,
            "roles": ["data"],
            "proj:shape": [src.height, src.width],
            "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
            "raster:bands": [{"nodata": src.nodata, "data_type": src.dtypes[0]}],
        }
    if title:
        asset["title"] = title
    return asset


def footprint_wgs84(
    epsg: int, bounds: tuple[float, float, float, float]
) -> tuple[dict[str, Any], list[float]]:
    """GeoJSON polygon of a native-CRS rectangle's corners and its lon/lat bbox."""
    left, bottom, right, top = bounds
    lons, lats = warp_transform(
        f"EPSG:{epsg}", "EPSG:4326", [left, right, right, left], [top, top, bottom, bottom]
    )
    ring = [[round(x, 7), round(y, 7)] for x, y in zip(lons, lats, strict=True)]
    geometry = {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
    w, s, e, n = transform_bounds(f"EPSG:{epsg}", "EPSG:4326", *bounds, densify_pts=21)
    return geometry, [round(w, 7), round(s, 7), round(e, 7), round(n, 7)]


def format_datetime(dt: datetime) -> str:
    """ISO 8601 in UTC with a trailing Z."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def stac_item(
    item_id: str,
    *,
    collection_id: str,
    datetime_utc: str,
    epsg: int,
    geometry: Mapping[str, Any],
    bbox: Sequence[float],
    assets: Mapping[str, dict[str, Any]],
    properties: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A STAC Item dict in our static layout (links are added by ``write_static_collection``)."""
    props = dict(properties or {})
    props.update({"datetime": datetime_utc, "proj:epsg": int(epsg)})
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": STAC_EXTENSIONS,
        "id": item_id,
        "collection": collection_id,
        "geometry": dict(geometry),
        "bbox": list(bbox),
        "properties": props,
        "assets": dict(assets),
        "links": [],
    }


def write_static_collection(
    dest: Path,
    *,
    collection_id: str,
    title: str,
    description: str,
    license: str,
    items: Sequence[dict[str, Any]],
    extra_fields: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``items/<id>.json`` and ``catalog.json`` (a STAC Collection); return the latter."""
    if not items:
        raise ValueError("a collection needs at least one item")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "items").mkdir(exist_ok=True)
    catalog_path = dest / "catalog.json"
    parent = {"href": "../catalog.json", "type": "application/json"}
    for item in items:
        item = dict(item)
        item["links"] = [
            {"rel": "root", **parent},
            {"rel": "parent", **parent},
            {"rel": "collection", **parent},
        ]
        _write_json(dest / "items" / f"{item['id']}.json", item)
    boxes = np.array([item["bbox"] for item in items], dtype=float)
    times = sorted(item["properties"]["datetime"] for item in items)
    collection: dict[str, Any] = {
        "type": "Collection",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": collection_id,
        "title": title,
        "description": description,
        "license": license,
        "extent": {
            "spatial": {
                "bbox": [
                    [
                        float(boxes[:, 0].min()),
                        float(boxes[:, 1].min()),
                        float(boxes[:, 2].max()),
                        float(boxes[:, 3].max()),
                    ]
                ]
            },
            "temporal": {"interval": [[times[0], times[-1]]]},
        },
        "links": [
            {"rel": "root", "href": "./catalog.json", "type": "application/json"},
            {"rel": "self", "href": str(catalog_path.resolve()), "type": "application/json"},
            *(
                {"rel": "item", "href": f"./items/{item['id']}.json", "type": "application/json"}
                for item in items
            ),
        ],
        **dict(extra_fields or {}),
    }
    _write_json(catalog_path, collection)
    return catalog_path


def write_collection_config(
    dest: Path,
    *,
    collection_id: str,
    title: str,
    description: str,
    crs: str,
    resolution: float,
    bands: Iterable[str],
    license: str = "proprietary",
    grid_origin: tuple[float, float] | None = None,
) -> Path:
    """Write ``collections.yaml`` next to ``catalog.json`` (the collection loader's format).

    ``grid_origin`` is written only when given: the loader aligns cube grids to
    ``grid_origin + k * resolution`` (default 0, 0), so a native grid whose corner is not a
    multiple of the resolution needs it to be read without resampling.
    """
    entry: dict[str, Any] = {
        "id": collection_id,
        "title": title,
        "description": description,
        "license": license,
        "catalog": "./catalog.json",
        "crs": crs,
        "resolution": _number(resolution),
    }
    if grid_origin is not None:
        entry["grid_origin"] = [_number(grid_origin[0]), _number(grid_origin[1])]
    entry["bands"] = [{"name": b, "asset": b, "nodata": 0} for b in bands]
    config = {"collections": [entry]}
    path = dest / CONFIG_NAME
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- the demo archive


def demo_bbox_wgs84(size: int = 512) -> dict[str, Any]:
    """An openEO spatial_extent (EPSG:4326) inscribed in the central 80 % of the demo area."""
    x0, y0 = DEMO_ORIGIN
    extent = size * 10.0
    left, right = x0 + 0.1 * extent, x0 + 0.9 * extent
    top, bottom = y0 - 0.1 * extent, y0 - 0.9 * extent
    lons, lats = warp_transform(
        f"EPSG:{DEMO_EPSG}", "EPSG:4326", [left, right, right, left], [top, top, bottom, bottom]
    )
    # Inscribed lon/lat box of the (slightly rotated) UTM rectangle, rounded inwards to 1e-6 deg.
    west, east = max(lons[0], lons[3]), min(lons[1], lons[2])
    south, north = max(lats[2], lats[3]), min(lats[0], lats[1])
    return {
        "west": float(np.ceil(west * 1e6) / 1e6),
        "south": float(np.ceil(south * 1e6) / 1e6),
        "east": float(np.floor(east * 1e6) / 1e6),
        "north": float(np.floor(north * 1e6) / 1e6),
        "crs": 4326,
    }


def generate_demo_archive(dest: Path, *, size: int = 512, dates: int = 6, seed: int = 42) -> Path:
    """Generate (or reuse) the synthetic archive in ``dest``; return its ``catalog.json`` path.

    ``size`` is the side in 10 m pixels (even, >= 32); ``dates`` acquisitions 5 days apart from
    2023-07-02. Deterministic for a given (size, dates, seed). If ``dest`` already holds a
    complete archive made with the same parameters it is returned as is; otherwise the files
    this function owns in ``dest`` are replaced.
    """
    if size < 32 or size % 2:
        raise ValueError(f"size must be an even number >= 32, got {size}")
    if dates < 1:
        raise ValueError(f"dates must be >= 1, got {dates}")
    dest = Path(dest)
    catalog_path = dest / "catalog.json"
    params = {"format": ARCHIVE_FORMAT, "size": size, "dates": dates, "seed": seed}
    marker = dest / MARKER_NAME
    if catalog_path.is_file() and marker.is_file():
        try:
            if json.loads(marker.read_text(encoding="utf-8")) == params:
                return catalog_path
        except ValueError:
            pass
    for stale in (marker, catalog_path, dest / CONFIG_NAME):
        stale.unlink(missing_ok=True)
    for folder in ("items", "data"):
        shutil.rmtree(dest / folder, ignore_errors=True)

    scene = _Scene(size, seed)
    x0, y0 = DEMO_ORIGIN
    epsg = DEMO_EPSG
    bounds = (x0, y0 - size * 10.0, x0 + size * 10.0, y0)
    geometry, bbox = footprint_wgs84(epsg, bounds)
    items = []
    for index in range(dates):
        when = DEMO_START + timedelta(days=DEMO_REVISIT_DAYS * index)
        item_id = f"DEMO_S2_L2A_{when:%Y%m%d}"
        bands, scl = scene.acquisition(index, dates)
        data_dir = dest / "data" / item_id
        assets = {}
        for name, array in zip(REFLECTANCE_BANDS, bands, strict=True):
            path = data_dir / f"{name}.tif"
            write_cog(path, array, transform=scene.transform(10), epsg=epsg, categorical=False)
            assets[name] = cog_asset(f"../data/{item_id}/{name}.tif", path, title=f"{name} (10 m)")
        path = data_dir / "SCL.tif"
        write_cog(path, scl, transform=scene.transform(20), epsg=epsg, categorical=True)
        assets["SCL"] = cog_asset(f"../data/{item_id}/SCL.tif", path, title="SCL (20 m)")
        valid = np.count_nonzero(scl)
        cloudy = np.count_nonzero(np.isin(scl, (8, 9, 10)))
        properties = {
            "platform": "sentinel-2-synthetic",
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "eo:cloud_cover": round(100.0 * cloudy / valid, 2) if valid else 100.0,
            "generated": True,
        }
        items.append(
            stac_item(
                item_id,
                collection_id=DEMO_COLLECTION_ID,
                datetime_utc=format_datetime(when),
                epsg=epsg,
                geometry=geometry,
                bbox=bbox,
                assets=assets,
                properties=properties,
            )
        )
    title = "Sentinel-2 L2A demo (GENERATED, synthetic data)"
    description = (
        "GENERATED SYNTHETIC DATA, not real Sentinel-2 observations: a Sentinel-2-L2A-like "
        f"archive of {dates} dates over a {size * 10 / 1000:g} km square in Belgium "
        f"(EPSG:{epsg}), made deterministically from seed {seed}. Bands B02/B03/B04/B08 uint16 "
        "at 10 m (DN = reflectance * 10000, no offset) and SCL uint8 at 20 m; no-data 0."
    )
    catalog_path = write_static_collection(
        dest,
        collection_id=DEMO_COLLECTION_ID,
        title=title,
        description=description,
        license="CC0-1.0",
        items=items,
        extra_fields={"generated": True},
    )
    write_collection_config(
        dest,
        collection_id=DEMO_COLLECTION_ID,
        title=title,
        description=description,
        crs=f"EPSG:{epsg}",
        resolution=10,
        bands=[*REFLECTANCE_BANDS, "SCL"],
        license="CC0-1.0",
    )
    _write_json(marker, params)  # last: a half-written archive has no marker and is redone
    return catalog_path


class _Scene:
    """The deterministic landscape; ``acquisition`` renders one date of it."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.fields = _voronoi_fields(size, rng)
        n_fields = int(self.fields.max()) + 1
        # Crop types: 0 grass, 1 maize (growing), 2 cereal (harvested), 3 bare, 4 forest.
        self.crop = rng.choice(5, size=n_fields, p=[0.3, 0.25, 0.25, 0.1, 0.1])
        self.harvest = rng.uniform(0.15, 0.85, size=n_fields)
        self.level = rng.uniform(-0.06, 0.06, size=n_fields).astype(np.float32)
        self.brightness = rng.uniform(0.85, 1.15, size=n_fields).astype(np.float32)
        self.texture = _smooth_noise(size, rng, waves=5, amplitude=0.07)
        self.water = _water(size, rng)
        half = size // 2
        self.cloud_noise = _smooth_noise(half, rng, waves=7, amplitude=0.35)
        self.blobs = rng.uniform(-0.3, 1.3, size=(10, 2))
        self.radii = rng.uniform(0.06, 0.16, size=10)
        self.wind = rng.uniform(0.08, 0.16, size=2) * rng.choice([-1.0, 1.0], size=2)
        self.cover = rng.uniform(0.12, 0.45, size=64)
        self.cover[rng.integers(0, 6)] = 0.04  # one nearly clear date among the first six
        self.nodata_dates = rng.random(64) < 0.3

    def transform(self, resolution: int) -> Affine:
        return Affine(resolution, 0.0, DEMO_ORIGIN[0], 0.0, -resolution, DEMO_ORIGIN[1])

    def acquisition(self, index: int, dates: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Four uint16 reflectance bands at 10 m and the uint8 SCL at 20 m for date ``index``."""
        rng = np.random.default_rng([self.seed, index])
        phase = index / max(dates - 1, 1)
        veg = self._vegetation(phase)
        surface = veg[None] * _VEGETATION[:, None, None] + (1 - veg[None]) * _SOIL[:, None, None]
        surface *= self.brightness[self.fields][None]
        surface = np.where(self.water[None], _WATER[:, None, None], surface)
        opacity, shadow = self._clouds(index)
        nodata = self._nodata(index)
        up = _upsample2
        out = surface * (1.0 - 0.65 * up(shadow))[None]
        alpha = up(opacity)[None]
        out = out * (1.0 - alpha) + _CLOUD[:, None, None] * rng.uniform(0.9, 1.1) * alpha
        out += rng.standard_normal(out.shape, dtype=np.float32) * _NOISE[:, None, None]
        dn = np.clip(np.rint(out), 1, 15000).astype(np.uint16)
        dn[:, up(nodata)] = 0
        scl = self._scl(surface, opacity, shadow, nodata)
        return list(dn), scl

    def _vegetation(self, phase: float) -> np.ndarray:
        per_type = np.array([0.8, 0.25 + 0.6 * phase, 0.7, 0.07, 0.95], dtype=np.float32)
        fraction = per_type[self.crop]
        harvested = (self.crop == 2) & (phase >= self.harvest)
        fraction = np.where(harvested, np.float32(0.1), fraction) + self.level
        return np.clip(fraction[self.fields] + self.texture, 0.0, 1.0).astype(np.float32)

    def _clouds(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        half = self.size // 2
        yy, xx = (np.mgrid[0:half, 0:half].astype(np.float32) + 0.5) / half
        density = np.zeros((half, half), dtype=np.float32)
        for (cx, cy), radius in zip(self.blobs, self.radii, strict=True):
            px = (cx + self.wind[0] * index + 0.3) % 1.6 - 0.3
            py = (cy + self.wind[1] * index + 0.3) % 1.6 - 0.3
            density += np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * radius**2))
        density *= 1.0 + self.cloud_noise
        threshold = np.quantile(density, 1.0 - self.cover[index % len(self.cover)])
        top = max(float(density.max()) - threshold, 1e-6)
        opacity = np.clip((density - threshold) / top * 1.6 + 0.15, 0.0, 1.0)
        opacity[density <= threshold] = 0.0
        # Shadows fall to the north-north-west of the clouds (sun in the south-south-east).
        dy, dx = max(1, round(0.07 * half)), max(1, round(0.025 * half))
        shadow = np.zeros_like(opacity)
        shadow[: half - dy, : half - dx] = opacity[dy:, dx:]
        shadow[opacity > 0] = 0.0
        return opacity.astype(np.float32), shadow.astype(np.float32)

    def _nodata(self, index: int) -> np.ndarray:
        """A swath-edge wedge in the south-west corner on some dates (True = no data)."""
        half = self.size // 2
        yy, xx = (np.mgrid[0:half, 0:half].astype(np.float32) + 0.5) / half
        if not self.nodata_dates[index % len(self.nodata_dates)]:
            return np.zeros((half, half), dtype=bool)
        return np.asarray(xx < 0.35 * yy - 0.12)

    def _scl(
        self, surface: np.ndarray, opacity: np.ndarray, shadow: np.ndarray, nodata: np.ndarray
    ) -> np.ndarray:
        red, nir = _downsample2(surface[2]), _downsample2(surface[3])
        ndvi = (nir - red) / (nir + red)
        water = _downsample2(self.water.astype(np.float32)) >= 0.5
        scl = np.where(water, 6, np.where(ndvi >= 0.35, 4, 5)).astype(np.uint8)
        scl[shadow > 0.3] = 3
        scl[(opacity > 0) & (opacity < 0.45)] = 10
        scl[(opacity >= 0.45) & (opacity < 0.75)] = 8
        scl[opacity >= 0.75] = 9
        scl[nodata] = 0
        return scl


def _voronoi_fields(size: int, rng: np.random.Generator) -> np.ndarray:
    """Field ids from a jittered-grid Voronoi partition (fields of ~40 px, i.e. ~400 m)."""
    cells = max(3, size // 40)
    grid = (np.indices((cells, cells)).reshape(2, -1).T + 0.5) / cells
    seeds = (grid + rng.uniform(-0.4, 0.4, size=grid.shape) / cells).astype(np.float32) * size
    ids = np.empty((size, size), dtype=np.int32)
    cols = np.arange(size, dtype=np.float32) + 0.5
    for start in range(0, size, 64):
        rows = np.arange(start, min(start + 64, size), dtype=np.float32) + 0.5
        d = (rows[:, None, None] - seeds[None, None, :, 0]) ** 2 + (
            cols[None, :, None] - seeds[None, None, :, 1]
        ) ** 2
        ids[start : start + len(rows)] = np.argmin(d, axis=-1)
    return ids


def _smooth_noise(
    size: int, rng: np.random.Generator, *, waves: int, amplitude: float
) -> np.ndarray:
    """A smooth random field: a sum of plane waves of low spatial frequency."""
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size
    field = np.zeros((size, size), dtype=np.float32)
    for _ in range(waves):
        fx, fy = rng.uniform(-6, 6, size=2)
        field += np.sin(2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 2 * np.pi))
    return (field * (amplitude / np.sqrt(waves))).astype(np.float32)


def _water(size: int, rng: np.random.Generator) -> np.ndarray:
    """A meandering west-east river (~60 m wide) and an oval lake."""
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size
    p1, p2 = rng.uniform(0, 2 * np.pi, size=2)
    centre = (
        0.55 + 0.12 * np.sin(2 * np.pi * 1.3 * xx + p1) + 0.04 * np.sin(2 * np.pi * 3.1 * xx + p2)
    )
    river = np.abs(yy - centre) < max(0.012, 3.0 / size)
    lx, ly = rng.uniform(0.2, 0.8), rng.uniform(0.15, 0.3)
    lake = ((xx - lx) / 0.07) ** 2 + ((yy - ly) / 0.04) ** 2 < 1.0
    return np.asarray(river | lake)


def _upsample2(a: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)


def _downsample2(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    return a.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
