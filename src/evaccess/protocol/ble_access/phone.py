"""Sections 5.1-5.4, the phone's side: enrolment by SPAKE2_A, the credential
challenge-response and FORGET."""

from __future__ import annotations

import hmac

from spake2 import SPAKE2_A
from spake2.spake2 import SPAKEError

from evaccess.domain.errors import IntegrityFailure
from evaccess.protocol.ble_access.crypto import (
    CREDENTIAL_AAD,
    FORGET_AAD,
    NO_PIN,
    PAKE_PHONE_IDENTITY,
    Direction,
    SessionCipher,
    SessionKeys,
    auth_keys,
    build_transcript,
    charger_identity,
    keyed_mac,
    pake_keys,
    phone_identity,
)
from evaccess.protocol.ble_access.frames import (
    PROTOCOL_VERSION,
    Frame,
    MessageType,
    ProtocolViolation,
    Tag,
    encode,
    expect_reply,
)


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
        frame = expect_reply(data, MessageType.PAKE_REPLY)
        message_b = frame.get(Tag.PAKE_MESSAGE)
        try:
            shared = self._spake.finish(message_b)
        except (SPAKEError, ValueError):
            raise ProtocolViolation("bad SPAKE2 message from the charger") from None
        self._transcript = build_transcript(
            PROTOCOL_VERSION, self._id_a, self._id_b, self._message_a, message_b, self.use_pin
        )
        keys = pake_keys(shared, self._transcript)
        expected = keyed_mac(keys.charger_confirm, b"charger confirm", self._transcript)
        self.charger_confirmed = hmac.compare_digest(expected, frame.get(Tag.CONFIRM))
        self._keys = keys
        confirm = keyed_mac(keys.phone_confirm, b"phone confirm", self._transcript)
        return encode(Frame(type=MessageType.PAKE_CONFIRM, fields={Tag.CONFIRM: confirm}))

    def on_credential(self, data: bytes) -> tuple[bytes, SessionCipher]:
        """Returns the credential secret and the session cipher."""
        frame = expect_reply(data, MessageType.CREDENTIAL)
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
        frame = expect_reply(data, MessageType.AUTH_CHALLENGE)
        nonce_c = frame.get(Tag.NONCE)
        transcript = build_transcript(
            PROTOCOL_VERSION, self._id_a, self._id_b, self._nonce_p, nonce_c, True
        )
        keys = auth_keys(self._secret, self._nonce_p, nonce_c)
        expected = keyed_mac(keys.charger_confirm, b"charger auth", transcript)
        if not hmac.compare_digest(expected, frame.get(Tag.MAC)):
            raise IntegrityFailure("the charger could not prove it knows this phone")
        self._keys = keys
        proof = keyed_mac(keys.phone_confirm, b"phone auth", transcript)
        return encode(Frame(type=MessageType.AUTH_PROOF, fields={Tag.MAC: proof}))

    def on_ok(self, data: bytes) -> SessionCipher:
        expect_reply(data, MessageType.AUTH_OK)
        assert self._keys is not None
        return SessionCipher(self._keys, outbound=Direction.PHONE_TO_CHARGER)


def forget_request(cipher: SessionCipher, phone_id: bytes) -> bytes:
    sealed = cipher.seal(FORGET_AAD + phone_id, b"")
    return encode(Frame(type=MessageType.FORGET, fields={Tag.SEALED: sealed}))
