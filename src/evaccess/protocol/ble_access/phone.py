"""Sections 5.1-5.4, the phone's side: enrolment by CPace (the initiator), the credential
challenge-response and FORGET."""

from __future__ import annotations

import hmac
import secrets

from evaccess.domain.errors import IntegrityFailure
from evaccess.protocol.ble_access.crypto import (
    CREDENTIAL_AAD,
    FORGET_AAD,
    NO_PIN,
    Direction,
    SessionCipher,
    SessionKeys,
    auth_keys,
    build_transcript,
    channel_identifier,
    charger_identity,
    keyed_mac,
    pake_ad,
    pake_confirm,
    pake_keys,
    phone_identity,
)
from evaccess.protocol.ble_access.frames import (
    NONCE_BYTES,
    PROTOCOL_VERSION,
    Frame,
    MessageType,
    ProtocolViolation,
    Tag,
    encode,
    expect_reply,
)
from evaccess.protocol.cpace import CPaceSession, InvalidPakeMessage, RandomBytes, Role


class PhonePake:
    """The phone's half of section 5.2 (CPace initiator). ``nonce_c`` is the NONCE of the
    INFO frame read on this link just before; ``random_bytes`` draws nP and the scalar."""

    def __init__(
        self,
        *,
        phone_id: bytes,
        serial: str,
        pin: str | None,
        nonce_c: bytes,
        random_bytes: RandomBytes = secrets.token_bytes,
    ) -> None:
        self.phone_id = phone_id
        self.use_pin = pin is not None
        self._nonce_p = random_bytes(NONCE_BYTES)
        self._ad = pake_ad(PROTOCOL_VERSION, self.use_pin)
        self._cpace = CPaceSession(
            prs=pin.encode() if pin is not None else NO_PIN,
            ci=channel_identifier(phone_id, serial),
            sid=self._nonce_p + nonce_c,
            role=Role.INITIATOR,
            ad=self._ad,
            random_bytes=random_bytes,
        )
        self._keys: SessionKeys | None = None
        self.charger_confirmed = False

    def start(self) -> bytes:
        """The PAKE_START frame."""
        return encode(
            Frame(
                type=MessageType.PAKE_START,
                fields={
                    Tag.PHONE_ID: self.phone_id,
                    Tag.USE_PIN: bytes((int(self.use_pin),)),
                    Tag.PAKE_MESSAGE: self._cpace.message(),
                    Tag.NONCE: self._nonce_p,
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
            isk = self._cpace.finish(message_b, b"")
        except InvalidPakeMessage:
            raise ProtocolViolation("bad CPace message from the charger") from None
        keys = pake_keys(isk)
        expected = pake_confirm(keys.charger_confirm, b"charger confirm", message_b, b"")
        self.charger_confirmed = hmac.compare_digest(expected, frame.get(Tag.CONFIRM))
        self._keys = keys
        confirm = pake_confirm(
            keys.phone_confirm, b"phone confirm", self._cpace.message(), self._ad
        )
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
