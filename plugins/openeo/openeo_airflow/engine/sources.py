"""Which collection a plan source reads and how its items are found.

``load_collection`` names a configured collection (searched by ``catalog.stac``);
``load_stac`` and ``load_result`` are ad-hoc sources made from a STAC document
(``catalog.adhoc``) or a finished job's results (``catalog.job_results``). Batch jobs and
synchronous requests (``planning.shape_job``, ``sync.check_size``) all resolve their sources
here, so each kind of source loads the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from openeo_airflow.catalog.adhoc import AdhocSource, allowed_roots, open_stac
from openeo_airflow.catalog.config import CollectionConfig
from openeo_airflow.catalog.job_results import open_results
from openeo_airflow.catalog.stac import search_items
from openeo_airflow.compiler.plan import Source
from openeo_airflow.core.errors import CollectionNotFound, Internal
from openeo_airflow.io.reader import SearchFn

ADHOC_PROCESSES = ("load_stac", "load_result")


@dataclass(frozen=True)
class ResolvedSource:
    """A source with its collection configuration, item search and band names to load."""

    source: Source
    config: CollectionConfig
    search: SearchFn = search_items


def resolve_source(source: Source, collections: Mapping[str, CollectionConfig]) -> ResolvedSource:
    """The collection a source reads (I/O for ad-hoc sources: their STAC document)."""
    if source.process_id not in ADHOC_PROCESSES:
        config = collections.get(source.collection_id)
        if config is None:
            raise CollectionNotFound(identifier=source.collection_id)
        return ResolvedSource(source, config)
    adhoc = _adhoc(source, collections)
    # Bands may be named by their eo:bands names too: the loader knows the bands' own names.
    named = replace(source, bands=adhoc.bands(source.bands))
    if named.spatial_extent is None and adhoc.native_extent is not None:
        named = replace(named, spatial_extent=adhoc.native_extent)
    return ResolvedSource(named, adhoc.config, adhoc.search)


def _adhoc(source: Source, collections: Mapping[str, CollectionConfig]) -> AdhocSource:
    roots = allowed_roots(collections.values())
    if source.process_id == "load_stac":
        assert source.url is not None
        return open_stac(source.url, roots)
    # load_result: the job service put the results folder of the user's own job into ``url``
    # (or the id was a URL: a STAC document like any other).
    if source.url is None:
        raise Internal(f"load_result of job '{source.collection_id}' was not resolved to a job")
    if source.url.startswith(("http://", "https://")):
        return open_stac(source.url, roots, process="load_result")
    return open_results(Path(source.url), source.collection_id)
