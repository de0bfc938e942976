"""``sar_backscatter``: computed by the loader, so here it only hands the loaded cube on.

The compiler attaches a ``sar_backscatter`` that follows a ``load_collection`` to that source
(``Source.backscatter``); the loader (``io.sar`` for GRD from the archive, ``io.sentinelhub``
for Sentinel Hub) returns backscatter and marks the cube. A cube without the mark reached this
process some other way (e.g. inside a user-defined process, or after another process): then
its values are still digital numbers, so refuse instead of passing them off as backscatter.
"""

from __future__ import annotations

from typing import Any

import xarray as xr

from openeo_airflow.core.errors import FeatureUnsupported

from .registry import process

# The mark the backscatter loaders put on their cubes (io.sar.BACKSCATTER_ATTR; the layers
# keep io and processes apart, hence the repeated name).
BACKSCATTER_ATTR = "openeo_airflow:backscatter"


@process("sar_backscatter")
def sar_backscatter(
    data: Any,
    coefficient: str | None = "gamma0-terrain",
    elevation_model: str | None = None,
    mask: bool = False,
    contributing_area: bool = False,
    local_incidence_angle: bool = False,
    ellipsoid_incidence_angle: bool = False,
    noise_removal: bool = True,
    options: dict[str, Any] | None = None,
) -> Any:
    if not isinstance(data, xr.DataArray) or BACKSCATTER_ATTR not in data.attrs:
        raise FeatureUnsupported(
            "sar_backscatter: 'data' must come directly from load_collection of a Sentinel-1 "
            "collection in the same process graph (backscatter is computed while loading)."
        )
    return data
