"""Sentinel-1 GRD product metadata: annotation, calibration and noise XML, and STAC items.

What ``sar_backscatter`` needs from a GRD product, parsed from the product's own XML (as
stored in the SAFE ``annotation/`` folder, or as the ``schema-*`` assets of CDSE's STAC items):

- the annotation: image size, pixel spacing, pass, and the geolocation grid (ground control
  points: image line/pixel -> latitude, longitude, height, ellipsoid incidence angle);
- the calibration vectors: per (line, pixel) sample the sigma0 / beta0 / gamma0 / dn LUTs;
- the thermal noise: before IPF 2.9 one LUT grid (``noiseVectorList``); from IPF 2.9 a range
  LUT grid times per-swath azimuth profiles (``noiseRangeVectorList`` +
  ``noiseAzimuthVectorList``).

LUTs are kept as sparse vectors; ``LutGrid.values`` interpolates them bilinearly over any
window of image rows and columns (the way ESA's calibration note prescribes). Pure parsing and
interpolation; nothing here opens a raster.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

COEFFICIENT_LUTS = {"sigma0": "sigmaNought", "beta0": "betaNought", "gamma0": "gamma", "dn": "dn"}
POLARISATIONS = ("VV", "VH", "HH", "HV")


@dataclass(frozen=True)
class LutGrid:
    """LUT vectors at increasing image lines, each sampled at its own increasing pixels."""

    lines: np.ndarray
    pixels: list[np.ndarray]
    values: list[np.ndarray]

    def evaluate(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The LUT at every (row, col) of the window ``rows`` x ``cols`` (full-resolution
        image coordinates), bilinear between vectors, held constant beyond the first/last."""
        across = np.stack(
            [np.interp(cols, px, val) for px, val in zip(self.pixels, self.values, strict=True)]
        )
        if len(self.lines) == 1:
            return np.broadcast_to(across[0], (len(rows), len(cols))).copy()
        upper = np.clip(np.searchsorted(self.lines, rows, side="right"), 1, len(self.lines) - 1)
        lower = upper - 1
        span = (self.lines[upper] - self.lines[lower]).astype(np.float64)
        weight = np.clip((rows - self.lines[lower]) / span, 0.0, 1.0)[:, None]
        return across[lower] * (1.0 - weight) + across[upper] * weight


