"""The evaccess Access Service: how a phone proves the charger's Bluetooth PIN (or a
credential it got earlier) and then reads and writes the charger's settings over GATT.

Both sides of the contract live here, pure (no Bumble, no I/O): the UUIDs, the frame
format, the SPAKE2 exchange with key confirmation, the per-phone credential and its
challenge-response, the sealed configuration values and the error codes. The byte-level
specification is docs/ble-protocol.md; section numbers below refer to it.

Cryptography: SPAKE2 (python-spake2 0.9, group Ed25519; phone = SPAKE2_A,
charger = SPAKE2_B), HKDF-SHA256 (RFC 5869), HMAC-SHA256 (RFC 2104), AES-128-GCM
(NIST SP 800-38D).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol
from urllib.parse import urlsplit
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import SPAKE2_A, SPAKE2_B
from spake2.spake2 import SPAKEError

from evaccess.domain import lockout
from evaccess.domain.clock import RandomSource
from evaccess.domain.errors import (
    Conflict,
    EvAccessError,
    IntegrityFailure,
    InvalidInput,
    LockedOut,
    NotAuthenticated,
    PairingDisabled,
)

# --- 2. GATT layout -------------------------------------------------------------------------

SERVICE_UUID = UUID("6f1c3d2a-8b7e-4f3a-9c51-2e0d7a4b9e10")
INFO_UUID = UUID("6f1c3d2a-8b7e-4f3a-9c51-2e0d7a4b9e11")
"""Read, no authentication: an INFO frame (versions, serial, PIN mode, pairing state)."""
ACCESS_UUID = UUID("6f1c3d2a-8b7e-4f3a-9c51-2e0d7a4b9e12")
"""Write a request frame, then read the reply frame (one outstanding request per link)."""
WIFI_UUID = UUID("6f1c3d2a-8b7e-4f3a-9c51-2e0d7a4b9e20")
CURRENT_LIMIT_UUID = UUID("6f1c3d2a-8b7e-4f3a-9c51-2e0d7a4b9e21")
FIRMWARE_UPDATE_UUID = UUID("6f1c3d2a-8b7e-4f3a-9c51-2e0d7a4b9e22")
PIN_UUID = UUID("6f1c3d2a-8b7e-4f3a-9c51-2e0d7a4b9e23")

CONFIG_UUIDS = (WIFI_UUID, CURRENT_LIMIT_UUID, FIRMWARE_UPDATE_UUID, PIN_UUID)

ADVERTISED_NAME_PREFIX = "evaccess-"


def advertised_name(serial: str) -> str:
    """The GAP device name a charger advertises (section 2)."""
    return f"{ADVERTISED_NAME_PREFIX}{serial}"


# --- 3. Frames ------------------------------------------------------------------------------

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (PROTOCOL_VERSION,)
HEADER = struct.Struct(">BBH")  # version, message type, body length
MAX_BODY = 512


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
    UNKNOWN_CREDENTIAL = 0x20
    AUTHENTICATION_FAILED = 0x21
    NOT_AUTHENTICATED = 0x22


class PairingState(IntEnum):
    OPEN = 0
    LOCKED = 1
    DISABLED = 2


class PinMode(IntEnum):
    PAKE = 0
    PASSKEY = 1


class AttErrorCode(IntEnum):
    """Section 7: ATT error codes answered by the configuration characteristics."""

    INSUFFICIENT_AUTHENTICATION = 0x05  # Core Vol 3 Part F 3.4.1.1
    INVALID_VALUE = 0x80  # application error range 0x80-0x9F
    PIN_REJECTED = 0x81
    NOT_PERMITTED = 0x82
    INTEGRITY = 0x83


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
        fields[tag] = value
    return Frame(type=message_type, fields=fields, version=version)


def _u32(value: float) -> bytes:
    return struct.pack(">I", max(0, min(int(value + 0.999), 0xFFFFFFFF)))


def error_frame(code: ErrorCode, *, retry_after: float | None = None) -> Frame:
    fields = {Tag.ERROR_CODE: bytes((code,))}
    if retry_after is not None:
        fields[Tag.RETRY_AFTER] = _u32(retry_after)
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
        fields[Tag.RETRY_AFTER] = _u32(retry_after)
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
    if code in (ErrorCode.BUSY, ErrorCode.PIN_NOT_REQUIRED, ErrorCode.PIN_REQUIRED):
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

    def to_frame(self) -> Frame:
        return Frame(
            type=MessageType.INFO,
            fields={
                Tag.VERSIONS: bytes(self.versions),
                Tag.SERIAL: self.serial.encode(),
                Tag.PIN_REQUIRED: bytes((int(self.pin_required),)),
                Tag.PIN_MODE: bytes((self.pin_mode,)),
                Tag.PAIRING_STATE: bytes((self.pairing_state,)),
                Tag.RETRY_AFTER: _u32(self.retry_after),
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
                pin_mode=PinMode(frame.get(Tag.PIN_MODE)[0]),
                pairing_state=PairingState(frame.get(Tag.PAIRING_STATE)[0]),
                retry_after=struct.unpack(">I", frame.get(Tag.RETRY_AFTER))[0],
            )
        except (ValueError, IndexError, struct.error, UnicodeDecodeError):
            raise ProtocolViolation("malformed INFO frame") from None


def negotiate_version(theirs: Iterable[int]) -> int:
    """Section 3.4: the highest version both sides support."""
    common = set(theirs) & set(SUPPORTED_VERSIONS)
    if not common:
        raise ProtocolViolation(
            "no protocol version in common with the charger", code="ble_unsupported_version"
        )
    return max(common)


# --- 5. Keys ---------------------------------------------------------------------------------

PHONE_ID_BYTES = 16
NONCE_BYTES = 16
SECRET_BYTES = 32
MAC_BYTES = 32
NO_PIN = b""
"""The SPAKE2 password of a PIN-less enrolment (section 5.1)."""


PAKE_PHONE_IDENTITY = b"evaccess-phone"
"""SPAKE2 idA. The phone's own id is bound by the transcript (section 5.2), which lets the
charger compute its SPAKE2 message before it knows which phone will connect."""


def phone_identity(phone_id: bytes) -> bytes:
    return b"evaccess-phone:" + phone_id.hex().encode()


def charger_identity(serial: str) -> bytes:
    return b"evaccess-charger:" + serial.encode()


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionKeys:
    phone_confirm: bytes = field(repr=False)
    charger_confirm: bytes = field(repr=False)
    phone_to_charger: bytes = field(repr=False)
    charger_to_phone: bytes = field(repr=False)


def derive_keys(secret: bytes, *, salt: bytes, label: bytes) -> SessionKeys:
    """Section 5.3: HKDF-SHA256 -> 2 x 32-byte HMAC keys + 2 x 16-byte AES-GCM keys."""
    okm = HKDF(algorithm=hashes.SHA256(), length=96, salt=salt, info=label).derive(secret)
    return SessionKeys(
        phone_confirm=okm[:32],
        charger_confirm=okm[32:64],
        phone_to_charger=okm[64:80],
        charger_to_phone=okm[80:96],
    )


def _mac(key: bytes, *parts: bytes) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(struct.pack(">H", len(part)) + part)
    return mac.digest()


class Direction(IntEnum):
    PHONE_TO_CHARGER = 1
    CHARGER_TO_PHONE = 2


class SessionCipher:
    """Section 5.5: AES-128-GCM per direction; an 8-byte counter before each ciphertext,
    strictly increasing per direction (a replayed or reordered value is refused)."""

    def __init__(self, keys: SessionKeys, *, outbound: Direction) -> None:
        self._outbound = outbound
        self._inbound = (
            Direction.CHARGER_TO_PHONE
            if outbound is Direction.PHONE_TO_CHARGER
            else Direction.PHONE_TO_CHARGER
        )
        to_charger = AESGCM(keys.phone_to_charger)
        to_phone = AESGCM(keys.charger_to_phone)
        self._send_aead, self._recv_aead = (
            (to_charger, to_phone)
            if outbound is Direction.PHONE_TO_CHARGER
            else (to_phone, to_charger)
        )
        self._sent = 0
        self._received = 0

    @staticmethod
    def _nonce(direction: Direction, counter: int) -> bytes:
        return struct.pack(">IQ", direction, counter)

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        self._sent += 1
        nonce = self._nonce(self._outbound, self._sent)
        return struct.pack(">Q", self._sent) + self._send_aead.encrypt(nonce, plaintext, aad)

    def open(self, aad: bytes, blob: bytes) -> bytes:
        if len(blob) < 8 + 16:
            raise IntegrityFailure("sealed value too short")
        (counter,) = struct.unpack_from(">Q", blob)
        if counter <= self._received:
            raise IntegrityFailure("replayed or reordered value")
        try:
            plaintext = self._recv_aead.decrypt(self._nonce(self._inbound, counter), blob[8:], aad)
        except InvalidTag:
            raise IntegrityFailure("sealed value failed authentication") from None
        self._received = counter
        return plaintext


CREDENTIAL_AAD = b"evaccess credential"
FORGET_AAD = b"evaccess forget"


def config_aad(characteristic: UUID) -> bytes:
    return b"evaccess config " + characteristic.bytes


def seal_json(cipher: SessionCipher, characteristic: UUID, value: Mapping[str, Any]) -> bytes:
    """Section 7: configuration values are JSON objects sealed under the session keys."""
    return cipher.seal(config_aad(characteristic), json.dumps(dict(value)).encode())


def open_json(cipher: SessionCipher, characteristic: UUID, blob: bytes) -> dict[str, Any]:
    plaintext = cipher.open(config_aad(characteristic), blob)
    try:
        value = json.loads(plaintext)
    except ValueError:
        raise InvalidInput("configuration value is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidInput("configuration value is not a JSON object")
    return value


CURRENT_LIMIT_RANGE_A = (6, 32)
"""Section 7: the current limit a phone may set, in amperes."""
FIRMWARE_URL_MAX = 200


def check_wifi(ssid: object, password: object) -> tuple[str, str]:
    """Section 7: an SSID of 1-32 bytes; a WPA2 passphrase of 8-63 characters, or none."""
    if not isinstance(ssid, str) or not 1 <= len(ssid.encode()) <= 32:
        raise InvalidInput("a Wi-Fi SSID has 1 to 32 bytes")
    if not isinstance(password, str) or not (len(password) == 0 or 8 <= len(password) <= 63):
        raise InvalidInput("a WPA2 passphrase has 8 to 63 characters")
    return ssid, password


def check_current_limit(amps: object) -> int:
    low, high = CURRENT_LIMIT_RANGE_A
    if not isinstance(amps, int) or isinstance(amps, bool) or not low <= amps <= high:
        raise InvalidInput(f"the current limit is {low} to {high} A")
    return amps


def check_firmware_url(url: object) -> str:
    if not isinstance(url, str) or urlsplit(url).scheme != "https" or len(url) > FIRMWARE_URL_MAX:
        raise InvalidInput(
            f"a firmware location is an https URL of at most {FIRMWARE_URL_MAX} characters"
        )
    return url


# --- 5.1-5.4 The charger's side ---------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredCredential:
    phone_id: bytes
    secret: bytes = field(repr=False)
    with_pin: bool


class ChargerContext(Protocol):
    """What the charger's per-link state machine needs from the peripheral around it."""

    serial: str

    def pin_password(self) -> bytes | None:
        """The PIN to check (ASCII digits), ``None`` when no PIN is required."""

    def pake_responder(self, password: bytes) -> tuple[SPAKE2_B, bytes]:
        """A started SPAKE2_B for ``password`` and its message (possibly computed ahead)."""

    def pin_exchange_allowed(self, *, use_pin: bool, link_authenticated: bool) -> ErrorCode | None:
        """``None`` if an exchange may start now; else why not (lockout, busy, passkey mode
        without a passkey-paired link)."""

    def lockout_state(self) -> tuple[PairingState, float]: ...

    def attempts_left(self) -> int:
        """Failed PIN exchanges left before the lockout (0 while locked or disabled)."""

    def begin_attempt(self) -> None:
        """A PIN exchange is in flight (one at a time per charger)."""

    def end_attempt(self, *, success: bool) -> None:
        """Count the in-flight PIN attempt: a failure, or a success that resets the counters."""

    def credential(self, phone_id: bytes) -> StoredCredential | None: ...

    def issue_credential(self, phone_id: bytes, *, with_pin: bool) -> bytes:
        """Create (or replace) the phone's credential; returns the secret."""

    def forget(self, phone_id: bytes) -> None: ...


