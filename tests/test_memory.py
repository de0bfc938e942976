"""glibc's malloc settings for computing processes: freed arrays are reused instead of each new
one faulting in fresh pages, and a long-lived process hands the memory back when done."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from openeo_airflow.core import libc

pytestmark = pytest.mark.skipif(
    libc.function("mallopt") is None, reason="the C library has no mallopt (not glibc)"
)

CHILD = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from openeo_airflow.core import memory

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    def faults_of_a_new_array():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        a = np.ones(64 * 2**20 // 4, np.float32)  # 64 MiB, above glibc's mmap threshold
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        del a
        return faults

    if sys.argv[1] == "reuse":
        assert memory.reuse_freed_memory() and memory.reuse_freed_memory()
    faults_of_a_new_array()
    faults = faults_of_a_new_array()
    kept = rss_mb()
    memory.release_freed_memory()
    print(faults, round(kept - rss_mb()))
    """
)


def _child(mode: str) -> tuple[int, int]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], check=True, capture_output=True, text=True
    ).stdout
    faults, released = out.split()
    return int(faults), int(released)


def test_a_freed_array_is_reused_and_given_back_on_release() -> None:
    default_faults, _ = _child("default")
    reused_faults, released_mb = _child("reuse")
    # The second array of the same size: fresh pages by default, the first one's when kept.
    assert default_faults > 100
    assert reused_faults < default_faults / 10
    # What was kept goes back to the system on release (the api-server between requests).
    assert released_mb >= 48
