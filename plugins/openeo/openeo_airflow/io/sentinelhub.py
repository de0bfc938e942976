"""Collections served by the Sentinel Hub Process API, through the ``sentinelhub`` package.

A load becomes: one Catalog API search (which days have data in the extent and period;
``prepare_sentinelhub``, in batch jobs by the size task), then one Process API request per
(day, chunk of the grid read; ``read_sentinelhub``: the whole cube in synchronous processing,
one output tile per load task in batch jobs). Each request asks for exactly the chunk's grid
(bbox in the cube's CRS, width x height pixels), so the returned GeoTIFF drops into the cube
without resampling. Chunks are at most ``max_pixels`` (the service's limit, 2500) a side.
The evalscript is generated from the requested bands and their units; no-data (``dataMask``
0) becomes NaN inside the evalscript (FLOAT32 output).

Faults: the ``sentinelhub`` client waits as the service's ``Retry-After`` says (in
milliseconds, the service's convention) on 429, up to ``max_retries`` times, and retries 5xx
and connection errors with exponential backoff. Tokens: the session renews a token before it
expires; a 401 (token revoked or expired early by the server's clock) renews it once and
repeats the request. Credentials come from environment variables or secret files named in the
configuration, never from the YAML itself, and are never logged.

Processing units (the ``X-ProcessingUnits-Spent`` response header) are summed per load and
recorded on the cube (``USAGE_ATTR``) and in the log.

A Batch Process API path for large areas would reuse ``ShLoad`` (evalscript, processing,
days) and replace the per-tile requests by one batch request writing tiles to object storage.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from pyproj import Transformer
from rasterio.io import MemoryFile
from sentinelhub import CRS as ShCRS
from sentinelhub import (
    BBox,
    DataCollection,
    MimeType,
    MosaickingOrder,
    SentinelHubDownloadClient,
    SentinelHubRequest,
    SentinelHubSession,
    SHConfig,
)
from sentinelhub.api.base_request import InputDataDict
from sentinelhub.constants import RequestType
from sentinelhub.download.models import DownloadRequest, DownloadResponse
from sentinelhub.exceptions import DownloadFailedException, OutOfRequestsException

from openeo_airflow.catalog.config import BandConfig, CollectionConfig, SentinelHubConfig
from openeo_airflow.core.errors import InfrastructureBusy, Internal, ProcessParameterInvalid
from openeo_airflow.cube import make_cube
from openeo_airflow.io.backscatter import (
    Backscatter,
    DigitalElevationModelInvalid,
    parse_backscatter,
    unsupported,
)
from openeo_airflow.io.grid import Grid, target_grid, tiles
from openeo_airflow.io.reader import parse_spatial_extent, parse_temporal_extent, select_bands
from openeo_airflow.io.sar import BACKSCATTER_ATTR

log = logging.getLogger(__name__)

USAGE_ATTR = "openeo_airflow:usage"
SECRETS_DIR_ENV = "OPENEO_AIRFLOW_SECRETS_DIR"
CATALOG_PATH = "/api/v1/catalog/1.0.0/search"
BACK_COEFFICIENTS = {
    "beta0": "BETA0",
    "sigma0-ellipsoid": "SIGMA0_ELLIPSOID",
    "gamma0-ellipsoid": "GAMMA0_ELLIPSOID",
    "gamma0-terrain": "GAMMA0_TERRAIN",
}
DEM_INSTANCES = {
    "COPERNICUS_30": "COPERNICUS_30",
    "COPERNICUS_90": "COPERNICUS_90",
    "MAPZEN": "MAPZEN",
}
DEFAULT_DEM = "COPERNICUS_30"
# sar_backscatter's extra bands -> the service's band (and its units).
SAR_BANDS = {
    "mask": ("dataMask", "DN"),
    "contributing_area": ("scatteringArea", "SQUARE_METERS"),
    "local_incidence_angle": ("localIncidenceAngle", "DEGREES"),
}
SH_OPTIONS = ("speckleFilter", "orthorectify", "radiometricTerrainOversampling", "upsampling")


def read_secret(name: str, env: Mapping[str, str] | None = None) -> str:
    """A credential from the environment variable ``name``, else from the file ``name`` in
    ``$OPENEO_AIRFLOW_SECRETS_DIR`` (e.g. a mounted Kubernetes secret)."""
    environ = os.environ if env is None else env
    if environ.get(name):
        return str(environ[name])
    folder = environ.get(SECRETS_DIR_ENV)
    if folder and (Path(folder) / name).is_file():
        return (Path(folder) / name).read_text(encoding="utf-8").strip()
    raise Internal(
        message=f"Sentinel Hub credentials are not configured: set the environment variable "
        f"{name} or put it in a file of {SECRETS_DIR_ENV}."
    )


def sh_config(sh: SentinelHubConfig, env: Mapping[str, str] | None = None) -> SHConfig:
    config = SHConfig(use_defaults=True)  # never ~/.config/sentinelhub: all from our config
    config.sh_base_url = sh.base_url
    config.sh_token_url = (
        sh.token_url or f"{sh.base_url}/auth/realms/main/protocol/openid-connect/token"
    )
    config.sh_client_id = read_secret(sh.client_id_env, env)
    config.sh_client_secret = read_secret(sh.client_secret_env, env)
    config.max_retries = sh.max_retries  # 429 answers tolerated per request
    config.max_download_attempts = 3  # 5xx / connection errors ...
    config.download_sleep_time = 1.0  # ... retried after 1 s, then 3 s (the client's x3)
    return config


_SESSIONS: dict[tuple[str, str], SentinelHubSession] = {}
_SESSIONS_LOCK = threading.Lock()


def session_for(config: SHConfig, *, renew: bool = False) -> SentinelHubSession:
    """One OAuth session per (token URL, client id) and process; it renews its own token
    before expiry. ``renew``: drop the cached one (the service refused its token)."""
    key = (config.sh_token_url, config.sh_client_id)
    # requests-oauthlib logs the token request's body, client secret included, at DEBUG.
    oauth_log = logging.getLogger("requests_oauthlib")
    if oauth_log.getEffectiveLevel() < logging.INFO:
        oauth_log.setLevel(logging.INFO)
    with _SESSIONS_LOCK:
        if renew or key not in _SESSIONS:
            _SESSIONS[key] = SentinelHubSession(config=config)
        return _SESSIONS[key]


class ShClient:
    """Downloads through ``sentinelhub``'s client; counts processing units; renews tokens."""

    def __init__(self, config: SHConfig, threads: int = 2) -> None:
        self.config, self.threads = config, threads
        self.processing_units = 0.0
        self.lock = threading.Lock()

    def fetch(self, requests: Sequence[DownloadRequest]) -> list[DownloadResponse]:
        for renew in (False, True):
            client = SentinelHubDownloadClient(
                config=self.config, session=session_for(self.config, renew=renew)
            )
            try:
                responses = client.download(
                    list(requests), max_threads=self.threads, decode_data=False
                )
            # OutOfRequestsException is a DownloadFailedException: test it first.
            except OutOfRequestsException as error:
                raise InfrastructureBusy(
                    f"Sentinel Hub kept answering 429 (rate limit) after "
                    f"{self.config.max_retries} attempts; try again later."
                ) from error
            except DownloadFailedException as error:
                status = getattr(getattr(error, "request_exception", None), "response", None)
                if not renew and getattr(status, "status_code", None) == 401:
                    log.info("Sentinel Hub refused the token; renewing it and retrying")
                    continue
                raise Internal(
                    message=f"Sentinel Hub request failed: {_first_line(error)}"
                ) from error
            with self.lock:
                self.processing_units += sum(_units(r) for r in responses)
            return list(responses)
        raise AssertionError("unreachable")


