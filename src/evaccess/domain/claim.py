"""The lifecycle of an ownership claim through support, as values (no I/O).

Someone without access to a charger (a new occupant whose seller cannot transfer it) files a
claim with proof: serial, installation address, installer name and a purchase agreement.
Two different support agents must approve it; the charger's current owner, if it has one
when the claim is filed, is told at once and may object until the objection window closes
(7 days by default), which stops the claim for good. The handover happens once both
approvals are in and the window is over (at the second approval when there was no owner)::

    filed ----approve (agent A)---> approved_once --approve (agent B != A)--> approved
      |                                  |                                      |
      +-- reject (agent) / object (owner) / withdraw (claimant) ---------------+
      |        -> rejected / objected / withdrawn                               |
      |                                                 complete (system, after the window)
      +-- supersede (system): the ownership changed since filing        -> completed

The handover itself is ``server/services/ownership.hand_over`` (reason ``claim``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from evaccess.domain.errors import Conflict, PermissionDenied

OBJECTION_WINDOW = timedelta(days=7)
"""How long the owner at filing may object (``EVACCESS_CLAIM_OBJECTION_DAYS``)."""

CLAIMS_PER_CHARGER = 3
CLAIMS_PERIOD = timedelta(days=30)
"""At most ``CLAIMS_PER_CHARGER`` claims on one charger in any ``CLAIMS_PERIOD``."""


class ClaimState(StrEnum):
    FILED = "filed"
    APPROVED_ONCE = "approved_once"
    APPROVED = "approved"
    """Both approvals in; waiting for the objection window to close."""
    COMPLETED = "completed"
    REJECTED = "rejected"
    OBJECTED = "objected"
    WITHDRAWN = "withdrawn"
    SUPERSEDED = "superseded"
    """The charger changed hands (or was released) after filing: the claim no longer
    refers to the ownership its owner was told about."""


_CLOSED_BECAUSE = {
    ClaimState.COMPLETED: "the charger was handed over to the claimant",
    ClaimState.REJECTED: "support rejected it",
    ClaimState.OBJECTED: "the owner objected to it",
    ClaimState.WITHDRAWN: "the claimant withdrew it",
    ClaimState.SUPERSEDED: "the charger changed hands after it was filed",
}
"""Why a claim that is no longer open takes no move, in words for the person who tried."""


class ClaimMove(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    OBJECT = "object"
    WITHDRAW = "withdraw"
    COMPLETE = "complete"
    SUPERSEDE = "supersede"


class ClaimParty(StrEnum):
    CLAIMANT = "claimant"
    OWNER = "owner"
    """The charger's owner when the claim was filed (still its owner)."""
    SUPPORT = "support"
    SYSTEM = "system"
    OTHER = "other"


OPEN = frozenset({ClaimState.FILED, ClaimState.APPROVED_ONCE, ClaimState.APPROVED})
FINAL = frozenset(ClaimState) - OPEN

_WHO: dict[ClaimMove, ClaimParty] = {
    ClaimMove.APPROVE: ClaimParty.SUPPORT,
    ClaimMove.REJECT: ClaimParty.SUPPORT,
    ClaimMove.OBJECT: ClaimParty.OWNER,
    ClaimMove.WITHDRAW: ClaimParty.CLAIMANT,
    ClaimMove.COMPLETE: ClaimParty.SYSTEM,
    ClaimMove.SUPERSEDE: ClaimParty.SYSTEM,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Claim:
    state: ClaimState
    claimant_id: str
    filed_at: datetime
    objection_until: datetime | None
    """End of the owner's objection window; ``None``: the charger had no owner at filing."""
    first_approver_id: str | None = None
    second_approver_id: str | None = None
    decided_at: datetime | None = None

    @classmethod
    def file(
        cls,
        claimant_id: str,
        now: datetime,
        *,
        has_owner: bool,
        window: timedelta = OBJECTION_WINDOW,
    ) -> Claim:
        if window < timedelta(0):
            raise ValueError("an objection window is not negative")
        return cls(
            state=ClaimState.FILED,
            claimant_id=claimant_id,
            filed_at=now,
            objection_until=now + window if has_owner else None,
        )

    @property
    def is_open(self) -> bool:
        return self.state in OPEN

    def due(self, now: datetime) -> bool:
        """Both approvals in and the objection window (if any) over: hand over now."""
        return self.state is ClaimState.APPROVED and (
            self.objection_until is None or now >= self.objection_until
        )

    def move(
        self, move: ClaimMove, by: ClaimParty, now: datetime, *, agent_id: str | None = None
    ) -> Claim:
        """The claim after ``move`` made by ``by`` at ``now`` (``agent_id``: the support
        agent approving or rejecting). ``PermissionDenied`` for the wrong party or the same
        agent twice, ``Conflict`` (code ``claim_<state>``) when the move does not apply."""
        party = _WHO[move]
        if by is not party:
            raise PermissionDenied(f"only {party.value} may {move.value} a claim")
        if not self.is_open:
            raise Conflict(
                f"this claim is closed: {_CLOSED_BECAUSE[self.state]}",
                code=f"claim_{self.state.value}",
            )
        if move is ClaimMove.APPROVE:
            return self._approved(now, agent_id)
        if move is ClaimMove.COMPLETE:
            if not self.due(now):
                raise Conflict("this claim is not due for handover", code="claim_not_due")
            return replace(self, state=ClaimState.COMPLETED, decided_at=now)
        if move is ClaimMove.OBJECT:
            if self.objection_until is None:
                raise Conflict(
                    "nobody owned this charger when the claim was filed", code="claim_no_owner"
                )
            if now >= self.objection_until:
                raise Conflict("the objection window has closed", code="claim_window_closed")
        if move is ClaimMove.REJECT and agent_id is None:
            raise PermissionDenied("a rejection names its agent")
        target = {
            ClaimMove.REJECT: ClaimState.REJECTED,
            ClaimMove.OBJECT: ClaimState.OBJECTED,
            ClaimMove.WITHDRAW: ClaimState.WITHDRAWN,
            ClaimMove.SUPERSEDE: ClaimState.SUPERSEDED,
        }[move]
        return replace(self, state=target, decided_at=now)

    def _approved(self, now: datetime, agent_id: str | None) -> Claim:
        if agent_id is None:
            raise PermissionDenied("an approval names its agent")
        if agent_id == self.claimant_id:
            raise PermissionDenied("a support agent cannot approve their own claim")
        if self.state is ClaimState.FILED:
            return replace(self, state=ClaimState.APPROVED_ONCE, first_approver_id=agent_id)
        if self.state is ClaimState.APPROVED_ONCE:
            if agent_id == self.first_approver_id:
                raise PermissionDenied(
                    "a second, different support agent must approve this claim",
                    code="claim_same_agent",
                )
            return replace(
                self, state=ClaimState.APPROVED, second_approver_id=agent_id, decided_at=now
            )
        raise Conflict("this claim is approved already", code="claim_approved")
