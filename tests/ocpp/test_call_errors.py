"""Issue 8: an error raised while answering a charger's CALL becomes the CALLERROR its
class maps to (one table, like the HTTP problems and the CLI), with a description made of
the error's stable code only: never its message, which may quote what it was given."""

from __future__ import annotations

import logging

import pytest

from evaccess.domain import errors
from evaccess.protocol.ocpp_frames import OcppVersion, RpcError, wire_error_code
from evaccess.server.ocpp.errors import CALL_ERRORS, call_error_for
from evaccess.server.ocpp.memory_backend import InMemoryOcppBackend

from .conftest import KEYCODE, assert_no_secret_logged

CASES = [
    (errors.InvalidInput, "PropertyConstraintViolation", "invalid_input"),
    (errors.PinRejected, "PropertyConstraintViolation", "pin_rejected"),
    (errors.NotAuthenticated, "SecurityError", "not_authenticated"),
    (errors.PermissionDenied, "SecurityError", "permission_denied"),
    (errors.NotFound, "PropertyConstraintViolation", "not_found"),
    (errors.Conflict, "GenericError", "conflict"),
    (errors.PolicyViolation, "GenericError", "policy_violation"),
    (errors.IntegrityFailure, "InternalError", "integrity_failure"),
    (errors.AuditUnavailable, "InternalError", "audit_unavailable"),
    (errors.ConfigurationError, "InternalError", "configuration_error"),
]


def _raise(cls: type[errors.EvAccessError]) -> errors.EvAccessError:
    # A message quoting the code: the boundary must not pass it on.
    if issubclass(cls, errors.Throttled):
        return cls(f"too many tries with {KEYCODE}", retry_after=30)
    return cls(f"refused {KEYCODE}")


@pytest.mark.parametrize("version", ["ocpp2.0.1", "ocpp1.6"])
@pytest.mark.parametrize(("cls", "wire", "description"), CASES)
async def test_domain_error_becomes_its_call_error(
    open_charger,
    backend: InMemoryOcppBackend,
    caplog: pytest.LogCaptureFixture,
    version: str,
    cls: type[errors.EvAccessError],
    wire: str,
    description: str,
) -> None:
    async def failing(charger_id: str, code: str) -> None:
        raise _raise(cls)

    backend.authorize_keycode = failing  # type: ignore[method-assign]
    caplog.set_level(logging.DEBUG)
    charger = await open_charger(version=version)
    payload = (
        {"idToken": {"idToken": KEYCODE, "type": "KeyCode"}}
        if version == "ocpp2.0.1"
        else {"idTag": KEYCODE}
    )
    reply = await charger.call("Authorize", payload)
    assert reply == [4, reply[1], wire, description, {}]
    assert (await charger.call("Heartbeat", {}))[0] == 3  # the session goes on
    assert_no_secret_logged(caplog)


@pytest.mark.parametrize("cls", [errors.Throttled, errors.LockedOut, errors.PairingDisabled])
def test_throttling_says_when_to_retry_and_nothing_else(cls: type[errors.Throttled]) -> None:
    error, description = call_error_for(_raise(cls))
    assert error is RpcError.GENERIC_ERROR
    assert description == f"{cls.code}: retry after 30 s"


def test_unexpected_exception_is_an_internal_error() -> None:
    assert call_error_for(RuntimeError(f"driver said {KEYCODE}")) == (
        RpcError.INTERNAL_ERROR,
        "internal error",
    )


def test_every_domain_error_has_a_row_and_a_code_both_versions_spell() -> None:
    def subclasses(cls: type[errors.EvAccessError]) -> list[type[errors.EvAccessError]]:
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]

    # The tree of domain/errors.py (other modules' own subclasses are InternalErrors here).
    tree = [c for c in subclasses(errors.EvAccessError)[1:] if c.__module__ == errors.__name__]
    assert len(tree) >= 14  # the walk found the tree
    for cls in tree:
        assert any(issubclass(cls, row) for row, _ in CALL_ERRORS), cls
    for _, error in CALL_ERRORS:
        for version in OcppVersion:
            # No stand-in spelling: each maps to a code of its own in 1.6 too.
            assert wire_error_code(error, version) == error.value
