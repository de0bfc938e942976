"""OpenID Connect bearer tokens, verified against a provider speaking the real protocol on
loopback (discovery document + JWKS), with tokens signed by a key made for the test."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from tests.api_support import PREFIX, make_backend, make_client
from tests.openapi_check import assert_valid

KID = "test-key-1"


def _private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return _private_key()


@pytest.fixture(scope="module")
def issuer(signing_key: rsa.RSAPrivateKey) -> Iterator[str]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    jwks = {"keys": [{**jwk, "kid": KID, "use": "sig", "alg": "RS256"}]}

    class Provider(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            documents = {
                "/.well-known/openid-configuration": {"issuer": base, "jwks_uri": base + "/jwks"},
                "/jwks": jwks,
            }
            body = documents.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(body or {}).encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def client(tmp_path: Path, issuer: str) -> TestClient:
    providers = [
        {"id": "test", "issuer": issuer, "title": "Test provider", "scopes": ["openid", "email"]}
    ]
    collections = tmp_path / "collections.yaml"
    collections.write_text("collections: []\n")
    backend = make_backend(tmp_path, collections, oidc_providers=json.dumps(providers))
    return make_client(backend)


def token(key: rsa.RSAPrivateKey, issuer: str, **claims: object) -> str:
    payload = {"iss": issuer, "sub": "alice-sub", "exp": int(time.time()) + 300, **claims}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": KID})


def test_providers_are_listed(client: TestClient, issuer: str) -> None:
    response = client.get(PREFIX + "/credentials/oidc")
    assert_valid(response, "/credentials/oidc")
    assert response.json()["providers"][0]["issuer"] == issuer


def test_valid_token_identifies_the_user(
    client: TestClient, signing_key: rsa.RSAPrivateKey, issuer: str
) -> None:
    headers = {"Authorization": f"Bearer oidc/test/{token(signing_key, issuer)}"}
    response = client.get(PREFIX + "/me", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["user_id"] == "test:alice-sub"


@pytest.mark.parametrize(
    "case", ["expired", "wrong issuer", "foreign key", "unknown provider", "garbage"]
)
def test_bad_tokens_are_refused(
    client: TestClient, signing_key: rsa.RSAPrivateKey, issuer: str, case: str
) -> None:
    provider = "test"
    if case == "expired":
        value = token(signing_key, issuer, exp=int(time.time()) - 10)
    elif case == "wrong issuer":
        value = token(signing_key, "https://evil.example")
    elif case == "foreign key":
        value = token(_private_key(), issuer)
    elif case == "unknown provider":
        value, provider = token(signing_key, issuer), "nope"
    else:
        value = "not-a-jwt"
    response = client.get(
        PREFIX + "/me", headers={"Authorization": f"Bearer oidc/{provider}/{value}"}
    )
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "TokenInvalid"
