"""Which bands a node's cube has, known before anything runs, to catch wrong band names.

A collection's bands come from its configuration: the validator's ``collections`` mapping gives
per collection id either a list of band labels or a mapping ``{label: common name}``. The bands
of a node follow the data flow: ``load_collection`` (its ``bands`` or all of the collection's),
``filter_bands`` (the selection), processes that keep the bands (filters, masks, ``apply``,
reductions over other dimensions...) and ``merge_cubes`` (both cubes' bands). Anything else:
unknown, so nothing is checked against it.

A band may be named by its label or its common name (openEO); ``rededge`` names all the
``rededge*`` bands (the STAC eo extension's broader common name).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeGuard

Bands = dict[str, str | None]  # label -> common name, in cube order

KEEP_BANDS = frozenset(
    {
        "apply",
        "filter_bbox",
        "filter_temporal",
        "filter_spatial",
        "filter_labels",
        "mask",
        "mask_polygon",
        "resample_spatial",
        "resample_cube_spatial",
        "resample_cube_temporal",
        "apply_kernel",
        "apply_neighborhood",
        "aggregate_temporal",
        "aggregate_temporal_period",
        "add_dimension",
        "trim_cube",
        "save_result",
        "linear_scale_range",
    }
)
ALONG_DIMENSION = frozenset({"reduce_dimension", "apply_dimension", "drop_dimension"})


def collection_bands(value: Collection[str] | Mapping[str, str | None] | None) -> Bands | None:
    """A configured band list as ``{label: common name}`` (``None``: not known)."""
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, Mapping):
        return {str(k): (str(v) if v else None) for k, v in value.items()}
    return {str(label): None for label in value}


def names(bands: Bands) -> list[str]:
    """Every name a band may be given by: labels, then common names."""
    commons = [c for c in bands.values() if c]
    broader = ["rededge"] if any(c.startswith("rededge") for c in commons) else []
    return list(dict.fromkeys([*bands, *commons, *broader]))


def select(bands: Bands, wanted: str) -> list[str]:
    """Labels ``wanted`` refers to: a label first, else the bands of that common name."""
    if wanted in bands:
        return [wanted]
    return [
        label
        for label, common in bands.items()
        if common and (common == wanted or (wanted == "rededge" and common.startswith("rededge")))
    ]


def is_literal_list(value: Any) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def propagate(
    process_id: str,
    arguments: Mapping[str, Any],
    bands_of: Callable[[Any], Bands | None],
    load: Callable[[Mapping[str, Any]], Bands | None],
) -> Bands | None:
    """The bands of a node's result, from its inputs' (``bands_of(argument)``)."""
    if process_id == "load_collection":
        return load(arguments)
    if process_id == "filter_bands":
        data = bands_of(arguments.get("data"))
        wanted = arguments.get("bands")
        if data is None or not is_literal_list(wanted):
            return None
        chosen = [label for name in wanted for label in select(data, name)]
        return {label: data[label] for label in dict.fromkeys(chosen)}
    if process_id in KEEP_BANDS:
        return bands_of(arguments.get("data"))
    if process_id in ALONG_DIMENSION:
        dimension = arguments.get("dimension", arguments.get("name"))
        return (
            bands_of(arguments.get("data"))
            if isinstance(dimension, str) and dimension != "bands"
            else None
        )
    if process_id == "merge_cubes":
        first, second = bands_of(arguments.get("cube1")), bands_of(arguments.get("cube2"))
        if first is None or second is None:
            return None
        return {**first, **second}
    return None
