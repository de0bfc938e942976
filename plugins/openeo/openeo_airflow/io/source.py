"""Reading one asset's band onto a target grid: windowed, reprojected, retried.

- Source grid equal to the target grid up to a whole-pixel shift (same CRS and pixel size):
  a plain window read of the part under the grid — no resampling, exact native values.
- Source pixels exactly k x k target pixels (e.g. a 20 m band on the 10 m grid) with nearest
  resampling: a window read at native resolution, each pixel repeated k x k.
- Anything else (other CRS, other pixel size, other alignment): a ``WarpedVRT`` onto the
  target grid, so GDAL fetches only the source blocks under it and reprojects and resamples in
  one step. When the target is coarser than the source, the read starts from the internal
  overview nearest to (and not coarser than) the target resolution (unless the band says
  ``overviews: false``, as class maps must).
- Transient errors (HTTP, timeouts, truncated reads) are retried with exponential backoff;
  errors that cannot heal (missing file, unknown format, access denied) fail at once.

Must run inside a GDAL environment (``gdal_env``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from openeo_airflow.catalog.config import BandConfig
from openeo_airflow.io.datasets import OpenDatasets, opened
from openeo_airflow.io.grid import Grid

log = logging.getLogger(__name__)

PERMANENT_MARKERS = (
    "no such file",
    "does not exist",
    "not recognized as",
    "not a supported file format",
    "permission denied",
    "access denied",
    "http response code: 403",
    "http response code: 404",
    "http error 403",
    "http error 404",
)


WARP_TOLERANCE = 0.001


class AssetError(Exception):
    """An asset could not be read (after retries); ``transient`` tells whether it was retried."""

    def __init__(self, href: str, reason: str, *, transient: bool) -> None:
        super().__init__(f"{href}: {reason}")
        self.href = href
        self.reason = reason
        self.transient = transient


@dataclass(frozen=True)
class RetryPolicy:
    """How often (``attempts`` in total) and how patiently transient read errors are retried."""

    attempts: int = 3
    delay: float = 0.5
    backoff: float = 2.0

    def run(self, href: str, action: Callable[[], Any], sleep: Callable[[float], None]) -> Any:
        for attempt in range(1, self.attempts + 1):
            try:
                return action()
            except (RasterioError, OSError) as error:
                reason = str(error) or type(error).__name__
                transient = is_transient(reason)
                if not transient or attempt == self.attempts:
                    raise AssetError(href, reason, transient=transient) from error
                wait = self.delay * self.backoff ** (attempt - 1)
                log.warning(
                    "Read of %s failed (attempt %d of %d), retrying in %.1f s: %s",
                    href,
                    attempt,
                    self.attempts,
                    wait,
                    reason,
                )
                sleep(wait)
        raise AssertionError("unreachable")


def is_transient(reason: str) -> bool:
    text = reason.lower()
    return not any(marker in text for marker in PERMANENT_MARKERS)


@dataclass(frozen=True)
class Decoding:
    """How raw values become cube values: ``(raw + add) * scale + offset``; nodata -> NaN."""

    nodata: float | None
    scale: float = 1.0
    offset: float = 0.0
    add: float = 0.0


def read_values(
    href: str,
    band: BandConfig,
    decoding: Decoding,
    grid: Grid,
    *,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    out: np.ndarray | None = None,
    datasets: OpenDatasets | None = None,
) -> np.ndarray | None:
    """The asset on ``grid`` as float32 (NaN where there is no valid data), written into
    ``out`` when given (a float32 array of the grid's shape, e.g. a view into the cube: no
    temporary array and no copy); ``out`` is left untouched when reading fails.

    ``None`` when the asset's raster does not touch the grid at all. ``datasets``: files kept
    open across calls (by the evaluation that owns it).
    """
    policy = retry or RetryPolicy()
    result = policy.run(href, lambda: _read(href, band, decoding, grid, datasets), sleep)
    if result is None:
        return None
    raw, missing = result
    values = np.empty(raw.shape, dtype=np.float32) if out is None else out
    np.copyto(values, raw, casting="unsafe")
    if decoding.add:
        values += np.float32(decoding.add)
    if decoding.scale != 1.0:
        values *= np.float32(decoding.scale)
    if decoding.offset:
        values += np.float32(decoding.offset)
    if missing is not None:
        # Boolean indexing: ~5x faster than np.putmask here (measured on 500 x 500 windows).
        values[missing] = np.float32(np.nan)
    return values


def _read(
    href: str, band: BandConfig, decoding: Decoding, grid: Grid, datasets: OpenDatasets | None
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The raw values on ``grid`` and where they are no data (None: nowhere)."""
    read = _read_raw(href, band, decoding, grid, datasets)
    if read is None:
        return None
    raw, outside, nodata = read
    # Once on the final pixels (after any k x k repeat), not on the source pixels and repeated.
    return raw, _missing(raw, nodata, outside)