def _units(response: DownloadResponse) -> float:
    headers = {k.lower(): v for k, v in (response.headers or {}).items()}
    try:
        return float(headers.get("x-processingunits-spent", 0) or 0)
    except ValueError:
        return 0.0


def _first_line(error: Exception) -> str:
    return " ".join(str(error).split())


def evalscript(inputs: Sequence[tuple[str, str]]) -> str:
    """Evalscript V3 returning the ``(band, units)`` inputs as FLOAT32, NaN where the service
    has no data (``dataMask`` 0; ``dataMask`` itself stays 0/1 when requested)."""
    names = [name for name, _ in inputs]
    units = [unit for _, unit in inputs]
    input_bands = [*names, "dataMask"] if "dataMask" not in names else names
    input_units = [*units, "DN"] if "dataMask" not in names else units
    values = ", ".join(
        f"s.{name}" if name == "dataMask" else f"(s.dataMask === 0 ? NaN : s.{name})"
        for name in names
    )
    band_list = ", ".join(f'"{n}"' for n in input_bands)
    unit_list = ", ".join(f'"{u}"' for u in input_units)
    return (
        "//VERSION=3\n"
        "function setup() {\n"
        "  return {\n"
        f"    input: [{{bands: [{band_list}], units: [{unit_list}]}}],\n"
        f'    output: {{id: "default", bands: {len(names)}, sampleType: "FLOAT32"}}\n'
        "  };\n"
        "}\n"
        "function evaluatePixel(s) {\n"
        f"  return [{values}];\n"
        "}\n"
    )


