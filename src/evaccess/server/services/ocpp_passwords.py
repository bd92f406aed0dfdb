"""The password each charger presents on its OCPP connection (Basic Auth): generated at
registration, shown once, stored as a hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets

OCPP_PASSWORD_BYTES = 24  # 32 URL-safe characters: within OCPP's 16-40 (A00.FR.205)


def new_ocpp_password() -> str:
    return secrets.token_urlsafe(OCPP_PASSWORD_BYTES)


def hash_ocpp_password(password: str) -> str:
    """A charger password carries 192 random bits: SHA-256 is enough and keeps 10,000
    reconnecting chargers cheap to authenticate (argon2 is for human passwords)."""
    return "sha256$" + hashlib.sha256(password.encode()).hexdigest()


def verify_ocpp_password(stored: str, password: str) -> bool:
    return hmac.compare_digest(stored, hash_ocpp_password(password))
