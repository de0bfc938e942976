"""Latency and memory of the local stack for the demo job (issue 2's figures).

Starts `openeo-airflow up` in a fresh home, waits until it is ready, then submits the demo NDVI job
N times through the openEO client and prints: start-up time, time from `POST /jobs/{id}/results` to
`running` and to `finished` (polled every 0.2 s), and the PSS of the whole process tree (PSS, not
RSS: the Airflow processes share most pages). Run: `.venv/bin/python bench/stack_latency.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openeo
import psutil

from openeo_airflow.cli.demo import ndvi_max_composite
from openeo_airflow.demo.archive import DEMO_COLLECTION_ID, demo_bbox_wgs84


def tree_pss_mib(root: psutil.Process) -> float:
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_full_info().pss
    return total / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--port", type=int, default=8097)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="openeo-airflow-latency-"))
    up = Path(sys.executable).parent / "openeo-airflow"
    started = time.monotonic()
    log = open(home / "up.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [str(up), "up", "--home", str(home), "--port", str(args.port), "--user", "m:pw"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        while "openEO API:" not in (home / "up.log").read_text():
            if process.poll() is not None:
                raise SystemExit((home / "up.log").read_text())
            time.sleep(0.5)
        print(f"start-up until ready: {time.monotonic() - started:.1f} s")
        root = psutil.Process(process.pid)
        time.sleep(10)
        processes = len(root.children(recursive=True)) + 1
        print(f"idle: {tree_pss_mib(root):.0f} MiB PSS, {processes} processes")
        con = openeo.connect(f"http://localhost:{args.port}/openeo/1.2").authenticate_basic(
            "m", "pw"
        )
        to_running, to_finished = [], []
        for run in range(args.runs):
            cube = ndvi_max_composite(
                con, DEMO_COLLECTION_ID, demo_bbox_wgs84(), ["2023-07-01", "2023-08-01"]
            ).save_result("GTiff")
            job = cube.create_job()
            t0 = time.monotonic()
            job.start()
            running, peak = None, 0.0
            while (status := job.status()) not in ("finished", "error", "canceled"):
                if status == "running" and running is None:
                    running = time.monotonic() - t0
                peak = max(peak, tree_pss_mib(root))
                time.sleep(0.2)
            done = time.monotonic() - t0
            print(
                f"run {run}: running after {running or float('nan'):.1f} s, {status} after "
                f"{done:.1f} s, peak {peak:.0f} MiB PSS"
            )
            if run > 0 and running is not None:
                to_running.append(running)
                to_finished.append(done)
        if to_running:
            print(
                f"median of warm runs: running {statistics.median(to_running):.1f} s, "
                f"finished {statistics.median(to_finished):.1f} s"
            )
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
