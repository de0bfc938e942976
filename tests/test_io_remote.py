"""The remote GDAL profile against a misbehaving object store (a loopback HTTP server with
byte ranges): a transient 503 is retried by GDAL, a server that stops sending mid-body makes
the read fail after the low-speed-abort time instead of hanging the task."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import rasterio
from affine import Affine
from bench.range_server import RangeServer
from rasterio.errors import RasterioError
from rasterio.windows import Window

from openeo_airflow.io.gdal_env import gdal_env

SIZE = 3072  # 18 MB of noise: the window lies beyond the profile's 10 MiB first chunk
WINDOW = Window(2400, 2400, 600, 600)
_CALLS = itertools.count()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RangeServer, np.ndarray]]:
    """A COG of seeded noise (256 px blocks, no overviews), served on loopback."""
    root = tmp_path_factory.mktemp("remote")
    data = np.random.default_rng(7).integers(1, 10000, (SIZE, SIZE), dtype=np.uint16)
    profile = {
        "driver": "COG",
        "width": SIZE,
        "height": SIZE,
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:32631",
        "transform": Affine(10, 0, 500000, 0, -10, 5000000),
        "blocksize": 256,
        "compress": "DEFLATE",
        "overviews": "NONE",
    }
    with rasterio.open(root / "b.tif", "w", **profile) as dst:
        dst.write(data, 1)
    with RangeServer(root) as server:
        yield server, data[2400:3000, 2400:3000]


def read_window(server: RangeServer, fault: Callable[[], None], **overrides: str) -> np.ndarray:
    """Open (the header comes through), then ``fault`` breaks the server, then read. Each
    call has its own URL: GDAL caches ranges per URL for the whole process."""
    url = f"/vsicurl/{server.url}b.tif?call={next(_CALLS)}"
    with gdal_env("https", **overrides), rasterio.open(url) as src:
        server.reset()
        fault()
        return np.asarray(src.read(1, window=WINDOW))


@pytest.fixture
def server(served: tuple[RangeServer, np.ndarray]) -> Iterator[RangeServer]:
    server = served[0]
    yield server
    server.fail_next(0)
    server.stall_after(None)


def test_transient_503s_are_retried_by_the_profile(
    server: RangeServer, served: tuple[RangeServer, np.ndarray]
) -> None:
    # Ten in a row: more than GDAL's own fallback absorbs (when its parallel range requests
    # fail, it reads on in one sequential chunk: 8 requests before it gives up).
    def ten_503s() -> None:
        server.fail_next(10)

    values = read_window(server, ten_503s, GDAL_HTTP_RETRY_DELAY="0.05")  # fast test
    np.testing.assert_array_equal(values, served[1])
    assert server.counts.failed == 10
    with pytest.raises(RasterioError):  # the same without retries fails
        read_window(server, ten_503s, GDAL_HTTP_MAX_RETRY="0")


def test_a_stalled_transfer_aborts_after_the_low_speed_time(server: RangeServer) -> None:
    # The profile, only the abort time shortened; GDAL does not retry a low-speed abort
    # (measured: same time with and without GDAL_HTTP_MAX_RETRY), the loader does.
    options = {"GDAL_HTTP_LOW_SPEED_TIME": "1"}
    started = time.monotonic()
    with pytest.raises(RasterioError):
        read_window(server, lambda: server.stall_after(100), **options)
    assert time.monotonic() - started < 6  # a few stalled requests, 1 s each


def test_without_the_low_speed_abort_a_stalled_read_hangs(
    served: tuple[RangeServer, np.ndarray],
) -> None:
    """The contrast: the same stall holds a read (until GDAL_HTTP_TIMEOUT, 120 s here)."""
    done = threading.Event()
    with RangeServer(served[0].root) as server:

        def read() -> None:
            stall = lambda: server.stall_after(100)  # noqa: E731
            with contextlib.suppress(RasterioError):
                read_window(server, stall, GDAL_HTTP_LOW_SPEED_TIME="0", GDAL_HTTP_MAX_RETRY="0")
            done.set()

        threading.Thread(target=read, daemon=True).start()
        assert not done.wait(6)  # still hanging after 6 s
    # Closing the server ends the stalled answer; the reader gives up.
    assert done.wait(30)
