"""Terrain geometry for ``sar_backscatter`` on archive GRD, from the deployment's DEM.

Per output tile:

1. the DEM (heights in metres, any CRS GDAL can warp) is resampled bilinearly onto the tile
   plus a one-pixel margin; central differences give each pixel's surface normal
   ``n = (-dz/dx, -dz/dy, 1) / |...|`` in the map's east / north / up frame;
2. the look vector ``l`` (ground -> sensor) leaves the vertical by the ellipsoid incidence
   angle and points horizontally towards near range, i.e. against the gradient of the image's
   range (pixel) coordinate over the map;
3. ``cos(local incidence) = n . l``.

``gamma0-terrain`` is then ``sigma0-ellipsoid / cos(local incidence)``: a cosine
normalisation with the local instead of the ellipsoid incidence angle (a flat DEM gives exactly
``sigma0 / cos(ellipsoid incidence)``), not Small's (2011) area-integrated flattening.
Facets facing away from the sensor (``cos <= 0``, radar shadow) get no value. The geocoding
itself stays ellipsoid-based: heights do not move pixels (no orthorectification shift).
"""

from __future__ import annotations

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.warp import reproject

from openeo_airflow.io.backscatter import DigitalElevationModelInvalid
from openeo_airflow.io.grid import Grid


def read_dem(href: str, grid: Grid, margin: int = 1) -> np.ndarray:
    """Heights on ``grid`` grown by ``margin`` pixels on each side (NaN where the DEM has
    none); must run inside the GDAL environment of the load."""
    outer = Grid(
        grid.crs,
        grid.transform @ Affine.translation(-margin, -margin),
        grid.width + 2 * margin,
        grid.height + 2 * margin,
    )
    heights = np.full((outer.height, outer.width), np.nan, dtype=np.float64)
    try:
        with rasterio.open(href) as src:
            reproject(
                rasterio.band(src, 1),
                heights,
                dst_transform=outer.transform,
                dst_crs=outer.crs,
                src_nodata=src.nodata,
                dst_nodata=np.nan,
                resampling=Resampling.bilinear,
            )
    except RasterioError as error:
        raise DigitalElevationModelInvalid(
            f"sar_backscatter: the deployment's digital elevation model cannot be read "
            f"({' '.join(str(error).split())})."
        ) from error
    return heights


def surface_normals(heights: np.ndarray, resolution: tuple[float, float]) -> np.ndarray:
    """``(3, h, w)`` unit normals (east, north, up) of the inner pixels of ``heights`` (a grid
    with a one-pixel margin; rows run southwards)."""
    rx, ry = resolution
    dzdx = (heights[1:-1, 2:] - heights[1:-1, :-2]) / (2 * rx)
    dzdy = (heights[:-2, 1:-1] - heights[2:, 1:-1]) / (2 * ry)
    normal = np.stack([-dzdx, -dzdy, np.ones_like(dzdx)])
    return np.asarray(normal / np.linalg.norm(normal, axis=0))


def look_vectors(
    range_east: np.ndarray, range_north: np.ndarray, incidence_deg: np.ndarray
) -> np.ndarray:
    """``(3, h, w)`` unit vectors ground -> sensor from the change of the image's range
    coordinate per metre east and north (range grows away from the sensor) and the ellipsoid
    incidence angle."""
    length = np.hypot(range_east, range_north)
    theta = np.radians(incidence_deg)
    with np.errstate(invalid="ignore", divide="ignore"):
        east, north = -range_east / length, -range_north / length
    return np.stack([np.sin(theta) * east, np.sin(theta) * north, np.cos(theta)])


def local_incidence(normals: np.ndarray, looks: np.ndarray) -> np.ndarray:
    """Angle (degrees) between surface normal and look vector, per pixel."""
    cosine = np.clip(np.sum(normals * looks, axis=0), -1.0, 1.0)
    return np.asarray(np.degrees(np.arccos(cosine)))


def contributing_area(normals: np.ndarray, resolution: tuple[float, float]) -> np.ndarray:
    """The terrain area (m^2) under each map pixel: its map area over cos(slope)."""
    return np.asarray(resolution[0] * resolution[1] / normals[2])
