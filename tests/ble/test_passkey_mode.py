"""Compatibility mode ``pin_mode="passkey"``: the PIN is the LE SC passkey, hardened."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from bumble import smp
from bumble.core import ProtocolError
from bumble.pairing import PairingConfig, PairingDelegate

from evaccess.app.ble import pairing
from evaccess.app.ble.central import ChargerSession, PhoneCentral
from evaccess.charger.ports import BluetoothPinSettings
from evaccess.domain.errors import ConfigurationError, Conflict, LockedOut, NotAuthenticated
from evaccess.protocol import ble_access as proto
from evaccess.protocol.ocpp_components import SecurityEventType
from tests.ble.conftest import PIN, SERIAL, WRONG_PIN, Rig, make_charger, start_rig, stop_rig


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    rig = await start_rig(tmp_path, pin_mode="passkey")
    yield rig
    await stop_rig(rig)


async def pair(rig: Rig, pin: str, phone: str = "phone") -> pairing.PairResult:
    return await pairing.pair(
        transport=rig.phone_transport,
        serial=SERIAL,
        pin=pin,
        store=rig.phone_store(phone),
        rng=rig.rng,
    )


async def raw_pairing(rig: Rig, config: PairingConfig, **kwargs: Any) -> ChargerSession:
    """Connect, then attempt SMP pairing with ``config``; returns the open session."""
    central = PhoneCentral(rig.phone_transport, rng=rig.rng)
    await central.__aenter__()
    rig.cleanups.append(central)
    session = await central.connect(SERIAL)
    assert central.device is not None
    central.device.pairing_config_factory = lambda _c: config
    return session


class Keyboard(PairingDelegate):
    def __init__(self, pin: str, io: PairingDelegate.IoCapability) -> None:
        super().__init__(io_capability=io)
        self._pin = pin

    async def get_number(self) -> int | None:
        return int(self._pin)


async def test_correct_passkey_pairs_and_credential_reconnects(rig: Rig) -> None:
    result = await pair(rig, PIN)
    assert result.pin_mode == "passkey"
    settings = await pairing.configure(
        transport=rig.phone_transport,
        serial=SERIAL,
        change=pairing.ConfigChange(current_limit_a=14),
        store=rig.phone_store(),
        rng=rig.rng,
    )
    assert settings["current_limit_a"] == 14
    assert rig.charger.guard.lockout.consecutive_failures == 0


async def test_wrong_passkey_is_one_failure_and_lockout_answers_repeated_attempts(
    rig: Rig,
) -> None:
    await pair(rig, PIN, phone="owner")
    for expected in range(1, 6):
        with pytest.raises(proto.WrongPin):
            await pair(rig, WRONG_PIN, phone="attacker")
        assert rig.charger.guard.lockout.consecutive_failures == expected
    with pytest.raises(LockedOut):
        await pair(rig, PIN, phone="attacker")
    assert rig.server.events[-1][0] == SecurityEventType.BLUETOOTH_PIN_LOCKOUT
    settings = await pairing.configure(
        transport=rig.phone_transport,
        serial=SERIAL,
        change=pairing.ConfigChange(current_limit_a=13),
        store=rig.phone_store("owner"),
        rng=rig.rng,
    )
    assert settings["current_limit_a"] == 13


@pytest.mark.parametrize(
    ("config", "what"),
    [
        (PairingConfig(sc=True, mitm=False, bonding=False), "Just Works (no MITM)"),
        (
            PairingConfig(
                sc=True,
                mitm=True,
                bonding=False,
                delegate=PairingDelegate(io_capability=PairingDelegate.NO_OUTPUT_NO_INPUT),
            ),
            "Just Works (IO capabilities)",
        ),
        (
            PairingConfig(
                sc=False,
                mitm=True,
                bonding=False,
                delegate=Keyboard(PIN, PairingDelegate.DISPLAY_OUTPUT_AND_KEYBOARD_INPUT),
            ),
            "legacy pairing, even with the right passkey",
        ),
    ],
)
async def test_just_works_and_legacy_pairing_are_refused(
    rig: Rig, config: PairingConfig, what: str
) -> None:
    session = await raw_pairing(rig, config)
    with pytest.raises(ProtocolError) as refused:
        await session.connection.pair()
    assert refused.value.error_code == smp.ErrorCode.AUTHENTICATION_REQUIREMENTS, what
    # Without a passkey-paired link the PIN-less enrolment is refused too.
    with pytest.raises(NotAuthenticated, match="passkey"):
        await session.enrol(phone_id=bytes(16), pin=None)
    assert rig.charger.guard.lockout.consecutive_failures == 0
    assert len(rig.charger.guard.credentials) == 0


async def test_reflected_public_key_is_refused(rig: Rig) -> None:
    charger_device = rig.charger.device
    assert charger_device is not None

    session = await raw_pairing(
        rig,
        PairingConfig(
            sc=True,
            mitm=True,
            bonding=False,
            delegate=Keyboard(PIN, PairingDelegate.DISPLAY_OUTPUT_AND_KEYBOARD_INPUT),
        ),
    )
    phone_device = session.connection.device

    class Reflector(smp.Session):
        """A phone that sends the charger's own public key back (CVE-2020-26558)."""

        def send_public_key_command(self) -> None:
            charger_session = next(iter(charger_device.smp_manager.sessions.values()))
            self.ecc_key = charger_session.ecc_key
            super().send_public_key_command()

    phone_device.smp_manager.session_proxy = Reflector
    with pytest.raises(ProtocolError) as refused:
        await session.connection.pair()
    assert refused.value.error_code == smp.ErrorCode.DHKEY_CHECK_FAILED
    assert rig.charger.guard.lockout.consecutive_failures == 1  # an attack counts as a guess


