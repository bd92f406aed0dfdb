"""The charger's PIN-exchange slot (charger.ble.guard) with the real ChargerLink state machine,
no radio: the injected clock and explicit link ends decide every interleaving."""

from __future__ import annotations

from pathlib import Path

from evaccess.charger.ble.guard import ATTEMPT_TIMEOUT_S, PinGuard
from evaccess.charger.ble.store import IssuedCredentials, LockoutStore
from evaccess.charger.ble.timers import ClockTimers
from evaccess.charger.ports import BluetoothPinSettings
from evaccess.domain.clock import ManualClock, SystemRandom
from evaccess.protocol import ble_access as proto
from tests.ble.conftest import PIN, SERIAL, WRONG_PIN, RecordingServer
from tests.support import eventually


class Charger:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = ManualClock()
        self.rng = SystemRandom()
        self.ended: list[tuple[proto.ChargerLink, bool]] = []
        self.guard = PinGuard(
            serial=SERIAL,
            pin_mode=proto.PinMode.PAKE,
            pin_settings=BluetoothPinSettings(pin=PIN, required=True, changeable=True),
            credentials=IssuedCredentials(tmp_path),
            lockout_store=LockoutStore(tmp_path),
            server=RecordingServer(),
            clock=self.clock,
            rng=self.rng,
            timers=ClockTimers(self.clock),
            end_link=lambda link, after_reply: self.ended.append((link, after_reply)),
        )

    def link(self) -> proto.ChargerLink:
        return proto.ChargerLink(self.guard, self.rng)


def start(link: proto.ChargerLink, phone: int, pin: str) -> tuple[proto.PhonePake, proto.Frame]:
    pake = proto.PhonePake(
        phone_id=bytes([phone]) * 16, serial=SERIAL, pin=pin, nonce_c=link.info_nonce()
    )
    return pake, proto.decode(link.handle(pake.start()))


def error(frame: proto.Frame) -> proto.ErrorCode | None:
    if frame.type is not proto.MessageType.ERROR:
        return None
    return proto.ErrorCode(frame.get(proto.Tag.ERROR_CODE)[0])


async def test_a_link_closing_after_a_wrong_pin_cannot_take_the_slot_it_would_drop(
    tmp_path: Path,
) -> None:
    """Issue 12: after a wrong PIN the charger closes the link once the phone read the answer
    (50 ms later, on loop time). A phone that started a new exchange on that link in between
    held the slot until the close freed it mid-exchange, so a second phone got PAKE_REPLY
    instead of BUSY (2 of 11 runs). A link the charger is closing starts no exchange."""
    charger = Charger(tmp_path)
    a, b = charger.link(), charger.link()
    pake, reply = start(a, 1, WRONG_PIN)
    assert reply.type is proto.MessageType.PAKE_REPLY
    assert error(proto.decode(a.handle(pake.on_reply(proto.encode(reply))))) is (
        proto.ErrorCode.CONFIRMATION_FAILED
    )
    assert charger.ended == [(a, True)]  # to be closed once the answer was read
    _, again = start(a, 1, PIN)  # a retry on the closing link, before the close lands
    assert error(again) is proto.ErrorCode.UNEXPECTED_MESSAGE
    assert charger.guard.attempt is None
    assert charger.guard.lockout.consecutive_failures == 1  # the retry counted nothing
    charger.guard.link_gone(a)  # the close lands
    _, other = start(b, 2, PIN)
    assert other.type is proto.MessageType.PAKE_REPLY  # the slot is free for phone B


async def test_a_timed_out_exchange_keeps_the_slot_until_its_link_is_gone(tmp_path: Path) -> None:
    """The 10 s limit closes the hogging link; until that close lands another phone gets BUSY,
    and a retry on the closing link starts nothing (it ends the first exchange: one guess)."""
    charger = Charger(tmp_path)
    a, b = charger.link(), charger.link()
    _, reply = start(a, 1, PIN)
    assert reply.type is proto.MessageType.PAKE_REPLY
    charger.clock.advance(ATTEMPT_TIMEOUT_S)
    await eventually(lambda: charger.ended == [(a, False)], what="the exchange timer fired")
    _, busy = start(b, 2, PIN)
    assert error(busy) is proto.ErrorCode.BUSY  # the close has not landed: still in flight
    _, retry = start(a, 1, PIN)
    assert error(retry) is proto.ErrorCode.UNEXPECTED_MESSAGE
    charger.guard.link_gone(a)
    assert charger.guard.lockout.consecutive_failures == 1  # one exchange, one guess
    _, other = start(b, 2, PIN)
    assert other.type is proto.MessageType.PAKE_REPLY
