"""Local accounts for basic auth: hashed passwords and opaque access tokens.

Production deployments authenticate through OIDC instead; both end in a ``User``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import Engine, delete, insert, select, update

from openeo_airflow.core.errors import CredentialsInvalid, TokenInvalid
from openeo_airflow.core.models import User
from openeo_airflow.jobs.registry import now
from openeo_airflow.jobs.tables import tokens, users

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, salt_hex, digest_hex = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    expected = hash_password(password, bytes.fromhex(salt_hex)).split("$")[2]
    return hmac.compare_digest(expected, digest_hex)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, engine: Engine, token_ttl_seconds: int = 24 * 3600) -> None:
        self._engine = engine
        self._ttl = timedelta(seconds=token_ttl_seconds)

    def set_password(self, user_id: str, password: str) -> None:
        hashed = hash_password(password)
        with self._engine.begin() as conn:
            exists = conn.execute(select(users.c.user_id).where(users.c.user_id == user_id)).first()
            if exists:
                conn.execute(
                    update(users).where(users.c.user_id == user_id).values(password_hash=hashed)
                )
            else:
                conn.execute(
                    insert(users).values(user_id=user_id, password_hash=hashed, created=now())
                )

    def login(self, user_id: str, password: str) -> str:
        """Check the password and hand out a new access token."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(users.c.password_hash).where(users.c.user_id == user_id)
            ).first()
        if row is None or not row[0] or not check_password(password, row[0]):
            raise CredentialsInvalid()
        token = secrets.token_urlsafe(32)
        with self._engine.begin() as conn:
            conn.execute(delete(tokens).where(tokens.c.expires < now()))
            conn.execute(
                insert(tokens).values(
                    token_hash=_token_hash(token), user_id=user_id, expires=now() + self._ttl
                )
            )
        return token

    def user_for_token(self, token: str) -> User:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(tokens.c.user_id, tokens.c.expires).where(
                    tokens.c.token_hash == _token_hash(token)
                )
            ).first()
        if row is None:
            raise TokenInvalid()
        expires = row[1] if row[1].tzinfo else row[1].replace(tzinfo=now().tzinfo)
        if expires < now():
            raise TokenInvalid()
        return User(user_id=row[0], name=row[0])
