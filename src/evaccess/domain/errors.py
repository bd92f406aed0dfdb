"""The one exception tree of evaccess.

Every error a user can meet is an ``EvAccessError`` with a stable ``code``; each boundary
translates it (HTTP problem document, OCPP CallError, ATT error, CLI exit code)::

    EvAccessError
    ├── InvalidInput                 bad value supplied by the caller
    │   └── PinRejected              a PIN that may not be used (trivial, wrong length, taken)
    ├── NotAuthenticated             no or bad credentials
    ├── PermissionDenied             authenticated, but not allowed
    ├── NotFound                     absent, or present but not visible to the caller
    ├── Conflict                     the state does not allow the request now
    │   └── PolicyViolation          the charger's PIN policy forbids it
    ├── Throttled                    too many attempts; ``retry_after`` seconds
    │   └── LockedOut                a PIN entry point is locked
    │       └── PairingDisabled      the long-term failure cap was hit; needs the server
    ├── IntegrityFailure             stored data failed authentication (tampering, wrong key)
    │   └── AuditChainBroken         the audit log chain does not verify
    ├── AuditUnavailable             the audit log could not be written: nothing is revealed
    ├── ClusterUnavailable           the shared security counters (Redis) are unreachable
    └── ConfigurationError           settings are missing or inconsistent (fail fast)

Messages never contain a PIN, keypad code, password or key: they are shown to users.
"""

from __future__ import annotations


class EvAccessError(Exception):
    """Root of every error evaccess raises on purpose."""

    code: str = "evaccess_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class InvalidInput(EvAccessError):
    code = "invalid_input"


class PinRejected(InvalidInput):
    code = "pin_rejected"


class NotAuthenticated(EvAccessError):
    code = "not_authenticated"


class PermissionDenied(EvAccessError):
    code = "permission_denied"


class NotFound(EvAccessError):
    code = "not_found"


class Conflict(EvAccessError):
    code = "conflict"


class PolicyViolation(Conflict):
    code = "policy_violation"


class Throttled(EvAccessError):
    code = "throttled"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class LockedOut(Throttled):
    code = "locked_out"


class PairingDisabled(LockedOut):
    code = "pairing_disabled"


class IntegrityFailure(EvAccessError):
    code = "integrity_failure"


class AuditChainBroken(IntegrityFailure):
    code = "audit_chain_broken"


class AuditUnavailable(EvAccessError):
    code = "audit_unavailable"


class ClusterUnavailable(EvAccessError):
    """The security counters shared by the server nodes cannot be read or counted: the
    attempt is refused (fail closed), never let through uncounted."""

    code = "cluster_unavailable"


class ConfigurationError(EvAccessError):
    code = "configuration_error"
