"""The endpoint in process, over real sockets, with a bare OCPP-J client."""

from __future__ import annotations

import asyncio
import json
import logging
import random

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from evaccess.protocol.ocpp_components import BLUETOOTH_COMPONENT, VENDOR_ID
from evaccess.server.ocpp.memory_backend import InMemoryOcppBackend
from evaccess.server.ocpp.server import OcppServer
from tests.support import eventually

from .conftest import (
    BLUETOOTH_PIN,
    CHANGED_PIN,
    KEYCODE,
    PASSWORD,
    WRONG_KEYCODE,
    accept_all_variables,
    assert_no_secret_logged,
    basic_auth,
)

NOW = "2026-01-01T00:00:00Z"
BOOT_V201 = {"chargingStation": {"model": "Pulsar", "vendorName": "Wallbox"}, "reason": "PowerUp"}
BOOT_V16 = {"chargePointVendor": "Wallbox", "chargePointModel": "Pulsar"}


def keycode_token(code: str) -> dict[str, str]:
    return {"idToken": code, "type": "KeyCode"}


# --- handshake -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("charger_id", "user", "password", "counter"),
    [
        ("NOPE", "NOPE", PASSWORD, "refused_unknown_charger"),
        ("CP1", "CP1", "wrong-password-wrong-password", "refused_bad_password"),
        ("CP1", "CP2", PASSWORD, "refused_unknown_charger"),
    ],
)
async def test_bad_credentials_get_401_and_are_counted(
    server: OcppServer, charger_id: str, user: str, password: str, counter: str
) -> None:
    with pytest.raises(InvalidStatus) as caught:
        await connect(
            f"ws://127.0.0.1:{server.port}/ocpp/{charger_id}",
            subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            additional_headers=basic_auth(user, password),
        )
    assert caught.value.response.status_code == 401
    assert "Basic" in caught.value.response.headers["WWW-Authenticate"]
    assert server.stats()[counter] == 1
    assert server.stats()["accepted"] == 0


async def test_missing_credentials_and_bad_path(server: OcppServer) -> None:
    with pytest.raises(InvalidStatus) as caught:
        await connect(f"ws://127.0.0.1:{server.port}/ocpp/CP1", subprotocols=["ocpp2.0.1"])  # type: ignore[list-item]
    assert caught.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as caught:
        await connect(
            f"ws://127.0.0.1:{server.port}/other/CP1",
            additional_headers=basic_auth("CP1", PASSWORD),
        )
    assert caught.value.response.status_code == 404
    stats = server.stats()
    assert stats["refused_missing_credentials"] == 1
    assert stats["refused_bad_path"] == 1


async def test_no_matching_subprotocol_completes_handshake_then_closes(
    server: OcppServer,
) -> None:
    ws = await connect(
        f"ws://127.0.0.1:{server.port}/ocpp/CP1",
        subprotocols=["ocpp1.5"],  # type: ignore[list-item]
        additional_headers=basic_auth("CP1", PASSWORD),
    )
    assert ws.response is not None
    assert ws.response.status_code == 101
    assert "Sec-WebSocket-Protocol" not in ws.response.headers
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1002
    assert server.stats()["no_subprotocol"] == 1


@pytest.mark.parametrize("version", ["ocpp2.0.1", "ocpp1.6"])
async def test_negotiates_offered_version(open_charger, server: OcppServer, version: str) -> None:
    charger = await open_charger(version=version)
    assert charger.ws.subprotocol == version
    await charger.boot()
    call = await charger.next_server_call("GetLocalListVersion")
    assert call[3] == {}
    assert server.stats()["connected"] == 1


async def test_a_session_lets_go_of_its_handshake_headers(open_charger, server: OcppServer) -> None:
    """websockets keeps the opening handshake for the connection's life; its headers were
    about 5 KB of each idle charger's server-side heap, and the session needs none of them
    once it has its charger id and subprotocol (docs/performance.md, idle memory)."""
    charger = await open_charger()
    await charger.boot()
    connection = server.sessions["CP1"].connection
    assert connection.request is not None and connection.response is not None
    assert len(connection.request.headers) == 0 and len(connection.response.headers) == 0
    assert (await charger.call("Heartbeat", {}))[0] == 3
    assert connection.request.path == "/ocpp/CP1"


