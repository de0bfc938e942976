"""One run of a workload through openEO local processing (the peer), in the peer's own venv.

    PEER_PYTHON bench/peer.py --workload W1 --side-km 1 --stac URL --out FILE [--polygons F]

Prints one JSON line: ``{"seconds": ...}`` (graph building + execution + writing the result,
after imports) or ``{"error": ...}``. Offline adjustments (DESIGN section 7): the online STAC
validation of openeo-processes-dask's ``load_stac`` (it downloads JSON schemas) is replaced by
a local check of the document's ``type`` and ``stac_version``; the STAC API is the harness's
loopback server (bench/stac_api.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workloads import WORKLOADS, build


def local_validate_stac(url: str) -> str:
    """What stac-validator answers for a STAC document ("CATALOG", "COLLECTION", "ITEM")."""
    with urllib.request.urlopen(url, timeout=30) as response:
        document = json.load(response)
    kinds = {"Catalog": "CATALOG", "Collection": "COLLECTION", "Feature": "ITEM"}
    if "stac_version" not in document or document.get("type") not in kinds:
        raise ValueError(f"{url} is not a STAC catalog, collection or item")
    return kinds[document["type"]]


def write_raster(array, path: Path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    x_dim, y_dim = array.openeo.x_dim, array.openeo.y_dim
    other = [d for d in array.dims if d not in (x_dim, y_dim)]
    array = array.transpose(*other, y_dim, x_dim)
    data = np.asarray(array.values, dtype=np.float32).reshape(-1, array.shape[-2], array.shape[-1])
    xs, ys = array[x_dim].values, array[y_dim].values
    dx, dy = float(xs[1] - xs[0]), float(ys[0] - ys[1])
    if dy < 0:  # south-up: flip to north-up
        data, ys, dy = data[:, ::-1], ys[::-1], -dy
    transform = from_origin(float(xs[0]) - dx / 2, float(ys[0]) + dy / 2, dx, dy)
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
               "count": data.shape[0], "dtype": "float32", "transform": transform,
               "crs": array.rio.crs}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def write_table(array, path: Path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    geometry = next(d for d in array.dims if "geom" in str(d))
    other = [d for d in array.dims if d != geometry]
    values = np.asarray(array.transpose(geometry, *other).values, dtype=np.float64)
    values = values.reshape(values.shape[0], -1)
    rows = [[None if np.isnan(v) else float(v) for v in row] for row in values]
    path.write_text(json.dumps({"values": rows}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", required=True)
    parser.add_argument("--side-km", type=float, required=True)
    parser.add_argument("--stac", required=True, help="collection URL on the loopback STAC API")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--polygons", type=Path)
    args = parser.parse_args()

    import openeo_processes_dask.process_implementations.cubes.load as pd_load
    from openeo.local import LocalConnection

    pd_load._validate_stac = local_validate_stac
    polygons = json.loads(args.polygons.read_text()) if args.polygons else None
    started = time.perf_counter()
    try:
        connection = LocalConnection([])

        def load(bands, spatial_extent, temporal_extent):  # type: ignore[no-untyped-def]
            return connection.load_stac(
                args.stac,
                spatial_extent=spatial_extent,
                temporal_extent=temporal_extent,
                bands=bands,
            )

        cube = build(args.workload, load, args.side_km, polygons)
        result = cube.execute()
        if WORKLOADS[args.workload].output == "table":
            write_table(result, args.out)
        else:
            write_raster(result, args.out)
    except Exception as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"[:2000]}))
        return
    print(json.dumps({"seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