@dataclass(frozen=True)
class AzimuthBlock:
    """One block of the IPF >= 2.9 azimuth noise profile (a swath's rectangle of the image)."""

    first_line: int
    last_line: int
    first_pixel: int
    last_pixel: int
    lines: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class NoiseModel:
    """Thermal noise power: ``range`` LUT grid, times the azimuth blocks' profile if any."""

    range: LutGrid
    azimuth: list[AzimuthBlock] = field(default_factory=list)

    def evaluate(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        noise = self.range.evaluate(rows, cols)
        for block in self.azimuth:
            r = (rows >= block.first_line) & (rows <= block.last_line)
            c = (cols >= block.first_pixel) & (cols <= block.last_pixel)
            if r.any() and c.any():
                profile = np.interp(rows[r], block.lines, block.values)
                noise[np.ix_(r, c)] *= profile[:, None]
        return noise


@dataclass(frozen=True)
class Annotation:
    """What the product annotation says about the image and its geolocation grid."""

    lines: int
    samples: int
    range_spacing: float
    azimuth_spacing: float
    pass_direction: str
    gcp_line: np.ndarray
    gcp_pixel: np.ndarray
    gcp_lat: np.ndarray
    gcp_lon: np.ndarray
    gcp_height: np.ndarray
    gcp_incidence: np.ndarray


@dataclass(frozen=True)
class Calibration:
    absolute_constant: float
    luts: dict[str, LutGrid]

    def lut(self, name: str) -> LutGrid:
        return self.luts[COEFFICIENT_LUTS[name]]


def parse_annotation(text: str | bytes) -> Annotation:
    root = ET.fromstring(text)
    points = root.findall(".//geolocationGridPoint")
    if not points:
        raise ValueError("annotation without geolocation grid points")

    def column(tag: str) -> np.ndarray:
        return np.array([float(p.findtext(tag, "nan")) for p in points])

    return Annotation(
        lines=int(_text(root, "imageInformation/numberOfLines")),
        samples=int(_text(root, "imageInformation/numberOfSamples")),
        range_spacing=float(_text(root, "imageInformation/rangePixelSpacing")),
        azimuth_spacing=float(_text(root, "imageInformation/azimuthPixelSpacing")),
        pass_direction=_text(root, "productInformation/pass").lower(),
        gcp_line=column("line"),
        gcp_pixel=column("pixel"),
        gcp_lat=column("latitude"),
        gcp_lon=column("longitude"),
        gcp_height=column("height"),
        gcp_incidence=column("incidenceAngle"),
    )


def parse_calibration(text: str | bytes) -> Calibration:
    root = ET.fromstring(text)
    vectors = root.findall(".//calibrationVector")
    luts = {name: _lut_grid(vectors, name) for name in COEFFICIENT_LUTS.values()}
    constant = float(root.findtext(".//absoluteCalibrationConstant", "1"))
    return Calibration(absolute_constant=constant, luts=luts)


def parse_noise(text: str | bytes) -> NoiseModel:
    root = ET.fromstring(text)
    old = root.findall(".//noiseVector")
    if old:  # IPF < 2.9: one LUT grid
        return NoiseModel(range=_lut_grid(old, "noiseLut"))
    blocks = [
        AzimuthBlock(
            first_line=int(_text(b, "firstAzimuthLine")),
            last_line=int(_text(b, "lastAzimuthLine")),
            first_pixel=int(_text(b, "firstRangeSample")),
            last_pixel=int(_text(b, "lastRangeSample")),
            lines=_numbers(_text(b, "line")),
            values=_numbers(_text(b, "noiseAzimuthLut")),
        )
        for b in root.findall(".//noiseAzimuthVector")
    ]
    return NoiseModel(
        range=_lut_grid(root.findall(".//noiseRangeVector"), "noiseRangeLut"), azimuth=blocks
    )


def _lut_grid(vectors: list[ET.Element], tag: str) -> LutGrid:
    if not vectors:
        raise ValueError(f"no LUT vectors for <{tag}>")
    lines = np.array([int(_text(v, "line")) for v in vectors])
    order = np.argsort(lines, kind="stable")
    pixels = [_numbers(_text(vectors[i], "pixel")) for i in order]
    values = [_numbers(_text(vectors[i], tag)) for i in order]
    return LutGrid(lines=lines[order], pixels=pixels, values=values)


def _text(element: ET.Element, path: str) -> str:
    found = element.find(path if "/" in path else f".//{path}")
    if found is None:
        found = element.find(f".//{path}")
    if found is None or found.text is None:
        raise ValueError(f"no <{path}> in the Sentinel-1 metadata")
    return found.text.strip()


def _numbers(text: str) -> np.ndarray:
    return np.array(text.split(), dtype=np.float64)


# -- STAC items of GRD products in the SAFE layout ------------------------------------------------


def grd_item(safe_dir: Path | str) -> dict[str, Any]:
    """A STAC item (JSON-ready dict) for a GRD product folder in the SAFE layout.

    Assets are keyed as in CDSE's ``sentinel-1-grd`` collection: ``vv`` / ``vh`` (the
    measurement GeoTIFFs) and ``schema-product-vv``, ``schema-calibration-vv``,
    ``schema-noise-vv`` (the XML), so the same collection configuration serves both.
    """
    root = Path(safe_dir)
    assets: dict[str, dict[str, Any]] = {}
    annotation: Annotation | None = None
    for pol in POLARISATIONS:
        key = pol.lower()
        found = {
            key: _one(root / "measurement", f"*-{key}-*.tif*"),
            f"schema-product-{key}": _one(root / "annotation", f"*-{key}-*.xml"),
            f"schema-calibration-{key}": _one(
                root / "annotation/calibration", f"calibration-*-{key}-*.xml"
            ),
            f"schema-noise-{key}": _one(root / "annotation/calibration", f"noise-*-{key}-*.xml"),
        }
        for name, path in found.items():
            if path is not None:
                kind = "image/tiff; application=geotiff" if name == key else "application/xml"
                assets[name] = {
                    "href": str(path),
                    "type": kind,
                    "roles": ["data" if name == key else "metadata"],
                }
        product = found[f"schema-product-{key}"]
        if annotation is None and product is not None:
            annotation = parse_annotation(product.read_bytes())
    if annotation is None:
        raise ValueError(f"{root}: no annotation XML")
    name = root.name.removesuffix(".SAFE")
    start = f"{name[17:21]}-{name[21:23]}-{name[23:25]}T{name[26:28]}:{name[28:30]}:{name[30:32]}Z"
    lon, lat = annotation.gcp_lon, annotation.gcp_lat
    bbox = [float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())]
    corners = _corners(annotation)
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": name,
        "bbox": bbox,
        "geometry": {"type": "Polygon", "coordinates": [corners]},
        "properties": {
            "datetime": start,
            "constellation": "sentinel-1",
            "platform": f"sentinel-{name[1:3].lower()}",
            "sar:instrument_mode": name[4:6],
            "sar:product_type": "GRD",
            "sat:orbit_state": annotation.pass_direction,
        },
        "links": [],
        "assets": assets,
    }


def _one(folder: Path, pattern: str) -> Path | None:
    found = sorted(folder.glob(pattern)) if folder.is_dir() else []
    return found[0] if found else None


def _corners(a: Annotation) -> list[list[float]]:
    """The footprint ring from the geolocation grid's four corner points."""
    ring = []
    for line, pixel in (
        (a.gcp_line.min(), a.gcp_pixel.min()),
        (a.gcp_line.min(), a.gcp_pixel.max()),
        (a.gcp_line.max(), a.gcp_pixel.max()),
        (a.gcp_line.max(), a.gcp_pixel.min()),
    ):
        i = int(np.argmin(np.hypot(a.gcp_line - line, a.gcp_pixel - pixel)))
        ring.append([float(a.gcp_lon[i]), float(a.gcp_lat[i])])
    return [*ring, ring[0]]
