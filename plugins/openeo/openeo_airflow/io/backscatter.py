"""``sar_backscatter``'s arguments, checked once, for both backscatter loaders.

The compiler records the arguments of a ``sar_backscatter`` node on the ``Source`` it follows;
the loader (``io.sar`` for GRD from the archive, ``io.sentinelhub`` for Sentinel Hub) parses
them here, then checks what its own back-end can do. Every refusal names the parameter: a user
never gets a silently different product.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openeo_airflow.core.errors import (
    OpenEOError,
    ProcessParameterInvalid,
    ProcessParameterUnsupported,
)

PROCESS = "sar_backscatter"
COEFFICIENTS = ("beta0", "sigma0-ellipsoid", "sigma0-terrain", "gamma0-ellipsoid", "gamma0-terrain")
TERRAIN_COEFFICIENTS = ("sigma0-terrain", "gamma0-terrain")
FLAGS = (
    "mask",
    "contributing_area",
    "local_incidence_angle",
    "ellipsoid_incidence_angle",
    "noise_removal",
)
# The bands sar_backscatter adds, in the order of its parameters.
EXTRA_BANDS = ("mask", "contributing_area", "local_incidence_angle", "ellipsoid_incidence_angle")


class DigitalElevationModelInvalid(OpenEOError):
    """``sar_backscatter``'s own exception (its spec lists it), raised as an openEO error."""

    code = "DigitalElevationModelInvalid"
    status = 400
    template = (
        "The digital elevation model specified is either not a DEM or can't be used with the "
        "data cube given."
    )


@dataclass(frozen=True)
class Backscatter:
    """Parsed ``sar_backscatter`` arguments (spec defaults filled in)."""

    coefficient: str | None = "gamma0-terrain"
    elevation_model: str | None = None
    mask: bool = False
    contributing_area: bool = False
    local_incidence_angle: bool = False
    ellipsoid_incidence_angle: bool = False
    noise_removal: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def extra_bands(self) -> list[str]:
        return [name for name in EXTRA_BANDS if getattr(self, name)]

    @property
    def terrain(self) -> bool:
        return self.coefficient in TERRAIN_COEFFICIENTS


def parse_backscatter(arguments: Mapping[str, Any]) -> Backscatter:
    """The arguments of a ``sar_backscatter`` node (without ``data``) as ``Backscatter``."""
    unknown = set(arguments) - {"data", "coefficient", "elevation_model", "options", *FLAGS}
    if unknown:
        name = sorted(unknown)[0]
        raise ProcessParameterUnsupported(process=PROCESS, parameter=name)
    coefficient = arguments.get("coefficient", "gamma0-terrain")
    if coefficient is not None and coefficient not in COEFFICIENTS:
        raise invalid("coefficient", f"{coefficient!r} is not one of {', '.join(COEFFICIENTS)}")
    dem = arguments.get("elevation_model")
    if dem is not None and not isinstance(dem, str):
        raise invalid("elevation_model", "expected a collection id or null")
    flags = {}
    for name in FLAGS:
        value = arguments.get(name, name == "noise_removal")
        if not isinstance(value, bool):
            raise invalid(name, f"expected true or false, got {value!r}")
        flags[name] = value
    options = arguments.get("options") or {}
    if not isinstance(options, dict):
        raise invalid("options", "expected an object")
    return Backscatter(coefficient=coefficient, elevation_model=dem, options=options, **flags)


def invalid(parameter: str, reason: str) -> ProcessParameterInvalid:
    return ProcessParameterInvalid(process=PROCESS, parameter=parameter, reason=reason)


def unsupported(parameter: str, reason: str) -> ProcessParameterUnsupported:
    return ProcessParameterUnsupported(
        f"Process '{PROCESS}' does not support parameter '{parameter}' here: {reason}",
        process=PROCESS,
        parameter=parameter,
    )


def no_dem(parameter: str, collection_id: str, reason: str) -> DigitalElevationModelInvalid:
    return DigitalElevationModelInvalid(
        f"sar_backscatter: '{parameter}' {reason}, but no digital elevation model is configured "
        f"for the GRD products of '{collection_id}' (ellipsoid-based geocoding only). Use "
        "coefficient 'sigma0-ellipsoid', 'gamma0-ellipsoid' or 'beta0' and leave "
        "'elevation_model' null, or a Sentinel Hub-backed Sentinel-1 collection."
    )
