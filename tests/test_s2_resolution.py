"""Sentinel-2 duplicates, time steps, baseline offsets and overlap order on real STAC items.

Items: ``shared/data/stac_items`` — four Planetary Computer products of one datatake on tiles
46XER/46XES (UTM 46) and 47XMJ/47XML (UTM 47), nine adjacent tiles of one datatake (site1),
13 dates of one tile (site2), Earth Search v0 items, and the real Earth Search v1 item of
29RKH. Re-processed duplicates are derived from them by changing only the product name's
baseline/generation time, as a re-processing campaign does.
"""

from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pyproj import Transformer

from openeo_airflow.catalog.overlap import footprint, order_for_tile, tile_polygon
from openeo_airflow.catalog.sentinel2 import (
    acquisition_day,
    boa_offset,
    drop_duplicates,
    parse_baseline,
    product_info,
)
from openeo_airflow.catalog.stac import StacItem, parse_item

ITEMS = Path("stac_items")


def features(shared: Path, name: str) -> list[dict[str, Any]]:
    document = json.loads((shared / ITEMS / name).read_text())
    if isinstance(document, list):
        return document
    return list(document.get("features", [document]))


def items(shared: Path, name: str) -> list[StacItem]:
    return [parse_item(f, str(shared / ITEMS / name)) for f in features(shared, name)]


def reprocessed(feature: dict[str, Any], baseline: str, generated: str) -> dict[str, Any]:
    """A re-processing of ``feature``: new baseline (e.g. '0400') and generation time."""
    twin = copy.deepcopy(feature)
    props = twin["properties"]
    old = props["s2:product_uri"]
    parts = old.removesuffix(".SAFE").split("_")
    parts[3], parts[6] = f"N{baseline}", generated
    props["s2:product_uri"] = "_".join(parts) + ".SAFE"
    props["s2:processing_baseline"] = f"{baseline[:2]}.{baseline[2:]}"
    props["s2:generation_time"] = (
        f"{generated[:4]}-{generated[4:6]}-{generated[6:8]}T{generated[9:11]}:"
        f"{generated[11:13]}:{generated[13:15]}Z"
    )
    twin["id"] = "_".join(parts[:3] + parts[4:])
    return twin


@pytest.fixture(scope="module")
def pc(shared_data: Path) -> dict[str, StacItem]:
    """The four Planetary Computer items keyed by MGRS tile."""
    return {i.properties["s2:mgrs_tile"]: i for i in items(shared_data, "sentinel-2-l2a-pc.json")}


# --------------------------------------------------------------------------- identity


def test_product_identity_from_real_items(pc: dict[str, StacItem], shared_data: Path) -> None:
    info = product_info(pc["47XML"])
    assert (info.mission, info.tile, info.orbit, info.baseline) == ("S2B", "47XML", 122, (5, 10))
    assert info.sensing.isoformat() == "2024-04-19T09:55:49+00:00"
    assert info.generation is not None and info.generation.hour == 12
    # Earth Search v0: the product name is in sentinel:product_id.
    (v0,) = items(shared_data, "S2A_31NBJ_20190524_0_L2A.json")
    assert product_info(v0).baseline == (2, 12) and product_info(v0).tile == "31NBJ"
    # Earth Search v1 (29RKH): s2:product_uri and grid:code.
    rkh = parse_item(
        json.loads(
            (
                shared_data / "cogs_29RKH/S2A_29RKH_20200219_0_L2A/S2A_29RKH_20200219_0_L2A.json"
            ).read_text()
        ),
        "rkh.json",
    )
    assert product_info(rkh).tile == "29RKH" and product_info(rkh).baseline == (2, 14)


def test_parse_baseline_forms() -> None:
    assert parse_baseline("04.00") == (4, 0)
    assert parse_baseline("N0510") == (5, 10)
    assert parse_baseline(4.0) == (4, 0)
    assert parse_baseline("2.12") == (2, 12)
    assert parse_baseline("latest") is None and parse_baseline(None) is None


# --------------------------------------------------------------------------- duplicates


def test_one_datatake_over_two_utm_zones_is_one_time_step(pc: dict[str, StacItem]) -> None:
    kept, dropped = drop_duplicates(pc.values())
    assert dropped == [] and len(kept) == 4  # four different tiles: no duplicates
    assert {acquisition_day(i) for i in kept} == {date(2024, 4, 19)}
    assert {i.crs for i in kept} == {"EPSG:32646", "EPSG:32647"}


def test_reprocessed_duplicates_keep_the_newest_baseline(shared_data: Path) -> None:
    source = features(shared_data, "sentinel-2-l2a-pc.json")
    xml = next(f for f in source if f["properties"]["s2:mgrs_tile"] == "47XML")
    older = reprocessed(xml, "0400", "20240420T080000")  # older baseline, generated later
    newer_run = reprocessed(xml, "0510", "20240501T000000")  # same baseline, generated later
    documents = [older, *source, newer_run]
    kept, dropped = drop_duplicates([parse_item(d, "pc.json") for d in documents])
    assert sorted(i.id for i in dropped) == sorted([older["id"], xml["id"]])
    assert newer_run["id"] in {i.id for i in kept} and len(kept) == 4
    # Input order is kept for the survivors.
    assert [i.id for i in kept] == [d["id"] for d in documents if d["id"] in {i.id for i in kept}]


