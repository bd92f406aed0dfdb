"""Section 7: configuration values, JSON objects sealed under the session keys, and the
checks every value passes before the charger applies it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import IntEnum
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from evaccess.domain.errors import (
    EvAccessError,
    IntegrityFailure,
    InvalidInput,
    NotAuthenticated,
    PermissionDenied,
    PinRejected,
)
from evaccess.protocol.ble_access.crypto import SessionCipher


class AttErrorCode(IntEnum):
    """Section 7: ATT error codes answered by the configuration characteristics."""

    INSUFFICIENT_AUTHENTICATION = 0x05  # Core Vol 3 Part F 3.4.1.1
    UNLIKELY_ERROR = 0x0E  # the charger could not apply a valid value (e.g. OCPP link down)
    INVALID_VALUE = 0x80  # application error range 0x80-0x9F
    PIN_REJECTED = 0x81
    NOT_PERMITTED = 0x82
    INTEGRITY = 0x83


ATT_ERRORS: tuple[tuple[AttErrorCode, type[EvAccessError], str], ...] = (
    (AttErrorCode.INSUFFICIENT_AUTHENTICATION, NotAuthenticated, "no authenticated session"),
    (AttErrorCode.INTEGRITY, IntegrityFailure, "the value failed authentication"),
    (AttErrorCode.PIN_REJECTED, PinRejected, "the charger rejected the new PIN"),
    (AttErrorCode.INVALID_VALUE, InvalidInput, "the charger rejected the value"),
    (AttErrorCode.NOT_PERMITTED, PermissionDenied, "the charger's policy forbids this change"),
)
"""Both directions of section 7's table, as ``server/api/problems.py`` maps errors to HTTP:
the charger answers the code of the first row whose error it caught (subclasses before their
bases; any other ``EvAccessError`` is NOT_PERMITTED, anything else UNLIKELY_ERROR); the phone
raises the row's error for the code it got."""


def att_code(exc: Exception) -> AttErrorCode:
    """The charger's side: the ATT error answering ``exc``."""
    for code, kind, _ in ATT_ERRORS:
        if isinstance(exc, kind):
            return code
    if isinstance(exc, EvAccessError):
        return AttErrorCode.NOT_PERMITTED
    return AttErrorCode.UNLIKELY_ERROR


def att_exception(code: int) -> EvAccessError:
    """The phone's side: what an ATT error from a configuration characteristic means."""
    for row_code, kind, text in ATT_ERRORS:
        if code == row_code:
            return kind(f"{text} (ATT error 0x{code:02X})")
    return EvAccessError(f"Bluetooth request failed (ATT error 0x{code:02X})")


def config_aad(characteristic: UUID) -> bytes:
    return b"evaccess config " + characteristic.bytes


def seal_json(cipher: SessionCipher, characteristic: UUID, value: Mapping[str, Any]) -> bytes:
    """Section 7: configuration values are JSON objects sealed under the session keys."""
    return cipher.seal(config_aad(characteristic), json.dumps(dict(value)).encode())


def open_json(cipher: SessionCipher, characteristic: UUID, blob: bytes) -> dict[str, Any]:
    plaintext = cipher.open(config_aad(characteristic), blob)
    try:
        value = json.loads(plaintext)
    except ValueError:
        raise InvalidInput("configuration value is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidInput("configuration value is not a JSON object")
    return value


CURRENT_LIMIT_RANGE_A = (6, 32)
"""Section 7: the current limit a phone may set, in amperes."""
FIRMWARE_URL_MAX = 200


def check_wifi(ssid: object, password: object) -> tuple[str, str]:
    """Section 7: an SSID of 1-32 bytes; a WPA2 passphrase of 8-63 characters, or none."""
    if not isinstance(ssid, str) or not 1 <= len(ssid.encode()) <= 32:
        raise InvalidInput("a Wi-Fi SSID has 1 to 32 bytes")
    if not isinstance(password, str) or not (len(password) == 0 or 8 <= len(password) <= 63):
        raise InvalidInput("a WPA2 passphrase has 8 to 63 characters")
    return ssid, password


def check_current_limit(amps: object) -> int:
    low, high = CURRENT_LIMIT_RANGE_A
    if not isinstance(amps, int) or isinstance(amps, bool) or not low <= amps <= high:
        raise InvalidInput(f"the current limit is {low} to {high} A")
    return amps


def check_firmware_url(url: object) -> str:
    if not isinstance(url, str) or urlsplit(url).scheme != "https" or len(url) > FIRMWARE_URL_MAX:
        raise InvalidInput(
            f"a firmware location is an https URL of at most {FIRMWARE_URL_MAX} characters"
        )
    return url
