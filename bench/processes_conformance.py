"""The official openEO process test cases, side by side: our backend and openeo-processes-dask.

    .venv/bin/python bench/processes_conformance.py [--out DIR] [--processes add,apply,...]

Both implementations get exactly the same process graphs, built from each case by the
conformance runner of our test suite (``tests/test_conformance.py``): a cube argument as a
``load_inline_cube`` node, a labeled array as an ``array_create_labeled`` node, cubes returned
through ``save_result`` with format ``JSON``. Both results are checked by the same function
(``check``), against the case's ``returns``/``throws`` as the cases' README defines.

- ours: what ``POST /result`` does (``compile_plan`` with validation, ``evaluate``, the JSON
  encoding), in this process (the test suite runs the same cases through HTTP once the
  backend returns JSON results);
- openeo-processes-dask: in the peer's own venv (``bench/peer_env.py``), through
  openeo-pg-parser-networkx, the way the openEO client's local processing runs graphs, with
  ``load_inline_cube`` added to its registry (building a dask-backed ``xarray.DataArray``, as
  its loaders do, with the CRS written by rioxarray) and ``save_result`` returning its data.
  An exception counts as the error named by its class (the official test suite's
  convention); results are converted to the same JSON form as ours.

It prints the two pass counts, strict (the cases' README: a boolean must be a boolean) and
lenient (1/0 accepted for true/false, as the official test suite's Python comparison does),
the counts per process where they differ, and writes
``conformance.json`` (every case: passed or not, and what happened) to ``--out``.
Not part of the test suite: the peer needs its own venv (created on first use, minutes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_conformance import (  # noqa: E402
    CASES_DIR,
    GraphBuilder,
    InProcessTransport,
    Outcome,
    check,
    load_cases,
)

from bench.peer_env import ensure_peer_venv  # noqa: E402

DEFAULT_CACHE = Path.home() / ".cache" / "openeo-airflow-bench"
PEER_TIMEOUT_S = 30

# Runs in the peer's venv: reads {"id", "process"} lines, writes {"id", "value"|"error"} lines.
PEER_WORKER = r"""
import importlib, inspect, json, math, signal, sys, warnings
from datetime import datetime
warnings.simplefilter("ignore")
import numpy as np
import xarray as xr
from openeo_pg_parser_networkx import OpenEOProcessGraph, ProcessRegistry
from openeo_pg_parser_networkx.process_registry import Process
from openeo_processes_dask.process_implementations.core import process

registry = ProcessRegistry(wrap_funcs=[process])
implementations = importlib.import_module("openeo_processes_dask.process_implementations")
specs = importlib.import_module("openeo_processes_dask.specs")
for name, fn in inspect.getmembers(implementations, inspect.isfunction):
    spec = getattr(specs, name, None)
    if spec is not None:
        registry[name] = Process(spec=spec, implementation=fn)


def _labels(dimension):
    values = dimension.get("values") or []
    if dimension.get("type") == "temporal":
        stamps = [datetime.fromisoformat(v.replace("Z", "+00:00")) for v in values]
        return np.array([np.datetime64(s.replace(tzinfo=None), "ns") for s in stamps])
    if dimension.get("type") == "spatial":
        return np.asarray(values, dtype=float)
    return list(values)


def load_inline_cube(data, **_):
    dims = data["dimensions"]
    order = list(data.get("order") or dims)
    coords = {n: _labels(dims[n]) for n in order}
    shape = [len(coords[n]) for n in order]
    raw = data.get("data")
    size = int(np.prod(shape)) if shape else 1
    if raw is None or (isinstance(raw, list) and not raw and size):
        values = np.full(shape, np.nan)
    else:
        values = np.array(raw, dtype=float).reshape(shape)
    nodata = data.get("nodata")
    for v in nodata if isinstance(nodata, list) else [nodata]:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v):
            values[values == v] = np.nan
    cube = xr.DataArray(values, dims=order, coords=coords).chunk()  # dask, as when loading
    crs = next((d["reference_system"] for d in dims.values() if d.get("reference_system")), None)
    if crs is not None:
        try:
            import rioxarray  # noqa: F401
            cube = cube.rio.write_crs(crs)
        except Exception:
            cube.attrs["crs"] = crs
    return cube


