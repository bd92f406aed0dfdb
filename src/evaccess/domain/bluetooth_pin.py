"""The Bluetooth PIN lifecycle of one charger, as values (no I/O).

States: no PIN -> pending (pushed to the charger) -> active (the charger confirmed); a change
puts a new PIN in the pending slot while the old one stays active until the charger accepts
the new one. A PIN is held here as ``S``, whatever the caller keeps it as (the server keeps
it sealed): this module never sees a PIN's digits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Generic, TypeVar

from evaccess.domain.errors import PolicyViolation
from evaccess.domain.policy import PinPolicy, PinRequirement

S = TypeVar("S")


class PinStatus(StrEnum):
    NONE = "none"
    PENDING = "pending"
    ACTIVE = "active"
    CHANGING = "changing"


@dataclass(frozen=True, kw_only=True, slots=True)
class PinSlots(Generic[S]):
    """The PIN the charger enforces (``active``) and the one on its way to it (``pending``)."""

    enabled: bool = False
    """The owner turned an optional PIN on."""
    active: S | None = None
    pending: S | None = None
    pending_since: datetime | None = None

    @property
    def status(self) -> PinStatus:
        if self.active is None:
            return PinStatus.NONE if self.pending is None else PinStatus.PENDING
        return PinStatus.ACTIVE if self.pending is None else PinStatus.CHANGING

    def required(self, policy: PinPolicy) -> bool:
        """Whether new Bluetooth connections need the PIN."""
        if policy.requirement is PinRequirement.MANDATORY:
            return True
        return policy.requirement is PinRequirement.OPTIONAL and self.enabled

    def needs_pin(self, policy: PinPolicy) -> bool:
        """The policy requires a PIN and there is none yet: generate one (as pending)."""
        return self.required(policy) and self.status is PinStatus.NONE

    @property
    def enforced(self) -> S | None:
        """The PIN a phone needs now: the active one, else the pending one (reveal shows it)."""
        return self.active if self.active is not None else self.pending

    @property
    def to_push(self) -> S | None:
        """The PIN the charger must hold: the pending one, else the active one."""
        return self.pending if self.pending is not None else self.active

    def with_factory_pin(self, pin: S) -> PinSlots[S]:
        """A PIN printed by the maker: the charger has it already, so it is active at once."""
        return replace(self, active=pin)

    def enable(self, policy: PinPolicy) -> PinSlots[S]:
        """The owner turns the PIN on (a no-op where it is on or mandatory)."""
        if policy.requirement is PinRequirement.UNSUPPORTED:
            raise PolicyViolation(f"this charger has no Bluetooth PIN ({policy.rule})")
        if policy.requirement is PinRequirement.OPTIONAL and not self.enabled:
            return replace(self, enabled=True)
        return self

    def change(self, policy: PinPolicy, pin: Callable[[], S], now: datetime) -> PinSlots[S]:
        """Start a change: the new PIN (made by ``pin`` once the change is allowed) waits in
        the pending slot until the charger accepts it."""
        if not policy.changeable:
            raise PolicyViolation(f"this charger's Bluetooth PIN cannot be changed ({policy.rule})")
        if self.status is PinStatus.NONE:
            raise PolicyViolation("this charger has no Bluetooth PIN to change; enable it first")
        return self.with_pending(pin(), now)

    def with_pending(self, pin: S, now: datetime) -> PinSlots[S]:
        return replace(self, pending=pin, pending_since=now)

    def confirmed(self) -> PinSlots[S]:
        """The charger accepted the pending PIN: it becomes the active one."""
        if self.pending is None:
            return self
        return replace(self, active=self.pending, pending=None, pending_since=None)

    def changed_on_charger(self, pin: S) -> PinSlots[S]:
        """A phone changed the PIN on the charger itself: that one is active, nothing pends."""
        return replace(self, active=pin, pending=None, pending_since=None)