_Raw = tuple[np.ndarray, np.ndarray | None, float | None]  # (raw, outside the source, nodata)


def _read_raw(
    href: str, band: BandConfig, decoding: Decoding, grid: Grid, datasets: OpenDatasets | None
) -> _Raw | None:
    with opened(href, None, datasets) as src:
        nodata = decoding.nodata if decoding.nodata is not None else src.nodata
        if not _touches(src, grid):
            return None
        offset = _aligned_offset(src, grid)
        if offset is not None:
            return (*_read_aligned(src, nodata, grid, *offset), nodata)
        factor = _upsampling_factor(src, grid) if band.resampling == "nearest" else None
        if factor is not None:
            return (*_read_repeated(src, nodata, grid, factor), nodata)
        level = _overview_level(src, grid) if band.overviews else None
        if level is None:
            return (*_read_warped(src, nodata, band, grid), nodata)
    with opened(href, level, datasets) as src:
        return (*_read_warped(src, nodata, band, grid), nodata)


def _read_warped(
    src: Any, nodata: float | None, band: BandConfig, grid: Grid
) -> tuple[np.ndarray, np.ndarray | None]:
    options: dict[str, Any] = {
        "crs": grid.crs,
        "transform": grid.transform,
        "width": grid.width,
        "height": grid.height,
        "resampling": Resampling[band.resampling],
        # Exact coordinate transformation (GDAL's default approximates it to 1/8 pixel, per
        # warped region): results must not depend on how the grid is cut into tiles.
        "tolerance": WARP_TOLERANCE,
    }
    if nodata is not None:
        options.update(src_nodata=nodata, nodata=nodata)
    else:
        options["add_alpha"] = True
    with WarpedVRT(src, **options) as vrt:
        raw = vrt.read(1)
        outside = vrt.read_masks(1) == 0
    return raw, outside


def _missing(
    raw: np.ndarray, nodata: float | None, outside: np.ndarray | None
) -> np.ndarray | None:
    """Where ``raw`` holds no data: NaN, ``nodata`` or ``outside`` the source (None: nowhere)."""
    missing = np.isnan(raw) if raw.dtype.kind == "f" else None
    if nodata is not None and not math.isnan(nodata):
        equal = raw == nodata
        missing = equal if missing is None else np.logical_or(missing, equal, out=missing)
    if outside is not None:
        missing = outside if missing is None else np.logical_or(missing, outside, out=missing)
    return missing


def _touches(src: Any, grid: Grid) -> bool:
    """Cheap pre-check (same CRS only): does the source raster overlap the grid?"""
    if src.crs != grid.crs:
        return True
    left, bottom, right, top = src.bounds
    west, south, east, north = grid.bounds
    return left < east and west < right and bottom < north and south < top


