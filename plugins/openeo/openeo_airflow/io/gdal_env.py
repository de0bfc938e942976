"""Named GDAL configuration profiles, applied the same way in the API, workers and executors.

A stage is told a profile *name* (it travels in task descriptors); each process opens its
files inside ``gdal_env(name)`` (the loader does, in every reader thread). Spark executors get
the same options as environment variables from ``profile_environment(name)``
(``spark.executorEnv.*``), which GDAL reads at start-up.

Credentials are never part of a profile: each profile names the environment variables they
are read from (``CREDENTIALS``), at the moment a file is opened; GDAL also reads the standard
``AWS_*`` variables itself. ``redacted`` is the only form in which options are logged.

What the remote settings do (``bench/gdal_profile_bench.py``, 30 ms per request; figures in
``bench/LOAD.md``):

- ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR``: no directory listing or side-car probes per
  opened file (measured: 1.26x the requests without it for COGs, 3.8x for JPEG2000).
- ``CPL_VSIL_CURL_CHUNK_SIZE`` (10 MiB): JPEG2000 is read in many small sequential pieces; large
  chunks cut its requests 9x (and connections 15 -> 1). For COGs it costs 1.8x the bytes for
  the same requests: our archives with COGs over paid bandwidth may want the default.
- ``VSI_CACHE`` / ``VSI_CACHE_SIZE``: per-file cache of fetched ranges; without it COG reads took
  2.3-4.8x the time for the same requests.
- ``GDAL_HTTP_MAX_RETRY`` / ``GDAL_HTTP_RETRY_DELAY``: GDAL retries 429/5xx itself, with
  backoff (runs of 503s need it: ``tests/test_io_remote.py``); the loader retries whole reads on
  top (``io.source.RetryPolicy``).
- ``GDAL_HTTP_LOW_SPEED_TIME`` / ``GDAL_HTTP_LOW_SPEED_LIMIT`` + ``GDAL_HTTP_TIMEOUT``: a
  stalled transfer aborts instead of hanging a task for hours (GDAL does not retry that abort;
  ``RetryPolicy`` does).
- ``GDAL_HTTP_MERGE_CONSECUTIVE_RANGES``, ``GDAL_INGESTED_BYTES_AT_OPEN`` (a COG header in one
  go), ``GDAL_HTTP_TCP_KEEPALIVE`` (idle connections survive decoding phases),
  ``GDAL_HTTP_MULTIPLEX`` / ``GDAL_HTTP_VERSION=2`` (parallel requests over one HTTP/2
  connection): no measurable change against the loopback server (HTTP/1.1, no idle phases),
  kept for real object stores.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import rasterio
from rasterio.session import Session

log = logging.getLogger(__name__)

# GDAL_CACHEMAX in bytes: rasterio passes integers straight to GDALSetCacheMax64, and GDAL
# reads values >= 100000 as bytes when they come from the environment too.
_MIB = 1024 * 1024

# Options shared by every profile that reads over HTTP / S3.
_REMOTE: dict[str, str | int] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.jp2,.JP2,.xml,.vrt",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_VERSION": "2",
    "CPL_VSIL_CURL_CHUNK_SIZE": str(10 * _MIB),
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
    "GDAL_HTTP_TCP_KEEPALIVE": "YES",
    "GDAL_HTTP_MAX_RETRY": "5",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_TIMEOUT": "120",
    "GDAL_HTTP_CONNECTTIMEOUT": "20",
    "GDAL_HTTP_LOW_SPEED_TIME": "30",
    "GDAL_HTTP_LOW_SPEED_LIMIT": "10240",
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": str(64 * _MIB),
    "GDAL_CACHEMAX": 256 * _MIB,
}

PROFILES: dict[str, dict[str, str | int]] = {
    # Local disk or a shared filesystem. A small block cache was faster than GDAL's default
    # (5 % of RAM) in our measurements (DESIGN.md section 7).
    "local": {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "GDAL_CACHEMAX": 64 * _MIB,
    },
    # Public HTTPS COGs (e.g. Earth Search's sentinel-cogs bucket over https://).
    "https": dict(_REMOTE),
    # Copernicus Data Space Ecosystem's S3 endpoint for the eodata archive (s3://eodata/...).
    "cdse-s3": {
        **_REMOTE,
        "AWS_S3_ENDPOINT": "eodata.dataspace.copernicus.eu",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "AWS_HTTPS": "YES",
    },
    # Copernicus archive on CloudFerro's object store (CREODIAS / WEkEO eodata bucket).
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

# Per profile: GDAL option -> environment variable it is read from (never stored, never logged).
CREDENTIALS: dict[str, dict[str, str]] = {
    "cdse-s3": {
        "AWS_ACCESS_KEY_ID": "CDSE_S3_ACCESS_KEY",
        "AWS_SECRET_ACCESS_KEY": "CDSE_S3_SECRET_KEY",
    },
    "cloudferro-s3": {
        "AWS_ACCESS_KEY_ID": "CLOUDFERRO_S3_ACCESS_KEY",
        "AWS_SECRET_ACCESS_KEY": "CLOUDFERRO_S3_SECRET_KEY",
    },
    "tsystems-s3": {
        "AWS_ACCESS_KEY_ID": "TSYSTEMS_S3_ACCESS_KEY",
        "AWS_SECRET_ACCESS_KEY": "TSYSTEMS_S3_SECRET_KEY",
    },
}

SECRET_MARKERS = ("SECRET", "PASSWORD", "TOKEN", "KEY_ID", "ACCESS_KEY", "AUTHORIZATION", "BEARER")
_logged: set[str] = set()


def gdal_options(profile: str) -> dict[str, str | int]:
    """A copy of the GDAL options of a named profile (without credentials)."""
    try:
        return dict(PROFILES[profile])
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown GDAL profile '{profile}' (known profiles: {known})") from None


def credentials(profile: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The profile's credentials from the environment (only those that are set)."""
    source = os.environ if env is None else env
    return {
        option: source[variable]
        for option, variable in CREDENTIALS.get(profile, {}).items()
        if source.get(variable)
    }


