"""The child process that runs a user's Python UDF.

    python -I -m openeo_airflow.processes.udf_worker FOLDER MEMORY_BYTES CPU_SECONDS

It first limits its own address space and CPU time (``setrlimit``). It imports nothing of the
backend: numpy, pandas, xarray and the ``openeo.udf`` API only. It reads ``request.json`` (the
code, the context, the cube's dimensions and labels) and ``data.npy`` from FOLDER, runs the
UDF's entry point and writes ``result.npy`` + ``result.json``, or ``error.json`` with the
traceback of the user's code alone (frames of the file ``<udf>``), so that a failing UDF never
shows the backend's internals, and whether it ran out of memory (numpy's allocation error is a
``MemoryError`` subclass under another name). The UDF runtime service (``udf_service``) starts
this same module in the UDF container.

Entry points (the ``openeo.udf`` conventions): ``apply_datacube(cube, context)`` gets and returns
an ``XarrayDataCube``; ``apply_timeseries(series, context)`` gets each pixel's time series as a
``pandas.Series`` indexed by date and returns one; ``apply_metadata`` is ignored (it only
describes label changes, which we read from the returned cube).

Exchange format: plain ``.npy`` arrays (``allow_pickle=False``) and JSON, never pickle: the
backend must not execute anything the child hands back.
"""

from __future__ import annotations

import json
import resource
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np

UDF_FILENAME = "<udf>"


def labels_to_json(values: np.ndarray) -> dict[str, Any]:
    if np.issubdtype(values.dtype, np.datetime64):
        return {"kind": "time", "values": [str(v) for v in values.astype("datetime64[ns]")]}
    return {"kind": "plain", "values": values.tolist()}


def labels_from_json(entry: dict[str, Any]) -> np.ndarray:
    if entry["kind"] == "time":
        return np.array(entry["values"], dtype="datetime64[ns]")
    return np.array(entry["values"])


def _user_traceback(error: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == UDF_FILENAME]
    lines = ["Traceback (most recent call last, in your UDF):\n"]
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(error), error)
    return "".join(lines)


def _run_timeseries(fn: Any, cube: Any, context: Any) -> Any:
    import pandas as pd
    import xarray as xr

    if "t" not in cube.dims:
        raise ValueError("apply_timeseries needs a cube with a 't' dimension")
    moved = cube.transpose("t", ...)
    flat = moved.values.reshape(moved.sizes["t"], -1)
    index = pd.DatetimeIndex(moved.t.values)
    out = np.empty_like(flat, dtype=float)
    for column in range(flat.shape[1]):
        series = fn(pd.Series(flat[:, column], index=index), context)
        out[:, column] = np.asarray(series, dtype=float)
    result = xr.DataArray(out.reshape(moved.shape), dims=moved.dims, coords=moved.coords)
    return result.transpose(*cube.dims)


def run(folder: Path) -> None:
    import xarray as xr
    from openeo.udf import XarrayDataCube

    request = json.loads((folder / "request.json").read_text())
    values = np.load(folder / "data.npy", allow_pickle=False)
    coords = {name: labels_from_json(entry) for name, entry in request["coords"].items()}
    cube = xr.DataArray(values, dims=request["dims"], coords=coords)
    namespace: dict[str, Any] = {"__name__": "udf"}
    exec(compile(request["code"], UDF_FILENAME, "exec"), namespace)
    context = request.get("context") or {}
    if callable(namespace.get("apply_datacube")):
        result = namespace["apply_datacube"](XarrayDataCube(cube), context)
        array = result.get_array() if isinstance(result, XarrayDataCube) else result
    elif callable(namespace.get("apply_timeseries")):
        array = _run_timeseries(namespace["apply_timeseries"], cube, context)
    else:
        raise ValueError("the UDF defines neither apply_datacube nor apply_timeseries")
    if not isinstance(array, xr.DataArray):
        array = xr.DataArray(np.asarray(array, dtype=float))
    np.save(folder / "result.npy", np.asarray(array.values, dtype=float), allow_pickle=False)
    labels = {
        str(d): labels_to_json(array.coords[d].values) for d in array.dims if d in array.coords
    }
    (folder / "result.json").write_text(
        json.dumps({"dims": [str(d) for d in array.dims], "coords": labels})
    )


def limit(memory_bytes: int, cpu_seconds: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))


def main() -> None:
    folder = Path(sys.argv[1])
    limit(int(sys.argv[2]), int(sys.argv[3]))
    try:
        run(folder)
    except BaseException as error:
        report = {"traceback": _user_traceback(error), "memory": isinstance(error, MemoryError)}
        (folder / "error.json").write_text(json.dumps(report))
        sys.exit(1)


if __name__ == "__main__":
    main()
