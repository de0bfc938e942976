"""Deterministic W3 polygons: 50 irregular convex polygons inside a workload extent.

Laid out on a 10 x 5 grid of cells over the extent, each a jittered 7-gon filling about half
of its cell; written as a GeoJSON FeatureCollection in EPSG:4326 (what openEO's
``aggregate_spatial`` takes). The floor transforms them back to the archive's UTM zone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.warp import transform_geom

from bench.workloads import EPSG, N_POLYGONS, extent


def polygons_utm(side_km: float, seed: int = 7) -> list[dict[str, Any]]:
    box = extent(side_km)
    rng = np.random.default_rng(seed)
    cols, rows = 10, N_POLYGONS // 10
    width = (box["east"] - box["west"]) / cols
    height = (box["north"] - box["south"]) / rows
    out = []
    for i in range(N_POLYGONS):
        r, c = divmod(i, cols)
        cx = box["west"] + (c + 0.5 + rng.uniform(-0.1, 0.1)) * width
        cy = box["south"] + (r + 0.5 + rng.uniform(-0.1, 0.1)) * height
        angles = np.sort(rng.uniform(0, 2 * np.pi, 7))
        radius = rng.uniform(0.3, 0.45, 7)
        ring = [
            [float(cx + rad * width * np.cos(a)), float(cy + rad * height * np.sin(a))]
            for a, rad in zip(angles, radius, strict=True)
        ]
        out.append({"type": "Polygon", "coordinates": [[*ring, ring[0]]]})
    return out


def write_polygons(side_km: float, path: Path) -> Path:
    """The polygons as a WGS84 GeoJSON FeatureCollection (ids 0..49, in order)."""
    features = []
    for index, geometry in enumerate(polygons_utm(side_km)):
        wgs84 = transform_geom(f"EPSG:{EPSG}", "EPSG:4326", geometry, precision=9)
        features.append(
            {"type": "Feature", "id": index, "properties": {"id": index}, "geometry": wgs84}
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path