class LinkState(IntEnum):
    IDLE = 0
    PAKE_SENT = 1
    CHALLENGE_SENT = 2
    AUTHENTICATED = 3


@dataclass(kw_only=True, slots=True)
class _Pending:
    phone_id: bytes
    counted: bool
    """A PIN exchange in flight (it counts as one guess until confirmed)."""
    with_pin: bool
    """The credential it leads to was earned by proving the PIN (PAKE or passkey)."""
    keys: SessionKeys
    transcript: bytes
    nonces: bytes = b""


class ChargerLink:
    """The charger's state machine for one connected phone (sections 5.1-5.4).

    ``handle`` takes a request frame's bytes and returns the reply frame's bytes; it never
    raises for anything a phone sends.
    """

    def __init__(self, context: ChargerContext, rng: RandomSource) -> None:
        self._ctx = context
        self._rng = rng
        self.state = LinkState.IDLE
        self.phone_id: bytes | None = None
        self.cipher: SessionCipher | None = None
        self.link_authenticated = False
        """Passkey mode: the LE link was paired with the PIN as passkey (or PIN not needed)."""
        self._pending: _Pending | None = None

    @property
    def authenticated(self) -> bool:
        return self.state is LinkState.AUTHENTICATED

    def handle(self, data: bytes) -> bytes:
        try:
            frame = decode(data)
        except ProtocolViolation:
            self._abort()
            return encode(error_frame(ErrorCode.MALFORMED))
        if frame.version not in SUPPORTED_VERSIONS:
            return encode(error_frame(ErrorCode.UNSUPPORTED_VERSION))
        handler = self._HANDLERS.get(frame.type)
        if handler is None:
            return encode(error_frame(ErrorCode.UNEXPECTED_MESSAGE))
        try:
            return encode(handler(self, frame))
        except ProtocolViolation:
            self._abort()
            return encode(error_frame(ErrorCode.MALFORMED))

    def close(self) -> None:
        """The link went down: an unconfirmed PIN exchange counts as a failed guess."""
        self._abort()
        self.state = LinkState.IDLE
        self.cipher = None

    def _abort(self) -> None:
        if self.state is LinkState.PAKE_SENT and self._pending and self._pending.counted:
            self._ctx.end_attempt(success=False)
        self._pending = None
        if self.state is not LinkState.AUTHENTICATED:
            self.state = LinkState.IDLE

    # 5.1 / 5.2: SPAKE2 with key confirmation
    def _on_pake_start(self, frame: Frame) -> Frame:
        self._abort()
        phone_id = frame.get(Tag.PHONE_ID)
        if len(phone_id) != PHONE_ID_BYTES:
            raise ProtocolViolation("bad phone id")
        use_pin = frame.get(Tag.USE_PIN) == b"\x01"
        pin = self._ctx.pin_password()
        if pin is None and use_pin:
            return error_frame(ErrorCode.PIN_NOT_REQUIRED)
        if pin is not None and not use_pin:
            return error_frame(ErrorCode.PIN_REQUIRED)
        refusal = self._ctx.pin_exchange_allowed(
            use_pin=use_pin, link_authenticated=self.link_authenticated
        )
        if refusal is not None:
            _, retry = self._ctx.lockout_state()
            return error_frame(refusal, retry_after=retry if refusal is ErrorCode.LOCKED else None)
        message_a = frame.get(Tag.PAKE_MESSAGE)
        id_a, id_b = phone_identity(phone_id), charger_identity(self._ctx.serial)
        spake, message_b = self._ctx.pake_responder(pin if pin is not None else NO_PIN)
        try:
            shared = spake.finish(message_a)
        except (SPAKEError, ValueError) as exc:
            raise ProtocolViolation("bad SPAKE2 message") from exc
        transcript = _transcript(frame.version, id_a, id_b, message_a, message_b, use_pin)
        keys = derive_keys(shared, salt=b"", label=b"evaccess-ble-v1 pake " + transcript)
        if use_pin:
            self._ctx.begin_attempt()
        self._pending = _Pending(
            phone_id=phone_id,
            counted=use_pin,
            with_pin=use_pin or self.link_authenticated,
            keys=keys,
            transcript=transcript,
        )
        self.state = LinkState.PAKE_SENT
        confirm = _mac(keys.charger_confirm, b"charger confirm", transcript)
        return Frame(
            type=MessageType.PAKE_REPLY,
            fields={Tag.PAKE_MESSAGE: message_b, Tag.CONFIRM: confirm},
        )

    def _on_pake_confirm(self, frame: Frame) -> Frame:
        pending = self._pending
        if self.state is not LinkState.PAKE_SENT or pending is None:
            return error_frame(ErrorCode.UNEXPECTED_MESSAGE)
        expected = _mac(pending.keys.phone_confirm, b"phone confirm", pending.transcript)
        if not hmac.compare_digest(expected, frame.get(Tag.CONFIRM)):
            self._abort()  # exactly one failed guess
            state, retry = self._ctx.lockout_state()
            return wrong_pin_frame(
                attempts_left=self._ctx.attempts_left(), state=state, retry_after=retry
            )
        self._pending = None
        if pending.counted:
            self._ctx.end_attempt(success=True)
        secret = self._ctx.issue_credential(pending.phone_id, with_pin=pending.with_pin)
        self.cipher = SessionCipher(pending.keys, outbound=Direction.CHARGER_TO_PHONE)
        self.phone_id = pending.phone_id
        self.state = LinkState.AUTHENTICATED
        sealed = self.cipher.seal(CREDENTIAL_AAD + pending.phone_id, secret)
        return Frame(type=MessageType.CREDENTIAL, fields={Tag.SEALED: sealed})

    # 5.4: credential challenge-response
    def _on_auth_begin(self, frame: Frame) -> Frame:
        self._abort()
        phone_id, nonce_p = frame.get(Tag.PHONE_ID), frame.get(Tag.NONCE)
        if len(nonce_p) != NONCE_BYTES:
            raise ProtocolViolation("bad nonce")
        stored = self._ctx.credential(phone_id)
        if stored is None:
            return error_frame(ErrorCode.UNKNOWN_CREDENTIAL)
        nonce_c = self._rng.token_bytes(NONCE_BYTES)
        id_a, id_b = phone_identity(phone_id), charger_identity(self._ctx.serial)
        transcript = _transcript(frame.version, id_a, id_b, nonce_p, nonce_c, True)
        keys = derive_keys(stored.secret, salt=nonce_p + nonce_c, label=b"evaccess-ble-v1 auth")
        self._pending = _Pending(
            phone_id=phone_id,
            counted=False,
            with_pin=stored.with_pin,
            keys=keys,
            transcript=transcript,
        )
        self.state = LinkState.CHALLENGE_SENT
        mac = _mac(keys.charger_confirm, b"charger auth", transcript)
        return Frame(type=MessageType.AUTH_CHALLENGE, fields={Tag.NONCE: nonce_c, Tag.MAC: mac})

    def _on_auth_proof(self, frame: Frame) -> Frame:
        pending = self._pending
        self._pending = None  # the challenge is single-use (no replay)
        if self.state is not LinkState.CHALLENGE_SENT or pending is None:
            return error_frame(ErrorCode.UNEXPECTED_MESSAGE)
        expected = _mac(pending.keys.phone_confirm, b"phone auth", pending.transcript)
        still_valid = self._ctx.credential(pending.phone_id) is not None
        if not (hmac.compare_digest(expected, frame.get(Tag.MAC)) and still_valid):
            self.state = LinkState.IDLE
            return error_frame(ErrorCode.AUTHENTICATION_FAILED)
        self.cipher = SessionCipher(pending.keys, outbound=Direction.CHARGER_TO_PHONE)
        self.phone_id = pending.phone_id
        self.state = LinkState.AUTHENTICATED
        return Frame(type=MessageType.AUTH_OK)

    def _on_forget(self, frame: Frame) -> Frame:
        if self.state is not LinkState.AUTHENTICATED or self.cipher is None or not self.phone_id:
            return error_frame(ErrorCode.NOT_AUTHENTICATED)
        try:
            self.cipher.open(FORGET_AAD + self.phone_id, frame.get(Tag.SEALED))
        except IntegrityFailure:
            return error_frame(ErrorCode.AUTHENTICATION_FAILED)
        self._ctx.forget(self.phone_id)
        self.state = LinkState.IDLE
        self.cipher = None
        return Frame(type=MessageType.FORGOTTEN)

    def revoke(self) -> None:
        """The credential behind this session was revoked: the session ends now."""
        self.state = LinkState.IDLE
        self.cipher = None
        self._pending = None

    _HANDLERS: Mapping[MessageType, Callable[[ChargerLink, Frame], Frame]] = {
        MessageType.PAKE_START: _on_pake_start,
        MessageType.PAKE_CONFIRM: _on_pake_confirm,
        MessageType.AUTH_BEGIN: _on_auth_begin,
        MessageType.AUTH_PROOF: _on_auth_proof,
        MessageType.FORGET: _on_forget,
    }


