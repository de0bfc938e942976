"""On-the-fly ``sar_backscatter`` (GRD from the archive) against plain loading of the same scene.

    .venv/bin/python bench/sar_bench.py [--scale 4] [--resolution 40] [--runs 3]

The scene: the real calibration, noise and annotation XML of S1A IW GRDH 2021-01-19
(``shared/data/s1_safe_metadata``) with the real digital numbers of the 2018 scene in
``shared/data/s1_grd_raw`` as its measurement (1280 x 837, repeated ``--scale`` times in each
direction to get closer to a full product's 25931 x 16854), written to a temporary folder.

- backscatter: ``io.sar.load_backscatter`` with ``sigma0-ellipsoid``, thermal noise removal,
  VV + VH, onto a UTM grid of ``--resolution`` metres over most of the scene;
- plain: the same two measurement rasters read and warped onto the same grid by GDAL from the
  same geolocation grid (GCPs, bilinear) — what loading without ``sar_backscatter`` has to do.
  (The project's generic loader cannot geocode GCP-only rasters yet: see the closing note.)

Prints seconds per output megapixel (per band) for both, median of ``--runs``, and the ratio.

With ``--tile N`` it also runs the batch load stage's way (a load plan, then one read per
``N`` px output tile, inline) and prints its time and memory beside the whole-cube load's
(``peak_mb``: resident memory above the start, sampled; per tile for the tiled run) and the
largest difference between the two cubes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import reproject

from openeo_airflow.catalog.config import BandConfig, CollectionConfig, SarConfig
from openeo_airflow.catalog.sentinel1 import grd_item, parse_annotation
from openeo_airflow.compiler.plan import Source
from openeo_airflow.cube import cube_crs, cube_transform
from openeo_airflow.engine.loadplan import prepare_load
from openeo_airflow.engine.measure import meter
from openeo_airflow.engine.tiled import inline_mapper, run_load
from openeo_airflow.engine.workspace import JobWorkspace
from openeo_airflow.io.sar import load_backscatter
from openeo_airflow.io.store import read_cube

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PRODUCT = "S1A_IW_GRDH_1SDV_20210119T031653_20210119T031718_036201_043ED0_8255"
RAW = "s1_grd_raw/S1A_IW_GRDH_1SDV_20180716T004042_20180716T004107_022812_02792A_FD5B"
EXTENT = {"west": 32.6, "south": -18.9, "east": 34.5, "north": -17.5}


def write_scene(root: Path, scale: int) -> Path:
    safe = root / f"{PRODUCT}.SAFE"
    with zipfile.ZipFile(SHARED / "s1_safe_metadata" / f"{PRODUCT}.zip") as archive:
        for name in archive.namelist():
            if name.endswith(".xml") and "/annotation/" in name:
                target = safe / name.split(".SAFE/", 1)[1]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(name))
    (safe / "measurement").mkdir(parents=True)
    for pol in ("vv", "vh"):
        with rasterio.open(SHARED / RAW / f"measurement/iw-{pol}.tiff") as src:
            dn = src.read(1).repeat(scale, 0).repeat(scale, 1)
        profile = {"driver": "GTiff", "dtype": "uint16", "count": 1, "tiled": True}
        profile.update(width=dn.shape[1], height=dn.shape[0], compress="deflate")
        with rasterio.open(
            safe / "measurement" / f"s1a-iw-grd-{pol}-bench.tiff", "w", **profile
        ) as dst:
            dst.write(dn, 1)
    return safe


def plain_load(safe: Path, template: np.ndarray, transform: object, crs: object) -> np.ndarray:
    """Both bands read and warped by GDAL from the annotation's GCPs (measurement pixels)."""
    annotation = parse_annotation(next((safe / "annotation").glob("*-vv-*.xml")).read_bytes())
    out = []
    for path in sorted((safe / "measurement").glob("*.tiff")):
        with rasterio.open(path) as src:
            sy, sx = src.height / annotation.lines, src.width / annotation.samples
            gcps = [
                GroundControlPoint(row=(line + 0.5) * sy, col=(pixel + 0.5) * sx, x=lon, y=lat)
                for line, pixel, lon, lat in zip(
                    annotation.gcp_line,
                    annotation.gcp_pixel,
                    annotation.gcp_lon,
                    annotation.gcp_lat,
                    strict=True,
                )
            ]
            dn = src.read(1)
        values = np.full(template.shape, np.nan, dtype=np.float32)
        reproject(
            dn,
            values,
            gcps=gcps,
            src_crs="EPSG:4326",
            dst_transform=transform,
            dst_crs=crs,
            resampling=Resampling.bilinear,
            src_nodata=0,
            dst_nodata=np.nan,
        )
        out.append(values)
    return np.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--resolution", type=float, default=40)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tile", type=int, default=0, help="also load per tile of N px")
    args = parser.parse_args()
    # The bench's measurement files carry no georeferencing of their own (the XML does).
    warnings.simplefilter("ignore", NotGeoreferencedWarning)
    with tempfile.TemporaryDirectory(prefix="sar-bench-") as tmp:
        root = Path(tmp)
        safe = write_scene(root, args.scale)
        (root / "item.json").write_text(json.dumps(grd_item(safe)))
        catalog = {
            "type": "Catalog",
            "id": "b",
            "stac_version": "1.0.0",
            "description": "bench",
            "links": [{"rel": "item", "href": "./item.json"}],
        }
        (root / "catalog.json").write_text(json.dumps(catalog))
        bands = [BandConfig("VV", "vv", nodata=0), BandConfig("VH", "vh", nodata=0)]
        cfg = CollectionConfig(
            id="S1",
            title="S1",
            description="bench",
            license="proprietary",
            catalog=str(root / "catalog.json"),
            resolution=args.resolution,
            bands=bands,
            sar=SarConfig(),
        )
        arguments = {"coefficient": "sigma0-ellipsoid", "noise_removal": True}
        times_sar, times_plain = [], []
        cube = None
        for _ in range(args.runs):
            started = time.perf_counter()
            cube = load_backscatter(
                cfg, spatial_extent=EXTENT, temporal_extent=None, bands=None, arguments=arguments
            )
            times_sar.append(time.perf_counter() - started)
        assert cube is not None
        template = cube.values[0, 0]
        for _ in range(args.runs):
            started = time.perf_counter()
            plain = plain_load(safe, template, cube_transform(cube), cube_crs(cube))
            times_plain.append(time.perf_counter() - started)
        megapixels = template.size * 2 / 1e6  # two bands
        with rasterio.open(next((safe / "measurement").glob("*.tiff"))) as src:
            source = f"{src.width} x {src.height}"
        sar_s = statistics.median(times_sar)
        plain_s = statistics.median(times_plain)
        valid = np.isfinite(cube.values[0]).mean()
        print(
            f"measurement rasters: 2 x {source} px; output grid {template.shape[1]} x "
            f"{template.shape[0]} px at {args.resolution:g} m x 2 bands = {megapixels:.2f} Mpx "
            f"({valid:.0%} inside the scene)"
        )
        print(
            f"backscatter (sigma0-ellipsoid, noise removed): {sar_s:.2f} s = "
            f"{sar_s / megapixels:.3f} s/Mpx (runs: {', '.join(f'{t:.2f}' for t in times_sar)})"
        )
        print(
            f"plain load (GDAL GCP warp of the DN):          {plain_s:.2f} s = "
            f"{plain_s / megapixels:.3f} s/Mpx (runs: {', '.join(f'{t:.2f}' for t in times_plain)})"
        )
        print(f"ratio backscatter / plain: {sar_s / plain_s:.2f}")
        assert plain.shape[0] == 2
        if args.tile:
            compare_tiled(cfg, arguments, root, args.tile)


