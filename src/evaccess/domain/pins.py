"""Bluetooth PINs (6 digits, per charger) and keypad PINs (4-8 digits, per user and
organisation): generation from a CSPRNG and the rules a PIN must pass.

The keypad block list (``trivial_reasons``) is documented in docs/security.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from evaccess.domain.clock import RandomSource
from evaccess.domain.errors import InvalidInput, PinRejected

BLUETOOTH_PIN_DIGITS = 6
KEYPAD_MIN_DIGITS = 4
KEYPAD_MAX_DIGITS = 8
DEFAULT_KEYPAD_DIGITS = 4

# Keypad shapes people pick: columns, diagonals and corners of a 3x4 phone keypad, and words.
_KEYPAD_SHAPES = frozenset(
    {
        "2580",
        "0852",
        "1470",
        "0741",
        "3690",
        "0963",
        "1357",
        "7531",
        "2468",
        "8642",
        "1379",
        "9731",
        "1397",
        "7913",
        "1590",
        "0951",
        "5683",
        "6969",
        "1004",
        "0007",
    }
)
_RUNS = ("01234567890", "09876543210")


def _digits(pin: str, what: str) -> str:
    if not pin.isascii() or not pin.isdigit():
        raise PinRejected(f"a {what} is made of digits only")
    return pin


def trivial_reasons(pin: str) -> list[str]:
    """Why ``pin`` is too easy to guess (empty when it is fine). Never includes the PIN."""
    reasons: list[str] = []
    if len(set(pin)) == 1:
        reasons.append("all digits are the same")
    if any(pin in run for run in _RUNS):
        reasons.append("digits run up or down in sequence")
    for period in range(2, len(pin) // 2 + 1):
        if len(pin) % period == 0 and pin == pin[:period] * (len(pin) // period):
            reasons.append("a short group of digits is repeated")
            break
    if len(pin) == 4:
        if pin in _KEYPAD_SHAPES:
            reasons.append("a common keypad pattern")
        if pin[0] == pin[1] and pin[2] == pin[3]:
            reasons.append("two pairs of repeated digits")
        if 1940 <= int(pin) <= 2039:
            reasons.append("looks like a year")
    if len(pin) == 6 and pin[:3] == pin[3:][::-1]:
        reasons.append("mirrors itself")
    return reasons


def generate_bluetooth_pin(rng: RandomSource, *, avoid: Iterable[str] = ()) -> str:
    """A uniformly random 6-digit PIN: never 000000 (Bumble hangs on passkey 0), never
    trivial, and never a run of digits found in ``avoid`` (serial number, model)."""
    avoid_digits = ["".join(ch for ch in text if ch.isdigit()) for text in avoid]
    while True:
        pin = f"{1 + rng.randbelow(10**BLUETOOTH_PIN_DIGITS - 1):06d}"
        if trivial_reasons(pin) or any(pin in digits for digits in avoid_digits):
            continue
        return pin


def check_bluetooth_pin_format(pin: str) -> str:
    """A PIN someone entered to pair: exactly 6 ASCII digits, or ``PinRejected`` (checked
    before anything is sent, so a typo never costs one of the charger's guesses)."""
    if len(pin) != BLUETOOTH_PIN_DIGITS or not pin.isascii() or not pin.isdigit():
        raise PinRejected(f"a Bluetooth PIN is exactly {BLUETOOTH_PIN_DIGITS} digits")
    return pin


def validate_bluetooth_pin(pin: str) -> str:
    """Check a PIN a person chose for a charger (PIN change)."""
    _digits(pin, "Bluetooth PIN")
    if len(pin) != BLUETOOTH_PIN_DIGITS:
        raise PinRejected(f"a Bluetooth PIN has {BLUETOOTH_PIN_DIGITS} digits")
    if pin == "0" * BLUETOOTH_PIN_DIGITS or trivial_reasons(pin):
        raise PinRejected("this Bluetooth PIN is too easy to guess")
    return pin


@dataclass(frozen=True, kw_only=True, slots=True)
class KeypadPinRules:
    """An organisation's keypad PIN length (4 by default; an organisation may require 4-8)."""

    digits: int = DEFAULT_KEYPAD_DIGITS

    def __post_init__(self) -> None:
        if not KEYPAD_MIN_DIGITS <= self.digits <= KEYPAD_MAX_DIGITS:
            raise InvalidInput(
                f"keypad PINs have between {KEYPAD_MIN_DIGITS} and {KEYPAD_MAX_DIGITS} digits"
            )

    @property
    def space(self) -> int:
        return int(10**self.digits)

    def validate(self, pin: str) -> str:
        _digits(pin, "keypad PIN")
        if len(pin) != self.digits:
            raise PinRejected(f"keypad PINs in this organisation have {self.digits} digits")
        if trivial_reasons(pin):
            raise PinRejected("this keypad PIN is too easy to guess")
        return pin

    def generate(self, rng: RandomSource) -> str:
        while True:
            pin = f"{rng.randbelow(self.space):0{self.digits}d}"
            if not trivial_reasons(pin):
                return pin


CROWDING_WARNING_RATIO = 0.01


@dataclass(frozen=True, kw_only=True, slots=True)
class PinSpaceCrowding:
    """How likely a random keypad guess hits *someone* (docs/security.md, "Keypad PINs")."""

    members_with_pin: int
    digits: int

    @property
    def ratio(self) -> float:
        return self.members_with_pin / float(10**self.digits)

    @property
    def warning(self) -> bool:
        return self.ratio > CROWDING_WARNING_RATIO
