"""The claim lifecycle on its own: who may make which move, two different agents, the
owner's objection window, and nothing moves once a claim is decided."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from evaccess.domain.claim import (
    _CLOSED_BECAUSE,
    FINAL,
    OBJECTION_WINDOW,
    Claim,
    ClaimMove,
    ClaimParty,
    ClaimState,
)
from evaccess.domain.errors import Conflict, PermissionDenied

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def filed(*, has_owner: bool = True) -> Claim:
    return Claim.file("claimant", T0, has_owner=has_owner)


def approved_by(claim: Claim, *agents: str, at: datetime = T0) -> Claim:
    for agent in agents:
        claim = claim.move(ClaimMove.APPROVE, ClaimParty.SUPPORT, at, agent_id=agent)
    return claim


def test_a_claim_needs_two_different_agents() -> None:
    once = approved_by(filed(), "agent-a")
    assert once.state is ClaimState.APPROVED_ONCE and once.first_approver_id == "agent-a"
    with pytest.raises(PermissionDenied) as caught:
        approved_by(once, "agent-a")
    assert caught.value.code == "claim_same_agent"
    twice = approved_by(once, "agent-b")
    assert twice.state is ClaimState.APPROVED and twice.second_approver_id == "agent-b"
    with pytest.raises(Conflict):
        approved_by(twice, "agent-c")


def test_nobody_approves_their_own_claim() -> None:
    with pytest.raises(PermissionDenied):
        approved_by(filed(), "claimant")


def test_the_handover_waits_for_the_owners_objection_window() -> None:
    claim = approved_by(filed(), "agent-a", "agent-b")
    assert claim.objection_until == T0 + OBJECTION_WINDOW
    assert not claim.due(T0 + OBJECTION_WINDOW - timedelta(seconds=1))
    with pytest.raises(Conflict) as caught:
        claim.move(ClaimMove.COMPLETE, ClaimParty.SYSTEM, T0 + timedelta(days=1))
    assert caught.value.code == "claim_not_due"
    assert claim.due(T0 + OBJECTION_WINDOW)
    done = claim.move(ClaimMove.COMPLETE, ClaimParty.SYSTEM, T0 + OBJECTION_WINDOW)
    assert done.state is ClaimState.COMPLETED


def test_without_an_owner_the_second_approval_is_due_at_once() -> None:
    claim = approved_by(filed(has_owner=False), "agent-a", "agent-b")
    assert claim.objection_until is None and claim.due(T0)
    with pytest.raises(Conflict) as caught:
        filed(has_owner=False).move(ClaimMove.OBJECT, ClaimParty.OWNER, T0)
    assert caught.value.code == "claim_no_owner"


def test_the_owner_objects_within_the_window_even_after_both_approvals() -> None:
    claim = approved_by(filed(), "agent-a", "agent-b")
    objected = claim.move(ClaimMove.OBJECT, ClaimParty.OWNER, T0 + timedelta(days=6))
    assert objected.state is ClaimState.OBJECTED and not objected.due(T0 + timedelta(days=8))
    with pytest.raises(Conflict) as caught:
        claim.move(ClaimMove.OBJECT, ClaimParty.OWNER, T0 + OBJECTION_WINDOW)
    assert caught.value.code == "claim_window_closed"


@pytest.mark.parametrize(
    ("move", "party"),
    [
        (ClaimMove.APPROVE, ClaimParty.CLAIMANT),
        (ClaimMove.APPROVE, ClaimParty.OWNER),
        (ClaimMove.REJECT, ClaimParty.OWNER),
        (ClaimMove.OBJECT, ClaimParty.CLAIMANT),
        (ClaimMove.OBJECT, ClaimParty.SUPPORT),
        (ClaimMove.WITHDRAW, ClaimParty.OWNER),
        (ClaimMove.COMPLETE, ClaimParty.SUPPORT),
        (ClaimMove.SUPERSEDE, ClaimParty.OTHER),
    ],
)
def test_each_move_has_one_party(move: ClaimMove, party: ClaimParty) -> None:
    with pytest.raises(PermissionDenied):
        filed().move(move, party, T0, agent_id="agent-a")


def test_a_decided_claim_takes_no_more_moves() -> None:
    ends = {
        ClaimState.REJECTED: filed().move(
            ClaimMove.REJECT, ClaimParty.SUPPORT, T0, agent_id="agent-a"
        ),
        ClaimState.WITHDRAWN: filed().move(ClaimMove.WITHDRAW, ClaimParty.CLAIMANT, T0),
        ClaimState.OBJECTED: filed().move(ClaimMove.OBJECT, ClaimParty.OWNER, T0),
        ClaimState.SUPERSEDED: filed().move(ClaimMove.SUPERSEDE, ClaimParty.SYSTEM, T0),
        ClaimState.COMPLETED: approved_by(filed(has_owner=False), "a", "b").move(
            ClaimMove.COMPLETE, ClaimParty.SYSTEM, T0
        ),
    }
    assert set(ends) == FINAL
    for state, claim in ends.items():
        assert claim.state is state and claim.decided_at == T0
        with pytest.raises(Conflict) as caught:
            claim.move(ClaimMove.WITHDRAW, ClaimParty.CLAIMANT, T0)
        assert caught.value.code == f"claim_{state.value}"


def test_every_closed_state_says_why_in_words() -> None:
    assert set(_CLOSED_BECAUSE) == set(FINAL)