def backscatter_processing(params: Backscatter, collection_id: str) -> dict[str, Any]:
    """``sar_backscatter`` arguments as the Process API's S1 ``processing`` options."""
    if params.coefficient is None or params.coefficient not in BACK_COEFFICIENTS:
        raise unsupported(
            "coefficient",
            f"Sentinel Hub computes {', '.join(BACK_COEFFICIENTS)}, not {params.coefficient!r}",
        )
    if not params.noise_removal:
        raise unsupported("noise_removal", "Sentinel Hub always removes thermal noise")
    if params.ellipsoid_incidence_angle:
        raise unsupported("ellipsoid_incidence_angle", "Sentinel Hub does not provide that band")
    for key in params.options:
        if key not in SH_OPTIONS:
            raise unsupported(f"options.{key}", f"supported options: {', '.join(SH_OPTIONS)}")
    dem_bands = params.contributing_area or params.local_incidence_angle
    orthorectify = params.options.get(
        "orthorectify", params.terrain or params.elevation_model is not None or dem_bands
    )
    if (params.terrain or dem_bands) and orthorectify is not True:
        raise unsupported("options.orthorectify", "terrain-based outputs need orthorectification")
    processing: dict[str, Any] = {
        "backCoeff": BACK_COEFFICIENTS[params.coefficient],
        "orthorectify": bool(orthorectify),
    }
    if orthorectify:
        name = (params.elevation_model or DEFAULT_DEM).upper()
        if name not in DEM_INSTANCES:
            raise DigitalElevationModelInvalid(
                f"sar_backscatter: 'elevation_model' {params.elevation_model!r} is not a DEM "
                f"Sentinel Hub offers for '{collection_id}'; use one of "
                f"{', '.join(DEM_INSTANCES)} or null ({DEFAULT_DEM})."
            )
        processing["demInstance"] = DEM_INSTANCES[name]
    processing.update({k: v for k, v in params.options.items() if k != "orthorectify"})
    return processing


def data_collection(sh: SentinelHubConfig) -> DataCollection:
    try:
        return DataCollection[sh.data_collection]
    except (KeyError, AttributeError):
        raise Internal(
            message=f"Unknown Sentinel Hub data collection {sh.data_collection!r}"
        ) from None


