"""OCPP-J framing, compiled validation and redaction (protocol/ocpp_frames.py)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evaccess.protocol.ocpp_frames import (
    Call,
    CallError,
    CallResult,
    FrameError,
    OcppVersion,
    PayloadKind,
    RpcError,
    SchemaRegistry,
    describe_frame,
    encode_call,
    encode_call_error,
    encode_call_result,
    parse_frame,
    redact,
    wire_error_code,
)


def test_round_trip() -> None:
    call = parse_frame(encode_call("1", "Heartbeat", {}))
    assert call == Call(message_id="1", action="Heartbeat", payload={})
    result = parse_frame(encode_call_result("1", {"currentTime": "x"}))
    assert result == CallResult(message_id="1", payload={"currentTime": "x"})
    error = parse_frame(encode_call_error("1", RpcError.FORMAT_VIOLATION, "bad", OcppVersion.V16))
    assert isinstance(error, CallError)
    assert error.error_code == "FormationViolation"
    assert error.details == {}


@pytest.mark.parametrize(
    ("error", "v201", "v16"),
    [
        (RpcError.FORMAT_VIOLATION, "FormatViolation", "FormationViolation"),
        (
            RpcError.OCCURRENCE_CONSTRAINT_VIOLATION,
            "OccurrenceConstraintViolation",
            "OccurenceConstraintViolation",
        ),
        (RpcError.RPC_FRAMEWORK_ERROR, "RpcFrameworkError", "GenericError"),
        (RpcError.NOT_IMPLEMENTED, "NotImplemented", "NotImplemented"),
    ],
)
def test_wire_error_codes(error: RpcError, v201: str, v16: str) -> None:
    assert wire_error_code(error, OcppVersion.V201) == v201
    assert wire_error_code(error, OcppVersion.V16) == v16


@pytest.mark.parametrize(
    ("text", "error", "message_id", "answerable"),
    [
        ("nope", RpcError.RPC_FRAMEWORK_ERROR, "-1", True),
        ("[]", RpcError.RPC_FRAMEWORK_ERROR, "-1", True),
        ('[2, 5, "Heartbeat", {}]', RpcError.RPC_FRAMEWORK_ERROR, "-1", True),
        ('[2, "' + "x" * 37 + '", "Heartbeat", {}]', RpcError.RPC_FRAMEWORK_ERROR, "-1", True),
        ('[2.0, "a", "Heartbeat", {}]', RpcError.MESSAGE_TYPE_NOT_SUPPORTED, "a", True),
        ('[true, "a", "Heartbeat", {}]', RpcError.MESSAGE_TYPE_NOT_SUPPORTED, "a", True),
        ('[2, "a", "Heartbeat", []]', RpcError.FORMAT_VIOLATION, "a", True),
        ('[3, "a", []]', RpcError.FORMAT_VIOLATION, "a", False),
        ('[4, "a", 1, "x", {}]', RpcError.FORMAT_VIOLATION, "a", False),
    ],
)
def test_malformed(text: str, error: RpcError, message_id: str, answerable: bool) -> None:
    with pytest.raises(FrameError) as caught:
        parse_frame(text)
    assert caught.value.error is error
    assert caught.value.message_id == message_id
    assert caught.value.answerable is answerable


@given(st.text(max_size=200))
def test_any_text_parses_or_raises_frame_error(text: str) -> None:
    try:
        parse_frame(text)
    except FrameError:
        pass


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=12,
    )
)
def test_any_json_array_parses_or_raises_frame_error(value: object) -> None:
    description = "parsed"
    try:
        parse_frame(json.dumps([2, "id", "Authorize", value]))
    except FrameError as exc:
        description = exc.description
    assert description


def test_schemas_compiled_once_and_lazily() -> None:
    registry = SchemaRegistry()
    assert registry._compiled == {}
    first = registry.validator(OcppVersion.V201, "Authorize", PayloadKind.REQUEST)
    assert first is registry.validator(OcppVersion.V201, "Authorize", PayloadKind.REQUEST)
    assert len(registry._compiled) == 1
    assert registry.validator(OcppVersion.V16, "TransactionEvent", PayloadKind.REQUEST) is None
    assert registry.validator(OcppVersion.V201, "../../etc", PayloadKind.REQUEST) is None


def test_validation_error_names_rule_and_field_never_value() -> None:
    registry = SchemaRegistry()
    with pytest.raises(FrameError) as caught:
        registry.validate(
            OcppVersion.V201,
            "Authorize",
            PayloadKind.REQUEST,
            {"idToken": {"idToken": "123456", "type": "SecretType"}},
        )
    assert caught.value.error is RpcError.PROPERTY_CONSTRAINT_VIOLATION
    assert "idToken.type" in caught.value.description
    assert "SecretType" not in caught.value.description
    assert "123456" not in caught.value.description


def test_date_time_format_is_checked() -> None:
    # The ocpp library lets "yesterday" pass (docs/ocpp.md); compiled schemas do not.
    with pytest.raises(FrameError):
        SchemaRegistry().validate(
            OcppVersion.V201,
            "SecurityEventNotification",
            PayloadKind.REQUEST,
            {"type": "x", "timestamp": "yesterday"},
        )


def test_redact_masks_every_secret_field() -> None:
    payload = {
        "idToken": {"idToken": "4711", "type": "KeyCode"},
        "idTag": "4712",
        "setVariableData": [{"attributeValue": "402913", "variable": {"name": "Pin"}}],
        "data": {"pin": "731846"},
        "localAuthorizationList": [{"idTag": "4713"}],
        "key": "EvAccessBluetoothPin",
        "value": "402914",
        "customData": {"vendorId": "x", "anything": "4715"},
    }
    text = json.dumps(redact(payload))
    for secret in ("4711", "4712", "4713", "4715", "402913", "402914", "731846"):
        assert secret not in text
    assert "KeyCode" in text
    assert "EvAccessBluetoothPin" in text
    line = describe_frame(encode_call("9", "Authorize", payload))
    assert line.startswith("CALL 9 Authorize")
    assert "4711" not in line
    assert describe_frame("garbage 4711") == "<unparsable frame: message is not valid JSON>"
