"""Acceptance on the virtual link: the real peripheral, the real app flows, real Bumble."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from bumble import smp
from bumble.core import ProtocolError
from bumble.pairing import PairingConfig

from evaccess.app.ble import pairing
from evaccess.app.ble.central import PhoneCentral
from evaccess.app.ble.credentials import CredentialStore, PairedCharger
from evaccess.charger.ble import guard, peripheral
from evaccess.charger.ports import BluetoothPinSettings
from evaccess.domain.clock import SystemRandom
from evaccess.domain.errors import (
    ConfigurationError,
    EvAccessError,
    InvalidInput,
    LockedOut,
    NotAuthenticated,
    PairingDisabled,
    PermissionDenied,
    PinRejected,
)
from evaccess.protocol import ble_access as proto
from evaccess.protocol.ocpp_components import SecurityEventType
from tests.ble.conftest import PIN, SERIAL, WRONG_PIN, Rig, make_charger
from tests.charger.csms import eventually


async def pair(rig: Rig, pin: str | None = PIN, phone: str = "phone") -> pairing.PairResult:
    return await pairing.pair(
        transport=rig.phone_transport,
        serial=SERIAL,
        pin=pin,
        store=rig.phone_store(phone),
        rng=rig.rng,
    )


async def configure(rig: Rig, phone: str = "phone", **change: object) -> dict[str, object]:
    return await pairing.configure(
        transport=rig.phone_transport,
        serial=SERIAL,
        change=pairing.ConfigChange(**change),  # type: ignore[arg-type]
        store=rig.phone_store(phone),
        rng=rig.rng,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_correct_pin_pairs_stores_credential_and_reconnects_without_pin(rig: Rig) -> None:
    result = await pair(rig)
    assert result.pin_required and result.pin_mode == "pake"
    phone_file = rig.tmp / "phone" / "credentials" / f"{SERIAL}.json"
    charger_file = rig.tmp / "charger" / "ble-credentials.json"
    assert mode(phone_file) == 0o600 and mode(charger_file) == 0o600
    assert json.loads(phone_file.read_text())["phone_id"] in json.loads(charger_file.read_text())
    assert len(bytes.fromhex(json.loads(phone_file.read_text())["secret"])) >= 16

    # Reconnect: the credential alone (no PIN) opens a session that configures the charger.
    settings = await configure(
        rig, current_limit_a=20, wifi_ssid="home", wifi_password="s3cret-wifi"
    )
    assert settings == {"wifi_ssid": "home", "current_limit_a": 20}
    assert rig.charger.wifi_password == "s3cret-wifi"
    assert "s3cret" not in repr(rig.charger.config.values)
    assert {"WifiSsid": "home"} in rig.server.configuration
    assert {"CurrentLimit": "20"} in rig.server.configuration
    assert all("password" not in json.dumps(c).lower() for c in rig.server.configuration)


async def test_wrong_pin_fails_clearly_and_is_exactly_one_failed_guess(rig: Rig) -> None:
    with pytest.raises(proto.WrongPin, match="wrong PIN"):
        await pair(rig, WRONG_PIN)
    assert rig.charger.guard.lockout.consecutive_failures == 1
    assert rig.phone_store().find(SERIAL) is None
    assert len(rig.charger.guard.credentials) == 0
    await pair(rig)  # the right PIN right after works, and resets the count
    assert rig.charger.guard.lockout.consecutive_failures == 0


async def test_each_wrong_pin_says_how_many_attempts_are_left_and_the_fifth_locks(
    rig: Rig,
) -> None:
    for left in (4, 3, 2, 1):
        with pytest.raises(proto.WrongPin) as wrong:
            await pair(rig, WRONG_PIN, phone="attacker")
        plural = "s" if left > 1 else ""
        assert str(wrong.value) == f"wrong PIN: {left} attempt{plural} left before pairing locks"
    with pytest.raises(proto.WrongPin) as fifth:
        await pair(rig, WRONG_PIN, phone="attacker")
    assert str(fifth.value) == "wrong PIN: pairing is now locked for 5 min"
    assert fifth.value.locked and fifth.value.retry_after == 300
    # ... and the owner is told: the security event the OCPP half forwards to the server.
    await eventually(lambda: rig.server.events, what="the lockout event")
    assert rig.server.events == [
        (SecurityEventType.BLUETOOTH_PIN_LOCKOUT, "level=1 duration_s=300 consecutive_failures=5")
    ]
    assert rig.charger.guard.lockout.consecutive_failures == 5
    with pytest.raises(LockedOut):  # INFO says so: the next try sends nothing
        await pair(rig, PIN, phone="attacker")
    assert rig.charger.guard.lockout.consecutive_failures == 5


async def test_a_pin_that_is_not_six_digits_is_refused_before_any_connection(rig: Rig) -> None:
    with pytest.raises(proto.WrongPin):
        await pair(rig, WRONG_PIN)
    connections: list[object] = []
    assert rig.charger.device is not None
    rig.charger.device.on(rig.charger.device.EVENT_CONNECTION, connections.append)
    for bad in ("47291", "4729133", "47291a", ""):
        with pytest.raises(PinRejected, match="exactly 6 digits"):
            await pair(rig, bad, phone="typo")
    assert connections == []
    assert rig.charger.guard.lockout.consecutive_failures == 1  # no guess was spent


async def test_protected_characteristics_refuse_unauthenticated_sessions(rig: Rig) -> None:
    async with PhoneCentral(rig.phone_transport, rng=rig.rng) as central:
        session = await central.connect(SERIAL)
        info = await session.info()  # INFO is public
        assert info.serial == SERIAL and info.pin_required
        for uuid in (proto.WIFI_UUID, proto.CURRENT_LIMIT_UUID):
            with pytest.raises(NotAuthenticated, match="ATT error 0x05"):
                await session.raw_read(uuid)
        for uuid in proto.CONFIG_UUIDS:
            with pytest.raises(NotAuthenticated, match="ATT error 0x05"):
                await session.raw_write(uuid, b'{"amps": 32}')
        # Bumble's own flag (True after any pairing) is not what guards them: pair Just Works.
        await session.connection.pair()
        assert session.connection.authenticated
        with pytest.raises(NotAuthenticated):
            await session.raw_read(proto.WIFI_UUID)
        await session.close()
    assert rig.charger.config.values["current_limit_a"] == 16


async def test_values_sealed_under_another_session_are_refused(rig: Rig) -> None:
    await pair(rig)
    store = rig.phone_store()
    cred = store.load(SERIAL)
    async with PhoneCentral(rig.phone_transport, rng=rig.rng) as central:
        session = await central.connect(SERIAL)
        await session.authenticate(phone_id=cred.phone_id, secret=cred.secret)
        assert session.cipher is not None
        sealed = proto.seal_json(session.cipher, proto.CURRENT_LIMIT_UUID, {"amps": 10})
        await session.raw_write(proto.CURRENT_LIMIT_UUID, sealed)
        with pytest.raises(Exception, match="ATT error 0x83"):  # replayed: same counter
            await session.raw_write(proto.CURRENT_LIMIT_UUID, sealed)
        moved = proto.seal_json(session.cipher, proto.WIFI_UUID, {"amps": 11})
        with pytest.raises(Exception, match="ATT error 0x83"):  # sealed for another setting
            await session.raw_write(proto.CURRENT_LIMIT_UUID, moved)
        with pytest.raises(InvalidInput, match="ATT error 0x80"):
            await session.write_setting(proto.CURRENT_LIMIT_UUID, {"amps": 33})
        await session.close()
    assert rig.charger.config.values["current_limit_a"] == 10


async def test_lockout_escalation_and_cap_while_a_credentialed_phone_keeps_working(
    rig: Rig,
) -> None:
    await pair(rig, phone="owner")
    for _ in range(5):
        with pytest.raises(proto.WrongPin):
            await pair(rig, WRONG_PIN, phone="attacker")
    with pytest.raises(LockedOut) as locked:
        await pair(rig, PIN, phone="attacker")  # even the right PIN: no exchange at all
    assert 299 <= locked.value.retry_after <= 300
    assert locked.value.code == "ble_locked"
    assert rig.server.events[-1][0] == SecurityEventType.BLUETOOTH_PIN_LOCKOUT
    assert "duration_s=300" in (rig.server.events[-1][1] or "")
    # A phone that skips INFO and starts the exchange anyway is refused by the charger.
    async with PhoneCentral(rig.phone_transport, rng=rig.rng) as central:
        session = await central.connect(SERIAL)
        with pytest.raises(LockedOut) as direct:
            await session.enrol(phone_id=bytes(16), pin=PIN)
        assert 299 <= direct.value.retry_after <= 300
        await session.close()
    # The owner's phone is not locked out, and the charger still advertises.
    assert (await configure(rig, phone="owner", current_limit_a=12))["current_limit_a"] == 12

    # After 5 minutes: 5 more failures lock for twice as long (escalation).
    rig.clock.advance(301)
    for _ in range(5):
        with pytest.raises(proto.WrongPin):
            await pair(rig, WRONG_PIN, phone="attacker")
    with pytest.raises(LockedOut) as locked:
        await pair(rig, WRONG_PIN, phone="attacker")
    assert 599 <= locked.value.retry_after <= 600

    # The lockout survives a charger restart (persisted in epoch seconds).
    await rig.restart_charger()
    with pytest.raises(LockedOut):
        await pair(rig, PIN, phone="attacker")

    # The 100-failure cap: pretend 88 more failures happened (98 in a row); two more, and the
    # 100th consecutive failure disables PIN pairing until the server re-enables it.
    state_file = rig.tmp / "charger" / "ble-lockout.json"
    state = json.loads(state_file.read_text())
    state.update(consecutive_failures=98, locked_until=0.0)
    state_file.write_text(json.dumps(state))
    await rig.restart_charger()
    for _ in range(2):
        with pytest.raises(proto.WrongPin):
            await pair(rig, WRONG_PIN, phone="attacker")
    assert rig.charger.guard.lockout.disabled
    with pytest.raises(PairingDisabled):
        await pair(rig, WRONG_PIN, phone="attacker")
    assert rig.server.events[-1][0] == SecurityEventType.BLUETOOTH_PIN_PAIRING_DISABLED
    rig.clock.advance(10 * 24 * 3600)
    with pytest.raises(PairingDisabled, match="re-enable"):
        await pair(rig, PIN, phone="attacker")
    assert (await configure(rig, phone="owner", current_limit_a=8))["current_limit_a"] == 8

    await rig.charger.reenable_pin_pairing()
    await pair(rig, PIN, phone="newcomer")


async def test_the_charger_tells_the_server_which_phone_it_issued_a_credential(rig: Rig) -> None:
    """The server's list of phones (the owner's Who can get in page) comes from this event:
    the phone's id, never its secret."""
    await pair(rig, phone="a")
    paired = rig.phone_store("a").load(SERIAL)
    issued = (SecurityEventType.BLUETOOTH_CREDENTIAL_ISSUED, f"phone_id={paired.phone_id.hex()}")
    await eventually(lambda: issued in rig.server.events, what="the credential event")
    assert [e for e in rig.server.events if e[0] == issued[0]] == [issued]
    assert all(paired.secret.hex() not in str(e) for e in rig.server.events)


