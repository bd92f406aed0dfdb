"""The Access Service contract in isolation (protocol.ble_access, no radio): frames, the
CPace exchange with key confirmation, challenge-response, sealing, error codes."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaccess.domain.clock import SystemRandom
from evaccess.domain.errors import IntegrityFailure, LockedOut, NotAuthenticated, PairingDisabled
from evaccess.protocol import ble_access as proto

PIN = b"472913"
SERIAL = "EVA-1"


@dataclass
class FakeCharger:
    """A ChargerContext with the bookkeeping the peripheral does (no lockout rules here)."""

    serial: str = SERIAL
    pin: bytes | None = PIN
    in_flight: bool = False
    failures: int = 0
    successes: int = 0
    refusal: proto.ErrorCode | None = None
    creds: dict[bytes, proto.StoredCredential] = field(default_factory=dict)

    def pin_password(self) -> bytes | None:
        return self.pin

    def pin_by_passkey(self) -> bool:
        return False

    def pin_exchange_allowed(
        self, link: proto.ChargerLink, *, use_pin: bool
    ) -> proto.ErrorCode | None:
        if use_pin and self.in_flight:
            return proto.ErrorCode.BUSY
        return self.refusal

    def lockout_state(self) -> tuple[proto.PairingState, float]:
        if self.refusal is None and self.failures < 5:
            return proto.PairingState.OPEN, 0.0
        return proto.PairingState.LOCKED, 123.4

    def attempts_left(self) -> int:
        return max(0, 5 - self.failures)

    def begin_attempt(self, link: proto.ChargerLink) -> None:
        self.in_flight = True

    def end_attempt(self, link: proto.ChargerLink, *, success: bool) -> None:
        self.in_flight = False
        if success:
            self.successes += 1
        else:
            self.failures += 1

    def credential(self, phone_id: bytes) -> proto.StoredCredential | None:
        return self.creds.get(phone_id)

    def issue_credential(self, phone_id: bytes, *, with_pin: bool) -> bytes:
        secret = bytes(range(32))
        self.creds[phone_id] = proto.StoredCredential(
            phone_id=phone_id, secret=secret, with_pin=with_pin
        )
        return secret

    def forget(self, phone_id: bytes) -> None:
        self.creds.pop(phone_id, None)


PHONE = bytes.fromhex("00112233445566778899aabbccddeeff")


def pake(link: proto.ChargerLink, pin: str | None) -> proto.PhonePake:
    """A phone that has just read INFO on ``link`` (its charger nonce, section 5.2)."""
    return proto.PhonePake(phone_id=PHONE, serial=SERIAL, pin=pin, nonce_c=link.info_nonce())


def run_pake(charger: FakeCharger, link: proto.ChargerLink, pin: str | None) -> bytes:
    phone = pake(link, pin)
    confirm = phone.on_reply(link.handle(phone.start()))
    secret, _ = phone.on_credential(link.handle(confirm))
    return secret


def test_frame_round_trip_and_byte_layout() -> None:
    frame = proto.Frame(
        type=proto.MessageType.AUTH_BEGIN,
        fields={proto.Tag.NONCE: b"\x01" * 16, proto.Tag.PHONE_ID: b"\x02" * 16},
    )
    data = proto.encode(frame)
    assert data[:4] == bytes((2, 0x03)) + struct.pack(">H", 36)
    assert data[4:6] == bytes((proto.Tag.PHONE_ID, 16))  # fields in ascending tag order
    assert proto.decode(data) == frame


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_charger_answers_any_bytes_with_a_frame_and_never_raises(data: bytes) -> None:
    link = proto.ChargerLink(FakeCharger(), SystemRandom())
    reply = proto.decode(link.handle(data))
    assert reply.type in set(proto.MessageType)


def test_correct_pin_issues_a_credential_and_counts_a_success() -> None:
    charger = FakeCharger()
    link = proto.ChargerLink(charger, SystemRandom())
    secret = run_pake(charger, link, "472913")
    assert secret == charger.creds[PHONE].secret and len(secret) * 8 >= 128
    assert link.authenticated and charger.successes == 1 and charger.failures == 0
    assert charger.creds[PHONE].with_pin


def test_wrong_pin_is_exactly_one_failure_and_the_phone_learns_it() -> None:
    charger = FakeCharger()
    link = proto.ChargerLink(charger, SystemRandom())
    phone = pake(link, "472914")
    confirm = phone.on_reply(link.handle(phone.start()))
    assert not phone.charger_confirmed  # the charger's confirmation does not verify
    with pytest.raises(proto.WrongPin):
        phone.on_credential(link.handle(confirm))
    assert charger.failures == 1 and not link.authenticated and not charger.creds


def wrong_guess(link: proto.ChargerLink) -> bytes:
    phone = pake(link, "472914")
    return link.handle(phone.on_reply(link.handle(phone.start())))


def test_a_wrong_pin_reply_says_how_many_attempts_are_left_in_exact_bytes() -> None:
    charger = FakeCharger()
    link = proto.ChargerLink(charger, SystemRandom())
    reply = wrong_guess(link)
    # ERROR, body: ERROR_CODE 0x14, PAIRING_STATE open, ATTEMPTS_LEFT 4 (ascending tags)
    assert reply == bytes.fromhex("02ff0009050100070104200114")
    with pytest.raises(proto.WrongPin) as wrong:
        proto.expect_reply(reply, proto.MessageType.CREDENTIAL)
    assert str(wrong.value) == "wrong PIN: 4 attempts left before pairing locks"
    assert wrong.value.attempts_left == 4 and not wrong.value.locked
    for _ in range(2):
        wrong_guess(link)
    with pytest.raises(proto.WrongPin, match="^wrong PIN: 1 attempt left before pairing locks$"):
        proto.expect_reply(wrong_guess(link), proto.MessageType.CREDENTIAL)
    assert charger.failures == 4


def test_the_wrong_pin_that_locks_says_for_how_long() -> None:
    charger = FakeCharger(failures=4)
    reply = wrong_guess(proto.ChargerLink(charger, SystemRandom()))
    # PAIRING_STATE locked, RETRY_AFTER 124 s (rounded up), ATTEMPTS_LEFT 0, ERROR_CODE 0x14
    assert reply == bytes.fromhex("02ff000f05010106040000007c070100200114")
    with pytest.raises(proto.WrongPin) as wrong:
        proto.expect_reply(reply, proto.MessageType.CREDENTIAL)
    assert str(wrong.value) == "wrong PIN: pairing is now locked for 3 min"
    assert wrong.value.locked and wrong.value.retry_after == 124
    five_minutes = proto.encode(
        proto.wrong_pin_frame(attempts_left=0, state=proto.PairingState.LOCKED, retry_after=300)
    )
    assert five_minutes == bytes.fromhex("02ff000f05010106040000012c070100200114")
    with pytest.raises(proto.WrongPin, match="^wrong PIN: pairing is now locked for 5 min$"):
        proto.expect_reply(five_minutes, proto.MessageType.CREDENTIAL)
    disabled = proto.encode(
        proto.wrong_pin_frame(attempts_left=0, state=proto.PairingState.DISABLED, retry_after=0)
    )
    with pytest.raises(proto.WrongPin, match="now disabled; the owner must re-enable it") as off:
        proto.expect_reply(disabled, proto.MessageType.CREDENTIAL)
    assert off.value.locked


def test_wrong_pin_replies_stay_compatible_both_ways() -> None:
    # A charger that predates the fields: the bare error still reads as a wrong PIN.
    bare = proto.encode(proto.error_frame(proto.ErrorCode.CONFIRMATION_FAILED))
    with pytest.raises(proto.WrongPin) as wrong:
        proto.expect_reply(bare, proto.MessageType.CREDENTIAL)
    assert str(wrong.value) == "wrong PIN" and wrong.value.attempts_left is None
    # A phone that predates them: it knows only ERROR_CODE and RETRY_AFTER and skips
    # unknown tags, so the new reply decodes to the same error code it always got.
    new = proto.decode(wrong_guess(proto.ChargerLink(FakeCharger(), SystemRandom())))
    assert new.get(proto.Tag.ERROR_CODE) == bytes((proto.ErrorCode.CONFIRMATION_FAILED,))
    assert proto.Tag.RETRY_AFTER not in new.fields  # no wait announced while still open


def test_an_abandoned_exchange_counts_as_a_failure() -> None:
    charger = FakeCharger()
    link = proto.ChargerLink(charger, SystemRandom())
    phone = pake(link, "000001")
    link.handle(phone.start())
    link.close()  # the attacker hung up before confirming
    assert charger.failures == 1
    # starting over on the same link also ends the previous attempt as a failure
    link2 = proto.ChargerLink(charger, SystemRandom())
    link2.handle(pake(link2, "1").start())
    link2.handle(pake(link2, "2").start())
    assert charger.failures == 2


def test_one_pin_exchange_at_a_time() -> None:
    charger = FakeCharger()
    first = proto.ChargerLink(charger, SystemRandom())
    second = proto.ChargerLink(charger, SystemRandom())
    first.handle(pake(first, "472913").start())
    busy = proto.decode(second.handle(pake(second, "1").start()))
    assert busy.get(proto.Tag.ERROR_CODE) == bytes((proto.ErrorCode.BUSY,))


def test_lockout_errors_carry_retry_after_and_distinct_codes() -> None:
    charger = FakeCharger(refusal=proto.ErrorCode.LOCKED)
    link = proto.ChargerLink(charger, SystemRandom())
    reply = link.handle(pake(link, "472913").start())
    with pytest.raises(LockedOut) as locked:
        proto.expect_reply(reply, proto.MessageType.PAKE_REPLY)
    assert locked.value.retry_after == 124 and locked.value.code == "ble_locked"
    charger.refusal = proto.ErrorCode.PAIRING_DISABLED
    reply = link.handle(pake(link, "472913").start())
    with pytest.raises(PairingDisabled):
        proto.expect_reply(reply, proto.MessageType.PAKE_REPLY)


def test_pin_mismatch_between_modes_is_signalled() -> None:
    link = proto.ChargerLink(FakeCharger(pin=None), SystemRandom())
    reply = proto.decode(link.handle(pake(link, "1").start()))
    assert reply.get(proto.Tag.ERROR_CODE) == bytes((proto.ErrorCode.PIN_NOT_REQUIRED,))
    link = proto.ChargerLink(FakeCharger(), SystemRandom())
    reply = proto.decode(link.handle(pake(link, None).start()))
    assert reply.get(proto.Tag.ERROR_CODE) == bytes((proto.ErrorCode.PIN_REQUIRED,))


def test_unsupported_version_lists_the_supported_ones() -> None:
    link = proto.ChargerLink(FakeCharger(), SystemRandom())
    request = bytearray(pake(link, "1").start())
    request[0] = 9
    reply = proto.decode(link.handle(bytes(request)))
    assert reply.get(proto.Tag.ERROR_CODE) == bytes((proto.ErrorCode.UNSUPPORTED_VERSION,))
    assert reply.get(proto.Tag.VERSIONS) == bytes(proto.SUPPORTED_VERSIONS)
    assert proto.negotiate_version([1, 2, 7]) == 2
    with pytest.raises(proto.ProtocolViolation):
        proto.negotiate_version([1])  # a version-1 (SPAKE2) charger: nothing in common


def test_credential_challenge_response_cannot_be_replayed() -> None:
    charger = FakeCharger()
    run_pake(charger, proto.ChargerLink(charger, SystemRandom()), "472913")
    secret = charger.creds[PHONE].secret
    link = proto.ChargerLink(charger, SystemRandom())
    auth = proto.PhoneAuth(phone_id=PHONE, serial=SERIAL, secret=secret, nonce=b"\x07" * 16)
    proof = auth.on_challenge(link.handle(auth.begin()))
    auth.on_ok(link.handle(proof))
    assert link.authenticated

    # A recorded proof is useless on a new link: the charger's nonce differs.
    replay = proto.ChargerLink(charger, SystemRandom())
    replay.handle(auth.begin())
    with pytest.raises(NotAuthenticated):
        proto.expect_reply(replay.handle(proof), proto.MessageType.AUTH_OK)
    assert not replay.authenticated
    # ... and the challenge is single use.
    with pytest.raises(proto.ProtocolViolation):
        proto.expect_reply(replay.handle(proof), proto.MessageType.AUTH_OK)


def test_a_charger_without_the_secret_cannot_impersonate() -> None:
    charger = FakeCharger()
    run_pake(charger, proto.ChargerLink(charger, SystemRandom()), "472913")
    impostor = FakeCharger()
    impostor.issue_credential(PHONE, with_pin=True)
    impostor.creds[PHONE] = proto.StoredCredential(
        phone_id=PHONE, secret=b"\xee" * 32, with_pin=True
    )
    auth = proto.PhoneAuth(
        phone_id=PHONE, serial=SERIAL, secret=charger.creds[PHONE].secret, nonce=b"\x01" * 16
    )
    link = proto.ChargerLink(impostor, SystemRandom())
    with pytest.raises(IntegrityFailure):
        auth.on_challenge(link.handle(auth.begin()))


def test_unknown_credential_and_revocation() -> None:
    charger = FakeCharger()
    link = proto.ChargerLink(charger, SystemRandom())
    auth = proto.PhoneAuth(phone_id=PHONE, serial=SERIAL, secret=b"x" * 32, nonce=b"\x01" * 16)
    with pytest.raises(NotAuthenticated, match="pair again"):
        auth.on_challenge(link.handle(auth.begin()))


def test_sealed_values_refuse_replay_reorder_and_tampering() -> None:
    keys = proto.derive_keys(b"k" * 32, salt=b"s", label=b"test")
    phone = proto.SessionCipher(keys, outbound=proto.Direction.PHONE_TO_CHARGER)
    charger = proto.SessionCipher(keys, outbound=proto.Direction.CHARGER_TO_PHONE)
    first = proto.seal_json(phone, proto.WIFI_UUID, {"ssid": "a"})
    second = proto.seal_json(phone, proto.WIFI_UUID, {"ssid": "b"})
    assert proto.open_json(charger, proto.WIFI_UUID, second) == {"ssid": "b"}
    with pytest.raises(IntegrityFailure):
        proto.open_json(charger, proto.WIFI_UUID, first)  # older counter: reordered/replayed
    third = bytearray(proto.seal_json(phone, proto.WIFI_UUID, {"ssid": "c"}))
    third[-1] ^= 1
    with pytest.raises(IntegrityFailure):
        proto.open_json(charger, proto.WIFI_UUID, bytes(third))
    # a value sealed by the charger cannot be reflected back to it
    echoed = proto.seal_json(charger, proto.WIFI_UUID, {"ssid": "d"})
    with pytest.raises(IntegrityFailure):
        proto.open_json(charger, proto.WIFI_UUID, echoed)


def test_pin_less_enrolment_and_forget() -> None:
    charger = FakeCharger(pin=None)
    link = proto.ChargerLink(charger, SystemRandom())
    phone = pake(link, None)
    confirm = phone.on_reply(link.handle(phone.start()))
    _, cipher = phone.on_credential(link.handle(confirm))
    assert not charger.creds[PHONE].with_pin
    assert charger.failures == charger.successes == 0  # no PIN, no guess counted
    proto.expect_reply(
        link.handle(proto.forget_request(cipher, PHONE)), proto.MessageType.FORGOTTEN
    )
    assert not charger.creds and not link.authenticated


def _error_code(reply: bytes) -> proto.ErrorCode:
    return proto.ErrorCode(proto.decode(reply).get(proto.Tag.ERROR_CODE)[0])


def _request(kind: proto.MessageType, **fields: bytes) -> bytes:
    return proto.encode(proto.Frame(type=kind, fields={proto.Tag[k]: v for k, v in fields.items()}))


GOOD_START = {
    "PHONE_ID": PHONE,
    "USE_PIN": b"\x01",
    "PAKE_MESSAGE": proto.decode(
        proto.PhonePake(phone_id=PHONE, serial=SERIAL, pin="472913", nonce_c=bytes(16)).start()
    ).get(proto.Tag.PAKE_MESSAGE),
    "NONCE": bytes(16),
}


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        (proto.MessageType.AUTH_BEGIN, {"PHONE_ID": PHONE[:15], "NONCE": bytes(16)}),
        (proto.MessageType.AUTH_BEGIN, {"PHONE_ID": PHONE + b"\x00", "NONCE": bytes(16)}),
        (proto.MessageType.AUTH_BEGIN, {"PHONE_ID": PHONE, "NONCE": bytes(15)}),
        (proto.MessageType.PAKE_START, {**GOOD_START, "PHONE_ID": PHONE[:15]}),
        (proto.MessageType.PAKE_START, {**GOOD_START, "USE_PIN": b"\x02"}),
        (proto.MessageType.PAKE_START, {**GOOD_START, "USE_PIN": b""}),
        (proto.MessageType.PAKE_START, {**GOOD_START, "USE_PIN": b"\x01\x00"}),
        (
            proto.MessageType.PAKE_START,
            {**GOOD_START, "PAKE_MESSAGE": GOOD_START["PAKE_MESSAGE"][:31]},
        ),
        (proto.MessageType.AUTH_PROOF, {"MAC": bytes(31)}),
        (proto.MessageType.FORGET, {"SEALED": bytes(23)}),
    ],
)
def test_every_field_is_checked_for_length_and_range(
    kind: proto.MessageType, fields: dict[str, bytes]
) -> None:
    charger = FakeCharger(
        creds={
            PHONE[:15]: proto.StoredCredential(phone_id=PHONE[:15], secret=bytes(32), with_pin=True)
        }
    )
    link = proto.ChargerLink(charger, SystemRandom())
    assert _error_code(link.handle(_request(kind, **fields))) is proto.ErrorCode.MALFORMED
    assert not charger.in_flight  # nothing started, nothing counted
    assert charger.failures == 0


def test_a_confirmation_of_the_wrong_length_is_malformed_and_ends_the_exchange() -> None:
    charger = FakeCharger()
    link = proto.ChargerLink(charger, SystemRandom())
    phone = pake(link, "472913")
    link.handle(phone.start())
    reply = link.handle(_request(proto.MessageType.PAKE_CONFIRM, CONFIRM=bytes(31)))
    assert _error_code(reply) is proto.ErrorCode.MALFORMED
    assert charger.failures == 1 and not charger.in_flight  # section 6: the exchange ends


def test_a_pake_start_needs_a_fresh_info_nonce_and_consumes_it() -> None:
    charger = FakeCharger()
    link = proto.ChargerLink(charger, SystemRandom())
    stale = proto.PhonePake(phone_id=PHONE, serial=SERIAL, pin="472913", nonce_c=bytes(16))
    assert _error_code(link.handle(stale.start())) is proto.ErrorCode.UNEXPECTED_MESSAGE
    assert charger.failures == 0 and not charger.in_flight  # refused before any work
    phone = pake(link, "472913")
    start = phone.start()
    proto.expect_reply(link.handle(start), proto.MessageType.PAKE_REPLY)
    link.close()  # (counts as one failure)
    # the nonce was consumed: the same PAKE_START again (a replay) is refused
    assert _error_code(link.handle(start)) is proto.ErrorCode.UNEXPECTED_MESSAGE
    assert charger.failures == 1


def test_a_phone_with_another_charger_nonce_fails_both_confirmations() -> None:
    charger = FakeCharger()
    link = proto.ChargerLink(charger, SystemRandom())
    link.info_nonce()
    other = proto.PhonePake(phone_id=PHONE, serial=SERIAL, pin="472913", nonce_c=bytes(16))
    confirm = other.on_reply(link.handle(other.start()))
    assert not other.charger_confirmed
    assert _error_code(link.handle(confirm)) is proto.ErrorCode.CONFIRMATION_FAILED


def test_a_version_1_spake2_phone_is_told_unsupported_version() -> None:
    """Section 3.4: a version-1 phone's PAKE_START (33-byte SPAKE2 message) gets ERROR
    UNSUPPORTED_VERSION listing version 2, and nothing is counted."""
    charger = FakeCharger()
    link = proto.ChargerLink(charger, SystemRandom())
    link.info_nonce()
    body = bytes((proto.Tag.PHONE_ID, 16)) + PHONE + bytes((proto.Tag.USE_PIN, 1, 1))
    body += bytes((proto.Tag.PAKE_MESSAGE, 33)) + b"A" + bytes(32)
    v1_start = struct.pack(">BBH", 1, proto.MessageType.PAKE_START, len(body)) + body
    reply = proto.decode(link.handle(v1_start))
    assert reply.get(proto.Tag.ERROR_CODE) == bytes((proto.ErrorCode.UNSUPPORTED_VERSION,))
    assert reply.get(proto.Tag.VERSIONS) == b"\x02"
    assert charger.failures == 0 and not charger.in_flight


@pytest.mark.parametrize("share", [bytes(32), b"\xff" * 32], ids=["identity", "not-decodable"])
def test_an_invalid_cpace_share_is_malformed_and_not_counted(share: bytes) -> None:
    charger = FakeCharger()
    link = proto.ChargerLink(charger, SystemRandom())
    link.info_nonce()
    start = _request(
        proto.MessageType.PAKE_START,
        PHONE_ID=PHONE,
        USE_PIN=b"\x01",
        PAKE_MESSAGE=share,
        NONCE=bytes(16),
    )
    assert _error_code(link.handle(start)) is proto.ErrorCode.MALFORMED
    assert charger.failures == 0 and not charger.in_flight
