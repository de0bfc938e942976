"""Recurring products, an extension of the openEO API under ``/products``.

``POST /products`` registers one (an Airflow DAG appears within the DAG processor's refresh),
``GET /products[/{id}]`` lists and shows them, ``POST /products/{id}/pause|resume|backfill``
act on the DAG, ``DELETE /products/{id}`` removes the DAG and keeps the published collection,
served at ``/products/{id}/collection`` (STAC collection, items, signed asset links).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import FileResponse

from openeo_airflow.api.deps import BackendDep, UserDep
from openeo_airflow.api.downloads import transfer_headers
from openeo_airflow.api.routes_general import STAC_VERSION, api_root
from openeo_airflow.api.signing import is_valid, signature
from openeo_airflow.core.errors import ResultAssetNotFound
from openeo_airflow.core.products import Product, ProductInvalid
from openeo_airflow.jobs.backend import Backend

router = APIRouter()
FIELDS = (
    "id",
    "title",
    "description",
    "process",
    "process_graph_id",
    "arguments",
    "schedule",
    "trigger_assets",
    "timezone",
    "window",
    "job_options",
    "paused",
)
LINK_TTL_SECONDS = 7 * 24 * 3600
# A plain JSON object: checked field by field so that every refusal names its field.
JsonBody = Annotated[dict[str, Any], Body()]


def product_document(product: Product, root: str) -> dict[str, Any]:
    href = f"{root}/products/{product.id}"
    document: dict[str, Any] = {name: getattr(product, name) for name in FIELDS}
    document.update(
        {
            "dag_id": product.dag_id,
            "asset": product.asset_uri,
            "start": _iso(product.start),
            "created": _iso(product.created),
            "updated": _iso(product.updated),
            "links": [
                {"rel": "self", "href": href, "type": "application/json"},
                {"rel": "collection", "href": href + "/collection", "type": "application/json"},
            ],
        }
    )
    if product.deleted:
        document["deleted"] = _iso(product.deleted)
    return document


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


@router.post("/products", status_code=201)
def register_product(
    request: Request, user: UserDep, backend: BackendDep, body: JsonBody
) -> Response:
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise ProductInvalid(unknown[0], f"unknown field; known: {', '.join(FIELDS)}")
    product = backend.products.register(user.user_id, body)
    location = f"{api_root(request)}/products/{product.id}"
    return Response(
        status_code=201, headers={"Location": location, "OpenEO-Identifier": product.id}
    )


@router.get("/products")
def list_products(request: Request, user: UserDep, backend: BackendDep) -> dict[str, Any]:
    root = api_root(request)
    return {
        "products": [product_document(p, root) for p in backend.products.of(user.user_id)],
        "links": [{"rel": "self", "href": root + "/products", "type": "application/json"}],
    }


@router.get("/products/{product_id}")
def get_product(
    product_id: str, request: Request, user: UserDep, backend: BackendDep
) -> dict[str, Any]:
    product = backend.products.get(user.user_id, product_id)
    return product_document(product, api_root(request))


@router.post("/products/{product_id}/pause")
def pause_product(
    product_id: str, request: Request, user: UserDep, backend: BackendDep
) -> dict[str, Any]:
    product = backend.products.set_paused(user.user_id, product_id, True)
    return product_document(product, api_root(request))


@router.post("/products/{product_id}/resume")
def resume_product(
    product_id: str, request: Request, user: UserDep, backend: BackendDep
) -> dict[str, Any]:
    product = backend.products.set_paused(user.user_id, product_id, False)
    return product_document(product, api_root(request))


@router.post("/products/{product_id}/backfill", status_code=202)
def backfill_product(
    product_id: str, user: UserDep, backend: BackendDep, body: JsonBody
) -> dict[str, Any]:
    """Runs for every data interval starting in ``[start, end)`` (``reprocess``: ``failed``
    re-runs failed intervals, ``completed`` all of them, ``none`` only missing ones); dates
    and date-times without an offset are read in the product's time zone."""
    start, end = _datetime(body, "start"), _datetime(body, "end")
    reprocess = body.get("reprocess", "failed")
    result = backend.products.backfill(user.user_id, product_id, start, end, str(reprocess))
    return {**result, "start": _iso(result["start"]), "end": _iso(result["end"])}


def _datetime(body: dict[str, Any], name: str) -> datetime:
    """Naive when the text has no offset (the product's zone decides, in the service)."""
    value = body.get(name)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        reason = f"expected an ISO 8601 date or date-time, got {value!r}"
        raise ProductInvalid(name, reason) from None