def compare_tiled(cfg: CollectionConfig, arguments: dict[str, Any], root: Path, tile: int) -> None:
    """The whole-cube load against the batch load stage's tiled one (same plan, inline)."""
    with meter() as whole_measured:
        whole = load_backscatter(
            cfg, spatial_extent=EXTENT, temporal_extent=None, bands=None, arguments=arguments
        )
    source = Source(
        node_id="s1",
        process_id="load_collection",
        collection_id=cfg.id,
        spatial_extent=EXTENT,
        backscatter=arguments,
    )
    workspace = JobWorkspace(root / "job")
    plan = prepare_load(source, cfg, "local", 0.0)
    workspace.write_json(workspace.load_plan_file("s1"), plan.to_dict())
    tiled_measured = run_load(workspace, "s1", tile, inline_mapper)
    tiled = read_cube(workspace.source_cube("s1")).values
    both = np.isfinite(tiled) & np.isfinite(whole.values) & (whole.values > 0)
    relative = np.abs(tiled[both] - whole.values[both]) / whole.values[both]
    tiles = -(-whole.sizes["y"] // tile) * -(-whole.sizes["x"] // tile)
    print(
        f"whole cube: {whole_measured.seconds:.2f} s, peak {whole_measured.peak_mb:.0f} MiB; "
        f"tiled ({tiles} tiles of {tile} px, one after the other): "
        f"{tiled_measured.seconds:.2f} s, peak {tiled_measured.peak_mb:.0f} MiB per tile; "
        f"relative difference median {np.median(relative):.1e}, "
        f"99th percentile {np.percentile(relative, 99):.1e}"
    )


if __name__ == "__main__":
    main()
