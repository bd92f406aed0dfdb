from datetime import UTC, datetime, timedelta

import pytest

from evaccess.domain.errors import InvalidInput
from evaccess.domain.tokens import (
    Answer,
    Purpose,
    TokenFacts,
    TokenStatus,
    TokenType,
    cache_expiry,
    check_group,
    check_label,
    decide,
    effective_status,
    mask,
    normalise,
    parse_type,
)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("token_type", "value", "expected"),
    [
        (TokenType.ISO14443, "04a2b3c4", "04A2B3C4"),
        (TokenType.ISO14443, " 04A2B3C4D5E680 ", "04A2B3C4D5E680"),
        (TokenType.ISO15693, "e0040150a1b2c3d4", "E0040150A1B2C3D4"),
        (TokenType.MAC_ADDRESS, "00:1a:2b:3c:4d:5e", "001A2B3C4D5E"),
        (TokenType.MAC_ADDRESS, "00-1A-2B-3C-4D-5E", "001A2B3C4D5E"),
        (TokenType.EMAID, "DE-8AA-CA2B3C4D5-L", "DE8AACA2B3C4D5L"),
        (TokenType.EMAID, "de8aaca2b3c4d5", "DE8AACA2B3C4D5"),
        (TokenType.CENTRAL, "fleet-0042", "FLEET-0042"),
        (TokenType.CENTRAL, "X" * 36, "X" * 36),
    ],
)
def test_valid_formats_are_normalised(token_type: TokenType, value: str, expected: str) -> None:
    assert normalise(token_type, value) == expected


@pytest.mark.parametrize(
    ("token_type", "value"),
    [
        (TokenType.ISO14443, "04A2B3"),  # 3 bytes
        (TokenType.ISO14443, "04A2B3C4D5"),  # 5 bytes
        (TokenType.ISO14443, "04A2B3CG"),  # not hex
        (TokenType.ISO15693, "04A2B3C4"),
        (TokenType.MAC_ADDRESS, "00:1a:2b:3c:4d"),
        (TokenType.EMAID, "DE-8AA-CA2B3C4D"),
        (TokenType.EMAID, "1E8AACA2B3C4D5"),
        (TokenType.CENTRAL, ""),
        (TokenType.CENTRAL, "X" * 37),
        (TokenType.CENTRAL, "has space"),
    ],
)
def test_bad_formats_are_refused_without_echoing_the_value(
    token_type: TokenType, value: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise(token_type, value)
    assert caught.value.code == "bad_card_number"
    if value.strip():
        assert value not in str(caught.value)


def test_type_names_are_case_insensitive_and_keycode_is_not_a_card() -> None:
    assert parse_type("iso14443") is TokenType.ISO14443
    assert parse_type("EMAID") is TokenType.EMAID
    with pytest.raises(InvalidInput):
        parse_type("KeyCode")


def test_group_label_and_mask() -> None:
    assert check_group(" staff ") == "STAFF"
    assert check_group("") is None
    with pytest.raises(InvalidInput):
        check_group("G" * 21)
    assert check_label("  van 3 ") == "van 3"
    with pytest.raises(InvalidInput):
        check_label("a\nb")
    assert mask("04A2B3C4D5E680") == "…E680"


def test_blocked_wins_over_expired() -> None:
    past = NOW - timedelta(days=1)
    assert effective_status(TokenStatus.BLOCKED, past, NOW) is Answer.BLOCKED
    assert effective_status(TokenStatus.ACCEPTED, past, NOW) is Answer.EXPIRED
    assert effective_status(TokenStatus.ACCEPTED, NOW, NOW) is Answer.EXPIRED
    assert (
        effective_status(TokenStatus.ACCEPTED, NOW + timedelta(seconds=1), NOW) is Answer.ACCEPTED
    )


def _facts(**kw: object) -> TokenFacts:
    base: dict[str, object] = {
        "status": TokenStatus.ACCEPTED,
        "expires_at": None,
        "allowed_here": True,
        "master_pass": False,
    }
    return TokenFacts(**(base | kw))  # type: ignore[arg-type]


def test_decisions() -> None:
    assert decide(_facts(), Purpose.START, NOW) is Answer.ACCEPTED
    assert decide(_facts(allowed_here=False), Purpose.AUTHORIZE, NOW) is Answer.INVALID
    assert decide(_facts(allowed_here=False), Purpose.STOP, NOW) is Answer.INVALID
    blocked = _facts(status=TokenStatus.BLOCKED, allowed_here=False)
    assert decide(blocked, Purpose.AUTHORIZE, NOW) is Answer.BLOCKED
    expired = _facts(expires_at=NOW - timedelta(seconds=1))
    assert decide(expired, Purpose.START, NOW) is Answer.EXPIRED


def test_master_pass_stops_anything_and_starts_nothing() -> None:
    master = _facts(master_pass=True, allowed_here=False)
    assert decide(master, Purpose.STOP, NOW) is Answer.ACCEPTED
    assert decide(master, Purpose.AUTHORIZE, NOW) is Answer.ACCEPTED
    assert decide(master, Purpose.START, NOW) is Answer.INVALID
    assert decide(_facts(master_pass=True), Purpose.START, NOW) is Answer.INVALID
    assert decide(_facts(master_pass=True, status=TokenStatus.BLOCKED), Purpose.STOP, NOW) is (
        Answer.BLOCKED
    )


def test_cache_expiry_is_bounded_by_the_token_expiry() -> None:
    assert cache_expiry(NOW, 3600, None) == NOW + timedelta(hours=1)
    soon = NOW + timedelta(minutes=5)
    assert cache_expiry(NOW, 3600, soon) == soon
