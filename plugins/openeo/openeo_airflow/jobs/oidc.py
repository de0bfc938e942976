"""OpenID Connect: the production way to authenticate (``Bearer oidc/<provider>/<access token>``).

Providers come from configuration. An access token is accepted when it is a JWT signed by a key of
the provider's JWKS (found through its discovery document), issued by that provider, not expired,
and (when configured) meant for our audience.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from openeo_airflow.core.errors import TokenInvalid
from openeo_airflow.core.models import User

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


@dataclass(frozen=True)
class OidcProvider:
    id: str
    issuer: str
    title: str
    scopes: list[str] = field(default_factory=lambda: ["openid"])
    audience: str | None = None
    default_clients: list[dict[str, Any]] = field(default_factory=list)

    def to_api(self) -> dict[str, Any]:
        """The provider as ``GET /credentials/oidc`` lists it."""
        document: dict[str, Any] = {
            "id": self.id,
            "issuer": self.issuer,
            "title": self.title,
            "scopes": self.scopes,
        }
        if self.default_clients:
            document["default_clients"] = self.default_clients
        return document


def parse_providers(text: str) -> list[OidcProvider]:
    """Providers from a JSON list (the ``OPENEO_AIRFLOW_OIDC_PROVIDERS`` setting)."""
    if not text.strip():
        return []
    return [OidcProvider(**entry) for entry in json.loads(text)]


class OidcVerifier:
    def __init__(self, providers: list[OidcProvider], timeout: float = 10) -> None:
        self._providers = {p.id: p for p in providers}
        self._timeout = timeout
        self._jwks: dict[str, jwt.PyJWKClient] = {}
        self._lock = threading.Lock()

    @property
    def providers(self) -> list[OidcProvider]:
        return list(self._providers.values())

    def user(self, provider_id: str, token: str) -> User:
        provider = self._providers.get(provider_id)
        if provider is None:
            raise TokenInvalid(f"Unknown OpenID Connect provider '{provider_id}'.")
        try:
            key = self._keys(provider).get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                issuer=provider.issuer,
                audience=provider.audience,
                options={"require": ["exp", "iss", "sub"], "verify_aud": bool(provider.audience)},
            )
        except (jwt.PyJWTError, httpx.HTTPError) as exc:
            raise TokenInvalid(
                f"The OpenID Connect token was not accepted ({type(exc).__name__})."
            ) from exc
        # Ids of different providers may collide: qualify them.
        return User(user_id=f"{provider.id}:{claims['sub']}", name=claims.get("name"))

    def _keys(self, provider: OidcProvider) -> jwt.PyJWKClient:
        with self._lock:
            client = self._jwks.get(provider.id)
            if client is None:
                url = provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
                discovery = httpx.get(url, timeout=self._timeout)
                discovery.raise_for_status()
                client = jwt.PyJWKClient(discovery.json()["jwks_uri"], cache_keys=True)
                self._jwks[provider.id] = client
            return client