async def test_credential_survives_restart_and_revocation_stops_it(rig: Rig) -> None:
    await pair(rig, phone="a")
    await pair(rig, phone="b")
    await pair(rig, phone="c")
    await rig.restart_charger()
    assert (await configure(rig, phone="a", current_limit_a=10))["current_limit_a"] == 10

    phone_b = rig.phone_store("b").load(SERIAL).phone_id.hex()
    await rig.charger.revoke_credential(phone_b)
    with pytest.raises(NotAuthenticated, match="pair again"):
        await configure(rig, phone="b", current_limit_a=10)
    assert (await configure(rig, phone="c", current_limit_a=11))["current_limit_a"] == 11
    assert rig.server.events[-1] == (
        SecurityEventType.BLUETOOTH_CREDENTIAL_REVOKED,
        f"phone_id={phone_b}",
    )

    await rig.charger.revoke_all_credentials()
    await rig.restart_charger()
    for phone in ("a", "c"):
        with pytest.raises(NotAuthenticated):
            await configure(rig, phone=phone, current_limit_a=12)


async def test_settings_written_by_a_phone_survive_a_restart_and_reach_the_server_again(
    rig: Rig,
) -> None:
    """Issue 12: a Wi-Fi SSID written over Bluetooth was lost at restart while the server
    still reported it. The non-secret settings persist in state_dir (never the Wi-Fi
    password) and the charger reports them at start, so the server's view follows."""
    await pair(rig)
    await configure(rig, wifi_ssid="home", wifi_password="s3cret-wifi", current_limit_a=20)
    stored = rig.tmp / "charger" / "ble-settings.json"
    assert mode(stored) == 0o600 and "s3cret" not in stored.read_text()
    rig.server.configuration.clear()
    await rig.restart_charger()
    assert {"WifiSsid": "home", "CurrentLimit": "20"} in rig.server.configuration
    assert await configure(rig) == {"wifi_ssid": "home", "current_limit_a": 20}
    assert rig.charger.wifi_password is None  # in memory only: the phone sends it again