def is_secret(name: str) -> bool:
    upper = name.upper()
    return any(marker in upper for marker in SECRET_MARKERS)


def redacted(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options safe to log: secret values replaced by ``***``."""
    return {k: "***" if is_secret(k) else v for k, v in options.items()}


def profile_environment(profile: str) -> dict[str, str]:
    """The profile as environment variables (for Spark executors' ``executorEnv``).

    Credentials are not included: mount them as secrets under the variable names of
    ``CREDENTIALS`` (or the standard ``AWS_*`` ones).
    """
    return {k: str(v) for k, v in gdal_options(profile).items()}


def gdal_env(profile: str, **overrides: Any) -> rasterio.Env:
    """A ``rasterio.Env`` with the profile's options, credentials and ``overrides``.

    Use it with ``with``; the options (redacted) are logged once per process and profile.
    """
    options: dict[str, Any] = {**gdal_options(profile), **overrides}
    secrets = credentials(profile)
    if profile not in _logged:
        _logged.add(profile)
        log.info(
            "GDAL profile %s: %s (credentials from the environment: %s)",
            profile,
            redacted(options),
            ", ".join(sorted(secrets)) or "none",
        )
    if secrets:  # rasterio accepts AWS credentials only through a session
        return rasterio.Env(session=_CredentialSession(secrets), **options)
    return rasterio.Env(**options)


class _CredentialSession(Session):
    """Hands GDAL the credentials of a profile (rasterio's ``AWSSession`` needs boto3)."""

    def __init__(self, options: Mapping[str, str]) -> None:
        self._options = dict(options)

    @property
    def credentials(self) -> dict[str, str]:
        return redacted(self._options)

    def get_credential_options(self) -> dict[str, str]:
        return dict(self._options)

    def __repr__(self) -> str:
        return f"_CredentialSession({sorted(self._options)})"