def request_input(
    sh: SentinelHubConfig, day: date, processing: Mapping[str, Any]
) -> dict[str, Any]:
    """The request's ``input.data`` entry for one UTC day."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    other: dict[str, Any] = {}
    if sh.data_filter:
        other["dataFilter"] = dict(sh.data_filter)
    if processing:
        other["processing"] = dict(processing)
    entry = SentinelHubRequest.input_data(
        data_collection=data_collection(sh),
        time_interval=(start, start + timedelta(days=1)),
        mosaicking_order=MosaickingOrder(sh.mosaicking_order) if sh.mosaicking_order else None,
        other_args=other or None,
    )
    # The predefined collections name services.sentinel-hub.com, which would override the
    # configured deployment (CDSE, a test server): requests go where the config says.
    return InputDataDict(dict(entry), service_url=sh.base_url)


def process_request(
    config: SHConfig,
    sh: SentinelHubConfig,
    script: str,
    grid: Grid,
    day: date,
    processing: Mapping[str, Any],
) -> DownloadRequest:
    """The Process API request for ``grid`` (in the cube CRS) on one day."""
    epsg = grid.crs.to_epsg()
    if epsg is None:
        raise ProcessParameterInvalid(
            process="load_collection",
            parameter="spatial_extent",
            reason=f"Sentinel Hub needs an EPSG-coded CRS, not {grid.crs}",
        )
    request = SentinelHubRequest(
        evalscript=script,
        input_data=[request_input(sh, day, processing)],
        responses=[SentinelHubRequest.output_response("default", MimeType.TIFF)],
        bbox=BBox(grid.bounds, crs=ShCRS(epsg)),
        size=(grid.width, grid.height),
        config=config,
    )
    return request.download_list[0]


def search_days(
    client: ShClient,
    sh: SentinelHubConfig,
    grid: Grid,
    start: datetime | None,
    end: datetime | None,
) -> list[date]:
    """UTC days with data over ``grid`` in ``[start, end)``, from the Catalog API."""
    to_wgs84 = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    bbox = list(to_wgs84.transform_bounds(*grid.bounds, densify_pts=21))
    lower = (start or datetime(2014, 1, 1, tzinfo=UTC)).astimezone(UTC)
    upper = (end or datetime.now(UTC)).astimezone(UTC)
    body: dict[str, Any] = {
        "collections": [data_collection(sh).catalog_id],
        "bbox": bbox,
        "datetime": f"{lower:%Y-%m-%dT%H:%M:%SZ}/{upper:%Y-%m-%dT%H:%M:%SZ}",
        "limit": 100,
        "fields": {"include": ["properties.datetime"], "exclude": []},
    }
    days: set[date] = set()
    while True:
        request = DownloadRequest(
            url=f"{sh.base_url}{CATALOG_PATH}",
            post_values=body,
            request_type=RequestType.POST,
            data_type=MimeType.JSON,
            headers={"Content-Type": "application/json"},
            use_session=True,
        )
        page = client.fetch([request])[0].decode()
        for feature in page.get("features", []):
            when = datetime.fromisoformat(feature["properties"]["datetime"].replace("Z", "+00:00"))
            stamp = when.astimezone(UTC)
            if stamp >= lower and stamp < upper:
                days.add(stamp.date())
        following = (page.get("context") or {}).get("next")
        if following is None:
            return sorted(days)
        body = {**body, "next": following}


@dataclass(frozen=True)
class ShLoad:
    """A Sentinel Hub load resolved once (bands, evalscript, processing options, the days the
    Catalog API found), then read on any window of the cube grid: the whole grid (synchronous
    processing) or one output tile per batch task (``read_sentinelhub``). Plain JSON."""

    sh: SentinelHubConfig
    days: list[date]
    script: str
    processing: dict[str, Any]
    bands: list[BandConfig]  # the requested bands (their scale / offset)
    names: list[str]  # output bands: the requested ones, then sar_backscatter's extras
    coefficient: str | None = None  # set when the values are sar_backscatter's

    def to_dict(self) -> dict[str, Any]:
        return {
            "sh": asdict(self.sh),
            "days": [day.isoformat() for day in self.days],
            "script": self.script,
            "processing": self.processing,
            "bands": [asdict(b) for b in self.bands],
            "names": self.names,
            "coefficient": self.coefficient,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShLoad:
        return cls(
            sh=SentinelHubConfig(**data["sh"]),
            days=[date.fromisoformat(day) for day in data["days"]],
            script=data["script"],
            processing=dict(data["processing"]),
            bands=[BandConfig(**b) for b in data["bands"]],
            names=list(data["names"]),
            coefficient=data.get("coefficient"),
        )


def prepare_sentinelhub(
    cfg: CollectionConfig,
    *,
    spatial_extent: dict[str, Any] | None,
    temporal_extent: Sequence[str | None] | None,
    bands: Sequence[str] | None,
    backscatter: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[ShLoad, Grid]:
    """Check the arguments, fix the cube grid and ask the Catalog API for the days (I/O)."""
    sh = cfg.sentinelhub
    if sh is None:
        raise Internal(message=f"Collection '{cfg.id}' is not served by Sentinel Hub")
    selected = select_bands(cfg, bands)
    extent = parse_spatial_extent(spatial_extent)
    if extent is None:
        raise ProcessParameterInvalid(
            process="load_collection",
            parameter="spatial_extent",
            reason=f"'{cfg.id}' is served by Sentinel Hub: give a bounding box",
        )
    start, end = parse_temporal_extent(temporal_extent)
    processing = dict(sh.processing)
    inputs = [(b.asset, b.units or "DN") for b in selected]
    names = [b.name for b in selected]
    coefficient = None
    if backscatter is not None:
        if not sh.sar:
            raise ProcessParameterInvalid(
                process="sar_backscatter",
                parameter="data",
                reason=f"collection '{cfg.id}' is not a Sentinel-1 collection",
            )
        params = parse_backscatter(backscatter)
        processing.update(backscatter_processing(params, cfg.id))
        inputs += [SAR_BANDS[name] for name in params.extra_bands]
        names += params.extra_bands
        coefficient = str(processing["backCoeff"]).lower()
    grid = target_grid(cfg, extent, [], selected)
    client = ShClient(sh_config(sh, env))
    days = search_days(client, sh, grid, start, end)
    load = ShLoad(sh, days, evalscript(inputs), processing, selected, names, coefficient)
    return load, grid


def read_sentinelhub(
    load: ShLoad, grid: Grid, env: Mapping[str, str] | None = None, threads: int = 2
) -> tuple[np.ndarray, float]:
    """``(days, bands, y, x)`` values on ``grid`` and the processing units spent: one
    Process API request per day and chunk of at most ``max_pixels`` a side."""
    client = ShClient(sh_config(load.sh, env), threads=threads)
    days, sh = load.days, load.sh
    chunks = list(tiles(grid, sh.max_pixels))
    data = np.full((len(days), len(load.names), grid.height, grid.width), np.nan, np.float32)

    def fetch(index: int) -> None:
        requests = [
            process_request(client.config, sh, load.script, c.grid, days[index], load.processing)
            for c in chunks
        ]
        for chunk, response in zip(chunks, client.fetch(requests), strict=True):
            data[index, :, chunk.rows, chunk.cols] = _decode(response, chunk.grid, len(load.names))

    if grid.width and grid.height:
        with ThreadPoolExecutor(max_workers=max(1, min(threads, len(days) or 1))) as pool:
            for future in [pool.submit(fetch, i) for i in range(len(days))]:
                future.result()
    _scale(data, load.bands)
    log.info(
        "Sentinel Hub: %d request(s) for %d x %d px, %.2f processing units",
        len(days) * len(chunks),
        grid.width,
        grid.height,
        client.processing_units,
    )
    return data, client.processing_units


def usage_of(units: float) -> dict[str, Any]:
    """Processing units as an entry of a job's ``usage``."""
    return {"sentinelhub": {"value": units, "unit": "processing units"}}


