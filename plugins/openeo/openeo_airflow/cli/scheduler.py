"""The local stack's scheduler, started with the batch tasks' code already imported.

Airflow's LocalExecutor forks its workers from the scheduler, and each worker forks the
process of every task it runs: whatever the scheduler imported before is already in every
task. The batch DAG's tasks need the whole engine (xarray, rasterio, pandas, the process
registry and specs), which a task would otherwise import first, at every start. Only modules
are imported here: no database connection, thread or open file crosses the fork.

Run as ``python -m openeo_airflow.cli.scheduler [airflow scheduler options]``.
"""

from __future__ import annotations

import sys


def preload() -> None:
    """Import what the batch DAG's tasks run (and parse the process specs once)."""
    import h5netcdf  # noqa: F401  (netCDF results)
    from airflow.sdk.execution_time import task_runner  # noqa: F401

    import openeo_airflow.airflow.tasks  # noqa: F401  (the engine, catalog and sizing)
    from openeo_airflow.compiler import specs
    from openeo_airflow.engine import streaming  # noqa: F401
    from openeo_airflow.processes.registry import implemented

    specs.preload()
    implemented()
    _xarray_duck_arrays()
    _execution_api_certificates()


def _xarray_duck_arrays() -> None:
    """xarray imports dask (when installed) at the first array it wraps, to tell dask arrays
    apart: 0.3-0.45 s that each task's first cube paid (py-spy, cProfile of a forked task)."""
    import numpy as np
    import xarray as xr

    xr.DataArray(np.zeros(1))


def _execution_api_certificates() -> None:
    """Each worker's first task loaded the CA certificates for its execution-API client
    (0.1-0.2 s of CPU, py-spy); loaded here once, every forked worker starts with them."""
    from airflow.sdk.api import client

    cached = getattr(client.Client, "_get_ssl_context_cached", None)
    if cached is not None:  # a private helper: a later Airflow may not have it
        cached(client.API_SSL_CA_FILE_PATH, client.API_SSL_CERT_PATH)


def main() -> None:
    preload()
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", "scheduler", *sys.argv[1:]]
    sys.exit(airflow_main())


if __name__ == "__main__":
    main()
