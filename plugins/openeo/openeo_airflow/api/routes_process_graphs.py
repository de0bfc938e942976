"""User-defined processes (``/process_graphs``) and ``POST /validation``."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request, Response

from openeo_airflow.api.deps import BackendDep, UserDep
from openeo_airflow.api.models import ProcessBody
from openeo_airflow.api.routes_general import api_root
from openeo_airflow.core.errors import PredefinedProcessExists, ProcessGraphInvalid
from openeo_airflow.processes.registry import implemented

router = APIRouter()
PROCESS_ID = re.compile(r"^\w+$")
SUMMARY_FIELDS = ("id", "summary", "description", "categories", "parameters", "returns")


@router.post("/validation")
def validate(body: ProcessBody, user: UserDep, backend: BackendDep) -> dict[str, Any]:
    """Every problem of the graph at once; an empty list when it is valid."""
    errors = backend.jobs.problems(user.user_id, body.model_dump(exclude_none=True))
    return {"errors": [{"code": e.code, "message": e.message} for e in errors]}


@router.get("/process_graphs")
def list_process_graphs(request: Request, user: UserDep, backend: BackendDep) -> dict[str, Any]:
    processes = backend.user_processes.of(user.user_id)
    return {
        "processes": [{k: p[k] for k in SUMMARY_FIELDS if k in p} for p in processes],
        "links": [{"rel": "self", "href": api_root(request) + "/process_graphs"}],
    }


@router.get("/process_graphs/{process_graph_id}")
def get_process_graph(process_graph_id: str, user: UserDep, backend: BackendDep) -> dict[str, Any]:
    return backend.user_processes.get(user.user_id, process_graph_id)


@router.put("/process_graphs/{process_graph_id}")
def put_process_graph(
    process_graph_id: str, body: ProcessBody, user: UserDep, backend: BackendDep
) -> Response:
    if not PROCESS_ID.match(process_graph_id):
        raise ProcessGraphInvalid(
            f"Process id '{process_graph_id}' may only contain letters, digits and underscores."
        )
    if process_graph_id in implemented():
        raise PredefinedProcessExists()
    process = body.model_dump(exclude_none=True)
    errors = backend.jobs.problems(user.user_id, process, defining=process_graph_id)
    if errors:
        raise (
            errors[0]
            if len(errors) == 1
            else ProcessGraphInvalid("; ".join(f"[{e.code}] {e.message}" for e in errors))
        )
    backend.user_processes.put(user.user_id, process_graph_id, process)
    return Response(status_code=200)


@router.delete("/process_graphs/{process_graph_id}", status_code=204)
def delete_process_graph(process_graph_id: str, user: UserDep, backend: BackendDep) -> Response:
    backend.user_processes.delete(user.user_id, process_graph_id)
    return Response(status_code=204)
