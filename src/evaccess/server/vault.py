"""Bluetooth PINs at rest and keypad PIN digests.

``PinVault`` encrypts a charger's PIN with AES-256-GCM: a fresh 96-bit nonce per encryption,
associated data binding the ciphertext to its charger and key version, so a ciphertext
copied onto another charger's row (or relabelled with another key version) fails to decrypt
instead of revealing the wrong PIN. Stored form: nonce (12) ‖ ciphertext ‖ tag (16).

``KeypadHasher`` turns a keypad PIN into HMAC-SHA256(pepper, pin space ‖ PIN): found in one
indexed lookup, and a database dump without the pepper reveals nothing (docs/security.md).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from evaccess.domain.clock import RandomSource
from evaccess.domain.errors import IntegrityFailure
from evaccess.server.keys import KeyProvider

NONCE_BYTES = 12


@dataclass(frozen=True, kw_only=True, slots=True)
class Sealed:
    ciphertext: bytes
    key_version: int


BLUETOOTH_PIN = "bluetooth-pin"
KEYPAD_PIN = "keypad-pin"
"""Purposes: a keypad PIN is sealed only for organisations that opted into offline keypad
use (its subject is ``space:user``); the purpose is bound like the subject."""


def _associated_data(purpose: str, subject: str, key_version: int) -> bytes:
    return f"evaccess/{purpose}/v1|subject={subject}|key={key_version}".encode()


class PinVault:
    def __init__(self, keys: KeyProvider, rng: RandomSource) -> None:
        self._keys = keys
        self._rng = rng

    def seal(self, subject: str, pin: str, *, purpose: str = BLUETOOTH_PIN) -> Sealed:
        ring = self._keys.load()
        version = ring.vault_version
        nonce = self._rng.token_bytes(NONCE_BYTES)
        body = AESGCM(ring.vault[version]).encrypt(
            nonce, pin.encode(), _associated_data(purpose, subject, version)
        )
        return Sealed(ciphertext=nonce + body, key_version=version)

    def open(self, subject: str, sealed: Sealed, *, purpose: str = BLUETOOTH_PIN) -> str:
        key = self._keys.load().vault.get(sealed.key_version)
        if key is None:  # rotated by another process a moment ago?
            key = self._keys.reload().vault.get(sealed.key_version)
        if key is None:
            raise IntegrityFailure(
                f"a {purpose.replace('-', ' ')} is sealed under key version {sealed.key_version}, "
                "which this server does not have"
            )
        nonce, body = sealed.ciphertext[:NONCE_BYTES], sealed.ciphertext[NONCE_BYTES:]
        try:
            plain = AESGCM(key).decrypt(
                nonce, body, _associated_data(purpose, subject, sealed.key_version)
            )
        except InvalidTag:
            raise IntegrityFailure(
                f"a stored {purpose.replace('-', ' ')} failed authentication (tampered or misplaced)"
            ) from None
        return plain.decode()

    def current_version(self) -> int:
        return self._keys.load().vault_version


class KeypadHasher:
    def __init__(self, keys: KeyProvider) -> None:
        self._keys = keys

    def digest(self, pin_space_id: str, pin: str) -> bytes:
        message = f"evaccess/keypad-pin/v1|{pin_space_id}|{pin}".encode()
        return hmac.new(self._keys.load().keypad_pepper, message, hashlib.sha256).digest()