def test_adjacent_tiles_of_one_datatake_are_not_duplicates(shared_data: Path) -> None:
    site1 = items(shared_data, "site1.geojson")  # 9 tiles, generated on different days
    kept, dropped = drop_duplicates(site1)
    assert len(kept) == 9 and dropped == []
    assert {acquisition_day(i) for i in kept} == {date(2020, 6, 6)}
    site2 = items(shared_data, "site2.geojson")  # 13 dates of tile 35MNM
    kept, dropped = drop_duplicates(site2)
    assert len(kept) == 13 and len({acquisition_day(i) for i in kept}) == 13


def test_datatake_crossing_midnight_stays_one_time_step(shared_data: Path) -> None:
    (feature,) = features(
        shared_data, "S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json"
    )
    late = copy.deepcopy(feature)
    late["id"] = "late-granule"
    late["properties"]["datetime"] = "2019-06-30T00:01:02Z"  # granule sensed after midnight
    first, second = (parse_item(f, "x.json") for f in (feature, late))
    assert acquisition_day(first) == acquisition_day(second) == date(2019, 6, 29)


# --------------------------------------------------------------------------- offsets


def test_boa_offset_by_baseline_and_archive(pc: dict[str, StacItem], shared_data: Path) -> None:
    assert boa_offset(pc["47XML"], "B04") == -1000.0  # baseline 05.10
    site1 = items(shared_data, "site1.geojson")
    assert boa_offset(site1[0], "B04") == 0.0  # baseline 02.12
    # Earth Search says when its COGs already have the offset removed.
    applied = copy.deepcopy(pc["47XML"].properties) | {"earthsearch:boa_offset_applied": True}
    item = StacItem("x", pc["47XML"].datetime, pc["47XML"].bbox, None, {}, applied)
    assert boa_offset(item, "B04") == 0.0
    # A per-band offset from the raster extension (e.g. BOA_ADD_OFFSET of the SAFE metadata).
    raster = {"B04": {"raster:bands": [{"scale": 0.0001, "offset": -0.2}]}}
    item = StacItem("y", item.datetime, item.bbox, None, {}, pc["47XML"].properties, None, raster)
    assert boa_offset(item, "B04") == -2000.0


# --------------------------------------------------------------------------- overlaps


def utm_tile(lon: float, lat: float, epsg: int, size: float = 1000.0) -> tuple[float, ...]:
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
    return (x - size / 2, y - size / 2, x + size / 2, y + size / 2)


def test_overlap_prefers_the_product_in_the_cube_crs(pc: dict[str, StacItem]) -> None:
    both = [pc["46XER"], pc["47XML"], pc["46XES"], pc["47XMJ"]]
    # Inside both 46XER and 47XML: each cube CRS gets its own zone's product first.
    in_47 = order_for_tile(both, utm_tile(95.4, 81.44, 32647), "EPSG:32647")
    in_46 = order_for_tile(both, utm_tile(95.4, 81.44, 32646), "EPSG:32646")
    assert [i.id for i in in_47] == [pc["47XML"].id, pc["46XER"].id]
    assert [i.id for i in in_46] == [pc["46XER"].id, pc["47XML"].id]
    # West of 46XER's footprint only 47XML has data: the only one read, even in UTM 46.
    west = order_for_tile(both, utm_tile(92.85, 81.8, 32646), "EPSG:32646")
    assert [i.id for i in west] == [pc["47XML"].id]
    # Far from every footprint nothing is read.
    assert order_for_tile(both, utm_tile(100.0, 70.0, 32647), "EPSG:32647") == []


def test_overlap_prefers_a_covering_product_then_the_nearest(pc: dict[str, StacItem]) -> None:
    both = [pc["46XER"], pc["47XML"], pc["46XES"]]
    xml = footprint(pc["47XML"])
    # A 10 km tile straddling 47XML's northern edge inside 46XES: 46XES covers it, 47XML
    # only partly: the covering product comes first even though 47XML is in the cube's CRS.
    bounds = utm_tile(95.3, 81.925, 32647, size=10000)
    tile = tile_polygon(bounds, "EPSG:32647")
    assert footprint(pc["46XES"]).covers(tile) and not xml.covers(tile)
    order = order_for_tile(both, bounds, "EPSG:32647")
    assert order[0].id == pc["46XES"].id and pc["47XML"].id in [i.id for i in order]
    # Two products in other zones both covering: the nearest footprint centre wins.
    far = order_for_tile([pc["46XES"], pc["46XER"]], utm_tile(95.4, 81.44, 32645), "EPSG:32645")
    assert far[0].id == pc["46XER"].id
