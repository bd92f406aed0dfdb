"""How the configuration characteristics answer a refusal (docs/ble-protocol.md section 7):
one table from the exception tree to ATT error codes, as ``server/api/problems.py`` maps it
to HTTP problems. The first matching row wins, so subclasses come before their bases."""

from __future__ import annotations

from bumble.att import ATT_UNLIKELY_ERROR_ERROR, ATT_Error

from evaccess.domain.errors import (
    EvAccessError,
    IntegrityFailure,
    InvalidInput,
    NotAuthenticated,
    PinRejected,
)
from evaccess.protocol.ble_access import AttErrorCode

ATT_ERRORS: tuple[tuple[type[EvAccessError], int], ...] = (
    (NotAuthenticated, AttErrorCode.INSUFFICIENT_AUTHENTICATION),
    (IntegrityFailure, AttErrorCode.INTEGRITY),
    (PinRejected, AttErrorCode.PIN_REJECTED),
    (InvalidInput, AttErrorCode.INVALID_VALUE),
    (EvAccessError, AttErrorCode.NOT_PERMITTED),
)
"""Anything else (e.g. the OCPP half failed to queue a report) is ATT 0x0E Unlikely Error."""


def att_error(exc: Exception) -> ATT_Error:
    for kind, code in ATT_ERRORS:
        if isinstance(exc, kind):
            return ATT_Error(code)
    return ATT_Error(ATT_UNLIKELY_ERROR_ERROR)
