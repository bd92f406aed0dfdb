"""The lifecycle of an ownership transfer, as values (no I/O).

The owner starts a transfer to an email address; it is *open* until the recipient accepts
it, the owner cancels it, or it expires (by default after 14 days). Only those moves exist,
only from *open*, and each has exactly one party allowed to make it::

    open --accept (recipient)--> accepted
    open --cancel (owner)------> cancelled
    open --expire (system)-----> expired      (also: any move tried once the time is up)

Until acceptance the owner keeps full access; acceptance is the atomic handover
(``server/services/ownership.hand_over``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from evaccess.domain.errors import Conflict, PermissionDenied

TRANSFER_TTL = timedelta(days=14)
"""How long an open transfer waits for its recipient."""


class TransferState(StrEnum):
    OPEN = "open"
    ACCEPTED = "accepted"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class TransferMove(StrEnum):
    ACCEPT = "accept"
    CANCEL = "cancel"
    EXPIRE = "expire"


class TransferParty(StrEnum):
    """Who is making a move: the owner who started it, its recipient, or the server."""

    OWNER = "owner"
    RECIPIENT = "recipient"
    SYSTEM = "system"
    OTHER = "other"


# (state, move) -> (next state, the one party allowed). Anything absent is refused.
MOVES: dict[tuple[TransferState, TransferMove], tuple[TransferState, TransferParty]] = {
    (TransferState.OPEN, TransferMove.ACCEPT): (TransferState.ACCEPTED, TransferParty.RECIPIENT),
    (TransferState.OPEN, TransferMove.CANCEL): (TransferState.CANCELLED, TransferParty.OWNER),
    (TransferState.OPEN, TransferMove.EXPIRE): (TransferState.EXPIRED, TransferParty.SYSTEM),
}

FINAL = frozenset({TransferState.ACCEPTED, TransferState.CANCELLED, TransferState.EXPIRED})


@dataclass(frozen=True, kw_only=True, slots=True)
class Transfer:
    state: TransferState
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None = None

    @classmethod
    def start(cls, now: datetime, ttl: timedelta = TRANSFER_TTL) -> Transfer:
        if ttl <= timedelta(0):
            raise ValueError("a transfer's time to live is positive")
        return cls(state=TransferState.OPEN, created_at=now, expires_at=now + ttl)

    def state_at(self, now: datetime) -> TransferState:
        """The state as seen at ``now``: an open transfer whose time is up has expired."""
        if self.state is TransferState.OPEN and now >= self.expires_at:
            return TransferState.EXPIRED
        return self.state

    def is_open(self, now: datetime) -> bool:
        return self.state_at(now) is TransferState.OPEN

    def expired(self, now: datetime) -> Transfer:
        """The transfer with its lapse recorded (unchanged if it has not lapsed)."""
        if self.state_at(now) is TransferState.EXPIRED and self.state is TransferState.OPEN:
            return replace(self, state=TransferState.EXPIRED, decided_at=self.expires_at)
        return self

    def move(self, move: TransferMove, by: TransferParty, now: datetime) -> Transfer:
        """The transfer after ``move`` made by ``by`` at ``now``; ``PermissionDenied`` for
        the wrong party, ``Conflict`` (code ``transfer_<state>``) when not open any more."""
        current = self.state_at(now)
        if move is TransferMove.EXPIRE and self.state is TransferState.OPEN:
            current = TransferState.OPEN  # the lapse itself is recorded by the system
        allowed = MOVES.get((current, move))
        if allowed is None:
            raise Conflict(f"this transfer is {current.value}", code=f"transfer_{current.value}")
        target, party = allowed
        if by is not party:
            raise PermissionDenied(f"only the {party.value} may {move.value} a transfer")
        if move is TransferMove.EXPIRE and now < self.expires_at:
            raise Conflict("this transfer has not expired yet", code="transfer_open")
        return replace(self, state=target, decided_at=now)