def save_result(data, **_):
    return data


registry["load_inline_cube"] = Process(
    spec={"id": "load_inline_cube", "parameters": [{"name": "data", "schema": {}}], "returns": {}},
    implementation=load_inline_cube,
)
registry["save_result"] = Process(spec=getattr(specs, "save_result"), implementation=save_result)


def _label_json(value):
    if isinstance(value, np.datetime64):
        return np.datetime_as_string(value.astype("datetime64[s]")) + "Z"
    return value.item() if isinstance(value, np.generic) else value


def _kind(cube, name):
    coord = cube.coords.get(name)
    if coord is not None and np.issubdtype(coord.dtype, np.datetime64):
        return "temporal"
    return {"x": "spatial", "y": "spatial", "bands": "bands", "t": "temporal"}.get(name, "other")


def to_json(value):
    if isinstance(value, xr.Dataset):
        value = value.to_array(dim="bands")
    if isinstance(value, xr.DataArray):
        try:
            value = value.compute()
        except Exception:
            pass
        dims = {}
        for name in value.dims:
            labels = value.coords[name].values if name in value.coords else range(value.sizes[name])
            values = [_label_json(v) for v in labels]
            dims[str(name)] = {"type": _kind(value, name), "values": values}
        data = np.asarray(value.values)
        if data.dtype.kind in "fc":
            data = data.astype(object)
            data[np.isnan(np.asarray(value.values, dtype=float))] = None
        return {"type": "datacube", "order": [str(d) for d in value.dims], "dimensions": dims,
                "data": to_json(data.tolist())}
    if hasattr(value, "compute") and not isinstance(value, (list, dict)):
        value = value.compute()
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (datetime, np.datetime64)):
        return str(value)
    return value


def _timeout(*_):
    raise TimeoutError("case timed out")


signal.signal(signal.SIGALRM, _timeout)
for line in sys.stdin:
    case = json.loads(line)
    answer = {"id": case["id"]}
    signal.alarm(int(sys.argv[1]))
    try:
        graph = OpenEOProcessGraph(pg_data=case["process"])
        answer["value"] = to_json(graph.to_callable(process_registry=registry)())
        json.dumps(answer, allow_nan=True)
    except BaseException as error:  # noqa: BLE001 - every failure is an outcome
        answer.pop("value", None)
        answer["error"] = type(error).__name__
        answer["detail"] = str(error)[:300]
    finally:
        signal.alarm(0)
    print(json.dumps(answer, allow_nan=True), flush=True)
