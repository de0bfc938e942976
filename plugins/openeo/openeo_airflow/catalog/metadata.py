"""openEO collection documents (STAC 1.0 Collections) built from a collection configuration.

Pure functions: nothing here reads the archive.
"""

from __future__ import annotations

from typing import Any

from pyproj import CRS, Transformer

from openeo_airflow.catalog.config import BandConfig, CollectionConfig

STAC_VERSION = "1.0.0"
DATACUBE_EXTENSION = "https://stac-extensions.github.io/datacube/v2.2.0/schema.json"
EO_EXTENSION = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
RASTER_EXTENSION = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"


def collection_summary(cfg: CollectionConfig) -> dict[str, Any]:
    """The short collection entry for ``GET /collections``."""
    doc: dict[str, Any] = {
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "type": "Collection",
        "id": cfg.id,
        "title": cfg.title,
        "description": cfg.description,
        "license": cfg.license,
        "extent": {
            "spatial": {"bbox": [list(cfg.spatial_extent)]},
            "temporal": {"interval": [list(cfg.temporal_extent)]},
        },
        "links": [dict(link) for link in cfg.links],
    }
    if cfg.keywords:
        doc["keywords"] = list(cfg.keywords)
    if cfg.providers:
        doc["providers"] = [dict(p) for p in cfg.providers]
    return doc


def collection_metadata(cfg: CollectionConfig) -> dict[str, Any]:
    """The full collection document for ``GET /collections/{id}``."""
    doc = collection_summary(cfg)
    doc["stac_extensions"] = [DATACUBE_EXTENSION, EO_EXTENSION, RASTER_EXTENSION]
    doc["cube:dimensions"] = cube_dimensions(cfg)
    doc["summaries"] = {
        "eo:bands": [_eo_band(b) for b in cfg.bands],
        "raster:bands": [_raster_band(b) for b in cfg.bands],
    }
    return doc


def cube_dimensions(cfg: CollectionConfig) -> dict[str, Any]:
    """``cube:dimensions`` of the cubes ``load_collection`` returns for this collection.

    With a configured CRS the spatial extents are in that CRS; without one (each cube takes the
    CRS of its first item, e.g. its UTM zone) they are in WGS 84 and ``step`` is the pixel size
    in the items' CRS.
    """
    x_extent, y_extent, reference_system = _spatial_extent(cfg)
    native = "" if cfg.crs else " (pixel size in the CRS of the first item loaded)"
    return {
        "x": {
            "type": "spatial",
            "axis": "x",
            "extent": x_extent,
            "reference_system": reference_system,
            "step": cfg.resolution,
            "description": f"Easting{native}",
        },
        "y": {
            "type": "spatial",
            "axis": "y",
            "extent": y_extent,
            "reference_system": reference_system,
            "step": cfg.resolution,
            "description": f"Northing{native}",
        },
        "t": {
            "type": "temporal",
            "extent": list(cfg.temporal_extent),
            "step": None,
            "description": "Observation days (UTC); products of one day form one time step",
        },
        "bands": {"type": "bands", "values": cfg.band_names},
    }


def _spatial_extent(
    cfg: CollectionConfig,
) -> tuple[list[float], list[float], int | str]:
    west, south, east, north = cfg.spatial_extent
    if cfg.crs is None:
        return [west, east], [south, north], 4326
    crs = CRS.from_user_input(cfg.crs)
    epsg = crs.to_epsg()
    reference: int | str = epsg if epsg is not None else crs.to_wkt()
    if epsg == 4326:
        return [west, east], [south, north], reference
    area = crs.area_of_use
    if area is not None:  # keep the transform inside the CRS's domain (e.g. one UTM zone)
        west, south = max(west, area.west), max(south, area.south)
        east, north = min(east, area.east), min(north, area.north)
    transformer = Transformer.from_crs(CRS.from_epsg(4326), crs, always_xy=True)
    xmin, ymin, xmax, ymax = transformer.transform_bounds(west, south, east, north, densify_pts=21)
    return [xmin, xmax], [ymin, ymax], reference


def _eo_band(band: BandConfig) -> dict[str, Any]:
    eo: dict[str, Any] = {"name": band.name}
    if band.common_name:
        eo["common_name"] = band.common_name
    if band.wavelength_um is not None:
        eo["center_wavelength"] = band.wavelength_um
    if band.description:
        eo["description"] = band.description
    return eo


def _raster_band(band: BandConfig) -> dict[str, Any]:
    raster: dict[str, Any] = {"name": band.name, "scale": band.scale, "offset": band.offset}
    if band.nodata is not None:
        raster["nodata"] = band.nodata
    if band.data_type:
        raster["data_type"] = band.data_type
    if band.resolution is not None:
        raster["spatial_resolution"] = band.resolution
    return raster
