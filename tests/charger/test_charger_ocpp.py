"""The charger against a real OCPP server (the `ocpp` library's server side) over real sockets."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest
from ocpp import v16, v201

from evaccess.charger.ports import BluetoothPinSettings
from evaccess.protocol.ocpp_components import (
    BLUETOOTH_COMPONENT,
    V16_CONFIGURATION_KEYS,
    BluetoothVariable,
    SecurityEventType,
)
from evaccess.protocol.ocpp_frames import OcppVersion
from tests.charger.conftest import SERIAL, make_config, start_charger
from tests.charger.csms import TestCsms
from tests.support import eventually

BLUETOOTH_PIN = "739154"


class RecordingBluetooth:
    """Stands in for the Bluetooth peripheral (another engineer's part): records commands."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    async def apply_pin_settings(self, settings: BluetoothPinSettings) -> None:
        self.calls.append(("apply", settings))

    async def revoke_all_credentials(self) -> None:
        self.calls.append(("revoke_all", None))

    async def revoke_credential(self, phone_id: str) -> None:
        self.calls.append(("revoke", phone_id))

    async def reenable_pin_pairing(self) -> None:
        self.calls.append(("reenable", None))


def set_variable(name: str, value: str, component: str = BLUETOOTH_COMPONENT) -> dict[str, object]:
    return {
        "attribute_value": value,
        "component": {"name": component},
        "variable": {"name": name},
    }


def charger_log(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record except the test CSMS's own (it logs frames on purpose)."""
    return "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if not r.name.startswith("tests.")
    )


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, "a secret leaked"


async def test_boot_status_and_heartbeat_at_the_server_interval(tmp_path: Path, csms: TestCsms):
    running = start_charger(make_config(tmp_path, csms))
    try:
        await running.booted()
        record = csms.records[SERIAL]
        assert record.boots == [
            {
                "model": "test",
                "vendor_name": "evaccess",
                "serial_number": SERIAL,
                "firmware_version": "1.0",
            }
        ]
        await eventually(lambda: record.statuses == ["Available"], what="status")
        await eventually(lambda: record.heartbeats >= 2, timeout=4, what="heartbeats")
        assert "ocpp: boot accepted, heartbeat every 1 s" in running.lines
    finally:
        await running.stop()


async def test_wrong_password_is_refused_and_retried(tmp_path: Path, csms: TestCsms):
    running = start_charger(make_config(tmp_path, csms, password="wrong"))
    try:
        await eventually(lambda: csms.auth_failures >= 2, what="retries")
        assert not csms.records[SERIAL].boots
        assert any("HTTP 401" in line for line in running.lines)
        assert_no_secret("\n".join(running.lines), "wrong")
    finally:
        await running.stop()


async def test_set_variables_are_stored_forwarded_and_the_pin_never_logged(
    tmp_path: Path, csms: TestCsms, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    running = start_charger(make_config(tmp_path, csms))
    try:
        charger = await running.booted()
        bluetooth = RecordingBluetooth()
        charger.firmware.bluetooth = bluetooth
        cp = csms.charge_points[SERIAL]
        result = await cp.call(
            v201.call.SetVariables(
                set_variable_data=[
                    set_variable("Pin", BLUETOOTH_PIN),
                    set_variable("PinRequired", "true"),
                    set_variable("PinChangeable", "maybe"),
                    set_variable("Pin", "12345"),
                    set_variable("NoSuchVariable", "1"),
                    set_variable("Pin", "1", component="OtherCtrlr"),
                    set_variable("RevokeCredentials", "phone-7"),
                ]
            )
        )
        statuses = [r["attribute_status"] for r in result.set_variable_result]
        assert statuses == [
            "Accepted",
            "Accepted",
            "Rejected",
            "Rejected",
            "UnknownVariable",
            "UnknownComponent",
            "Accepted",
        ]
        state_file = tmp_path / "state" / "bluetooth.json"
        assert json.loads(state_file.read_text()) == {
            "pin": BLUETOOTH_PIN,
            "required": True,
            "changeable": False,
            "pairing_enabled": True,
        }
        assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
        assert bluetooth.calls == [
            ("apply", BluetoothPinSettings(pin=BLUETOOTH_PIN, required=False, changeable=False)),
            ("apply", BluetoothPinSettings(pin=BLUETOOTH_PIN, required=True, changeable=False)),
            ("revoke", "phone-7"),
        ]

        read = await cp.call(
            v201.call.GetVariables(
                get_variable_data=[
                    {"component": {"name": BLUETOOTH_COMPONENT}, "variable": {"name": "Pin"}},
                    {
                        "component": {"name": BLUETOOTH_COMPONENT},
                        "variable": {"name": "PinRequired"},
                    },
                ]
            )
        )
        pin_result, required_result = read.get_variable_result
        assert pin_result["attribute_status"] == "Rejected"
        assert pin_result["attribute_status_info"] == {"reason_code": "WriteOnly"}
        assert "attribute_value" not in pin_result
        assert required_result["attribute_value"] == "true"

        await cp.call(
            v201.call.SetVariables(set_variable_data=[set_variable("PinPairingEnabled", "true")])
        )
        assert bluetooth.calls[-1] == ("reenable", None)
    finally:
        await running.stop()
    assert_no_secret(charger_log(caplog), BLUETOOTH_PIN)
    assert "bluetooth setting Pin updated" in charger_log(
        caplog
    )  # the log does speak, without the PIN


async def test_settings_survive_a_restart(tmp_path: Path, csms: TestCsms):
    running = start_charger(make_config(tmp_path, csms))
    try:
        await running.booted()
        await csms.charge_points[SERIAL].call(
            v201.call.SetVariables(set_variable_data=[set_variable("Pin", BLUETOOTH_PIN)])
        )
    finally:
        await running.stop()
    running = start_charger(make_config(tmp_path, csms))
    try:
        charger = await running.booted()
        assert charger.firmware.bluetooth_state.pin == BLUETOOTH_PIN
    finally:
        await running.stop()


async def test_keypad_decisions_lockout_and_security_event(
    tmp_path: Path, csms: TestCsms, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    running = start_charger(make_config(tmp_path, csms))
    try:
        await running.booted()
        decisions = [await running.decision(code) for code in ["1111", "2222", "3333", "4444"]]
        assert decisions == ["keypad: rejected"] * 4
        assert await running.decision("5555") == "keypad: rejected, locked for 300 s"
        # The right code is refused too while locked: the lock is not an oracle.
        assert await running.decision("4821") == "keypad: locked, retry in 300 s"
        record = csms.records[SERIAL]
        await eventually(lambda: len(record.security_events) == 1, what="security event")
        assert record.security_events[0]["type"] == SecurityEventType.KEYPAD_LOCKOUT
        assert record.authorizations == 5
    finally:
        await running.stop()
    printed = "\n".join(running.lines)
    for code in ["1111", "2222", "3333", "4444", "5555", "4821"]:
        assert_no_secret(printed, code)
        assert_no_secret(charger_log(caplog), code)


async def test_keypad_accepted_starts_and_ends_a_transaction(tmp_path: Path, csms: TestCsms):
    running = start_charger(make_config(tmp_path, csms))
    try:
        await running.booted()
        line = await running.decision("4821")
        assert line.startswith("keypad: accepted (session started, transaction ")
        record = csms.records[SERIAL]
        await eventually(lambda: len(record.transactions) == 2, what="Started and Ended")
        started, ended = record.transactions
        assert started["event_type"] == "Started"
        assert started["id_token"] == {"id_token": "4821", "type": "KeyCode"}
        assert ended["event_type"] == "Ended"
        assert ended["trigger_reason"] == "EVDeparted"
        assert ended["transaction_info"]["stopped_reason"] == "EVDisconnected"
        assert started["transaction_info"]["transaction_id"] in line
        assert ended["seq_no"] > started["seq_no"]
        assert "offline" not in started
        await eventually(lambda: record.statuses[-2:] == ["Occupied", "Available"], what="status")
    finally:
        await running.stop()


async def test_server_killed_mid_session_queued_transactions_arrive_exactly_once(
    tmp_path: Path, csms: TestCsms, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    running = start_charger(make_config(tmp_path, csms, session_s=1.0))
    try:
        charger = await running.booted()
        cp = csms.charge_points[SERIAL]
        listed = await cp.call(
            v201.call.SendLocalList(
                version_number=3,
                update_type="Full",
                local_authorization_list=[
                    {
                        "id_token": {"id_token": "7391", "type": "KeyCode"},
                        "id_token_info": {"status": "Accepted"},
                    },
                    {
                        "id_token": {"id_token": "6666", "type": "KeyCode"},
                        "id_token_info": {"status": "Blocked"},
                    },
                ],
            )
        )
        assert listed.status == "Accepted"
        version = await cp.call(v201.call.GetLocalListVersion())
        assert version.version_number == 3
        stale = await cp.call(v201.call.SendLocalList(version_number=2, update_type="Differential"))
        assert stale.status == "VersionMismatch"
        local_list = tmp_path / "state" / "local_list.json"
        assert stat.S_IMODE(local_list.stat().st_mode) == 0o600

        # Online session, then the server dies while it is in progress.
        online_line = await running.decision("4821")
        record = csms.records[SERIAL]
        await eventually(lambda: len(record.transactions) == 1, what="Started")
        await eventually(lambda: len(charger.firmware.outbox) == 0, what="Started answered")
        await csms.stop()
        await eventually(lambda: charger.firmware.link is None, what="offline")

        # Offline: the local list decides; events queue on disk.
        offline_line = await running.decision("7391")
        assert offline_line == "keypad: busy (a session is in progress)"
        await charger.firmware.session_ended()
        offline_line = await running.decision("7391")
        assert offline_line.startswith("keypad: accepted (session started, transaction ")
        assert offline_line.endswith(", local list)")
        assert await running.decision("6666") == "keypad: busy (a session is in progress)"
        await charger.firmware.session_ended()
        assert await running.decision("6666") == "keypad: rejected"
        assert await running.decision("0429") == "keypad: rejected"
        queued = json.loads((tmp_path / "state" / "outbox.json").read_text())
        assert [m["action"] for m in queued] == ["TransactionEvent"] * 3

        await csms.start()  # same port
        await eventually(lambda: len(charger.firmware.outbox) == 0, timeout=10, what="drain")
        await eventually(lambda: len(record.transactions) == 4, what="all events")
        keys = [(t["transaction_info"]["transaction_id"], t["seq_no"]) for t in record.transactions]
        assert len(set(keys)) == 4, "a TransactionEvent was duplicated"
        by_type = [(t["event_type"], t.get("offline", False)) for t in record.transactions]
        assert by_type == [
            ("Started", False),
            ("Ended", True),
            ("Started", True),
            ("Ended", True),
        ]
        seq = [t["seq_no"] for t in record.transactions]
        assert seq == sorted(seq)
        assert record.transactions[0]["transaction_info"]["transaction_id"] in online_line
        assert len(record.boots) == 2
        assert json.loads((tmp_path / "state" / "outbox.json").read_text()) == []
        assert any(line.startswith("ocpp: offline") for line in running.lines)
    finally:
        await running.stop()
    for code in ["4821", "7391", "6666", "0429"]:
        assert_no_secret(charger_log(caplog), code)
        assert_no_secret("\n".join(running.lines), code)


async def test_reset_reboots_and_availability_is_reported(tmp_path: Path, csms: TestCsms):
    running = start_charger(make_config(tmp_path, csms, session_s=0.5))
    try:
        charger = await running.booted()
        cp = csms.charge_points[SERIAL]
        assert (await running.decision("4821")).startswith("keypad: accepted")
        # During a session the change waits for its end (G03): Scheduled.
        result = await cp.call(v201.call.ChangeAvailability(operational_status="Inoperative"))
        assert result.status == "Scheduled"
        assert charger.firmware.available
        await charger.firmware.session_ended()
        assert not charger.firmware.available
        result = await cp.call(v201.call.ChangeAvailability(operational_status="Inoperative"))
        assert result.status == "Accepted"
        record = csms.records[SERIAL]
        await eventually(lambda: record.statuses[-1:] == ["Unavailable"], what="unavailable")
        assert await running.decision("4821") == (
            "keypad: unavailable (charger set inoperative by the server)"
        )
        reset = await cp.call(v201.call.Reset(type="Immediate"))
        assert reset.status == "Accepted"
        await eventually(lambda: len(record.boots) == 2, what="reboot")
    finally:
        await running.stop()


async def test_ocpp16_configuration_local_list_and_offline_transactions(
    tmp_path: Path, csms: TestCsms, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    config = make_config(tmp_path, csms, protocol=OcppVersion.V16)
    running = start_charger(config)
    try:
        charger = await running.booted()
        cp = csms.charge_points[SERIAL]
        assert isinstance(cp, v16.ChargePoint)
        pin_key = V16_CONFIGURATION_KEYS[BluetoothVariable.PIN]
        changed = await cp.call(v16.call.ChangeConfiguration(key=pin_key, value=BLUETOOTH_PIN))
        assert changed.status == "Accepted"
        unknown = await cp.call(v16.call.ChangeConfiguration(key="Nope", value="1"))
        assert unknown.status == "NotSupported"
        config_read = await cp.call(v16.call.GetConfiguration(key=[pin_key, "Nope"]))
        assert config_read.configuration_key == [{"key": pin_key, "readonly": False}]
        assert config_read.unknown_key == ["Nope"]
        listed = await cp.call(
            v16.call.SendLocalList(
                list_version=1,
                update_type="Full",
                local_authorization_list=[
                    {"id_tag": "7391", "id_tag_info": {"status": "Accepted"}}
                ],
            )
        )
        assert listed.status == "Accepted"

        assert (await running.decision("4821")).startswith("keypad: accepted")
        record = csms.records[SERIAL]
        await eventually(lambda: len(record.transactions) == 2, what="start/stop online")
        await eventually(lambda: len(charger.firmware.outbox) == 0, what="stop answered")
        await csms.stop()
        await eventually(lambda: charger.firmware.link is None, what="offline")
        assert (await running.decision("7391")).endswith(", local list)")
        await charger.firmware.session_ended()
        await charger.firmware.send_security_event(SecurityEventType.BLUETOOTH_PIN_LOCKOUT, "x")
        await csms.start()
        await eventually(lambda: len(record.transactions) == 4, what="offline start/stop")
        await eventually(lambda: len(charger.firmware.outbox) == 0, what="drain")
        start, stop = record.transactions[2:]
        assert start["action"] == "StartTransaction" and start["id_tag"] == "7391"
        assert stop["action"] == "StopTransaction"
        assert stop["transaction_id"] == start["transaction_id"]
        event = record.data_transfers[-1]
        assert event["vendor_id"] == "org.evaccess"
        assert event["message_id"] == "SecurityEvent"
        assert json.loads(event["data"])["type"] == SecurityEventType.BLUETOOTH_PIN_LOCKOUT
    finally:
        await running.stop()
    assert_no_secret(charger_log(caplog), BLUETOOTH_PIN, "7391", "4821")


async def test_report_pin_changed_reaches_the_server(tmp_path: Path, csms: TestCsms):
    running = start_charger(make_config(tmp_path, csms))
    try:
        charger = await running.booted()
        await charger.firmware.report_pin_changed("508217")
        await charger.firmware.report_configuration({"ssid": "garage"})
        record = csms.records[SERIAL]
        await eventually(lambda: len(record.data_transfers) == 2, what="data transfers")
        assert record.data_transfers[0] == {
            "vendor_id": "org.evaccess",
            "message_id": "BluetoothPinChanged",
            "data": {"pin": "508217"},
        }
        assert record.data_transfers[1]["data"] == {"ssid": "garage"}
        assert charger.firmware.bluetooth_state.pin == "508217"
    finally:
        await running.stop()


async def test_a_session_cut_by_a_restart_is_ended_with_power_loss(tmp_path: Path, csms: TestCsms):
    running = start_charger(make_config(tmp_path, csms, session_s=60.0))
    try:
        charger = await running.booted()
        line = await running.decision("4821")
        record = csms.records[SERIAL]
        await eventually(lambda: len(record.transactions) == 1, what="Started")
        # Until its reply arrives the event stays queued and would be sent again (at least
        # once; the server dedupes by transaction id + seqNo): wait for the reply.
        await eventually(lambda: len(charger.firmware.outbox) == 0, what="Started answered")
    finally:
        await running.stop()  # power cut mid-session
    running = start_charger(make_config(tmp_path, csms))
    try:
        await running.booted()
        await eventually(lambda: len(record.transactions) == 2, what="Ended after restart")
        started, ended = record.transactions
        transaction_id = started["transaction_info"]["transaction_id"]
        assert transaction_id in line
        assert ended["event_type"] == "Ended"
        assert ended["transaction_info"] == {
            "transaction_id": transaction_id,
            "stopped_reason": "PowerLoss",
        }
        assert ended["trigger_reason"] == "AbnormalCondition"
        assert ended["seq_no"] > started["seq_no"]
        assert running.lines[0] == (
            f"charger: session {transaction_id} was interrupted by a restart; ending it"
        )
    finally:
        await running.stop()