@router.delete("/products/{product_id}", status_code=204)
def delete_product(product_id: str, user: UserDep, backend: BackendDep) -> Response:
    backend.products.delete(user.user_id, product_id)
    return Response(status_code=204)


@router.get("/products/{product_id}/collection")
def product_collection(
    product_id: str, request: Request, user: UserDep, backend: BackendDep
) -> dict[str, Any]:
    """One STAC collection per product, its extent the union of its items'."""
    product = backend.products.store.get(user.user_id, product_id, deleted=True)
    items = backend.products.catalog.items(product_id)
    href = f"{api_root(request)}/products/{product_id}/collection"
    boxes = [i["bbox"] for i in items if i.get("bbox")]
    bbox = [-180.0, -90.0, 180.0, 90.0]
    if boxes:
        bbox = [min(b[i] for b in boxes) for i in (0, 1)] + [
            max(b[i] for b in boxes) for i in (2, 3)
        ]
    starts = [i["properties"]["start_datetime"] for i in items]
    ends = [i["properties"]["end_datetime"] for i in items]
    return {
        "stac_version": STAC_VERSION,
        "type": "Collection",
        "id": f"product-{product_id}",
        "title": product.title or product_id,
        "description": product.description or f"Results of the openEO product '{product_id}'.",
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [bbox]},
            "temporal": {"interval": [[min(starts, default=None), max(ends, default=None)]]},
        },
        "links": [
            {"rel": "self", "href": href, "type": "application/json"},
            {"rel": "items", "href": href + "/items", "type": "application/geo+json"},
        ]
        + [
            {"rel": "item", "href": f"{href}/items/{i['id']}", "type": "application/geo+json"}
            for i in items
        ],
    }


@router.get("/products/{product_id}/collection/items")
def product_items(
    product_id: str, request: Request, user: UserDep, backend: BackendDep
) -> dict[str, Any]:
    backend.products.store.get(user.user_id, product_id, deleted=True)
    items = backend.products.catalog.items(product_id)
    root = api_root(request)
    return {
        "type": "FeatureCollection",
        "features": [_with_links(backend, i, product_id, root) for i in items],
        "links": [
            {"rel": "self", "href": f"{root}/products/{product_id}/collection/items"},
        ],
    }


@router.get("/products/{product_id}/collection/items/{item_id}")
def product_item(
    product_id: str, item_id: str, request: Request, user: UserDep, backend: BackendDep
) -> dict[str, Any]:
    backend.products.store.get(user.user_id, product_id, deleted=True)
    item = backend.products.catalog.item(product_id, item_id)
    if item is None:
        raise ResultAssetNotFound(file=item_id)
    return _with_links(backend, item, product_id, api_root(request))


def _with_links(
    backend: Backend, item: dict[str, Any], product_id: str, root: str
) -> dict[str, Any]:
    """Asset hrefs become signed download links (like job results: usable without a token)."""
    expires = int(time.time()) + LINK_TTL_SECONDS
    base = f"{root}/products/{product_id}/collection/items/{item['id']}"
    assets = {}
    for name, asset in item.get("assets", {}).items():
        sig = signature(backend.signing_key, f"product:{product_id}/{item['id']}", name, expires)
        assets[name] = {**asset, "href": f"{base}/assets/{name}?expires={expires}&signature={sig}"}
    links = [
        {"rel": "self", "href": base, "type": "application/geo+json"},
        {"rel": "collection", "href": f"{root}/products/{product_id}/collection"},
    ]
    return {**item, "assets": assets, "collection": f"product-{product_id}", "links": links}


@router.get(
    "/products/{product_id}/collection/items/{item_id}/assets/{name}", include_in_schema=False
)
def download_product_asset(
    product_id: str,
    item_id: str,
    name: str,
    backend: BackendDep,
    expires: int = Query(0),
    signature: str = Query(""),
) -> FileResponse:
    if not is_valid(
        backend.signing_key, f"product:{product_id}/{item_id}", name, expires, signature
    ):
        raise ResultAssetNotFound(file=name)
    path = backend.products.catalog.asset_file(product_id, item_id, name)
    item = backend.products.catalog.item(product_id, item_id)
    if path is None or item is None:
        raise ResultAssetNotFound(file=name)
    media = item.get("assets", {}).get(name, {}).get("type", "application/octet-stream")
    return FileResponse(path, media_type=media, filename=name, headers=transfer_headers(media))
