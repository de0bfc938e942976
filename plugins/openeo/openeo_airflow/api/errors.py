"""Every failure leaves the API as openEO error JSON with the right status (never a stack trace)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from openeo_airflow.core.errors import (
    AuthenticationRequired,
    FeatureUnsupported,
    Internal,
    NotFound,
    OpenEOError,
    ProcessGraphMissing,
    RequestInvalid,
)

log = logging.getLogger(__name__)


def error_response(error: OpenEOError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(error.to_dict(), status_code=error.status, headers=headers)


def _validation_error(exc: RequestValidationError) -> OpenEOError:
    problems = []
    for item in exc.errors():
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
        if item.get("type") == "json_invalid":
            return RequestInvalid(reason=f"not valid JSON ({item.get('msg')})")
        if where in ("process", "process.process_graph") and item.get("type") == "missing":
            return ProcessGraphMissing()
        problems.append(f"{where or 'body'}: {item.get('msg')}")
    return RequestInvalid(reason="; ".join(problems))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OpenEOError)
    async def openeo_error(_request: Request, exc: OpenEOError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(NotFound())
        if exc.status_code == 405:
            return error_response(FeatureUnsupported("Method not allowed on this path."))
        if exc.status_code == 401:
            return error_response(AuthenticationRequired())
        error = Internal(message=str(exc.detail))
        return JSONResponse(error.to_dict(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        error = Internal()
        error.message = f"Server error: {type(exc).__name__} (reference {error.id})"
        log.exception("Unexpected error %s", error.id)
        return error_response(error)
