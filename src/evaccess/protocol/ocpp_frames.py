"""OCPP-J framing, compiled schema validation and log redaction (server and charger share it).

OCPP-J (OCPP 2.0.1 Part 4 §4; OCPP-J 1.6 §4) carries every message as a JSON array:

* CALL ``[2, "<messageId>", "<action>", {payload}]``
* CALLRESULT ``[3, "<messageId>", {payload}]``
* CALLERROR ``[4, "<messageId>", "<errorCode>", "<errorDescription>", {errorDetails}]``

Payloads are checked against the OCA JSON schemas shipped in the ``ocpp`` package, compiled
once per (version, action, direction) with fastjsonschema, lazily, and cached: the ``ocpp``
library's own jsonschema validation is most of its per-message cost (docs/ocpp.md).

Nothing here echoes a payload: error descriptions name the rule and the field path only, and
:func:`redact` masks every secret-bearing field before a frame reaches a log line (OCPP 2.0.1
C04.FR.04: KeyCodes shall not be logged).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from importlib import resources
from typing import Any, Final

import fastjsonschema


class OcppVersion(StrEnum):
    """The WebSocket subprotocols evaccess speaks (OCPP 2.0.1 Part 4 §3.1.2)."""

    V201 = "ocpp2.0.1"
    V16 = "ocpp1.6"


SCHEMA_PACKAGES: Final[dict[OcppVersion, str]] = {
    OcppVersion.V201: "v201",
    OcppVersion.V16: "v16",
}


class MessageTypeId(IntEnum):
    """MessageTypeId (OCPP 2.0.1 Part 4 §4.1.3; OCPP-J 1.6 §4.1.3)."""

    CALL = 2
    CALL_RESULT = 3
    CALL_ERROR = 4


class RpcError(StrEnum):
    """RPC framework error codes, by meaning; :func:`wire_error_code` spells them per version."""

    FORMAT_VIOLATION = "FormatViolation"
    GENERIC_ERROR = "GenericError"
    INTERNAL_ERROR = "InternalError"
    MESSAGE_TYPE_NOT_SUPPORTED = "MessageTypeNotSupported"
    NOT_IMPLEMENTED = "NotImplemented"
    NOT_SUPPORTED = "NotSupported"
    OCCURRENCE_CONSTRAINT_VIOLATION = "OccurrenceConstraintViolation"
    PROPERTY_CONSTRAINT_VIOLATION = "PropertyConstraintViolation"
    PROTOCOL_ERROR = "ProtocolError"
    RPC_FRAMEWORK_ERROR = "RpcFrameworkError"
    SECURITY_ERROR = "SecurityError"
    TYPE_CONSTRAINT_VIOLATION = "TypeConstraintViolation"


# OCPP-J 1.6 §4.2.3 table 7 spells two codes differently and lacks two others; the
# closest 1.6 code stands in for them.
_V16_SPELLING: Final[dict[RpcError, str]] = {
    RpcError.FORMAT_VIOLATION: "FormationViolation",
    RpcError.OCCURRENCE_CONSTRAINT_VIOLATION: "OccurenceConstraintViolation",
    RpcError.RPC_FRAMEWORK_ERROR: "GenericError",
    RpcError.MESSAGE_TYPE_NOT_SUPPORTED: "GenericError",
}


def wire_error_code(error: RpcError, version: OcppVersion) -> str:
    """The errorCode string for ``error`` in ``version``'s CALLERROR."""
    if version is OcppVersion.V16:
        return _V16_SPELLING.get(error, error.value)
    return error.value


