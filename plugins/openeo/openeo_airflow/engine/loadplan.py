"""What one source's load reads, resolved once (by the size task) and shipped to every tile.

A ``LoadPlan`` holds the found items, grouped into time steps, the bands and the cube grid,
so executors read their tile without searching the catalog or knowing the collection config
(DESIGN §2: Spark distributes tile descriptors, never pixels). It is plain JSON.

Three kinds of source read through it, each tile on its own: archive files (COG/JP2 windows),
Sentinel Hub (the tile's own Process API requests, ``sentinelhub``) and GRD calibrated while
read (``backscatter``: each tile geocoded into the products' image windows it needs).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime
from typing import Any

import numpy as np
import rasterio
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from openeo_airflow.catalog.config import BandConfig, CollectionConfig, SarConfig
from openeo_airflow.catalog.stac import StacItem, bbox_intersects, search_items
from openeo_airflow.compiler.plan import Source
from openeo_airflow.cube import make_cube
from openeo_airflow.io import geometry_mask
from openeo_airflow.io.backscatter import parse_backscatter
from openeo_airflow.io.datasets import OpenDatasets
from openeo_airflow.io.gdal_env import gdal_env
from openeo_airflow.io.geometry_mask import geometry_text
from openeo_airflow.io.grid import Grid, Tile
from openeo_airflow.io.reader import (
    LoadOptions,
    SearchFn,
    Steps,
    WindowSink,
    read_steps,
    resolve_load,
    stream_steps,
    time_steps,
)
from openeo_airflow.io.sar import (
    BACKSCATTER_ATTR,
    backscatter_steps,
    configured_dem,
    prepare_backscatter,
)
from openeo_airflow.io.sentinelhub import ShLoad, prepare_sentinelhub, read_sentinelhub, usage_of


@dataclass(frozen=True)
class SourceStats:
    """What the sizing needs to know about a source's archive files."""

    items: int
    assets: int
    block_size: int  # edge of the source files' internal tiles (pixels)
    bytes_per_pixel: int  # of the stored values
    native_resolution: float  # finest band's pixel size in the files