def new_pake_responder(serial: str, password: bytes) -> tuple[SPAKE2_B, bytes]:
    """A started SPAKE2_B (section 5.2) for the charger ``serial``."""
    spake = SPAKE2_B(password, idA=PAKE_PHONE_IDENTITY, idB=charger_identity(serial))
    return spake, spake.start()


def _transcript(
    version: int, id_a: bytes, id_b: bytes, first: bytes, second: bytes, flag: bool
) -> bytes:
    parts = (bytes((version,)), id_a, id_b, first, second, bytes((int(flag),)))
    return b"".join(struct.pack(">H", len(part)) + part for part in parts)


# --- 5.1-5.4 The phone's side -----------------------------------------------------------------


class PhonePake:
    """The phone's half of section 5.2 (SPAKE2_A)."""

    def __init__(self, *, phone_id: bytes, serial: str, pin: str | None) -> None:
        self.phone_id = phone_id
        self.use_pin = pin is not None
        self._id_a, self._id_b = phone_identity(phone_id), charger_identity(serial)
        self._spake = SPAKE2_A(
            pin.encode() if pin is not None else NO_PIN, idA=PAKE_PHONE_IDENTITY, idB=self._id_b
        )
        self._message_a = b""
        self._keys: SessionKeys | None = None
        self._transcript = b""

    def start(self) -> bytes:
        """The PAKE_START frame (may be computed before connecting: it is the costly part)."""
        if not self._message_a:
            self._message_a = self._spake.start()
        return encode(
            Frame(
                type=MessageType.PAKE_START,
                fields={
                    Tag.PHONE_ID: self.phone_id,
                    Tag.USE_PIN: bytes((int(self.use_pin),)),
                    Tag.PAKE_MESSAGE: self._message_a,
                },
            )
        )

    def on_reply(self, data: bytes) -> bytes:
        """Check the charger's confirmation; returns PAKE_CONFIRM. A wrong PIN shows here
        first (the charger's confirmation does not verify), but the phone still sends its
        (wrong) confirmation so the charger ends the attempt at once."""
        frame = _expect(data, MessageType.PAKE_REPLY)
        message_b = frame.get(Tag.PAKE_MESSAGE)
        try:
            shared = self._spake.finish(message_b)
        except (SPAKEError, ValueError):
            raise ProtocolViolation("bad SPAKE2 message from the charger") from None
        self._transcript = _transcript(
            PROTOCOL_VERSION, self._id_a, self._id_b, self._message_a, message_b, self.use_pin
        )
        keys = derive_keys(shared, salt=b"", label=b"evaccess-ble-v1 pake " + self._transcript)
        expected = _mac(keys.charger_confirm, b"charger confirm", self._transcript)
        self.charger_confirmed = hmac.compare_digest(expected, frame.get(Tag.CONFIRM))
        self._keys = keys
        confirm = _mac(keys.phone_confirm, b"phone confirm", self._transcript)
        return encode(Frame(type=MessageType.PAKE_CONFIRM, fields={Tag.CONFIRM: confirm}))

    def on_credential(self, data: bytes) -> tuple[bytes, SessionCipher]:
        """Returns the credential secret and the session cipher."""
        frame = _expect(data, MessageType.CREDENTIAL)
        if self._keys is None or not self.charger_confirmed:
            raise IntegrityFailure("the charger did not prove the PIN")
        cipher = SessionCipher(self._keys, outbound=Direction.PHONE_TO_CHARGER)
        secret = cipher.open(CREDENTIAL_AAD + self.phone_id, frame.get(Tag.SEALED))
        if len(secret) < 16:
            raise IntegrityFailure("credential too short")
        return secret, cipher