UNKNOWN_MESSAGE_ID: Final = "-1"
"""messageId of a CALLERROR answering a frame whose own id could not be read (2.0.1 §4.2.3)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Call:
    message_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class CallResult:
    message_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class CallError:
    message_id: str
    error_code: str
    description: str
    details: dict[str, Any] = field(default_factory=dict)


Frame = Call | CallResult | CallError


class FrameError(Exception):
    """A frame that must be answered with a CALLERROR (never carries payload content)."""

    def __init__(
        self, error: RpcError, description: str, *, message_id: str = UNKNOWN_MESSAGE_ID
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.message_id = message_id
        self.answerable = True
        """False for a broken CALLRESULT/CALLERROR: OCPP-J never answers those."""


def parse_frame(text: str | bytes) -> Frame:
    """Decode one OCPP-J message; raise :class:`FrameError` for anything malformed."""
    try:
        message = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise FrameError(RpcError.RPC_FRAMEWORK_ERROR, "message is not valid JSON") from None
    if not isinstance(message, list) or len(message) < 3:
        raise FrameError(RpcError.RPC_FRAMEWORK_ERROR, "message is not an OCPP-J array")
    message_type, message_id = message[0], message[1]
    if not isinstance(message_id, str) or not message_id or len(message_id) > 36:
        # 2.0.1 Part 4 §4.1.4: messageId is a string of at most 36 characters.
        raise FrameError(RpcError.RPC_FRAMEWORK_ERROR, "messageId must be a string (max 36)")
    if message_type == MessageTypeId.CALL and type(message_type) is int:
        if len(message) != 4 or not isinstance(message[2], str):
            raise FrameError(
                RpcError.RPC_FRAMEWORK_ERROR,
                "CALL must be [2, id, action, payload]",
                message_id=message_id,
            )
        if not isinstance(message[3], dict):
            raise FrameError(
                RpcError.FORMAT_VIOLATION, "CALL payload must be an object", message_id=message_id
            )
        return Call(message_id=message_id, action=message[2], payload=message[3])
    if message_type == MessageTypeId.CALL_RESULT and type(message_type) is int:
        if len(message) != 3 or not isinstance(message[2], dict):
            error = FrameError(RpcError.FORMAT_VIOLATION, "bad CALLRESULT", message_id=message_id)
            error.answerable = False
            raise error
        return CallResult(message_id=message_id, payload=message[2])
    if message_type == MessageTypeId.CALL_ERROR and type(message_type) is int:
        if len(message) != 5 or not isinstance(message[2], str):
            error = FrameError(RpcError.FORMAT_VIOLATION, "bad CALLERROR", message_id=message_id)
            error.answerable = False
            raise error
        details = message[4] if isinstance(message[4], dict) else {}
        return CallError(
            message_id=message_id,
            error_code=message[2],
            description=str(message[3]),
            details=details,
        )
    raise FrameError(
        RpcError.MESSAGE_TYPE_NOT_SUPPORTED, "unknown MessageTypeId", message_id=message_id
    )


# One encoder for the process: json.dumps with options builds a new one on every call.
_dumps: Final[Callable[[Any], str]] = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False
).encode


def encode_call(message_id: str, action: str, payload: Mapping[str, Any]) -> str:
    return _dumps([MessageTypeId.CALL.value, message_id, action, payload])


def encode_call_result(message_id: str, payload: Mapping[str, Any]) -> str:
    return _dumps([MessageTypeId.CALL_RESULT.value, message_id, payload])


def encode_call_error(
    message_id: str, error: RpcError, description: str, version: OcppVersion
) -> str:
    """A CALLERROR whose details are always ``{}``: nothing of the offending payload returns."""
    return _dumps(
        [
            MessageTypeId.CALL_ERROR.value,
            message_id,
            wire_error_code(error, version),
            description,
            {},
        ]
    )


# fastjsonschema rule -> RPC error (2.0.1 Part 4 §4.2.3 table "ErrorCode"; 1.6J §4.2.3).
_RULE_ERRORS: Final[dict[str, RpcError]] = {
    "type": RpcError.TYPE_CONSTRAINT_VIOLATION,
    "required": RpcError.OCCURRENCE_CONSTRAINT_VIOLATION,
    "minItems": RpcError.OCCURRENCE_CONSTRAINT_VIOLATION,
    "maxItems": RpcError.OCCURRENCE_CONSTRAINT_VIOLATION,
    "additionalProperties": RpcError.FORMAT_VIOLATION,
}


class PayloadKind(StrEnum):
    REQUEST = "request"
    RESPONSE = "response"


Validator = Callable[[Any], Any]


class SchemaRegistry:
    """The OCA JSON schemas from the ``ocpp`` package, compiled on first use and cached."""

    def __init__(self) -> None:
        self._compiled: dict[tuple[OcppVersion, str, PayloadKind], Validator | None] = {}

    @staticmethod
    def schema_name(version: OcppVersion, action: str, direction: PayloadKind) -> str:
        if version is OcppVersion.V201:
            suffix = "Request" if direction is PayloadKind.REQUEST else "Response"
        else:
            suffix = "" if direction is PayloadKind.REQUEST else "Response"
        return f"{action}{suffix}.json"

    def load(
        self, version: OcppVersion, action: str, direction: PayloadKind
    ) -> dict[str, Any] | None:
        """The raw schema, or None when OCPP ``version`` has no such action."""
        if not action.isalnum():
            return None
        package = resources.files("ocpp") / SCHEMA_PACKAGES[version] / "schemas"
        path = package / self.schema_name(version, action, direction)
        if not path.is_file():
            return None
        schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8-sig"))
        return schema

    def validator(
        self, version: OcppVersion, action: str, direction: PayloadKind
    ) -> Validator | None:
        key = (version, action, direction)
        try:
            return self._compiled[key]
        except KeyError:
            pass
        schema = self.load(version, action, direction)
        compiled = fastjsonschema.compile(schema) if schema is not None else None
        self._compiled[key] = compiled
        return compiled

    def knows(self, version: OcppVersion, action: str) -> bool:
        return self.validator(version, action, PayloadKind.REQUEST) is not None

    def validate(
        self,
        version: OcppVersion,
        action: str,
        direction: PayloadKind,
        payload: dict[str, Any],
        *,
        message_id: str = UNKNOWN_MESSAGE_ID,
    ) -> None:
        """Raise :class:`FrameError` (rule and field path only) when ``payload`` is invalid."""
        validate = self._compiled.get((version, action, direction))  # the hot path
        if validate is None:
            validate = self.validator(version, action, direction)
        if validate is None:
            raise FrameError(RpcError.NOT_IMPLEMENTED, "unknown action", message_id=message_id)
        try:
            validate(payload)
        except fastjsonschema.JsonSchemaValueException as exc:
            error = _RULE_ERRORS.get(str(exc.rule), RpcError.PROPERTY_CONSTRAINT_VIOLATION)
            where = str(exc.name).removeprefix("data").lstrip(".") or "payload"
            raise FrameError(
                error, f"{where}: violates '{exc.rule}'", message_id=message_id
            ) from None


# --- Redaction -----------------------------------------------------------------------------

REDACTED: Final = "***"

# Keys whose values are secrets or may be: IdToken.idToken (2.0.1), idTag (1.6), a
# DataTransfer's data (evaccess puts PINs there), and every SetVariables/GetVariables value
# (the Pin variable of BLUETOOTH_COMPONENT is one; masking all is simpler than proving which).
# A 1.6J ChangeConfiguration ``value`` is masked for the same reason, and so are fields a
# malformed frame may invent (``pin``, ``password``, ``code``).
_SECRET_KEYS: Final = frozenset(
    {"idToken", "idTag", "parentIdTag", "attributeValue", "value", "pin", "password", "code"}
)
_OPAQUE_KEYS: Final = frozenset({"data", "customData"})
"""Masked whatever their type: a 2.0.1 DataTransfer ``data`` may be an object, and
``customData`` is the one place where the 2.0.1 schemas allow fields of any name."""


def redact(payload: Any) -> Any:
    """A copy of ``payload`` with every secret-bearing value replaced by ``***``."""
    if isinstance(payload, dict):
        return {
            key: (
                REDACTED
                if key in _OPAQUE_KEYS
                or (key in _SECRET_KEYS and not isinstance(value, dict | list))
                else redact(value)
            )
            for key, value in payload.items()
        }
    if isinstance(payload, list):
        return [redact(item) for item in payload]
    return payload


def describe_frame(frame: Frame | str) -> str:
    """A one-line, redacted description of a frame for logs.

    Key-based masking is only complete for payloads that passed their schema (the OCA
    schemas forbid unknown fields outside ``customData``): callers log a received payload
    only after validation, and otherwise just its action and the error."""
    if isinstance(frame, str):
        try:
            frame = parse_frame(frame)
        except FrameError as exc:
            return f"<unparsable frame: {exc.description}>"
    if isinstance(frame, Call):
        return f"CALL {frame.message_id} {frame.action} {_dumps([redact(frame.payload)])[1:-1]}"
    if isinstance(frame, CallResult):
        return f"CALLRESULT {frame.message_id} {_dumps([redact(frame.payload)])[1:-1]}"
    return f"CALLERROR {frame.message_id} {frame.error_code}"


__all__ = [
    "Call",
    "CallError",
    "CallResult",
    "Frame",
    "FrameError",
    "MessageTypeId",
    "OcppVersion",
    "PayloadKind",
    "RpcError",
    "SchemaRegistry",
    "describe_frame",
    "encode_call",
    "encode_call_error",
    "encode_call_result",
    "parse_frame",
    "redact",
    "wire_error_code",
]