async def test_forget_from_the_phone(rig: Rig) -> None:
    await pair(rig)
    await pairing.forget(
        transport=rig.phone_transport, serial=SERIAL, store=rig.phone_store(), rng=rig.rng
    )
    assert len(rig.charger.guard.credentials) == 0
    assert rig.phone_store().find(SERIAL) is None


async def test_pin_change_from_the_phone_reaches_the_server(rig: Rig) -> None:
    await pair(rig)
    with pytest.raises(PinRejected):
        await configure(rig, new_pin="123456")
    await configure(rig, new_pin="583920")
    assert rig.server.pins == ["583920"]
    assert rig.server.events[-1][0] == SecurityEventType.BLUETOOTH_PIN_CHANGED
    with pytest.raises(proto.WrongPin):
        await pair(rig, PIN, phone="other")
    await pair(rig, "583920", phone="other")

    await rig.charger.apply_pin_settings(
        BluetoothPinSettings(pin="583920", required=True, changeable=False)
    )
    with pytest.raises(PermissionDenied):
        await configure(rig, new_pin="660372")


async def test_no_pin_required_enrols_without_pin_and_newly_required_pin_drops_links(
    rig: Rig,
) -> None:
    await rig.charger.apply_pin_settings(
        BluetoothPinSettings(pin=None, required=False, changeable=False)
    )
    result = await pair(rig, pin=None, phone="early")
    assert not result.pin_required
    assert (await configure(rig, phone="early", current_limit_a=9))["current_limit_a"] == 9

    async with PhoneCentral(rig.phone_transport, rng=rig.rng) as central:
        session = await central.connect(SERIAL)
        cred = rig.phone_store("early").load(SERIAL)
        await session.authenticate(phone_id=cred.phone_id, secret=cred.secret)
        await rig.charger.apply_pin_settings(
            BluetoothPinSettings(pin=PIN, required=True, changeable=True)
        )
        assert not rig.charger.links  # the open link was dropped
    # A credential enrolled without a PIN no longer opens the charger; the PIN is needed.
    with pytest.raises(NotAuthenticated):
        await configure(rig, phone="early", current_limit_a=9)
    await pair(rig, PIN, phone="early")
    assert (await configure(rig, phone="early", current_limit_a=7))["current_limit_a"] == 7