def load_sentinelhub(
    cfg: CollectionConfig,
    *,
    spatial_extent: dict[str, Any] | None,
    temporal_extent: Sequence[str | None] | None,
    bands: Sequence[str] | None,
    backscatter: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    threads: int = 2,
) -> xr.DataArray:
    """``load_collection`` (+ ``sar_backscatter``) of a Sentinel Hub collection as a cube."""
    load, grid = prepare_sentinelhub(
        cfg,
        spatial_extent=spatial_extent,
        temporal_extent=temporal_extent,
        bands=bands,
        backscatter=backscatter,
        env=env,
    )
    data, units = read_sentinelhub(load, grid, env, threads)
    cube = make_cube(
        data,
        times=np.array([np.datetime64(day.isoformat(), "ns") for day in load.days]),
        bands=load.names,
        transform=grid.transform,
        crs=grid.crs.to_wkt(),
    )
    cube.attrs[USAGE_ATTR] = usage_of(units)
    if load.coefficient is not None:
        cube.attrs[BACKSCATTER_ATTR] = load.coefficient
    return cube


def _decode(response: DownloadResponse, grid: Grid, count: int) -> np.ndarray:
    with MemoryFile(response.content) as memory, memory.open() as src:
        values = src.read().astype(np.float32)
    if values.shape != (count, grid.height, grid.width):
        raise Internal(
            message=f"Sentinel Hub returned {values.shape}, expected "
            f"{(count, grid.height, grid.width)}"
        )
    return values


def _scale(data: np.ndarray, bands: Sequence[BandConfig]) -> None:
    """The configured ``scale``/``offset`` of the requested bands (extra bands as sent)."""
    for index, band in enumerate(bands):
        if band.scale != 1.0:
            data[:, index] *= np.float32(band.scale)
        if band.offset:
            data[:, index] += np.float32(band.offset)
