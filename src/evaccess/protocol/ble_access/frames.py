"""Sections 3, 4 and 6: the frame format, the INFO frame, the error codes and how a phone
turns an ERROR frame into the exception tree."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from evaccess.domain import lockout
from evaccess.domain.errors import (
    Conflict,
    EvAccessError,
    InvalidInput,
    LockedOut,
    NotAuthenticated,
    PairingDisabled,
)

# --- 3. Frames ------------------------------------------------------------------------------

PROTOCOL_VERSION = 2
"""Version 2: the PIN exchange is CPace (section 5.2). Version 1 (SPAKE2) is refused (3.4)."""
SUPPORTED_VERSIONS = (PROTOCOL_VERSION,)
HEADER = struct.Struct(">BBH")  # version, message type, body length
MAX_BODY = 508
"""A whole frame (4-byte header and body) fits one ATT value, which is at most 512 bytes
(Core Vol 3 Part F 3.2.9): section 3.1."""


class MessageType(IntEnum):
    """Section 3.2. Requests (phone -> charger) < 0x80 <= replies (charger -> phone)."""

    PAKE_START = 0x01
    PAKE_CONFIRM = 0x02
    AUTH_BEGIN = 0x03
    AUTH_PROOF = 0x04
    FORGET = 0x05
    INFO = 0x80
    PAKE_REPLY = 0x81
    CREDENTIAL = 0x82
    AUTH_CHALLENGE = 0x83
    AUTH_OK = 0x84
    FORGOTTEN = 0x85
    ERROR = 0xFF


class Tag(IntEnum):
    """Section 3.3. Each field is tag (1 byte), length (1 byte), value."""

    VERSIONS = 0x01
    SERIAL = 0x02
    PIN_REQUIRED = 0x03
    PIN_MODE = 0x04
    PAIRING_STATE = 0x05
    RETRY_AFTER = 0x06
    ATTEMPTS_LEFT = 0x07
    PHONE_ID = 0x10
    USE_PIN = 0x11
    PAKE_MESSAGE = 0x12
    CONFIRM = 0x13
    SEALED = 0x14
    NONCE = 0x15
    MAC = 0x16
    ERROR_CODE = 0x20


PHONE_ID_BYTES = 16
NONCE_BYTES = 16
MAC_BYTES = 32
SEALED_MIN_BYTES = 8 + 16  # counter and tag around an empty plaintext (section 5.5)

FIELD_RULES: Mapping[Tag, tuple[int, int, frozenset[int] | None]] = {
    Tag.VERSIONS: (1, 255, None),
    Tag.SERIAL: (1, 255, None),
    Tag.PIN_REQUIRED: (1, 1, frozenset({0, 1})),
    Tag.PIN_MODE: (1, 1, frozenset({0, 1})),
    Tag.PAIRING_STATE: (1, 1, frozenset({0, 1, 2})),
    Tag.RETRY_AFTER: (4, 4, None),
    Tag.ATTEMPTS_LEFT: (1, 1, None),
    Tag.PHONE_ID: (PHONE_ID_BYTES, PHONE_ID_BYTES, None),
    Tag.USE_PIN: (1, 1, frozenset({0, 1})),
    Tag.PAKE_MESSAGE: (32, 32, None),
    Tag.CONFIRM: (MAC_BYTES, MAC_BYTES, None),
    Tag.SEALED: (SEALED_MIN_BYTES, 255, None),
    Tag.NONCE: (NONCE_BYTES, NONCE_BYTES, None),
    Tag.MAC: (MAC_BYTES, MAC_BYTES, None),
    Tag.ERROR_CODE: (1, 1, None),
}
"""Section 3.3: each known field's length (least, most) and, for flags and enumerations, its
values. ``decode`` refuses a frame with any field outside them (MALFORMED)."""


def check_field(tag: Tag, value: bytes) -> None:
    low, high, allowed = FIELD_RULES[tag]
    if not low <= len(value) <= high:
        raise ProtocolViolation(f"field {tag.name} has a wrong length")
    if allowed is not None and value[0] not in allowed:
        raise ProtocolViolation(f"field {tag.name} has an unknown value")


class ErrorCode(IntEnum):
    """Section 6. Carried in an ERROR frame (Tag.ERROR_CODE, one byte)."""

    MALFORMED = 0x01
    UNSUPPORTED_VERSION = 0x02
    UNEXPECTED_MESSAGE = 0x03
    BUSY = 0x04
    LOCKED = 0x10
    PAIRING_DISABLED = 0x11
    PIN_NOT_REQUIRED = 0x12
    PIN_REQUIRED = 0x13
    CONFIRMATION_FAILED = 0x14
    LINK_NOT_AUTHENTICATED = 0x15
    PIN_BY_PASSKEY = 0x16
    UNKNOWN_CREDENTIAL = 0x20
    AUTHENTICATION_FAILED = 0x21
    NOT_AUTHENTICATED = 0x22


class PairingState(IntEnum):
    OPEN = 0
    LOCKED = 1
    DISABLED = 2


class PinMode(StrEnum):
    """How the charger checks its Bluetooth PIN (section 9): by the PIN exchange of section
    5.2, or as the LE Secure Connections passkey. INFO carries it as one byte."""

    PAKE = "pake"
    PASSKEY = "passkey"


_PIN_MODE_BYTES = {PinMode.PAKE: 0, PinMode.PASSKEY: 1}
_PIN_MODES_BY_BYTE = {value: mode for mode, value in _PIN_MODE_BYTES.items()}


class ProtocolViolation(InvalidInput):
    code = "ble_protocol"


@dataclass(frozen=True, kw_only=True, slots=True)
class Frame:
    type: MessageType
    fields: Mapping[Tag, bytes] = field(default_factory=dict)
    version: int = PROTOCOL_VERSION

    def get(self, tag: Tag) -> bytes:
        try:
            return self.fields[tag]
        except KeyError:
            raise ProtocolViolation(f"{self.type.name} lacks field {tag.name}") from None


def encode(frame: Frame) -> bytes:
    """Section 3.1: header, then the fields in ascending tag order."""
    body = bytearray()
    for tag in sorted(frame.fields):
        value = frame.fields[tag]
        if len(value) > 255:
            raise ProtocolViolation(f"field {tag.name} is too long")
        body += bytes((tag, len(value))) + value
    return HEADER.pack(frame.version, frame.type, len(body)) + bytes(body)


def decode(data: bytes) -> Frame:
    if len(data) < HEADER.size:
        raise ProtocolViolation("frame shorter than its header")
    version, raw_type, length = HEADER.unpack_from(data)
    if length != len(data) - HEADER.size or length > MAX_BODY:
        raise ProtocolViolation("frame length does not match")
    try:
        message_type = MessageType(raw_type)
    except ValueError:
        raise ProtocolViolation("unknown message type") from None
    fields: dict[Tag, bytes] = {}
    offset = HEADER.size
    while offset < len(data):
        if offset + 2 > len(data):
            raise ProtocolViolation("truncated field")
        raw_tag, size = data[offset], data[offset + 1]
        value = data[offset + 2 : offset + 2 + size]
        if len(value) != size:
            raise ProtocolViolation("truncated field")
        offset += 2 + size
        try:
            tag = Tag(raw_tag)
        except ValueError:
            continue  # section 3.3: unknown tags are skipped (forward compatibility)
        if tag in fields:
            raise ProtocolViolation("repeated field")
        check_field(tag, value)
        fields[tag] = value
    return Frame(type=message_type, fields=fields, version=version)


def u32(value: float) -> bytes:
    return struct.pack(">I", max(0, min(int(value + 0.999), 0xFFFFFFFF)))


def error_frame(code: ErrorCode, *, retry_after: float | None = None) -> Frame:
    fields = {Tag.ERROR_CODE: bytes((code,))}
    if retry_after is not None:
        fields[Tag.RETRY_AFTER] = u32(retry_after)
    if code is ErrorCode.UNSUPPORTED_VERSION:
        fields[Tag.VERSIONS] = bytes(SUPPORTED_VERSIONS)
    return Frame(type=MessageType.ERROR, fields=fields)


def wrong_pin_frame(*, attempts_left: int, state: PairingState, retry_after: float) -> Frame:
    """Section 6.1: CONFIRMATION_FAILED with what the failure left of the lockout budget
    (phones that predate these fields skip them, section 3.1)."""
    fields = {
        Tag.ERROR_CODE: bytes((ErrorCode.CONFIRMATION_FAILED,)),
        Tag.PAIRING_STATE: bytes((state,)),
        Tag.ATTEMPTS_LEFT: bytes((max(0, min(attempts_left, 255)),)),
    }
    if state is PairingState.LOCKED:
        fields[Tag.RETRY_AFTER] = u32(retry_after)
    return Frame(type=MessageType.ERROR, fields=fields)


# What each error code means to the phone's user (never a secret in these texts).
_ERROR_TEXT: dict[ErrorCode, str] = {
    ErrorCode.MALFORMED: "the charger could not parse the request",
    ErrorCode.UNSUPPORTED_VERSION: "the charger speaks another protocol version",
    ErrorCode.UNEXPECTED_MESSAGE: "the charger did not expect this request now",
    ErrorCode.BUSY: "another phone is pairing with the charger; try again in a moment",
    ErrorCode.LOCKED: "too many wrong PINs: PIN pairing is locked; try again later",
    ErrorCode.PAIRING_DISABLED: (
        "PIN pairing is disabled after too many wrong PINs; the owner must re-enable it"
    ),
    ErrorCode.PIN_NOT_REQUIRED: "this charger does not require a PIN",
    ErrorCode.PIN_REQUIRED: "this charger requires its Bluetooth PIN",
    ErrorCode.CONFIRMATION_FAILED: "wrong PIN",
    ErrorCode.LINK_NOT_AUTHENTICATED: "pair the Bluetooth link with the PIN as passkey first",
    ErrorCode.PIN_BY_PASSKEY: (
        "this charger checks its PIN as the Bluetooth passkey: pair the link with it, then"
        " enrol without the PIN"
    ),
    ErrorCode.UNKNOWN_CREDENTIAL: "the charger does not know this phone (any more): pair again",
    ErrorCode.AUTHENTICATION_FAILED: "the phone credential was rejected",
    ErrorCode.NOT_AUTHENTICATED: "authenticate first",
}


class WrongPin(NotAuthenticated):
    """CONFIRMATION_FAILED. From a charger that reports it (section 6.1): how many attempts
    are left before the lockout, and whether this failure locked (or disabled) PIN pairing."""

    code = "wrong_pin"

    def __init__(
        self,
        message: str = "wrong PIN",
        *,
        attempts_left: int | None = None,
        pairing_state: PairingState | None = None,
        retry_after: float = 0.0,
    ) -> None:
        super().__init__(message)
        self.attempts_left = attempts_left
        self.pairing_state = pairing_state
        self.retry_after = retry_after

    @property
    def locked(self) -> bool:
        return self.pairing_state in (PairingState.LOCKED, PairingState.DISABLED)


def _wrong_pin(frame: Frame, retry_after: float) -> WrongPin:
    raw_left = frame.fields.get(Tag.ATTEMPTS_LEFT, b"")
    raw_state = frame.fields.get(Tag.PAIRING_STATE, b"")
    try:
        state = PairingState(raw_state[0]) if len(raw_state) == 1 else None
    except ValueError:
        state = None
    left = raw_left[0] if len(raw_left) == 1 else None
    if state is PairingState.DISABLED:
        text = "wrong PIN: PIN pairing is now disabled; the owner must re-enable it"
    elif state is PairingState.LOCKED:
        text = f"wrong PIN: pairing is now locked for {lockout.wait_text(retry_after)}"
    elif left is not None:
        text = f"wrong PIN: {left} attempt{'' if left == 1 else 's'} left before pairing locks"
    else:
        text = "wrong PIN"  # a charger that predates section 6.1
    return WrongPin(text, attempts_left=left, pairing_state=state, retry_after=retry_after)


def error_from_frame(frame: Frame) -> EvAccessError:
    """Turn an ERROR frame into the exception tree (section 6)."""
    raw = frame.fields.get(Tag.ERROR_CODE, b"\x00")
    try:
        code = ErrorCode(raw[0])
    except (ValueError, IndexError):
        return ProtocolViolation("the charger answered an unknown error")
    text = _ERROR_TEXT[code]
    retry = frame.fields.get(Tag.RETRY_AFTER)
    retry_after = float(struct.unpack(">I", retry)[0]) if retry and len(retry) == 4 else 0.0
    wire = f"ble_{code.name.lower()}"
    if code is ErrorCode.LOCKED:
        return LockedOut(f"{text} (in {int(retry_after)} s)", retry_after=retry_after, code=wire)
    if code is ErrorCode.PAIRING_DISABLED:
        return PairingDisabled(text, retry_after=float("inf"), code=wire)
    if code is ErrorCode.CONFIRMATION_FAILED:
        return _wrong_pin(frame, retry_after)
    if code in (
        ErrorCode.UNKNOWN_CREDENTIAL,
        ErrorCode.AUTHENTICATION_FAILED,
        ErrorCode.NOT_AUTHENTICATED,
        ErrorCode.LINK_NOT_AUTHENTICATED,
    ):
        return NotAuthenticated(text, code=wire)
    if code in (
        ErrorCode.BUSY,
        ErrorCode.PIN_NOT_REQUIRED,
        ErrorCode.PIN_REQUIRED,
        ErrorCode.PIN_BY_PASSKEY,
    ):
        return Conflict(text, code=wire)
    return ProtocolViolation(text, code=wire)


# --- 4. INFO ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ChargerInfo:
    serial: str
    versions: tuple[int, ...]
    pin_required: bool
    pin_mode: PinMode
    pairing_state: PairingState
    retry_after: int
    nonce: bytes
    """nC (section 5.2): this read's charger nonce, the second half of CPace's sid."""

    def to_frame(self) -> Frame:
        return Frame(
            type=MessageType.INFO,
            fields={
                Tag.VERSIONS: bytes(self.versions),
                Tag.SERIAL: self.serial.encode(),
                Tag.PIN_REQUIRED: bytes((int(self.pin_required),)),
                Tag.PIN_MODE: bytes((_PIN_MODE_BYTES[self.pin_mode],)),
                Tag.PAIRING_STATE: bytes((self.pairing_state,)),
                Tag.RETRY_AFTER: u32(self.retry_after),
                Tag.NONCE: self.nonce,
            },
        )

    @classmethod
    def from_frame(cls, frame: Frame) -> ChargerInfo:
        if frame.type is not MessageType.INFO:
            raise ProtocolViolation("expected an INFO frame")
        try:
            return cls(
                serial=frame.get(Tag.SERIAL).decode(),
                versions=tuple(frame.get(Tag.VERSIONS)),
                pin_required=frame.get(Tag.PIN_REQUIRED) == b"\x01",
                pin_mode=_PIN_MODES_BY_BYTE[frame.get(Tag.PIN_MODE)[0]],
                pairing_state=PairingState(frame.get(Tag.PAIRING_STATE)[0]),
                retry_after=struct.unpack(">I", frame.get(Tag.RETRY_AFTER))[0],
                nonce=frame.get(Tag.NONCE),
            )
        except (ValueError, IndexError, KeyError, struct.error, UnicodeDecodeError):
            raise ProtocolViolation("malformed INFO frame") from None


def negotiate_version(theirs: Iterable[int]) -> int:
    """Section 3.4: the highest version both sides support."""
    common = set(theirs) & set(SUPPORTED_VERSIONS)
    if not common:
        raise ProtocolViolation(
            "no protocol version in common with the charger", code="ble_unsupported_version"
        )
    return max(common)


def expect_reply(data: bytes, expected: MessageType) -> Frame:
    frame = decode(data)
    if frame.type is MessageType.ERROR:
        raise error_from_frame(frame)
    if frame.type is not expected:
        raise ProtocolViolation(f"expected {expected.name}, got {frame.type.name}")
    return frame
