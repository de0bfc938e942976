"""The peer's own virtual environment (openEO local processing), created by the harness.

``pip install "openeo[localprocessing]"`` fails here: openeo-processes-dask's
``[implementations]`` extra requires the ``gdal`` Python bindings, which need Debian's
libgdal-dev. As DESIGN section 7 measured, installing the implementation dependencies
themselves (rasterio brings its own GDAL) and then ``openeo-processes-dask`` with
``--no-deps`` works. The same venv holds matplotlib for the plot (bench/plot.py), so that the
project's own venv needs nothing extra. The venv lives outside git (default
``~/.cache/openeo-airflow-bench/peer-venv``) and is reused while its marker matches.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

PEER_DEPENDENCIES = [
    "openeo>=0.40",
    "openeo-pg-parser-networkx>=2025.10",
    "dask[array,dataframe,distributed]>=2023.4.0",
    "dask-geopandas>=0.4.3",
    "geopandas>=0.11.1",
    "joblib>=1.3.2",
    "odc-geo>=0.4.1,<1",
    "odc-loader[zarr]>=0.5",
    "odc-stac>=0.3.9",
    "planetary_computer>=0.5.1",
    "pystac>=1.12.0",
    "pystac_client>=0.6.1",
    "rasterio>=1.3.4",
    "rioxarray>=0.13,<1",
    "stac_validator>=3.3.1",
    "xarray>=2022.11.0",
    "xvec==0.2.0",
    "scipy>=1.11.3,<2",
    "pyproj",
    "pyarrow>=15.0.2",
    "geoparquet==0.0.3",
    "matplotlib",
]
PEER_PACKAGE = "openeo-processes-dask"
MARKER = ".bench-peer-ready"


def ensure_peer_venv(venv: Path, log: Path) -> Path:
    """Create (or reuse) the peer venv; return its python. Raises on failure (see ``log``)."""
    python = venv / "bin" / "python"
    marker = venv / MARKER
    wanted = "\n".join([*PEER_DEPENDENCIES, PEER_PACKAGE])
    if python.exists() and marker.is_file() and marker.read_text() == wanted:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    with open(log, "w") as out:
        if uv:
            steps = [
                [uv, "venv", "--python", sys.executable, str(venv)],
                [uv, "pip", "install", "--python", str(python), *PEER_DEPENDENCIES],
                [uv, "pip", "install", "--python", str(python), "--no-deps", PEER_PACKAGE],
            ]
        else:
            pip = [str(python), "-m", "pip", "install", "--quiet"]
            steps = [
                [sys.executable, "-m", "venv", str(venv)],
                [*pip, *PEER_DEPENDENCIES],
                [*pip, "--no-deps", PEER_PACKAGE],
            ]
        for step in steps:
            out.write(f"$ {' '.join(step)}\n")
            out.flush()
            subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, check=True)
    marker.write_text(wanted)
    return python