@dataclass(frozen=True)
class LoadPlan:
    node_id: str
    collection_id: str
    steps: Steps
    bands: list[BandConfig]
    grid: Grid
    options: LoadOptions
    stats: SourceStats
    sentinelhub: ShLoad | None = None  # requests to the service instead of archive files
    backscatter: dict[str, Any] | None = None  # sar_backscatter's arguments, on archive GRD
    sar: SarConfig | None = None  # where the GRD items keep their metadata XML
    dem: str | None = None  # the deployment's DEM when the plan was made (terrain values)

    @property
    def band_names(self) -> list[str]:
        if self.sentinelhub is not None:
            return list(self.sentinelhub.names)
        extra = parse_backscatter(self.backscatter).extra_bands if self.backscatter else []
        return [band.name for band in self.bands] + extra

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.steps), len(self.band_names), self.grid.height, self.grid.width)

    @property
    def attrs(self) -> dict[str, str]:
        """The cube's marks: backscatter values say so (``sar_backscatter`` checks it)."""
        if self.sentinelhub is not None and self.sentinelhub.coefficient is not None:
            return {BACKSCATTER_ATTR: self.sentinelhub.coefficient}
        if self.backscatter is not None:
            return {BACKSCATTER_ATTR: parse_backscatter(self.backscatter).coefficient or "none"}
        return {}

    def read(
        self, grid: Grid, workers: int | None = None, datasets: OpenDatasets | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """``(t, bands, y, x)`` float32 values on ``grid`` (one tile of the cube grid), and
        the usage the read reports itself (Sentinel Hub processing units). ``workers``: the
        archive reader's threads (1 when tiles are read in parallel already); ``datasets``:
        archive files kept open from one tile's read to the next."""
        if self.reads_archive:
            options = self._archive_options(workers, datasets)
            return read_steps(self.steps_for(grid), self.bands, grid, options), {}
        inside = (
            geometry_mask.inside(self.options.geometry, grid) if self.options.geometry else None
        )
        usage: dict[str, Any] = {}
        if self.sentinelhub is not None:
            values, units = read_sentinelhub(self.sentinelhub, grid)
            usage = usage_of(units)
        else:
            values = backscatter_steps(
                self.steps_for(grid),
                self.bands,
                grid,
                parse_backscatter(self.backscatter or {}),
                self.sar or SarConfig(),
                self.options.gdal_profile,
                workers=1,  # tiles are the parallel unit here
                dem=self.dem,
            )
        if inside is not None:
            values[:, :, ~inside] = np.nan  # polygons: their bounding box was read
        return values, usage

    @property
    def reads_archive(self) -> bool:
        """Whether it reads the archive's files itself (not through Sentinel Hub, and without
        geocoding backscatter): only those reads stream windows and keep files open."""
        return self.sentinelhub is None and self.backscatter is None

    def _archive_options(
        self, workers: int | None, datasets: OpenDatasets | None = None
    ) -> LoadOptions:
        return replace(
            self.options,
            workers=self.options.workers if workers is None else workers,
            datasets=datasets,
        )

    def stream(self, grid: Grid, sink: WindowSink, workers: int | None = None) -> dict[str, Any]:
        """What ``read`` reads on ``grid``, handed to ``sink`` window by window (a band of one
        time step on one of the reader's tiles) as each is finished, so the caller need not
        hold the cube; the usage the read reports. Only archive reads stream: Sentinel Hub's
        and backscatter's come whole, and are then handed over a plane at a time."""
        if self.reads_archive:
            options = self._archive_options(workers)
            stream_steps(self.steps_for(grid), self.bands, grid, options, sink)
            return {}
        values, usage = self.read(grid, workers)
        whole = Tile(0, 0, grid)
        for step, planes in enumerate(values):
            for band, plane in enumerate(planes):
                sink(step, band, whole, plane)
        return usage

    def empty_cube(self) -> xr.DataArray:
        """The cube this plan loads, all NaN and without memory behind it: its coordinates,
        grid and marks (a template for the staged cube, and for lazy reads)."""
        t, b, h, w = self.shape
        cube = make_cube(
            np.broadcast_to(np.float32(np.nan), (t, b, h, w)),
            times=np.array([np.datetime64(day.isoformat(), "ns") for day, _ in self.steps]),
            bands=self.band_names,
            transform=self.grid.transform,
            crs=self.grid.crs.to_wkt(),
        )
        cube.attrs.update(self.attrs)
        return cube

    def block_origin(self) -> tuple[float, float] | None:
        """Where the archive files' pixels (and so their blocks) start, in the cube's CRS, when
        the cube lies on their pixel grid: tiles cut from there decode each block once. From
        the first item's ``proj:transform`` of a band on the cube's grid; ``None`` when the
        items do not say, or the cube is reprojected or resampled."""
        if not self.reads_archive:
            return None
        item = next((item for _, group in self.steps for item in group), None)
        if item is None or item.crs is None or CRS.from_user_input(item.crs) != self.grid.crs:
            return None
        grid = self.grid.transform
        for band in self.bands:
            values = item.asset_fields.get(band.asset, {}).get("proj:transform")
            if not isinstance(values, list) or len(values) < 6:
                continue
            a, b, c, d, e, f = (float(v) for v in values[:6])
            same_size = b == 0 and d == 0 and math.isclose(a, grid.a) and math.isclose(e, grid.e)
            if same_size and _whole(grid.c - c, a) and _whole(grid.f - f, e):
                return (c, f)  # on the cube's pixel edges
        return None

    def steps_for(self, grid: Grid) -> Steps:
        """The time steps with only the items touching ``grid`` (a tile): the others need not
        be opened. Steps stay, empty or not, so every tile has the same time axis."""
        bounds = transform_bounds(grid.crs, CRS.from_epsg(4326), *grid.bounds, densify_pts=5)
        return [
            (day, [item for item in group if bbox_intersects(item.bbox, bounds)])
            for day, group in self.steps
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "collection_id": self.collection_id,
            "steps": [[day.isoformat(), [_item_dict(i) for i in g]] for day, g in self.steps],
            "bands": [asdict(b) for b in self.bands],
            "grid": {
                "crs": self.grid.crs.to_wkt(),
                "transform": list(self.grid.transform)[:6],
                "width": self.grid.width,
                "height": self.grid.height,
            },
            "options": {
                "gdal_profile": self.options.gdal_profile,
                "soft_errors": self.options.soft_errors,
                "sentinel2": self.options.sentinel2,
                "geometry": self.options.geometry,
            },
            "stats": asdict(self.stats),
            "sentinelhub": self.sentinelhub.to_dict() if self.sentinelhub else None,
            "backscatter": self.backscatter,
            "sar": asdict(self.sar) if self.sar else None,
            "dem": self.dem,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadPlan:
        grid = data["grid"]
        return cls(
            node_id=data["node_id"],
            collection_id=data["collection_id"],
            steps=[
                (date.fromisoformat(day), [_item_of(i) for i in group])
                for day, group in data["steps"]
            ],
            bands=[BandConfig(**b) for b in data["bands"]],
            grid=Grid(
                CRS.from_wkt(grid["crs"]),
                Affine(*grid["transform"]),
                int(grid["width"]),
                int(grid["height"]),
            ),
            options=LoadOptions(**data["options"]),
            stats=SourceStats(**data["stats"]),
            sentinelhub=ShLoad.from_dict(data["sentinelhub"]) if data.get("sentinelhub") else None,
            backscatter=data.get("backscatter"),
            sar=SarConfig(**data["sar"]) if data.get("sar") else None,
            dem=data.get("dem"),
        )


def _whole(offset: float, pixel: float) -> bool:
    """Whether ``offset`` is a whole number of ``pixel`` sizes."""
    steps = offset / pixel
    return abs(steps - round(steps)) < 1e-6


def prepare_load(
    source: Source,
    config: CollectionConfig,
    gdal_profile: str,
    soft_errors: float,
    search: SearchFn = search_items,
) -> LoadPlan:
    """Search the catalog and fix the grid of one source (I/O: catalog search, one header).

    ``search`` finds the items (an ad-hoc source's own search for load_stac / load_result)."""
    options = LoadOptions(
        gdal_profile=config.gdal_profile or gdal_profile,
        soft_errors=soft_errors,
        sentinel2=config.sentinel2,
        geometry=geometry_text(source.spatial_extent, source.process_id),
    )
    if config.sentinelhub is not None:
        return _prepare_sentinelhub(source, config, options)
    if source.backscatter is not None:
        return _prepare_backscatter(source, config, options)
    items, bands, grid = resolve_load(
        config,
        spatial_extent=source.spatial_extent,
        temporal_extent=source.temporal_extent,
        bands=source.bands,
        properties=source.properties,
        search=search,
    )
    return _archive_plan(source, config, options, time_steps(items, config.sentinel2), bands, grid)


def _archive_plan(
    source: Source,
    config: CollectionConfig,
    options: LoadOptions,
    steps: Steps,
    bands: list[BandConfig],
    grid: Grid,
) -> LoadPlan:
    """A plan that reads the assets of archive items: ``steps`` holds each date's items."""
    return LoadPlan(
        node_id=source.node_id,
        collection_id=source.collection_id,
        steps=steps,
        bands=bands,
        grid=grid,
        options=options,
        stats=_source_stats(steps, bands, options.gdal_profile, config.resolution),
    )


def _prepare_sentinelhub(
    source: Source, config: CollectionConfig, options: LoadOptions
) -> LoadPlan:
    """The service's days over the extent (one Catalog API search); no request for pixels."""
    load, grid = prepare_sentinelhub(
        config,
        spatial_extent=source.spatial_extent,
        temporal_extent=source.temporal_extent,
        bands=source.bands,
        backscatter=source.backscatter,
    )
    # Answers are FLOAT32 GeoTIFFs cut to the requested grid: no source blocks to align to.
    stats = SourceStats(
        items=len(load.days),
        assets=len(load.days) * len(load.names),
        block_size=min(512, load.sh.max_pixels),
        bytes_per_pixel=4,
        native_resolution=config.resolution,
    )
    return LoadPlan(
        node_id=source.node_id,
        collection_id=source.collection_id,
        steps=[(day, []) for day in load.days],
        bands=load.bands,
        grid=grid,
        options=options,
        stats=stats,
        sentinelhub=load,
    )


def _prepare_backscatter(
    source: Source, config: CollectionConfig, options: LoadOptions
) -> LoadPlan:
    arguments = dict(source.backscatter or {})
    dem = configured_dem()
    _, steps, bands, grid = prepare_backscatter(
        config,
        spatial_extent=source.spatial_extent,
        temporal_extent=source.temporal_extent,
        bands=source.bands,
        arguments=arguments,
        properties=source.properties,
        dem=dem,
    )
    return replace(
        _archive_plan(source, config, options, steps, bands, grid),
        backscatter=arguments,
        sar=config.sar or SarConfig(),
        dem=dem,
    )


def _source_stats(
    steps: Steps, bands: list[BandConfig], gdal_profile: str, resolution: float
) -> SourceStats:
    items = [item for _, group in steps for item in group]
    assets = sum(1 for item in items for band in bands if band.asset in item.assets)
    block, nbytes, native = 512, 2, resolution
    first = next(
        (item.assets[b.asset] for item in items for b in bands if b.asset in item.assets), None
    )
    if first is not None:
        # One header tells the block layout and data type; every product of a collection
        # shares them, so one read is enough.
        try:
            with gdal_env(gdal_profile), rasterio.open(first) as src:
                block = int(src.block_shapes[0][0]) if src.block_shapes else block
                nbytes = int(np.dtype(src.dtypes[0]).itemsize)
                native = float(abs(src.transform.a)) or resolution
        except rasterio.errors.RasterioError:
            pass  # the load itself reports unreadable files; keep the defaults here
    return SourceStats(
        items=len(items),
        assets=assets,
        block_size=max(1, block),
        bytes_per_pixel=nbytes,
        native_resolution=native,
    )


def _item_dict(item: StacItem) -> dict[str, Any]:
    data = asdict(item)
    data["datetime"] = item.datetime.isoformat()
    data["bbox"] = list(item.bbox)
    return data


def _item_of(data: dict[str, Any]) -> StacItem:
    fields = dict(data)
    fields["datetime"] = datetime.fromisoformat(fields["datetime"])
    fields["bbox"] = tuple(fields["bbox"])
    return StacItem(**fields)
