"""Sections 5.1-5.4 and 8, the charger's side: the per-link state machine and what it needs
from the peripheral around it (``ChargerContext``)."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from evaccess.domain import lockout
from evaccess.domain.clock import RandomSource
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
    SUPPORTED_VERSIONS,
    ErrorCode,
    Frame,
    MessageType,
    PairingState,
    ProtocolViolation,
    Tag,
    decode,
    encode,
    error_frame,
    wrong_pin_frame,
)
from evaccess.protocol.cpace import POINT_BYTES, CPaceSession, InvalidPakeMessage, Role


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

    def pin_by_passkey(self) -> bool:
        """A PIN is required but checked as the LE passkey (section 9), not by the PAKE."""

    def pin_exchange_allowed(self, link: ChargerLink, *, use_pin: bool) -> ErrorCode | None:
        """``None`` if ``link`` may start an exchange now; else why not (lockout, busy,
        passkey mode without a passkey-paired link)."""

    def lockout_state(self) -> tuple[PairingState, float]: ...

    def attempts_left(self) -> int:
        """Failed PIN exchanges left before the lockout (0 while locked or disabled)."""

    def begin_attempt(self, link: ChargerLink) -> None:
        """A PIN exchange is in flight on ``link`` (one at a time per charger)."""

    def end_attempt(self, link: ChargerLink, *, success: bool) -> None:
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
    """5.2: the phone's share and ADa (its CONFIRM covers them); 5.4: the auth transcript."""


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
        self._info_nonce: bytes | None = None

    def info_nonce(self) -> bytes:
        """Section 5.2: a fresh nC for the INFO frame read now; the link keeps the last one
        served until a PAKE_START consumes it."""
        self._info_nonce = self._rng.token_bytes(NONCE_BYTES)
        return self._info_nonce

    @property
    def authenticated(self) -> bool:
        return self.state is LinkState.AUTHENTICATED

    def handle(self, data: bytes) -> bytes:
        if len(data) >= 4 and data[0] not in SUPPORTED_VERSIONS:
            # 3.4: judged on the header alone, before the fields (whose lengths are the
            # version's: a version-1 PAKE_MESSAGE has 33 bytes)
            return encode(error_frame(ErrorCode.UNSUPPORTED_VERSION))
        try:
            frame = decode(data)
        except ProtocolViolation:
            self._abort()
            return encode(error_frame(ErrorCode.MALFORMED))
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
            self._ctx.end_attempt(self, success=False)
        self._pending = None
        if self.state is not LinkState.AUTHENTICATED:
            self.state = LinkState.IDLE

    # 5.1 / 5.2: CPace with key confirmation
    def _on_pake_start(self, frame: Frame) -> Frame:
        self._abort()
        nonce_c, self._info_nonce = self._info_nonce, None  # consumed, success or not
        if nonce_c is None:
            return error_frame(ErrorCode.UNEXPECTED_MESSAGE)  # read INFO first
        phone_id = frame.get(Tag.PHONE_ID)
        use_pin = frame.get(Tag.USE_PIN) == b"\x01"
        message_a, nonce_p = frame.get(Tag.PAKE_MESSAGE), frame.get(Tag.NONCE)
        pin = self._ctx.pin_password()
        if pin is None and use_pin:  # section 6: passkey mode checks its PIN by SMP instead
            by_passkey = self._ctx.pin_by_passkey()
            return error_frame(
                ErrorCode.PIN_BY_PASSKEY if by_passkey else ErrorCode.PIN_NOT_REQUIRED
            )
        if pin is not None and not use_pin:
            return error_frame(ErrorCode.PIN_REQUIRED)
        refusal = self._ctx.pin_exchange_allowed(self, use_pin=use_pin)
        if refusal is not None:
            _, retry = self._ctx.lockout_state()
            return error_frame(refusal, retry_after=retry if refusal is ErrorCode.LOCKED else None)
        ad_a = pake_ad(frame.version, use_pin)
        cpace = CPaceSession(
            prs=pin if pin is not None else NO_PIN,
            ci=channel_identifier(phone_id, self._ctx.serial),
            sid=nonce_p + nonce_c,
            role=Role.RESPONDER,
            random_bytes=self._rng.token_bytes,
        )
        message_b = cpace.message()
        try:
            isk = cpace.finish(message_a, ad_a)
        except InvalidPakeMessage as exc:  # nothing derived from the PIN was sent: not counted
            raise ProtocolViolation("bad CPace message") from exc
        keys = pake_keys(isk)
        if use_pin:
            self._ctx.begin_attempt(self)
        self._pending = _Pending(
            phone_id=phone_id,
            counted=use_pin,
            with_pin=use_pin or self.link_authenticated,
            keys=keys,
            transcript=message_a + ad_a,
        )
        self.state = LinkState.PAKE_SENT
        confirm = pake_confirm(keys.charger_confirm, b"charger confirm", message_b, b"")
        return Frame(
            type=MessageType.PAKE_REPLY,
            fields={Tag.PAKE_MESSAGE: message_b, Tag.CONFIRM: confirm},
        )

    def _on_pake_confirm(self, frame: Frame) -> Frame:
        pending = self._pending
        if self.state is not LinkState.PAKE_SENT or pending is None:
            return error_frame(ErrorCode.UNEXPECTED_MESSAGE)
        message_a, ad_a = pending.transcript[:POINT_BYTES], pending.transcript[POINT_BYTES:]
        expected = pake_confirm(pending.keys.phone_confirm, b"phone confirm", message_a, ad_a)
        if not hmac.compare_digest(expected, frame.get(Tag.CONFIRM)):
            self._abort()  # exactly one failed guess
            state, retry = self._ctx.lockout_state()
            return wrong_pin_frame(
                attempts_left=self._ctx.attempts_left(), state=state, retry_after=retry
            )
        self._pending = None
        if pending.counted:
            self._ctx.end_attempt(self, success=True)
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
        stored = self._ctx.credential(phone_id)
        if stored is None:
            return error_frame(ErrorCode.UNKNOWN_CREDENTIAL)
        nonce_c = self._rng.token_bytes(NONCE_BYTES)
        id_a, id_b = phone_identity(phone_id), charger_identity(self._ctx.serial)
        transcript = build_transcript(frame.version, id_a, id_b, nonce_p, nonce_c, True)
        keys = auth_keys(stored.secret, nonce_p, nonce_c)
        self._pending = _Pending(
            phone_id=phone_id,
            counted=False,
            with_pin=stored.with_pin,
            keys=keys,
            transcript=transcript,
        )
        self.state = LinkState.CHALLENGE_SENT
        mac = keyed_mac(keys.charger_confirm, b"charger auth", transcript)
        return Frame(type=MessageType.AUTH_CHALLENGE, fields={Tag.NONCE: nonce_c, Tag.MAC: mac})

    def _on_auth_proof(self, frame: Frame) -> Frame:
        pending = self._pending
        self._pending = None  # the challenge is single-use (no replay)
        if self.state is not LinkState.CHALLENGE_SENT or pending is None:
            return error_frame(ErrorCode.UNEXPECTED_MESSAGE)
        expected = keyed_mac(pending.keys.phone_confirm, b"phone auth", pending.transcript)
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


def pairing_state(state: lockout.LockoutState, now: float) -> tuple[PairingState, float]:
    """How a lockout state shows in INFO and ERROR frames."""
    if state.disabled:
        return PairingState.DISABLED, 0.0
    if state.is_locked(now):
        return PairingState.LOCKED, state.locked_until - now
    return PairingState.OPEN, 0.0
