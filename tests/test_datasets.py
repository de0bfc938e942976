"""Raster files kept open per thread while one evaluation reads them tile after tile
(io.datasets): opened once per thread, never shared between threads, bounded, closed at the
end, and never kept after a failed read."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from openeo_airflow.io.datasets import OpenDatasets, opened


def _tiff(path: Path, value: int) -> str:
    profile = {
        "driver": "GTiff",
        "width": 8,
        "height": 8,
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:32631",
        "transform": Affine(10, 0, 500000, 0, -10, 5600000),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((1, 8, 8), value, dtype="uint16"))
    return str(path)


@pytest.fixture
def files(tmp_path: Path) -> list[str]:
    return [_tiff(tmp_path / f"b{i}.tif", i) for i in range(3)]


def test_a_thread_opens_each_file_once_and_close_closes_them_all(files: list[str]) -> None:
    datasets = OpenDatasets()
    seen = []
    for _ in range(3):  # three tiles reading the same files
        for index, href in enumerate(files):
            with datasets.open(href) as src:
                assert int(src.read(1)[0, 0]) == index
                seen.append(src)
    assert datasets.opened == len(files)
    assert len({id(src) for src in seen}) == len(files)
    datasets.close()
    assert datasets.closed and all(src.closed for src in seen)


def test_threads_do_not_share_a_dataset(files: list[str]) -> None:
    datasets = OpenDatasets()
    used: dict[str, set[int]] = {}
    start = threading.Barrier(2)

    def read(name: str) -> None:
        start.wait()
        for _ in range(2):
            for href in files:
                with datasets.open(href) as src:
                    src.read(1)
                    used.setdefault(name, set()).add(id(src))

    threads = [threading.Thread(target=read, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert datasets.opened == 2 * len(files)
    assert not used["a"] & used["b"]
    datasets.close()


def test_at_most_limit_files_stay_open_per_thread(files: list[str]) -> None:
    datasets = OpenDatasets(limit=2)
    with datasets.open(files[0]) as first:
        pass
    for href in files[1:]:
        with datasets.open(href):
            pass
    assert first.closed  # least recently used, pushed out by the third file
    with datasets.open(files[0]):
        pass
    assert datasets.opened == 4  # the first file again
    datasets.close()


def test_a_dataset_that_failed_a_read_is_closed_not_kept(files: list[str]) -> None:
    datasets = OpenDatasets()
    with pytest.raises(RuntimeError), datasets.open(files[0]) as broken:
        raise RuntimeError("read failed")
    assert broken.closed
    with datasets.open(files[0]) as again:
        assert again is not broken and not again.closed
    assert datasets.opened == 2
    datasets.close()


def test_after_close_a_late_reader_still_reads_and_keeps_nothing(files: list[str]) -> None:
    with OpenDatasets() as datasets, datasets.open(files[1]):
        pass
    with datasets.open(files[1]) as late:
        assert int(late.read(1)[0, 0]) == 1
    assert late.closed and datasets.opened == 1


def test_without_datasets_a_file_is_opened_and_closed_each_time(files: list[str]) -> None:
    with opened(files[2]) as src:
        assert int(src.read(1)[0, 0]) == 2
    assert src.closed
