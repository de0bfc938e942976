"""Output formats of ``save_result``: Cloud-optimized GeoTIFF and netCDF, plus PNG previews."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5netcdf
import h5py
import numpy as np
import rasterio
import shapely
import xarray as xr
from PIL import Image
from pyproj import CRS

from openeo_airflow.core.errors import FeatureUnsupported, ProcessParameterInvalid
from openeo_airflow.cube import cube_crs, cube_transform
from openeo_airflow.io.hdf5_chunks import LEVEL, chunk_shape, write_deflated

OUTPUT_FORMATS: dict[str, dict[str, Any]] = {
    "GTiff": {
        "title": "GeoTIFF (cloud-optimized)",
        "description": "One cloud-optimized GeoTIFF per time step (or one file without a time "
        "dimension); one raster band per cube band, float32 with NaN as no-data.",
        "gis_data_types": ["raster"],
        "parameters": {},
    },
    "netCDF": {
        "title": "Network Common Data Form (netCDF4)",
        "description": "One CF-style netCDF file: x, y and t coordinates, one variable per "
        "band, the CRS as grid mapping.",
        "gis_data_types": ["raster"],
        "parameters": {},
    },
    "JSON": {
        "title": "JSON",
        "description": "Any result as JSON: numbers, texts, arrays, objects; a data cube as "
        "{type: datacube, order, dimensions, data} with no-data as null (the encoding of the "
        "official openEO process tests). NaN and infinities are written as the JSON5 literals "
        "NaN/Infinity. For small results (synchronous processing).",
        "gis_data_types": ["raster", "vector", "table", "other"],
        "parameters": {},
    },
}

_ALIASES = {
    "gtiff": "GTiff",
    "geotiff": "GTiff",
    "tif": "GTiff",
    "tiff": "GTiff",
    "cog": "GTiff",
    "netcdf": "netCDF",
    "nc": "netCDF",
    "netcdf4": "netCDF",
    "json": "JSON",
}
_MEDIA_TYPES = {
    "GTiff": "image/tiff; application=geotiff; profile=cloud-optimized",
    "netCDF": "application/x-netcdf",
    "JSON": "application/json",
}

VECTOR_DIM = "geometry"

# A red-yellow-green colour ramp: (position 0..1, (r, g, b)).
_RAMP = (
    (0.0, (165, 0, 38)),
    (0.25, (244, 109, 67)),
    (0.5, (255, 255, 191)),
    (0.75, (102, 189, 99)),
    (1.0, (0, 104, 55)),
)
_PREVIEW_SIZE = 512
# GeoTIFF tiles and overviews. An image of at most 4 x 4 tiles gets no overviews: a viewer reads
# all of it about as fast as an overview level, while building and compressing them took half
# the writing time of a 1600 x 1600 px result (0.15 of 0.32 s CPU).
_BLOCK = 512
_OVERVIEWS_ABOVE = 4 * _BLOCK
# DEFLATE level 1 instead of GDAL's 6: float32 results hardly compress further at higher
# levels (+2% size on NDVI and smoothed reflectance) for twice the CPU time.
_DEFLATE_LEVEL = 1
# GDAL compresses a COG's tiles on this many threads (the same bytes as on one): a 1600 x 1600
# px float32 result wrote in 0.27-0.32 s instead of 0.40-0.44 s on 2 cores. The process's CPU
# set, at most 4: a container's CPU quota is not visible here.
_WRITE_THREADS = max(1, min(4, len(os.sched_getaffinity(0))))


def normalize_format(name: str) -> str:
    """The canonical output format name (``GTiff`` or ``netCDF``), case-insensitively."""
    key = str(name).strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    raise ProcessParameterInvalid(
        process="save_result",
        parameter="format",
        reason=f"Unsupported format '{name}'; supported: {', '.join(OUTPUT_FORMATS)}.",
    )


def media_type(format_name: str) -> str:
    """The media type of files written in ``format_name``."""
    return _MEDIA_TYPES[normalize_format(format_name)]


def write_gtiff(cube: xr.DataArray, directory: Path, stem: str) -> list[Path]:
    """Write COGs: ``{stem}_{YYYY-MM-DD}.tif`` per time step, or ``{stem}.tif`` without ``t``."""
    cube = _standard_order(cube)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if "t" not in cube.dims:
        return [_write_one_tiff(cube, directory / f"{stem}.tif", None)]
    paths = []
    for label in cube.t.values:
        day = np.datetime_as_string(np.datetime64(label, "D"), unit="D")
        paths.append(_write_one_tiff(cube.sel(t=label), directory / f"{stem}_{day}.tif", label))
    return paths


def write_netcdf(cube: xr.DataArray, path: Path) -> Path:
    """Write a CF-style netCDF4 file (h5netcdf): one variable per band, ``crs`` grid mapping.
    A vector cube (``aggregate_spatial``'s result) gets one variable per band over
    ``(geometry, t)`` and its geometries as WKT in a ``geometry`` variable."""
    if VECTOR_DIM in cube.dims:
        return _write_vector_netcdf(cube, Path(path))
    # A float32 cube is written as it is: a copy raised the peak memory of writing W2's
    # 12 x 1600 x 1600 px (123 MB) from 337 to 455 MB.
    cube = _standard_order(cube).astype(np.float32, copy=False)
    crs = cube_crs(cube)
    cube = cube.drop_vars("spatial_ref")
    if "bands" in cube.dims:
        dataset = cube.to_dataset(dim="bands")
    else:
        dataset = cube.to_dataset(name=str(cube.name or "data"))
    dataset["crs"] = xr.DataArray(np.int32(0), attrs=crs.to_cf())
    dataset["crs"].attrs["spatial_ref"] = crs.to_wkt()
    for name in list(dataset.data_vars):
        if name != "crs":
            dataset[name].attrs["grid_mapping"] = "crs"
    _describe_axes(dataset, crs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    values = [str(name) for name in dataset.data_vars if name != "crs"]
    # Everything but the values is written by xarray; the values, deflated on several threads,
    # go into variables made here (see io/hdf5_chunks).
    dataset.drop_vars(values).to_netcdf(path, engine="h5netcdf")
    arrays = {}
    with h5netcdf.File(path, "a") as file:
        for name in values:
            arrays[name] = _create_values(file, dataset[name])
    with h5py.File(path, "r+") as file:
        for name, data in arrays.items():
            if data.size:
                write_deflated(file[name], data, _WRITE_THREADS)
    return path


def _create_values(file: h5netcdf.File, variable: xr.DataArray) -> np.ndarray:
    """Make one data variable and return its values, to be written after: chunked, with the
    shuffle and deflate filters (shuffle groups the float32 exponents, so the fastest deflate
    level compresses better than level 4 without it: 75 instead of 93 MB on W2's result), NaN
    as ``_FillValue``."""
    data = np.ascontiguousarray(variable.values, dtype=np.float32)
    empty = data.size == 0
    created = file.create_variable(
        str(variable.name),
        dimensions=tuple(str(d) for d in variable.dims),
        dtype=np.float32,
        chunks=None if empty else chunk_shape(data.shape),
        compression=None if empty else "gzip",
        compression_opts=None if empty else LEVEL,
        shuffle=not empty,
        fillvalue=np.float32(np.nan),
    )
    attrs = dict(variable.attrs)
    # What xarray would note: coordinates other than the dimensions' own (a scalar ``t``).
    others = [str(c) for c in variable.coords if c not in variable.dims]
    if others:
        attrs["coordinates"] = " ".join(others)
    created.attrs.update(attrs)
    return data


def _write_vector_netcdf(cube: xr.DataArray, path: Path) -> Path:
    order = [d for d in (VECTOR_DIM, "t", "bands") if d in cube.dims]
    extra = [d for d in cube.dims if d not in order]
    if extra:
        raise FeatureUnsupported(
            f"save_result: cannot write a vector cube with dimensions {list(cube.dims)} as "
            "netCDF; reduce it to (geometry, t, bands) first."
        )
    cube = cube.transpose(*order).astype(np.float32)
    geometry = cube[VECTOR_DIM]
    wkt = np.array([shapely.to_wkt(g) for g in geometry.values], dtype=object)
    cube = cube.drop_vars(VECTOR_DIM)
    if "bands" in cube.dims:
        dataset = cube.to_dataset(dim="bands")
    else:
        dataset = cube.to_dataset(name=str(cube.name or "data"))
    dataset = dataset.drop_vars("spatial_ref", errors="ignore")
    dataset["geometry"] = xr.DataArray(
        wkt, dims=(VECTOR_DIM,), attrs={"long_name": "geometry as WKT"}
    )
    crs = geometry.attrs.get("crs_wkt")
    if crs:
        dataset["geometry"].attrs["crs_wkt"] = crs
    encoding = {
        str(name): {"_FillValue": np.float32(np.nan)}
        for name in dataset.data_vars
        if name != "geometry"
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.to_netcdf(path, engine="h5netcdf", encoding=encoding)
    return path


def write_png_preview(tif: Path, png: Path) -> Path:
    """A colour preview of a GeoTIFF's first band (NaN transparent), at most 512 px wide."""
    with rasterio.open(tif) as src:
        scale = max(src.width, src.height) / _PREVIEW_SIZE
        shape = (
            max(1, round(src.height / max(scale, 1))),
            max(1, round(src.width / max(scale, 1))),
        )
        values = src.read(1, out_shape=shape, masked=True).astype(np.float32).filled(np.nan)
    low, high = _stretch(values)
    position = np.clip((values - low) / (high - low), 0, 1)
    rgba = np.zeros((*values.shape, 4), dtype=np.uint8)
    stops = [p for p, _ in _RAMP]
    for channel in range(3):
        colours = [c[channel] for _, c in _RAMP]
        rgba[..., channel] = np.interp(np.nan_to_num(position), stops, colours).astype(np.uint8)
    rgba[..., 3] = np.where(np.isfinite(values), 255, 0)
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgba, mode="RGBA").save(png)
    return png


def _stretch(values: np.ndarray) -> tuple[float, float]:
    """-1..1 for index-like values, else the 2nd..98th percentile."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    if finite.min() >= -1 and finite.max() <= 1:
        return -1.0, 1.0
    low, high = (float(v) for v in np.percentile(finite, [2, 98]))
    return (low, high) if high > low else (low, low + 1.0)


def _write_one_tiff(cube: xr.DataArray, path: Path, label: Any) -> Path:
    """One COG: bands as raster bands with descriptions, float32, NaN no-data; overviews only
    on images larger than 4 x 4 tiles."""
    if "bands" in cube.dims:
        data = np.ascontiguousarray(cube.values, dtype=np.float32)
        names = [str(b) for b in cube.bands.values]
    else:
        data = np.ascontiguousarray(cube.values, dtype=np.float32)[np.newaxis]
        names = [str(cube.name or "band_1")]
    large = max(data.shape[1:]) > _OVERVIEWS_ABOVE
    profile = {
        "driver": "COG",
        "dtype": "float32",
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "crs": cube_crs(cube).to_wkt(),
        "transform": cube_transform(cube),
        "nodata": np.nan,
        "compress": "DEFLATE",
        "level": _DEFLATE_LEVEL,
        "predictor": 3,
        "blocksize": _BLOCK,
        "overviews": "AUTO" if large else "NONE",
        "overview_resampling": "AVERAGE",
        "BIGTIFF": "IF_SAFER",
        "num_threads": _WRITE_THREADS,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for index, name in enumerate(names, start=1):
            dst.set_band_description(index, name)
        if label is not None:
            dst.update_tags(datetime=np.datetime_as_string(np.datetime64(label, "s")) + "Z")
    return path


def _standard_order(cube: xr.DataArray) -> xr.DataArray:
    """The cube with dims ordered (t, bands, y, x); other dimensions are not writable."""
    extra = [d for d in cube.dims if d not in ("t", "bands", "y", "x")]
    if extra or "x" not in cube.dims or "y" not in cube.dims:
        raise FeatureUnsupported(
            f"save_result: cannot write a cube with dimensions {list(cube.dims)} as a raster; "
            "reduce it to (t, bands, y, x) first."
        )
    return cube.transpose(*[d for d in ("t", "bands", "y", "x") if d in cube.dims])


def _describe_axes(dataset: xr.Dataset, crs: CRS) -> None:
    if crs.is_geographic:
        dataset["x"].attrs.update(standard_name="longitude", units="degrees_east")
        dataset["y"].attrs.update(standard_name="latitude", units="degrees_north")
    else:
        unit = crs.axis_info[0].unit_name if crs.axis_info else "metre"
        unit = "m" if unit in ("metre", "meter") else unit
        dataset["x"].attrs.update(standard_name="projection_x_coordinate", units=unit)
        dataset["y"].attrs.update(standard_name="projection_y_coordinate", units=unit)
    if "t" in dataset.dims:
        dataset["t"].attrs.update(standard_name="time", axis="T")