class PhoneAuth:
    """The phone's half of section 5.4."""

    def __init__(self, *, phone_id: bytes, serial: str, secret: bytes, nonce: bytes) -> None:
        self._phone_id = phone_id
        self._secret = secret
        self._nonce_p = nonce
        self._id_a, self._id_b = phone_identity(phone_id), charger_identity(serial)
        self._keys: SessionKeys | None = None

    def begin(self) -> bytes:
        return encode(
            Frame(
                type=MessageType.AUTH_BEGIN,
                fields={Tag.PHONE_ID: self._phone_id, Tag.NONCE: self._nonce_p},
            )
        )

    def on_challenge(self, data: bytes) -> bytes:
        frame = _expect(data, MessageType.AUTH_CHALLENGE)
        nonce_c = frame.get(Tag.NONCE)
        transcript = _transcript(
            PROTOCOL_VERSION, self._id_a, self._id_b, self._nonce_p, nonce_c, True
        )
        keys = derive_keys(
            self._secret, salt=self._nonce_p + nonce_c, label=b"evaccess-ble-v1 auth"
        )
        expected = _mac(keys.charger_confirm, b"charger auth", transcript)
        if not hmac.compare_digest(expected, frame.get(Tag.MAC)):
            raise IntegrityFailure("the charger could not prove it knows this phone")
        self._keys = keys
        proof = _mac(keys.phone_confirm, b"phone auth", transcript)
        return encode(Frame(type=MessageType.AUTH_PROOF, fields={Tag.MAC: proof}))

    def on_ok(self, data: bytes) -> SessionCipher:
        _expect(data, MessageType.AUTH_OK)
        assert self._keys is not None
        return SessionCipher(self._keys, outbound=Direction.PHONE_TO_CHARGER)