"""


def run_ours(cases: list[Any]) -> dict[str, Outcome]:
    transport = InProcessTransport()
    outcomes = {}
    for case in cases:
        try:
            outcomes[case.id] = transport.run(GraphBuilder(case).graph())
        except Exception as error:  # a case we cannot even send (missing asset)
            outcomes[case.id] = Outcome(error=f"runner: {error!r}")
    return outcomes


def run_peer(cases: list[Any], cache: Path, out: Path) -> dict[str, Outcome]:
    python = ensure_peer_venv(cache / "peer-venv", out / "peer-install.log")
    lines = []
    for case in cases:
        try:
            lines.append(json.dumps({"id": case.id, "process": GraphBuilder(case).graph()}))
        except Exception:
            continue
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(PEER_WORKER)
    done = subprocess.run(
        [str(python), script.name, str(PEER_TIMEOUT_S)],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    (out / "peer-stderr.log").write_text(done.stderr)
    outcomes = {case.id: Outcome(error="runner: the case could not be built") for case in cases}
    for line in done.stdout.splitlines():
        if not line.startswith("{"):
            continue
        answer = json.loads(line)
        if "error" in answer:
            outcomes[answer["id"]] = Outcome(error=answer["error"])
        else:
            outcomes[answer["id"]] = Outcome(value=answer["value"])
    return outcomes


def numbers_for_booleans(value: Any) -> Any:
    """``true``/``false`` as 1/0, for the lenient count (Python's ``1.0 == True``, which the
    official test suite's runner relies on)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, list):
        return [numbers_for_booleans(v) for v in value]
    if isinstance(value, dict):
        return {k: numbers_for_booleans(v) for k, v in value.items()}
    return value


def score(
    cases: list[Any], outcomes: dict[str, Outcome], *, lenient: bool = False
) -> dict[str, tuple[bool, str]]:
    results = {}
    for case in cases:
        outcome = outcomes[case.id]
        if lenient:
            test = {**case.test}
            if "returns" in test:
                test["returns"] = numbers_for_booleans(test["returns"])
            case = replace(case, test=test)
            outcome = Outcome(numbers_for_booleans(outcome.value), outcome.error)
        try:
            results[case.id] = check(case, outcome)
        except Exception as error:
            results[case.id] = (False, f"cannot compare: {error!r}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--processes", default="", help="comma-separated process ids (all)")
    args = parser.parse_args()
    out = args.out or args.cache / "results" / f"conformance-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    wanted = {p for p in args.processes.split(",") if p}
    cases = [c for c in load_cases(CASES_DIR) if not wanted or c.process_id in wanted]

    started = time.perf_counter()
    ours_outcomes = run_ours(cases)
    ours_s = time.perf_counter() - started
    started = time.perf_counter()
    peer_outcomes = run_peer(cases, args.cache, out)
    peer_s = time.perf_counter() - started
    ours, peer = score(cases, ours_outcomes), score(cases, peer_outcomes)
    ours_lenient = sum(ok for ok, _ in score(cases, ours_outcomes, lenient=True).values())
    peer_lenient = sum(ok for ok, _ in score(cases, peer_outcomes, lenient=True).values())

    per_process: dict[str, Counter[str]] = {}
    for case in cases:
        counts = per_process.setdefault(case.process_id, Counter())
        counts["cases"] += 1
        counts["ours"] += ours[case.id][0]
        counts["peer"] += peer[case.id][0]
    total = len(cases)
    ours_n = sum(ok for ok, _ in ours.values())
    peer_n = sum(ok for ok, _ in peer.values())
    print(f"openEO process test cases (openeo-processes 2.0.0-rc.2): {total}")
    print("  (strict: booleans must be booleans; lenient: 1/0 accepted for true/false)")
    for name, strict, lenient, seconds in (
        ("openeo-airflow", ours_n, ours_lenient, ours_s),
        ("openeo-processes-dask", peer_n, peer_lenient, peer_s),
    ):
        print(
            f"  {name:22s} strict {strict:4d} ({100 * strict / total:.1f} %),"
            f" lenient {lenient:4d} ({100 * lenient / total:.1f} %), {seconds:.0f} s"
        )
    print(f"\n{'process':32s} {'cases':>5s} {'ours':>5s} {'dask':>5s}")
    for process_id, counts in sorted(per_process.items()):
        if counts["ours"] != counts["peer"]:
            print(f"{process_id:32s} {counts['cases']:5d} {counts['ours']:5d} {counts['peer']:5d}")
    report = {
        "cases": total,
        "ours": {"passed": ours_n, "lenient": ours_lenient, "seconds": round(ours_s, 1)},
        "openeo_processes_dask": {
            "passed": peer_n,
            "lenient": peer_lenient,
            "seconds": round(peer_s, 1),
        },
        "per_case": {
            case.id: {"ours": list(ours[case.id]), "openeo_processes_dask": list(peer[case.id])}
            for case in cases
        },
    }
    (out / "conformance.json").write_text(json.dumps(report, indent=1, allow_nan=True))
    print(f"\nwritten to {out}")
    print("SUMMARY " + json.dumps({k: v for k, v in report.items() if k != "per_case"}))


if __name__ == "__main__":
    main()
