import random

import pytest

from evaccess.domain import lockout
from evaccess.domain.errors import InvalidInput, LockedOut, PairingDisabled, PinRejected
from evaccess.domain.pins import (
    KeypadPinRules,
    PinSpaceCrowding,
    check_bluetooth_pin_format,
    generate_bluetooth_pin,
    trivial_reasons,
    validate_bluetooth_pin,
)


class SeededRandom:
    def __init__(self, seed: int) -> None:
        self._r = random.Random(seed)

    def randbelow(self, n: int) -> int:
        return self._r.randrange(n)

    def token_bytes(self, n: int) -> bytes:
        return self._r.randbytes(n)


class ZeroFirst(SeededRandom):
    """Returns 0 first: the generator must never turn that into PIN 000000."""

    def __init__(self) -> None:
        super().__init__(1)
        self.calls = 0

    def randbelow(self, n: int) -> int:
        self.calls += 1
        return 0 if self.calls == 1 else super().randbelow(n)


def test_bluetooth_pin_is_six_digits_never_zero():
    rng = SeededRandom(7)
    pins = {generate_bluetooth_pin(rng) for _ in range(2000)}
    assert all(len(p) == 6 and p.isdigit() and p != "000000" for p in pins)
    assert len(pins) > 1990
    assert generate_bluetooth_pin(ZeroFirst()) != "000000"


def test_bluetooth_pin_avoids_serial_digits():
    class Fixed(SeededRandom):
        def __init__(self) -> None:
            super().__init__(3)
            self.values = iter([482915 - 1])

        def randbelow(self, n: int) -> int:
            return next(self.values, None) or super().randbelow(n)

    assert generate_bluetooth_pin(Fixed(), avoid=["WB-482915-X"]) != "482915"


@pytest.mark.parametrize(
    "pin", ["0000", "1234", "1111", "1212", "4321", "2580", "1122", "1987", "123123", "000000"]
)
def test_trivial_keypad_pins_are_rejected(pin):
    assert trivial_reasons(pin)
    with pytest.raises(PinRejected) as info:
        KeypadPinRules(digits=len(pin)).validate(pin)
    assert pin not in str(info.value)


@pytest.mark.parametrize("pin", ["abcd", "12 4", "١٢٣٤", "739"])
def test_malformed_keypad_pins_are_rejected(pin):
    with pytest.raises(PinRejected):
        KeypadPinRules().validate(pin)


def test_keypad_rules_length_bounds_and_generation():
    with pytest.raises(InvalidInput):
        KeypadPinRules(digits=3)
    with pytest.raises(InvalidInput):
        KeypadPinRules(digits=9)
    rules = KeypadPinRules(digits=6)
    rng = SeededRandom(1)
    for _ in range(200):
        assert rules.validate(rules.generate(rng))
    assert validate_bluetooth_pin("739104") == "739104"
    with pytest.raises(PinRejected):
        validate_bluetooth_pin("123456")


def test_crowding_warns_above_one_percent():
    assert not PinSpaceCrowding(members_with_pin=100, digits=4).warning
    assert PinSpaceCrowding(members_with_pin=101, digits=4).warning
    assert PinSpaceCrowding(members_with_pin=50, digits=4).ratio == 0.005


def fail_n(state, now, n, rules):
    events = []
    for _ in range(n):
        state, event = lockout.record_failure(state, now, rules)
        events.append(event)
    return state, events


def test_five_failures_in_a_minute_lock_for_five_minutes_then_escalate():
    rules = lockout.KEYPAD_RULES
    state, events = fail_n(lockout.LockoutState(), 0.0, 4, rules)
    assert events == [None] * 4
    lockout.check(state, 0.0)
    state, events = fail_n(state, 59.0, 1, rules)
    assert events[0].duration_s == 300
    with pytest.raises(LockedOut) as info:
        lockout.check(state, 100.0)
    assert info.value.retry_after == pytest.approx(259.0)
    lockout.check(state, 359.0)
    state, events = fail_n(state, 400.0, 5, rules)
    assert events[-1].duration_s == 600 and events[-1].level == 2
    state = lockout.record_success(state)
    assert state.level == 0 and state.locked_until == 1000.0


def test_failures_spread_over_more_than_a_minute_do_not_lock():
    state, events = lockout.LockoutState(), []
    for i in range(20):
        state, event = lockout.record_failure(state, i * 16.0, lockout.KEYPAD_RULES)
        events.append(event)
    assert not any(events)


def test_failure_cap_disables_until_reenabled():
    rules = lockout.BLUETOOTH_RULES
    state = lockout.LockoutState()
    now = 0.0
    for _ in range(99):
        state, _event = lockout.record_failure(state, now, rules)
        now += 20.0  # slow enough never to trip the one-minute rule
    lockout.check(state, now)
    state, event = lockout.record_failure(state, now, rules)
    assert event.kind is lockout.LockoutKind.DISABLED
    with pytest.raises(PairingDisabled):
        lockout.check(state, now + 10**9)
    lockout.check(lockout.reenable(state), now)


def test_attempts_left_counts_down_to_the_lockout_and_the_cap():
    rules = lockout.BLUETOOTH_RULES
    state = lockout.LockoutState()
    assert lockout.attempts_left(state, 0.0, rules) == 5
    state, _ = fail_n(state, 0.0, 2, rules)
    assert lockout.attempts_left(state, 1.0, rules) == 3
    assert lockout.attempts_left(state, 61.0, rules) == 5  # the failures left the window
    state, _ = fail_n(state, 10.0, 3, rules)
    assert lockout.attempts_left(state, 11.0, rules) == 0  # locked
    near_cap = lockout.LockoutState(consecutive_failures=98)
    assert lockout.attempts_left(near_cap, 0.0, rules) == 2
    assert lockout.attempts_left(lockout.LockoutState(disabled=True), 0.0, rules) == 0


@pytest.mark.parametrize("pin", ["12345", "1234567", "12a456", "", " 12345", "١٢٣٤٥٦"])
def test_a_pin_to_pair_with_must_be_six_ascii_digits(pin):
    with pytest.raises(PinRejected, match="exactly 6 digits"):
        check_bluetooth_pin_format(pin)
    assert check_bluetooth_pin_format("000000") == "000000"  # the format only: no triviality