async def test_other_validation(rig: Rig) -> None:
    await pair(rig)
    with pytest.raises(InvalidInput):
        await configure(rig, firmware_update_url="http://insecure.example/fw.bin")
    await configure(rig, firmware_update_url="https://updates.example/fw-2.1.bin")
    assert {"FirmwareUpdateRequested": "https://updates.example/fw-2.1.bin"} in (
        rig.server.configuration
    )
    with pytest.raises(InvalidInput):
        await configure(rig, wifi_ssid="home", wifi_password="short")


async def test_a_pin_of_the_wrong_json_type_is_an_invalid_value_as_section_7_says(
    rig: Rig,
) -> None:
    await pair(rig)
    cred = rig.phone_store().load(SERIAL)
    async with PhoneCentral(rig.phone_transport, rng=rig.rng) as central:
        session = await central.connect(SERIAL)
        await session.authenticate(phone_id=cred.phone_id, secret=cred.secret)
        for value in ({"pin": 583920}, {"pin": None}, {"pin": ["583920"]}, {}):
            with pytest.raises(InvalidInput, match="ATT error 0x80") as refused:
                await session.write_setting(proto.PIN_UUID, value)
            assert not isinstance(refused.value, PinRejected), value
        with pytest.raises(PinRejected, match="ATT error 0x81"):  # a string, but trivial
            await session.write_setting(proto.PIN_UUID, {"pin": "123456"})
        await session.close()
    assert rig.charger.guard.pin_settings.pin == PIN
    assert rig.server.pins == []


