"""Plot the scaling run: wall time against area per path (log-log PNG).

    PYTHON bench/plot.py SCALING_JSON OUT_PNG

Runs with any interpreter that has matplotlib (the harness uses the peer venv). The JSON is
``{"workload": "W1", "points": {path: [[area_km2, seconds], ...]}}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

LABELS = {
    "floor": "hand-written rasterio + numpy (1 thread)",
    "local": "openEO local processing (openeo-processes-dask)",
    "sync": "openeo-airflow sync (POST /result)",
    "batch": "openeo-airflow batch (Airflow, inline engine)",
}


def main() -> None:
    data = json.loads(Path(sys.argv[1]).read_text())
    figure, axis = plt.subplots(figsize=(7, 4.5), dpi=110)
    for path, points in data["points"].items():
        points = [p for p in points if p[1] is not None]
        if not points:
            continue
        xs, ys = zip(*sorted(points), strict=True)
        axis.plot(xs, ys, marker="o", label=LABELS.get(path, path))
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("area (km², 10 m pixels)")
    axis.set_ylabel("wall time (s)")
    axis.set_title(f"{data['workload']}: wall time against area ({data.get('note', '')})")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(sys.argv[2])


if __name__ == "__main__":
    main()
