"""Named GDAL configuration profiles, applied the same way in the API, workers and executors.

A stage is told a profile *name* (it travels in task descriptors); each process opens its
files inside ``gdal_env(name)``. Credentials are not part of a profile: GDAL reads them from
the usual environment variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ...).
"""

from __future__ import annotations

from typing import Any

import rasterio

# GDAL_CACHEMAX in bytes: rasterio passes integers straight to GDALSetCacheMax64, and GDAL
# reads values >= 100000 as bytes when they come from the environment too.
_MIB = 1024 * 1024

# Options shared by every profile that reads over HTTP / S3.
_REMOTE: dict[str, str | int] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no directory listing per opened file
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.jp2,.JP2,.xml,.vrt",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_VERSION": "2",
    "GDAL_HTTP_MAX_RETRY": "5",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",  # COG header in one request
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": "67108864",
    "GDAL_CACHEMAX": 256 * _MIB,
}

PROFILES: dict[str, dict[str, str | int]] = {
    # Local disk or a shared filesystem. A small block cache was faster than GDAL's default
    # (5 % of RAM) in our measurements (DESIGN.md section 7).
    "local": {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "GDAL_CACHEMAX": 64 * _MIB,
    },
    # Copernicus archive on CloudFerro's object store (CREODIAS / CDSE eodata bucket).
    "cloudferro-s3": {
        **_REMOTE,
        "AWS_S3_ENDPOINT": "eodata.cloudferro.com",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "AWS_HTTPS": "YES",
    },
    # Copernicus archive on T-Systems' Open Telekom Cloud object storage (OBS).
    "tsystems-s3": {
        **_REMOTE,
        "AWS_S3_ENDPOINT": "obs.eu-de.otc.t-systems.com",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "AWS_HTTPS": "YES",
    },
    # Public AWS buckets such as Element 84's sentinel-cogs (us-west-2), read unsigned.
    "aws-s3": {
        **_REMOTE,
        "AWS_REGION": "us-west-2",
        "AWS_NO_SIGN_REQUEST": "YES",
    },
}


def gdal_options(profile: str) -> dict[str, str | int]:
    """A copy of the GDAL options of a named profile."""
    try:
        return dict(PROFILES[profile])
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown GDAL profile '{profile}' (known profiles: {known})") from None


def gdal_env(profile: str, **overrides: Any) -> rasterio.Env:
    """A ``rasterio.Env`` with the profile's options (plus ``overrides``); use it with ``with``."""
    options: dict[str, Any] = {**gdal_options(profile), **overrides}
    return rasterio.Env(**options)