async def test_a_pin_change_the_server_cannot_take_is_not_applied(rig: Rig) -> None:
    await pair(rig)

    async def offline(new_pin: str) -> None:
        raise ConnectionError("OCPP link down")

    rig.server.report_pin_changed = offline  # type: ignore[method-assign]
    with pytest.raises(EvAccessError, match="ATT error 0x0E"):
        await configure(rig, new_pin="583920")
    assert (
        rig.charger.guard.pin_settings.pin == PIN
    )  # the server would reveal a stale PIN otherwise
    await pair(rig, PIN, phone="other")


async def test_state_files_are_private(rig: Rig) -> None:
    await pair(rig)
    with pytest.raises(proto.WrongPin):
        await pair(rig, WRONG_PIN, phone="x")
    for name in ("ble-credentials.json", "ble-lockout.json", "ble-identity.json"):
        assert mode(rig.tmp / "charger" / name) == 0o600, name
    assert mode(rig.tmp / "charger") == 0o700
    assert mode(rig.tmp / "phone" / "credentials" / f"{SERIAL}.json") == 0o600


def test_a_phone_shows_each_charger_another_id_so_listeners_cannot_follow_it(
    tmp_path: Path,
) -> None:
    """Issue 12: PHONE_ID travels in clear (PAKE_START, AUTH_BEGIN: section 11), so one id
    per installation let a listener follow a phone from charger to charger. The phone draws
    a fresh random id per charger, and keeps it for that charger (a re-pairing replaces the
    credential under the same id)."""
    store, rng = CredentialStore(tmp_path), SystemRandom()
    first = store.phone_id(rng, "EVA-1")
    assert store.phone_id(rng, "EVA-2") != first
    store.save(
        PairedCharger(serial="EVA-1", phone_id=first, secret=bytes(32), address=None, handles={})
    )
    assert store.phone_id(rng, "EVA-1") == first


async def test_pake_mode_links_accept_le_secure_connections_only(rig: Rig) -> None:
    async with PhoneCentral(rig.phone_transport, rng=rig.rng) as central:
        session = await central.connect(SERIAL)
        assert central.device is not None
        central.device.pairing_config_factory = lambda _c: PairingConfig(sc=False, bonding=False)
        with pytest.raises(ProtocolError) as refused:
            await session.connection.pair()
        assert refused.value.error_code == smp.ErrorCode.AUTHENTICATION_REQUIREMENTS
        await session.close()


async def test_stale_cached_address_and_handles_fall_back_to_scan_and_discovery(
    rig: Rig,
) -> None:
    await pair(rig)
    path = rig.tmp / "phone" / "credentials" / f"{SERIAL}.json"
    saved = json.loads(path.read_text())
    good_handles = dict(saved["handles"])
    info, access = str(proto.INFO_UUID), str(proto.ACCESS_UUID)
    saved["handles"][access] = good_handles[info]  # e.g. the charger's firmware moved them
    path.write_text(json.dumps(saved))
    assert (await configure(rig, current_limit_a=18))["current_limit_a"] == 18
    assert json.loads(path.read_text())["handles"] == good_handles  # cache repaired

    saved = json.loads(path.read_text())
    saved["address"] = "C1:22:33:44:55:66/P"  # nobody advertises there
    path.write_text(json.dumps(saved))
    assert (await configure(rig, current_limit_a=19))["current_limit_a"] == 19
    assert json.loads(path.read_text())["address"] != saved["address"]


async def test_an_idle_unauthenticated_link_neither_hides_the_charger_nor_stays(
    rig: Rig,
) -> None:
    await pair(rig, phone="owner")
    async with PhoneCentral(rig.link.transports[2], rng=rig.rng) as squatter:
        await squatter.connect(SERIAL)  # connects and does nothing
        # The owner still finds and configures the charger while the squatter is connected.
        assert (await configure(rig, phone="owner", current_limit_a=15))["current_limit_a"] == 15
        assert rig.charger.links  # the squatter's link, still within its time
        rig.clock.advance(peripheral.UNAUTHENTICATED_LINK_TIMEOUT_S)
        await eventually(lambda: not rig.charger.links, what="the idle link closed")


