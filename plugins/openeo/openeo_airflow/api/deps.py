"""Request dependencies: the backend services and the authenticated user."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, Request

from openeo_airflow.core.errors import (
    AuthenticationRequired,
    AuthenticationSchemeInvalid,
    TokenInvalid,
)
from openeo_airflow.core.models import User
from openeo_airflow.jobs.backend import Backend


def get_backend(request: Request) -> Backend:
    backend: Backend = request.app.state.backend_provider()
    return backend


BackendDep = Annotated[Backend, Depends(get_backend)]


def basic_credentials(request: Request) -> tuple[str, str]:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if not header:
        raise AuthenticationRequired()
    if scheme.lower() != "basic":
        raise AuthenticationSchemeInvalid()
    try:
        user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise AuthenticationSchemeInvalid("Malformed basic credentials.") from exc
    return user, password


def current_user(request: Request, backend: BackendDep) -> User:
    """The user of an ``Authorization: Bearer basic//<token>`` (or, later, ``oidc/...``) header."""
    header = request.headers.get("Authorization", "")
    if not header:
        raise AuthenticationRequired()
    scheme, _, bearer = header.partition(" ")
    if scheme.lower() != "bearer" or not bearer:
        raise AuthenticationSchemeInvalid()
    method, _, token = bearer.partition("/")
    if method == "basic" and token.startswith("/"):
        return backend.accounts.user_for_token(token[1:])
    if method == "oidc":
        provider, _, access_token = token.partition("/")
        if not backend.oidc.providers:
            raise AuthenticationSchemeInvalid("No OpenID Connect provider is configured.")
        return backend.oidc.user(provider, access_token)
    raise TokenInvalid()


UserDep = Annotated[User, Depends(current_user)]
