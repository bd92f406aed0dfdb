"""The OCPP boundary of the exception tree (``domain/errors.py``): which CALLERROR answers a
CALL whose handling raised, as ``api/problems.py`` does for HTTP and ``console.py`` for the
CLI.

The description is the error's stable ``code`` (plus, when throttled, the delay), never its
message: a message may quote what it was given (a keypad code, a token), and a CALLERROR
goes back over the wire and into the charger's logs. Its details stay ``{}``.
"""

from __future__ import annotations

import math
from typing import Final

from evaccess.domain import errors
from evaccess.protocol.ocpp_frames import RpcError

CALL_ERRORS: Final[tuple[tuple[type[errors.EvAccessError], RpcError], ...]] = (
    # A field holds a value the CSMS refuses, or names something it does not know
    # (2.0.1 Part 4 §4.2.3 / 1.6J §4.2.3 "PropertyConstraintViolation").
    (errors.InvalidInput, RpcError.PROPERTY_CONSTRAINT_VIOLATION),
    (errors.NotFound, RpcError.PROPERTY_CONSTRAINT_VIOLATION),
    # "A security issue occurred preventing receiver from completing the Action".
    (errors.NotAuthenticated, RpcError.SECURITY_ERROR),
    (errors.PermissionDenied, RpcError.SECURITY_ERROR),
    # Well-formed and allowed, but not now: OCPP has no closer code than GenericError.
    (errors.Conflict, RpcError.GENERIC_ERROR),
    (errors.Throttled, RpcError.GENERIC_ERROR),
    # The CSMS's own trouble.
    (errors.IntegrityFailure, RpcError.INTERNAL_ERROR),
    (errors.AuditUnavailable, RpcError.INTERNAL_ERROR),
    (errors.ClusterUnavailable, RpcError.INTERNAL_ERROR),
    (errors.ConfigurationError, RpcError.INTERNAL_ERROR),
)
"""Most specific first is not needed: no row's class derives from another row's."""

INTERNAL_DESCRIPTION: Final = "internal error"


def call_error_for(exc: BaseException) -> tuple[RpcError, str]:
    """The CALLERROR code and description answering ``exc`` (no secret: see module doc)."""
    if isinstance(exc, errors.EvAccessError):
        for cls, error in CALL_ERRORS:
            if isinstance(exc, cls):
                if isinstance(exc, errors.Throttled) and math.isfinite(exc.retry_after):
                    return error, f"{exc.code}: retry after {max(1, math.ceil(exc.retry_after))} s"
                return error, exc.code
    return RpcError.INTERNAL_ERROR, INTERNAL_DESCRIPTION


def is_internal(error: RpcError) -> bool:
    """Worth an ERROR log line: the CSMS failed, not the charger's request."""
    return error is RpcError.INTERNAL_ERROR
