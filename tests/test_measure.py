"""What a stage measures about itself (``engine.measure.meter``)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from openeo_airflow.engine.measure import meter

# A child that holds 300 MiB (touched, so resident) for a second, like a UDF's process.
CHILD = "import numpy, time; a = numpy.ones(300 * 2**20 // 8); time.sleep(1.0)"


def test_the_peak_counts_child_processes() -> None:
    with meter() as measured:
        subprocess.run([sys.executable, "-c", CHILD], check=True)
    # the child's interpreter and numpy add some 20-40 MiB to its 300 MiB array
    assert measured.peak_mb >= 300


def test_the_peak_of_the_process_itself() -> None:
    with meter() as measured:
        block = np.ones(200 * 2**20 // 8)
        block += 1
        del block
    assert 190 <= measured.peak_mb < 300
    assert measured.cpu_seconds > 0 and measured.seconds >= 0