async def test_every_pairing_gets_a_fresh_key_pair(rig: Rig) -> None:
    keys = []
    charger_device = rig.charger.device
    assert charger_device is not None
    original = charger_device.smp_manager.session_proxy

    class Spy(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            keys.append(self.ecc_key.x)

    charger_device.smp_manager.session_proxy = Spy
    await pair(rig, PIN, phone="a")
    await pair(rig, PIN, phone="b")
    assert len(keys) == 2 and keys[0] != keys[1]


def test_passkey_mode_refuses_pin_000000(rig: Rig) -> None:
    with pytest.raises(ConfigurationError, match="000000"):
        make_charger(
            rig,
            pin_mode="passkey",
            pin_settings=BluetoothPinSettings(pin="000000", required=True, changeable=False),
        )
    with pytest.raises(ConfigurationError, match="mode"):
        make_charger(rig, pin_mode="justworks")


async def test_the_phone_refuses_a_charger_reflecting_its_key(rig: Rig) -> None:
    """A fake charger sending the phone's own public key back gets nothing (the phone's
    side of the hardening)."""
    charger_device = rig.charger.device
    assert charger_device is not None
    session = await raw_pairing(
        rig,
        PairingConfig(
            sc=True,
            mitm=True,
            bonding=False,
            delegate=Keyboard(PIN, PairingDelegate.DISPLAY_OUTPUT_AND_KEYBOARD_INPUT),
        ),
    )
    phone_device = session.connection.device
    honest = charger_device.smp_manager.session_proxy

    class FakeCharger(honest):  # type: ignore[misc, valid-type]
        def send_public_key_command(self) -> None:
            phone_session = next(iter(phone_device.smp_manager.sessions.values()))
            self.ecc_key = phone_session.ecc_key
            super().send_public_key_command()

    charger_device.smp_manager.session_proxy = FakeCharger
    with pytest.raises(ProtocolError) as refused:
        await session.connection.pair()
    assert refused.value.error_code == smp.ErrorCode.DHKEY_CHECK_FAILED


async def test_a_pin_exchange_is_answered_pin_by_passkey_as_info_says_a_pin_is_required(
    rig: Rig,
) -> None:
    async with PhoneCentral(rig.phone_transport, rng=rig.rng) as central:
        session = await central.connect(SERIAL)
        info = await session.info()
        assert info.pin_required and info.pin_mode is proto.PinMode.PASSKEY
        for passkey_paired in (False, True):
            if passkey_paired:
                await session.pair_link_with_passkey(PIN)
            with pytest.raises(Conflict, match="passkey") as refused:
                await session.enrol(phone_id=bytes(16), pin=PIN)
            assert refused.value.code == "ble_pin_by_passkey"
        await session.close()
    assert rig.charger.guard.lockout.consecutive_failures == 0  # not a guess