# --- OCPP 2.0.1 ----------------------------------------------------------------------------


async def test_boot_heartbeat_status_v201(open_charger, backend: InMemoryOcppBackend) -> None:
    charger = await open_charger()
    reply = await charger.call("BootNotification", BOOT_V201)
    assert reply[0] == 3
    assert reply[2]["status"] == "Accepted"
    assert reply[2]["interval"] > 0
    assert backend.chargers["CP1"].boot is not None
    assert backend.chargers["CP1"].boot.vendor == "Wallbox"
    reply = await charger.call("Heartbeat", {})
    assert "currentTime" in reply[2]
    reply = await charger.call(
        "StatusNotification",
        {"timestamp": NOW, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1},
    )
    assert reply[2] == {}
    assert backend.chargers["CP1"].statuses[(1, 1)] == "Occupied"
    assert backend.chargers["CP1"].protocol == "ocpp2.0.1"


async def test_keypad_authorize_valid_invalid_locked_v201(
    open_charger, backend: InMemoryOcppBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    charger = await open_charger()
    reply = await charger.call("Authorize", {"idToken": keycode_token(KEYCODE)})
    assert reply[2]["idTokenInfo"]["status"] == "Accepted"
    statuses = [
        (await charger.call("Authorize", {"idToken": keycode_token(WRONG_KEYCODE)}))[2][
            "idTokenInfo"
        ]["status"]
        for _ in range(5)
    ]
    assert statuses == ["Invalid"] * 5
    # Locked now: even the right code is Blocked, answered without a lookup.
    reply = await charger.call("Authorize", {"idToken": keycode_token(KEYCODE)})
    assert reply[2]["idTokenInfo"]["status"] == "Blocked"
    assert [e.event_type for e in backend.security_events] == ["evaccess.KeypadLockout"]
    # Not evaccess's token types.
    reply = await charger.call("Authorize", {"idToken": {"idToken": "04A2", "type": "ISO14443"}})
    assert reply[2]["idTokenInfo"]["status"] == "Unknown"
    assert any("Authorize" in r.getMessage() for r in caplog.records), "frames are logged"
    assert_no_secret_logged(caplog)


async def test_keypad_lock_expires(open_charger, clock, backend: InMemoryOcppBackend) -> None:
    charger = await open_charger()
    for _ in range(5):
        await charger.call("Authorize", {"idToken": keycode_token(WRONG_KEYCODE)})
    clock.advance(301)
    reply = await charger.call("Authorize", {"idToken": keycode_token(KEYCODE)})
    assert reply[2]["idTokenInfo"]["status"] == "Accepted"


async def test_transaction_events_are_idempotent_v201(
    open_charger, backend: InMemoryOcppBackend
) -> None:
    charger = await open_charger()
    started = {
        "eventType": "Started",
        "timestamp": NOW,
        "triggerReason": "Authorized",
        "seqNo": 0,
        "transactionInfo": {"transactionId": "tx-1"},
        "idToken": keycode_token(KEYCODE),
        "evse": {"id": 1},
        "meterValue": [{"timestamp": NOW, "sampledValue": [{"value": 1.5}]}],
    }
    first = await charger.call("TransactionEvent", started)
    again = await charger.call("TransactionEvent", started)
    assert first[2] == again[2] == {"idTokenInfo": {"status": "Accepted"}}
    ended = {**started, "eventType": "Ended", "seqNo": 1, "triggerReason": "StopAuthorized"}
    del ended["idToken"]
    assert (await charger.call("TransactionEvent", ended))[2] == {}
    events = backend.transactions[("CP1", "tx-1")]
    assert sorted(events) == [0, 1]
    assert events[0].meter_wh == 1.5
    assert events[0].id_token is None  # the code is not stored with the transaction


async def test_security_event_and_data_transfer_v201(
    open_charger, backend: InMemoryOcppBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    charger = await open_charger()
    reply = await charger.call(
        "SecurityEventNotification",
        {"type": "evaccess.BluetoothPinLockout", "timestamp": NOW, "techInfo": "level 1"},
    )
    assert reply[2] == {}
    assert backend.security_events[-1].event_type == "evaccess.BluetoothPinLockout"
    reply = await charger.call(
        "DataTransfer",
        {"vendorId": VENDOR_ID, "messageId": "BluetoothPinChanged", "data": {"pin": CHANGED_PIN}},
    )
    assert reply[2] == {"status": "Accepted"}
    assert backend.chargers["CP1"].active_pin == CHANGED_PIN
    reply = await charger.call(
        "DataTransfer",
        {"vendorId": VENDOR_ID, "messageId": "ConfigurationChanged", "data": {"Name": "Garage"}},
    )
    assert reply[2] == {"status": "Accepted"}
    assert backend.chargers["CP1"].configuration == {"Name": "Garage"}
    reply = await charger.call("DataTransfer", {"vendorId": "com.other", "messageId": "x"})
    assert reply[2] == {"status": "UnknownVendorId"}
    reply = await charger.call("DataTransfer", {"vendorId": VENDOR_ID, "messageId": "Nope"})
    assert reply[2] == {"status": "UnknownMessageId"}
    reply = await charger.call("NotifyEvent", {"generatedAt": NOW, "seqNo": 0, "eventData": []})
    assert reply[0] == 4  # eventData needs at least one item: schema says so
    assert_no_secret_logged(caplog)


async def test_pin_change_refused_when_not_changeable(
    open_charger, backend: InMemoryOcppBackend
) -> None:
    backend.chargers["CP1"].pin_changeable = False
    charger = await open_charger()
    reply = await charger.call(
        "DataTransfer",
        {"vendorId": VENDOR_ID, "messageId": "BluetoothPinChanged", "data": {"pin": CHANGED_PIN}},
    )
    assert reply[2] == {"status": "Rejected"}
    assert backend.chargers["CP1"].active_pin is None


# --- server -> charger ---------------------------------------------------------------------


async def test_set_bluetooth_pin_pushed_and_activated_on_accept_v201(
    open_charger, backend: InMemoryOcppBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    charger = await open_charger()
    await charger.call("BootNotification", BOOT_V201)
    command_id = backend.set_bluetooth_pin("CP1", BLUETOOTH_PIN)
    call = await charger.next_server_call("SetVariables")
    written = {d["variable"]["name"]: d["attributeValue"] for d in call[3]["setVariableData"]}
    assert written == {"Pin": BLUETOOTH_PIN, "PinRequired": "true", "PinChangeable": "true"}
    assert {d["component"]["name"] for d in call[3]["setVariableData"]} == {BLUETOOTH_COMPONENT}
    await eventually(lambda: command_id in backend.command_results)
    assert backend.command_results[command_id] is True
    assert backend.chargers["CP1"].active_pin == BLUETOOTH_PIN
    assert backend.outbox["CP1"] == []
    assert_no_secret_logged(caplog)


async def test_rejected_pin_stays_inactive(open_charger, backend: InMemoryOcppBackend) -> None:
    charger = await open_charger()
    await charger.boot()
    charger.responders["SetVariables"] = lambda p: {
        "setVariableResult": [
            {
                "attributeStatus": "Rejected",
                "component": d["component"],
                "variable": d["variable"],
            }
            for d in p["setVariableData"]
        ]
    }
    command_id = backend.set_bluetooth_pin("CP1", BLUETOOTH_PIN)
    await eventually(lambda: command_id in backend.command_results)
    assert backend.command_results[command_id] is False
    assert backend.chargers["CP1"].active_pin is None


async def test_offline_charger_gets_command_on_reconnect(
    open_charger, backend: InMemoryOcppBackend, server: OcppServer
) -> None:
    command_id = backend.revoke_credentials("CP2", None)
    reenable_id = backend.reenable_pin_pairing("CP2")
    charger = await open_charger("CP2")
    # Reconnected without rebooting: its first request is not a BootNotification.
    await charger.call("Heartbeat", {})
    call = await charger.next_server_call("SetVariables")
    assert call[3]["setVariableData"][0]["variable"]["name"] == "RevokeCredentials"
    assert call[3]["setVariableData"][0]["attributeValue"] == "*"
    call = await charger.next_server_call("SetVariables")
    assert call[3]["setVariableData"][0]["variable"]["name"] == "PinPairingEnabled"
    await eventually(lambda: reenable_id in backend.command_results)
    assert backend.command_results[command_id] is True
    assert server.stats()["commands_accepted"] == 2


async def test_v16_change_configuration_one_key_per_call(
    open_charger, backend: InMemoryOcppBackend
) -> None:
    charger = await open_charger(version="ocpp1.6")
    await charger.call("BootNotification", BOOT_V16)
    command_id = backend.set_bluetooth_pin("CP1", BLUETOOTH_PIN, changeable=False)
    keys = [(await charger.next_server_call("ChangeConfiguration"))[3] for _ in range(3)]
    assert keys == [
        {"key": "EvAccessBluetoothPin", "value": BLUETOOTH_PIN},
        {"key": "EvAccessBluetoothPinRequired", "value": "true"},
        {"key": "EvAccessBluetoothPinChangeable", "value": "false"},
    ]
    await eventually(lambda: command_id in backend.command_results)
    assert backend.chargers["CP1"].active_pin == BLUETOOTH_PIN


async def test_unanswered_command_is_retried_after_timeout(
    open_charger, backend: InMemoryOcppBackend, server: OcppServer
) -> None:
    charger = await open_charger()
    await charger.boot()
    await charger.next_server_call("GetLocalListVersion")
    server.sessions["CP1"].call_timeout_s = 0.2
    del charger.responders["SetVariables"]  # the charger stays silent
    backend.revoke_credentials("CP1", "phone-7")
    await charger.next_server_call("SetVariables")
    await eventually(lambda: server.stats()["call_timeouts"] == 1)
    assert len(backend.outbox["CP1"]) == 1  # still pending
    charger.responders["SetVariables"] = accept_all_variables
    server.notifier.poke("CP1")
    call = await charger.next_server_call("SetVariables")
    assert call[3]["setVariableData"][0]["attributeValue"] == "phone-7"
    await eventually(lambda: backend.outbox["CP1"] == [])


# --- local list ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["ocpp2.0.1", "ocpp1.6"])
async def test_local_list_full_on_version_mismatch_then_differential(
    open_charger, backend: InMemoryOcppBackend, version: str
) -> None:
    backend.opt_into_local_list("org-1")
    backend.add_keycode("user-2", "2468", organisation_id="org-1")
    charger = await open_charger(version=version)
    charger.list_version = 7  # the charger holds a list the server never sent
    await charger.boot()
    call = await charger.next_server_call("SendLocalList")
    payload = call[3]
    key = "versionNumber" if version == "ocpp2.0.1" else "listVersion"
    assert payload["updateType"] == "Full"
    assert payload[key] > 7  # versions only grow
    full_version = payload[key]
    await eventually(lambda: backend.chargers["CP1"].list_version == full_version)
    # A code added later goes out as a differential update with the next version.
    backend.add_keycode("user-3", "1357", organisation_id="org-1")
    call = await charger.next_server_call("SendLocalList")
    assert call[3]["updateType"] == "Differential"
    assert call[3][key] == full_version + 1
    await eventually(lambda: backend.chargers["CP1"].list_version == full_version + 1)
    backend.remove_keycode("1357", organisation_id="org-1")
    call = await charger.next_server_call("SendLocalList")
    entry = call[3]["localAuthorizationList"][0]
    assert "idTokenInfo" not in entry and "idTagInfo" not in entry  # a removal


async def test_matching_local_list_version_sends_nothing(
    open_charger, backend: InMemoryOcppBackend, server: OcppServer
) -> None:
    charger = await open_charger()
    await charger.boot()
    await charger.next_server_call("GetLocalListVersion")
    await charger.call("Heartbeat", {})
    assert backend.outbox.get("CP1", []) == []
    assert charger.server_calls.empty()


# --- 1.6J ----------------------------------------------------------------------------------


async def test_v16_keypad_and_transactions(
    open_charger, backend: InMemoryOcppBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    charger = await open_charger(version="ocpp1.6")
    assert (await charger.call("BootNotification", BOOT_V16))[2]["status"] == "Accepted"
    reply = await charger.call("Authorize", {"idTag": KEYCODE})
    assert reply[2] == {"idTagInfo": {"status": "Accepted"}}
    reply = await charger.call("Authorize", {"idTag": WRONG_KEYCODE})
    assert reply[2] == {"idTagInfo": {"status": "Invalid"}}
    start = {"connectorId": 1, "idTag": KEYCODE, "meterStart": 100, "timestamp": NOW}
    first = await charger.call("StartTransaction", start)
    again = await charger.call("StartTransaction", start)
    assert first[2] == again[2]
    assert first[2]["idTagInfo"]["status"] == "Accepted"
    transaction_id = first[2]["transactionId"]
    reply = await charger.call(
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": transaction_id,
            "meterValue": [{"timestamp": NOW, "sampledValue": [{"value": "250"}]}],
        },
    )
    assert reply[2] == {}
    reply = await charger.call(
        "StopTransaction",
        {"transactionId": transaction_id, "meterStop": 900, "timestamp": NOW},
    )
    assert reply[2] == {}
    events = backend.transactions[("CP1", str(transaction_id))]
    assert [e.event_type.value for e in events.values()] == ["Started", "Updated", "Ended"]
    reply = await charger.call(
        "DataTransfer",
        {
            "vendorId": VENDOR_ID,
            "messageId": "SecurityEvent",
            "data": json.dumps({"type": "evaccess.KeypadLockout", "timestamp": NOW}),
        },
    )
    assert reply[2] == {"status": "Accepted"}
    assert backend.security_events[-1].event_type == "evaccess.KeypadLockout"
    reply = await charger.call(
        "DataTransfer",
        {"vendorId": VENDOR_ID, "messageId": "BluetoothPinChanged", "data": "not json"},
    )
    assert reply[2] == {"status": "Rejected"}
    assert_no_secret_logged(caplog)


# --- malformed frames ----------------------------------------------------------------------

MALFORMED_V201 = [
    ("this is not json " + KEYCODE, "-1", "RpcFrameworkError"),
    (json.dumps({"idTag": KEYCODE}), "-1", "RpcFrameworkError"),
    (json.dumps([2, "m1", "Authorize"]), "m1", "RpcFrameworkError"),
    (json.dumps([9, "m2", "Authorize", {}]), "m2", "MessageTypeNotSupported"),
    (json.dumps([2, "m3", "Authorize", [KEYCODE]]), "m3", "FormatViolation"),
    (
        json.dumps(
            [2, "m4", "Authorize", {"idToken": {"idToken": int(KEYCODE), "type": "KeyCode"}}]
        ),
        "m4",
        "TypeConstraintViolation",
    ),
    (json.dumps([2, "m5", "Authorize", {}]), "m5", "OccurrenceConstraintViolation"),
    (
        json.dumps([2, "m6", "Authorize", {"idToken": {"idToken": KEYCODE, "type": "Bogus"}}]),
        "m6",
        "PropertyConstraintViolation",
    ),
    (
        json.dumps([2, "m7", "Authorize", {"idToken": keycode_token(KEYCODE), "pin": KEYCODE}]),
        "m7",
        "FormatViolation",
    ),
    (json.dumps([2, "m8", "FlyToTheMoon", {"pin": KEYCODE}]), "m8", "NotImplemented"),
    (json.dumps([2, "m9", "Get15118EVCertificate", {}]), "m9", "NotSupported"),
    (json.dumps([2, "m10", "Authorize", {"idToken": "x" * 70_000}]), "m10", "FormatViolation"),
]


@pytest.mark.parametrize(("text", "message_id", "code"), MALFORMED_V201)
async def test_malformed_frames_v201(
    open_charger, caplog: pytest.LogCaptureFixture, text: str, message_id: str, code: str
) -> None:
    caplog.set_level(logging.DEBUG)
    charger = await open_charger()
    reply = await charger.send_raw(text)
    assert reply[:3] == [4, message_id, code]
    assert reply[4] == {}
    assert KEYCODE not in json.dumps(reply)
    # The connection stays healthy.
    assert (await charger.call("Heartbeat", {}))[0] == 3
    assert_no_secret_logged(caplog)


MALFORMED_V16 = [
    ("{{{ " + KEYCODE, "-1", "GenericError"),
    (json.dumps([2, "m1", "Authorize", "x"]), "m1", "FormationViolation"),
    (json.dumps([2, "m2", "Authorize", {"idTag": int(KEYCODE)}]), "m2", "TypeConstraintViolation"),
    (json.dumps([2, "m3", "Authorize", {}]), "m3", "OccurenceConstraintViolation"),
    (json.dumps([2, "m4", "Authorize", {"idTag": "x" * 21}]), "m4", "PropertyConstraintViolation"),
    (json.dumps([2, "m5", "TransactionEvent", {}]), "m5", "NotImplemented"),
]


@pytest.mark.parametrize(("text", "message_id", "code"), MALFORMED_V16)
async def test_malformed_frames_v16(
    open_charger, caplog: pytest.LogCaptureFixture, text: str, message_id: str, code: str
) -> None:
    caplog.set_level(logging.DEBUG)
    charger = await open_charger(version="ocpp1.6")
    reply = await charger.send_raw(text)
    assert reply[:3] == [4, message_id, code]
    assert (await charger.call("Heartbeat", {}))[0] == 3
    assert_no_secret_logged(caplog)


async def test_frame_beyond_transport_limit_closes_with_1009(open_charger) -> None:
    charger = await open_charger()
    await charger.ws.send(json.dumps([2, "big", "Heartbeat", {"x": "y" * 300_000}]))
    await asyncio.wait_for(charger.ws.wait_closed(), 5)
    assert charger.ws.close_code == 1009


async def test_reconnect_replaces_old_session(
    open_charger, server: OcppServer, backend: InMemoryOcppBackend
) -> None:
    first = await open_charger()
    second = await open_charger()
    await asyncio.wait_for(first.ws.wait_closed(), 5)
    assert (await second.call("Heartbeat", {}))[0] == 3
    # The old session's handler has returned (its clean-up ran) once the transport forgets it.
    transport = server._server
    assert transport is not None
    await eventually(lambda: len(transport.all_connections) == 1, "the old session to end")
    assert server.stats()["connected"] == 1
    assert backend.chargers["CP1"].online  # the old session did not mark it offline
    await second.close()
    await eventually(lambda: not backend.chargers["CP1"].online)
    assert server.stats()["connected"] == 0


async def test_rfid_transaction_token_is_not_a_keycode(
    open_charger, backend: InMemoryOcppBackend
) -> None:
    charger = await open_charger()
    event = {
        "eventType": "Started",
        "timestamp": NOW,
        "triggerReason": "Authorized",
        "seqNo": 0,
        "transactionInfo": {"transactionId": "tx-rfid"},
        "idToken": {"idToken": KEYCODE, "type": "ISO14443"},
    }
    reply = await charger.call("TransactionEvent", event)
    assert reply[2] == {"idTokenInfo": {"status": "Unknown"}}
    assert backend.chargers["CP1"].keypad.consecutive_failures == 0


async def test_backend_failure_is_internal_error_without_secret(
    open_charger, backend: InMemoryOcppBackend, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(charger_id: str, code: str) -> None:
        raise RuntimeError(f"database down while checking {code}")

    backend.authorize_keycode = broken  # type: ignore[method-assign]
    caplog.set_level(logging.DEBUG)
    charger = await open_charger()
    reply = await charger.call("Authorize", {"idToken": keycode_token(KEYCODE)})
    assert reply[:4] == [4, reply[1], "InternalError", "internal error"]
    assert (await charger.call("Heartbeat", {}))[0] == 3
    assert any("RuntimeError" in r.getMessage() for r in caplog.records)
    assert_no_secret_logged(caplog)


async def test_refused_differential_update_brings_a_full_list(
    open_charger, backend: InMemoryOcppBackend
) -> None:
    backend.opt_into_local_list("org-1")
    charger = await open_charger()
    await charger.boot()
    await charger.next_server_call("GetLocalListVersion")
    accept = charger.responders["SendLocalList"]
    charger.responders["SendLocalList"] = lambda p: (
        {"status": "VersionMismatch"} if p["updateType"] == "Differential" else accept(p)
    )
    backend.add_keycode("user-4", "8642", organisation_id="org-1")
    differential = await charger.next_server_call("SendLocalList")
    assert differential[3]["updateType"] == "Differential"
    full = await charger.next_server_call("SendLocalList")
    assert full[3]["updateType"] == "Full"
    assert full[3]["versionNumber"] > differential[3]["versionNumber"]
    codes = [e["idToken"]["idToken"] for e in full[3]["localAuthorizationList"]]
    assert codes == ["8642"]
    await eventually(lambda: backend.chargers["CP1"].list_version == full[3]["versionNumber"])


def _mutations(rng: random.Random, frame: list) -> str:
    """One damaged variant of a valid CALL: truncated text, a field dropped or retyped,
    a junk field, a wrong message type, or nesting swapped."""
    kind = rng.randrange(6)
    text = json.dumps(frame)
    if kind == 0:
        return text[: rng.randrange(1, len(text))]
    payload = json.loads(json.dumps(frame[3]))
    if kind == 1 and payload:
        payload.pop(rng.choice(list(payload)))
    elif kind == 2 and payload:
        key = rng.choice(list(payload))
        # A secret in a field that is not secret is the charger's fault; a secret in
        # a field that does not belong there must still stay out of the logs.
        payload[key] = rng.choice([None, 7, 1.5, True, [], "fuzz", {"x": KEYCODE}])
    elif kind == 3:
        payload[rng.choice(["pin", "junk", "idTag"])] = KEYCODE
    elif kind == 4:
        return json.dumps([rng.choice([0, 1, 5, "2", None]), *frame[1:]])
    else:
        return json.dumps([2, frame[1], frame[2], [payload]])
    return json.dumps([2, frame[1], frame[2], payload])


@pytest.mark.parametrize("version", ["ocpp2.0.1", "ocpp1.6"])
async def test_fuzzed_frames_always_get_a_clean_answer(
    open_charger, caplog: pytest.LogCaptureFixture, version: str
) -> None:
    caplog.set_level(logging.DEBUG)
    rng = random.Random(1234)
    if version == "ocpp2.0.1":
        valid = [
            ["Authorize", {"idToken": keycode_token(KEYCODE)}],
            ["BootNotification", BOOT_V201],
            [
                "TransactionEvent",
                {
                    "eventType": "Started",
                    "timestamp": NOW,
                    "triggerReason": "Authorized",
                    "seqNo": 0,
                    "transactionInfo": {"transactionId": "f"},
                    "idToken": keycode_token(KEYCODE),
                },
            ],
            [
                "DataTransfer",
                {
                    "vendorId": VENDOR_ID,
                    "messageId": "BluetoothPinChanged",
                    "data": {"pin": KEYCODE},
                },
            ],
        ]
    else:
        valid = [
            ["Authorize", {"idTag": KEYCODE}],
            ["BootNotification", BOOT_V16],
            [
                "StartTransaction",
                {"connectorId": 1, "idTag": KEYCODE, "meterStart": 0, "timestamp": NOW},
            ],
        ]
    charger = await open_charger(version=version)
    for n in range(150):
        action, payload = rng.choice(valid)
        text = _mutations(rng, [2, f"f{n}", action, payload])
        await charger.ws.send(text)
        try:
            reply = await asyncio.wait_for(charger.replies.get(), 5)
        except TimeoutError:
            pytest.fail(f"no answer to a fuzzed frame: {text[:80]}")
        assert reply[0] in (3, 4)
        assert reply[1] in (f"f{n}", "-1")
        if reply[0] == 4:
            assert reply[4] == {}
            assert KEYCODE not in json.dumps(reply)
    assert (await charger.call("Heartbeat", {}))[0] == 3
    assert_no_secret_logged(caplog)


async def test_outbox_failure_is_logged_without_secret(
    open_charger, backend: InMemoryOcppBackend, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(charger_id: str) -> list:
        raise RuntimeError(f"cannot read the outbox (pin {BLUETOOTH_PIN})")

    backend.pending_commands = broken  # type: ignore[method-assign]
    caplog.set_level(logging.DEBUG)
    charger = await open_charger()
    await charger.boot()
    await charger.next_server_call("GetLocalListVersion")  # the probe still goes out
    await eventually(lambda: any("RuntimeError" in r.getMessage() for r in caplog.records))
    assert (await charger.call("Heartbeat", {}))[0] == 3
    assert_no_secret_logged(caplog)


async def test_bytes_per_message_counts_utf8_bytes(open_charger, server: OcppServer) -> None:
    charger = await open_charger()
    server.sessions["CP1"].bytes_per_message = 1000
    # 400 characters, 1200 bytes in UTF-8: over the limit.
    reply = await charger.send_raw(
        json.dumps([2, "u1", "Heartbeat", {"x": "€" * 400}], ensure_ascii=False)
    )
    assert reply[:3] == [4, "u1", "FormatViolation"]
    reply = await charger.send_raw(json.dumps([2, "u2", "Heartbeat", {}]))
    assert reply[0] == 3