def forget_request(cipher: SessionCipher, phone_id: bytes) -> bytes:
    sealed = cipher.seal(FORGET_AAD + phone_id, b"")
    return encode(Frame(type=MessageType.FORGET, fields={Tag.SEALED: sealed}))


def expect_reply(data: bytes, expected: MessageType) -> Frame:
    return _expect(data, expected)


def _expect(data: bytes, expected: MessageType) -> Frame:
    frame = decode(data)
    if frame.type is MessageType.ERROR:
        raise error_from_frame(frame)
    if frame.type is not expected:
        raise ProtocolViolation(f"expected {expected.name}, got {frame.type.name}")
    return frame


# --- 8. Lockout mapping -------------------------------------------------------------------------


def pairing_state(state: lockout.LockoutState, now: float) -> tuple[PairingState, float]:
    """How a lockout state shows in INFO and ERROR frames."""
    if state.disabled:
        return PairingState.DISABLED, 0.0
    if state.is_locked(now):
        return PairingState.LOCKED, state.locked_until - now
    return PairingState.OPEN, 0.0


# --- Logging ------------------------------------------------------------------------------------

SECRET_DEBUG_LOGGERS = ("bumble.smp",)
"""Bumble's SMP debug lines print the passkey (the PIN in passkey mode) and key material."""


def _drop_debug(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.INFO


def silence_secret_debug_logs() -> None:
    """Drop DEBUG records of loggers that print secrets, whatever the logging level set."""
    for name in SECRET_DEBUG_LOGGERS:
        logger = logging.getLogger(name)
        if _drop_debug not in logger.filters:
            logger.addFilter(_drop_debug)
