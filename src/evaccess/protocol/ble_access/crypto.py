"""Section 5: identities, key derivation (HKDF-SHA256), the MACs (HMAC-SHA256) and the
per-direction session cipher (AES-128-GCM, section 5.5)."""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass, field
from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from evaccess.domain.errors import IntegrityFailure
from evaccess.protocol.cpace import lv_cat

SECRET_BYTES = 32
NO_PIN = b""
"""The CPace PRS of a PIN-less enrolment (sections 5.2 and 5.6)."""

CPACE_LABEL = b"evaccess-ble-v2"
"""The first element of CPace's channel identifier CI (section 5.2)."""
CPACE_KEYS_INFO = b"evaccess-ble-v2 cpace keys"


def phone_identity(phone_id: bytes) -> bytes:
    return b"evaccess-phone:" + phone_id.hex().encode()


def charger_identity(serial: str) -> bytes:
    return b"evaccess-charger:" + serial.encode()


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionKeys:
    phone_confirm: bytes = field(repr=False)
    charger_confirm: bytes = field(repr=False)
    phone_to_charger: bytes = field(repr=False)
    charger_to_phone: bytes = field(repr=False)


def derive_keys(secret: bytes, *, salt: bytes, label: bytes) -> SessionKeys:
    """Section 5.3: HKDF-SHA256 -> 2 x 32-byte HMAC keys + 2 x 16-byte AES-GCM keys."""
    okm = HKDF(algorithm=hashes.SHA256(), length=96, salt=salt, info=label).derive(secret)
    return SessionKeys(
        phone_confirm=okm[:32],
        charger_confirm=okm[32:64],
        phone_to_charger=okm[64:80],
        charger_to_phone=okm[80:96],
    )


def channel_identifier(phone_id: bytes, serial: str) -> bytes:
    """Section 5.2: CPace's CI = lv("evaccess-ble-v2", ID_A, ID_B)."""
    return lv_cat(CPACE_LABEL, phone_identity(phone_id), charger_identity(serial))


def pake_ad(version: int, use_pin: bool) -> bytes:
    """Section 5.2: ADa = version || USE_PIN (the phone's associated data; ADb is empty)."""
    return bytes((version, int(use_pin)))


def pake_keys(isk: bytes) -> SessionKeys:
    """Section 5.2: the keys of a PIN exchange (or PIN-less enrolment) from CPace's ISK."""
    return derive_keys(isk, salt=b"", label=CPACE_KEYS_INFO)


def pake_confirm(key: bytes, label: bytes, message: bytes, ad: bytes) -> bytes:
    """Section 5.2: HMAC(key, lv(label, message, ad)): each side MACs the share it sent."""
    return hmac.digest(key, lv_cat(label, message, ad), "sha256")


def auth_keys(secret: bytes, nonce_p: bytes, nonce_c: bytes) -> SessionKeys:
    """Section 5.4: the keys of a credential challenge-response, both sides."""
    return derive_keys(secret, salt=nonce_p + nonce_c, label=b"evaccess-ble-v1 auth")


def keyed_mac(key: bytes, *parts: bytes) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(struct.pack(">H", len(part)) + part)
    return mac.digest()


class Direction(IntEnum):
    PHONE_TO_CHARGER = 1
    CHARGER_TO_PHONE = 2


class SessionCipher:
    """Section 5.5: AES-128-GCM per direction; an 8-byte counter before each ciphertext,
    strictly increasing per direction (a replayed or reordered value is refused)."""

    def __init__(self, keys: SessionKeys, *, outbound: Direction) -> None:
        self._outbound = outbound
        self._inbound = (
            Direction.CHARGER_TO_PHONE
            if outbound is Direction.PHONE_TO_CHARGER
            else Direction.PHONE_TO_CHARGER
        )
        to_charger = AESGCM(keys.phone_to_charger)
        to_phone = AESGCM(keys.charger_to_phone)
        self._send_aead, self._recv_aead = (
            (to_charger, to_phone)
            if outbound is Direction.PHONE_TO_CHARGER
            else (to_phone, to_charger)
        )
        self._sent = 0
        self._received = 0

    @staticmethod
    def _nonce(direction: Direction, counter: int) -> bytes:
        return struct.pack(">IQ", direction, counter)

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        self._sent += 1
        nonce = self._nonce(self._outbound, self._sent)
        return struct.pack(">Q", self._sent) + self._send_aead.encrypt(nonce, plaintext, aad)

    def open(self, aad: bytes, blob: bytes) -> bytes:
        if len(blob) < 8 + 16:
            raise IntegrityFailure("sealed value too short")
        (counter,) = struct.unpack_from(">Q", blob)
        if counter <= self._received:
            raise IntegrityFailure("replayed or reordered value")
        try:
            plaintext = self._recv_aead.decrypt(self._nonce(self._inbound, counter), blob[8:], aad)
        except InvalidTag:
            raise IntegrityFailure("sealed value failed authentication") from None
        self._received = counter
        return plaintext


CREDENTIAL_AAD = b"evaccess credential"
FORGET_AAD = b"evaccess forget"


def build_transcript(
    version: int, id_a: bytes, id_b: bytes, first: bytes, second: bytes, flag: bool
) -> bytes:
    """Section 5.2/5.4: the length-prefixed transcript both sides MAC."""
    parts = (bytes((version,)), id_a, id_b, first, second, bytes((int(flag),)))
    return b"".join(struct.pack(">H", len(part)) + part for part in parts)
