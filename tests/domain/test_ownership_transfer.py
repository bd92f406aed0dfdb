"""The ownership transfer lifecycle on its own: states, moves, who may make them, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evaccess.domain.errors import Conflict, PermissionDenied
from evaccess.domain.ownership_transfer import (
    FINAL,
    MOVES,
    TRANSFER_TTL,
    Transfer,
    TransferMove,
    TransferParty,
    TransferState,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_a_transfer_starts_open_and_expires_after_14_days_by_default() -> None:
    transfer = Transfer.start(T0)
    assert TRANSFER_TTL == timedelta(days=14)
    assert transfer.state is TransferState.OPEN
    assert transfer.expires_at == T0 + timedelta(days=14)
    assert transfer.is_open(T0 + timedelta(days=14) - timedelta(seconds=1))
    assert transfer.state_at(T0 + timedelta(days=14)) is TransferState.EXPIRED
    lapsed = transfer.expired(T0 + timedelta(days=20))
    assert (lapsed.state, lapsed.decided_at) == (TransferState.EXPIRED, T0 + timedelta(days=14))


def test_the_ttl_is_injectable_and_positive() -> None:
    assert Transfer.start(T0, timedelta(hours=1)).expires_at == T0 + timedelta(hours=1)
    with pytest.raises(ValueError):
        Transfer.start(T0, timedelta(0))


@pytest.mark.parametrize(
    ("move", "party", "target"),
    [
        (TransferMove.ACCEPT, TransferParty.RECIPIENT, TransferState.ACCEPTED),
        (TransferMove.CANCEL, TransferParty.OWNER, TransferState.CANCELLED),
    ],
)
def test_the_one_allowed_party_makes_each_move(
    move: TransferMove, party: TransferParty, target: TransferState
) -> None:
    moved = Transfer.start(T0).move(move, party, T0 + timedelta(days=1))
    assert (moved.state, moved.decided_at) == (target, T0 + timedelta(days=1))
    for other in set(TransferParty) - {party}:
        with pytest.raises(PermissionDenied):
            Transfer.start(T0).move(move, other, T0)


def test_the_owner_cannot_accept_and_the_recipient_cannot_cancel() -> None:
    with pytest.raises(PermissionDenied):
        Transfer.start(T0).move(TransferMove.ACCEPT, TransferParty.OWNER, T0)
    with pytest.raises(PermissionDenied):
        Transfer.start(T0).move(TransferMove.CANCEL, TransferParty.RECIPIENT, T0)


def test_nothing_moves_a_transfer_whose_time_is_up_except_recording_the_lapse() -> None:
    late = T0 + TRANSFER_TTL
    for move, party in ((TransferMove.ACCEPT, TransferParty.RECIPIENT),
                        (TransferMove.CANCEL, TransferParty.OWNER)):  # fmt: skip
        with pytest.raises(Conflict) as caught:
            Transfer.start(T0).move(move, party, late)
        assert caught.value.code == "transfer_expired"
    expired = Transfer.start(T0).move(TransferMove.EXPIRE, TransferParty.SYSTEM, late)
    assert expired.state is TransferState.EXPIRED


def test_the_system_cannot_expire_a_transfer_early() -> None:
    with pytest.raises(Conflict) as caught:
        Transfer.start(T0).move(TransferMove.EXPIRE, TransferParty.SYSTEM, T0)
    assert caught.value.code == "transfer_open"


@given(
    first=st.sampled_from(list(MOVES)),
    second=st.sampled_from(list(TransferMove)),
    party=st.sampled_from(list(TransferParty)),
    days=st.integers(min_value=0, max_value=30),
)
def test_a_final_state_never_moves_again(
    first: tuple[TransferState, TransferMove],
    second: TransferMove,
    party: TransferParty,
    days: int,
) -> None:
    _, move = first
    target, allowed = MOVES[first]
    now = T0 + (TRANSFER_TTL if move is TransferMove.EXPIRE else timedelta(0))
    done = Transfer.start(T0).move(move, allowed, now)
    assert done.state is target and target in FINAL
    with pytest.raises(Conflict) as caught:
        done.move(second, party, now + timedelta(days=days))
    assert caught.value.code == f"transfer_{target.value}"
    assert done.state_at(now + timedelta(days=days)) is target
