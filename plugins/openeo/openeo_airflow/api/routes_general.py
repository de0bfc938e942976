"""Discovery and account endpoints: capabilities, conformance, formats, processes, collections."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from openeo_airflow import __version__
from openeo_airflow.api.deps import BackendDep, UserDep, basic_credentials
from openeo_airflow.catalog.metadata import collection_metadata, collection_summary
from openeo_airflow.core.errors import CollectionNotFound
from openeo_airflow.io.formats import OUTPUT_FORMATS
from openeo_airflow.processes.registry import list_processes
from openeo_airflow.processes.udf import udf_runtimes as runtimes
from openeo_airflow.sizing.resources import JOB_OPTIONS

API_VERSION = "1.2.0"
STAC_VERSION = "1.0.0"
CONFORMANCE = [
    "https://api.openeo.org/1.2.0",
    "https://api.stacspec.org/v1.0.0/collections",
]

well_known = APIRouter()
router = APIRouter()


def api_root(request: Request) -> str:
    return str(request.url_for("capabilities")).rstrip("/")


@well_known.get("/.well-known/openeo", name="well_known")
def well_known_document(request: Request) -> dict[str, Any]:
    return {
        "versions": [
            {"url": api_root(request) + "/", "api_version": API_VERSION, "production": False}
        ]
    }


@router.get("/", name="capabilities")
def capabilities(request: Request) -> dict[str, Any]:
    root = api_root(request)
    return {
        "api_version": API_VERSION,
        "backend_version": __version__,
        "stac_version": STAC_VERSION,
        "type": "Catalog",
        "id": "openeo-airflow",
        "title": "openeo-airflow",
        "description": "An openEO backend whose batch jobs run as Apache Airflow DAG runs.",
        "production": False,
        "endpoints": endpoints(request),
        "links": [
            {"rel": "self", "href": root + "/", "type": "application/json"},
            {"rel": "conformance", "href": root + "/conformance", "type": "application/json"},
            {"rel": "data", "href": root + "/collections", "type": "application/json"},
            {
                "rel": "version-history",
                "href": str(request.url_for("well_known")),
                "type": "application/json",
            },
        ],
    }


def endpoints(request: Request) -> list[dict[str, Any]]:
    """Every endpoint this app serves under the version prefix, from its own routing table."""
    prefix = request.app.state.version_prefix
    methods: dict[str, set[str]] = {}
    for route in request.app.routes:
        path = getattr(route, "path", "")
        if not path.startswith(prefix + "/") or not getattr(route, "include_in_schema", True):
            continue
        verbs: set[str] = set(getattr(route, "methods", None) or ()) - {"HEAD", "OPTIONS"}
        methods.setdefault(path[len(prefix) :], set()).update(verbs)
    return [{"path": p, "methods": sorted(m)} for p, m in sorted(methods.items()) if m]


@router.get("/conformance")
def conformance() -> dict[str, Any]:
    return {"conformsTo": CONFORMANCE}


@router.get("/file_formats")
def file_formats() -> dict[str, Any]:
    return {"input": {}, "output": OUTPUT_FORMATS}


@router.get("/processes")
def processes(request: Request) -> dict[str, Any]:
    root = api_root(request)
    return {
        "processes": list_processes(),
        "links": [{"rel": "self", "href": root + "/processes", "type": "application/json"}],
    }


@router.get("/collections")
def collections(request: Request, backend: BackendDep) -> dict[str, Any]:
    root = api_root(request)
    return {
        "collections": [
            _with_links(collection_summary(c), root) for c in backend.collections.values()
        ],
        "links": [{"rel": "self", "href": root + "/collections", "type": "application/json"}],
    }


@router.get("/collections/{collection_id}")
def collection(collection_id: str, request: Request, backend: BackendDep) -> dict[str, Any]:
    config = backend.collections.get(collection_id)
    if config is None:
        raise CollectionNotFound(identifier=collection_id)
    return _with_links(collection_metadata(config), api_root(request))


def _with_links(document: dict[str, Any], root: str) -> dict[str, Any]:
    self_href = f"{root}/collections/{document['id']}"
    links = [link for link in document.get("links", []) if link.get("rel") not in ("self", "root")]
    links += [
        {"rel": "self", "href": self_href, "type": "application/json"},
        {"rel": "root", "href": root + "/", "type": "application/json"},
    ]
    return {**document, "links": links}


@router.get("/credentials/basic")
def credentials_basic(request: Request, backend: BackendDep) -> dict[str, Any]:
    user, password = basic_credentials(request)
    return {"access_token": backend.accounts.login(user, password)}


@router.get("/credentials/oidc")
def credentials_oidc(backend: BackendDep) -> dict[str, Any]:
    return {"providers": [p.to_api() for p in backend.oidc.providers]}


@router.get("/udf_runtimes")
def udf_runtimes() -> dict[str, Any]:
    return runtimes()


@router.get("/me")
def me(user: UserDep) -> dict[str, Any]:
    return {"user_id": user.user_id, "name": user.name or user.user_id, "links": []}


@router.get("/processing_parameters")
def processing_parameters() -> dict[str, Any]:
    """The ``job_options`` a batch job accepts (openEO processing-parameters extension)."""
    return {
        "create_job_parameters": [
            {
                "name": spec.name,
                "description": spec.description,
                "optional": True,
                "default": spec.default,
                "schema": spec.schema,
            }
            for spec in JOB_OPTIONS
        ],
        "create_synchronous_parameters": [],
        "create_service_parameters": [],
    }