async def test_a_bad_transport_is_a_clear_error(rig: Rig) -> None:
    with pytest.raises(ConfigurationError, match="cannot open Bluetooth transport"):
        await make_charger(rig, transport="bogus:1").start()
    with pytest.raises(InvalidInput, match="cannot open Bluetooth transport"):
        async with PhoneCentral("bogus:1", rng=rig.rng):
            pass


async def test_an_unconfirmed_pin_exchange_ends_on_the_charger_clock(rig: Rig) -> None:
    async with PhoneCentral(rig.phone_transport, rng=rig.rng) as central:
        session = await central.connect(SERIAL)
        info = await session.info()
        pake = proto.PhonePake(phone_id=bytes(16), serial=SERIAL, pin=PIN, nonce_c=info.nonce)
        proto.expect_reply(await session._exchange(pake.start()), proto.MessageType.PAKE_REPLY)
        assert rig.charger.guard.attempt is not None  # the one exchange slot is held
        rig.clock.advance(guard.ATTEMPT_TIMEOUT_S)
        await eventually(lambda: not rig.charger.links, what="the hogging link closed")
    assert rig.charger.guard.attempt is None
    assert rig.charger.guard.lockout.consecutive_failures == 1  # counted as a guess


async def test_the_access_characteristic_behaves_as_section_3_5_writes_down(rig: Rig) -> None:
    """Issue 12's "behaviour the document leaves unsaid": a read consumes the reply, a second
    request replaces an unread reply, an undefined type is MALFORMED, a defined type in the
    wrong direction is UNEXPECTED_MESSAGE."""
    async with PhoneCentral(rig.phone_transport, rng=rig.rng) as central:
        await central.connect(SERIAL)
        await eventually(lambda: rig.charger.links, what="the charger sees the link")
        (connection,) = rig.charger.links
        write = rig.charger._write_access
        read = rig.charger._read_access

        def code(reply: bytes) -> proto.ErrorCode:
            return proto.ErrorCode(proto.decode(reply).get(proto.Tag.ERROR_CODE)[0])

        assert read(connection) == b""  # nothing pending
        write(connection, bytes((2, 0x06, 0, 0)))  # a type section 3.2 does not define
        assert code(read(connection)) is proto.ErrorCode.MALFORMED
        assert read(connection) == b""  # consumed by the read
        write(connection, bytes((2, 0x06, 0, 0)))
        write(connection, bytes((2, proto.MessageType.INFO, 0, 0)))  # replaces the unread one
        assert code(read(connection)) is proto.ErrorCode.UNEXPECTED_MESSAGE
        assert read(connection) == b""


def _padded_frame(total: int) -> bytes:
    """A PAKE_START-typed frame of ``total`` bytes made of unknown (skipped) fields."""
    body = b""
    while len(body) < total - 4:
        size = min(255, total - 4 - len(body) - 2)
        body += bytes((0x7F - len(body) // 257, size)) + bytes(size)
    return bytes((2, proto.MessageType.PAKE_START)) + len(body).to_bytes(2, "big") + body


async def test_a_frame_is_at_most_one_att_value_and_the_answer_past_it_is_the_documented_one(
    rig: Rig,
) -> None:
    """Issue 12: section 3.1 allowed a 512-byte body although an ATT value is at most 512
    bytes, so the real limit was 508 and a longer write got an ATT error the document did not
    mention. One limit (the whole frame fits one ATT value: body <= 508), one answer past it
    (ATT 0x0D from the ATT layer, documented in 3.5); a body over 508 is MALFORMED in itself."""
    with pytest.raises(proto.ProtocolViolation):
        proto.decode(_padded_frame(513))
    async with PhoneCentral(rig.phone_transport, rng=rig.rng) as central:
        session = await central.connect(SERIAL)
        await session._write(proto.ACCESS_UUID, _padded_frame(512))
        answer = proto.decode(await session._read(proto.ACCESS_UUID))
        assert answer.type is proto.MessageType.ERROR  # a frame, not an ATT error
        with pytest.raises(ProtocolError, match="INVALID_ATTRIBUTE_LENGTH"):
            await session._write(proto.ACCESS_UUID, _padded_frame(513))