def _aligned_offset(src: Any, grid: Grid) -> tuple[int, int] | None:
    """(row, col) of the grid's origin in source pixels when the grids coincide, else None."""
    s, g = src.transform, grid.transform
    if (
        (s.b, s.d, g.b, g.d) != (0, 0, 0, 0)
        or not math.isclose(s.a, g.a)
        or not math.isclose(s.e, g.e)
    ):
        return None
    col, row = (g.c - s.c) / s.a, (g.f - s.f) / s.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6 or src.crs != grid.crs:
        return None
    return round(row), round(col)


def _upsampling_factor(src: Any, grid: Grid) -> int | None:
    """k when each source pixel is exactly k x k grid pixels (same CRS, edges aligned)."""
    s, g = src.transform, grid.transform
    if (s.b, s.d, g.b, g.d) != (0, 0, 0, 0) or src.crs != grid.crs or g.a <= 0 or s.e >= 0:
        return None
    factor = s.a / g.a
    if (
        abs(factor - round(factor)) > 1e-9
        or round(factor) < 2
        or not math.isclose(s.e, g.e * factor)
    ):
        return None
    col, row = (g.c - s.c) / g.a, (g.f - s.f) / g.e  # grid origin in grid pixels
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return round(factor)


def _read_repeated(
    src: Any, nodata: float | None, grid: Grid, k: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Nearest upsampling by an integer factor: read the covering window, repeat k x k."""
    s, g = src.transform, grid.transform
    col = round((g.c - s.c) / g.a)  # offset of the grid origin in grid pixels
    row = round((g.f - s.f) / g.e)
    c0, r0 = math.floor(col / k), math.floor(row / k)
    c1, r1 = math.ceil((col + grid.width) / k), math.ceil((row + grid.height) / k)
    coarse = Grid(grid.crs, s @ Affine.translation(c0, r0), c1 - c0, r1 - r0)
    raw, outside = _read_aligned(src, nodata, coarse, r0, c0)
    top, left = row - r0 * k, col - c0 * k
    rows = slice(top, top + grid.height)
    cols = slice(left, left + grid.width)
    raw = raw.repeat(k, 0).repeat(k, 1)[rows, cols]
    if outside is not None:
        outside = outside.repeat(k, 0).repeat(k, 1)[rows, cols]
    return raw, outside


def _read_aligned(
    src: Any, nodata: float | None, grid: Grid, row: int, col: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """A plain window read of the part of the grid inside the source, and where the grid
    is outside it or masked (None: nowhere)."""
    if row >= 0 and col >= 0 and row + grid.height <= src.height and col + grid.width <= src.width:
        window = Window(col, row, grid.width, grid.height)
        raw = src.read(1, window=window)
        outside = None if nodata is not None else src.read_masks(1, window=window) == 0
        return raw, outside
    fill = nodata if nodata is not None else 0
    raw = np.full((grid.height, grid.width), fill, dtype=src.dtypes[0])
    outside = np.ones((grid.height, grid.width), dtype=bool)
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + grid.height, src.height), min(col + grid.width, src.width)
    if r0 < r1 and c0 < c1:
        window = Window(c0, r0, c1 - c0, r1 - r0)
        target = (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))
        raw[target] = src.read(1, window=window)
        outside[target] = src.read_masks(1, window=window) == 0 if nodata is None else False
    return raw, outside


def _overview_level(src: Any, grid: Grid) -> int | None:
    """The coarsest internal overview not coarser than the target pixel (None: full res)."""
    factors = src.overviews(1)
    if not factors:
        return None
    if src.crs != grid.crs and not (
        src.crs.is_projected
        and grid.crs.is_projected
        and src.crs.linear_units == grid.crs.linear_units
    ):
        return None  # pixel sizes in different units: read full resolution
    source_res = abs(src.transform.a)
    target_res = min(grid.resolution)
    level = None
    for index, factor in enumerate(factors):
        if source_res * factor <= target_res * (1 + 1e-6):
            level = index
    return level
