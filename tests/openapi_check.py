"""Validates our API responses against the official openEO API 1.2.0 OpenAPI document."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

SCHEMAS = Path(__file__).resolve().parents[1].parent / "shared" / "schemas"
SPEC = SCHEMAS / "openeo-api-1.2.0-openapi.yaml"
BASE = "http://testserver"


@cache
def openapi() -> OpenAPI:
    document: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    document["servers"] = [{"url": BASE}]
    # The spec's process_json_schema is a oneOf whose branches (process graph, data cube,
    # generic) differ only by `subtype` values that OpenAPI 3.0 cannot make exclusive, so every
    # real process schema matches several branches and strict oneOf rejects them all. Its intent
    # is "any of these kinds": validate it that way.
    schema = document["components"]["schemas"]["process_json_schema"]
    schema["anyOf"] = schema.pop("oneOf")
    return OpenAPI.from_dict(document)


def assert_valid(response: Any, path_pattern: str) -> None:
    """Assert that an httpx/TestClient response matches the spec for its method and path."""
    request = response.request
    path = request.url.path.removeprefix("/openeo/1.2") or "/"
    mock_request = MockRequest(
        "http://testserver/openeo/1.2",
        request.method.lower(),
        path,
        path_pattern=path_pattern,
        headers=dict(request.headers),
    )
    content_type = response.headers.get("content-type", "application/json").split(";")[0]
    mock_response = MockResponse(
        response.content,
        status_code=response.status_code,
        headers=dict(response.headers),
        content_type=content_type,
    )
    openapi().validate_response(mock_request, mock_response)
