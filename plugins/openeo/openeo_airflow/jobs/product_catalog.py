"""Each product's published results: a folder per STAC item under the workspace.

``WORKSPACE/products/<product>/items/<item>/`` holds the result files and ``item.json`` (asset
hrefs relative to the folder; the API turns them into signed links). Results are copied out of
the job's workspace so that they outlive the job (deleting or restarting it) and the product.
An item's id comes from the run's data interval: publishing again replaces the folder whole.
"""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

ITEM_FILE = "item.json"
STAC_VERSION = "1.0.0"
PROJECTION = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"


class ProductCatalog:
    def __init__(self, root: Path) -> None:
        self._root = root

    def items_dir(self, product_id: str) -> Path:
        return self._root / product_id / "items"

    def publish(
        self,
        product_id: str,
        item_id: str,
        *,
        extent: list[str],
        data_interval: tuple[datetime, datetime],
        job_id: str,
        results_dir: Path,
        metadata: dict[str, Any],
    ) -> dict[str, Any]:
        """Copy a finished job's results in as the item ``item_id`` (replacing it if present)."""
        target = self.items_dir(product_id) / item_id
        staging = target.with_name(f".{item_id}.tmp-{uuid.uuid4().hex}")
        staging.mkdir(parents=True)
        assets = {}
        for name, asset in metadata.get("assets", {}).items():
            shutil.copy2(results_dir / name, staging / name)
            assets[name] = {**asset, "href": name, "title": name}
        item = _item(item_id, extent, data_interval, job_id, metadata, assets)
        (staging / ITEM_FILE).write_text(json.dumps(item))
        # Swap whole folders: a reader sees the old item or the new one, never a mix.
        old = target.with_name(f".{item_id}.old-{uuid.uuid4().hex}")
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        return item

    def items(self, product_id: str) -> list[dict[str, Any]]:
        """Published items, oldest window first."""
        folder = self.items_dir(product_id)
        found = [
            json.loads(path.read_text())
            for path in folder.glob(f"*/{ITEM_FILE}")
            if not path.parent.name.startswith(".")
        ]
        return sorted(found, key=lambda i: (i["properties"].get("start_datetime") or "", i["id"]))

    def item(self, product_id: str, item_id: str) -> dict[str, Any] | None:
        path = self._safe(self.items_dir(product_id), item_id)
        file = path / ITEM_FILE if path else None
        return json.loads(file.read_text()) if file and file.is_file() else None

    def asset_file(self, product_id: str, item_id: str, name: str) -> Path | None:
        """An item's file by name, never a path outside the item's folder."""
        folder = self._safe(self.items_dir(product_id), item_id)
        path = self._safe(folder, name) if folder else None
        return path if path and path.is_file() and name != ITEM_FILE else None

    @staticmethod
    def _safe(parent: Path, name: str) -> Path | None:
        candidate = (parent / name).resolve()
        if candidate.parent != parent.resolve() or name.startswith("."):
            return None
        return candidate


def _item(
    item_id: str,
    extent: list[str],
    data_interval: tuple[datetime, datetime],
    job_id: str,
    metadata: dict[str, Any],
    assets: dict[str, Any],
) -> dict[str, Any]:
    bbox = metadata.get("bbox")
    geometry = None
    if bbox:
        w, s, e, n = bbox
        geometry = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    properties: dict[str, Any] = {
        "datetime": None,
        "start_datetime": _rfc3339(extent[0]),
        "end_datetime": _rfc3339(extent[1]),
        # Not STAC: which run produced the item (the extent's end is exclusive, as in openEO).
        "openeo:data_interval": [v.isoformat() for v in data_interval],
        "openeo:job_id": job_id,
    }
    extensions = []
    if metadata.get("epsg"):
        extensions.append(PROJECTION)
        properties["proj:code"] = f"EPSG:{metadata['epsg']}"
        properties["proj:shape"] = metadata.get("shape")
        properties["proj:transform"] = metadata.get("transform")
    item: dict[str, Any] = {
        "stac_version": STAC_VERSION,
        "stac_extensions": extensions,
        "type": "Feature",
        "id": item_id,
        "geometry": geometry,
        "properties": properties,
        "assets": assets,
        "links": [],
    }
    if bbox:
        item["bbox"] = bbox
    return item


def _rfc3339(value: str) -> str:
    return value if "T" in value else f"{value}T00:00:00Z"
