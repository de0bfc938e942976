"""Signed, expiring download links for result files (usable without an auth header)."""

from __future__ import annotations

import hashlib
import hmac
import time


def signature(key: bytes, job_id: str, name: str, expires: int) -> str:
    message = f"{job_id}/{name}/{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def is_valid(key: bytes, job_id: str, name: str, expires: int, given: str) -> bool:
    if expires < time.time():
        return False
    return hmac.compare_digest(signature(key, job_id, name, expires), given)
