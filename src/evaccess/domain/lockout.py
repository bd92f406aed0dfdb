"""Throttles for PIN entry points (keypad, Bluetooth PAKE, Bluetooth passkey).

Wallbox's rule (its help centre, 2025-10: "five failed attempts in one minute"): 5 failures
within 60 s make the entry point unavailable for 5 minutes.
Going further (docs/security.md): each further lockout before a success lasts twice as long
(OCPP 2.0.1 C04.FR.06 recommends increasing back-off), and an optional cap of consecutive
failures (NIST SP 800-63B 5.2.2: 100) disables the entry point until re-enabled.

The state is an immutable value, so it can be kept in memory, on disk or in Redis; time is a
float of seconds passed in by the caller (monotonic in memory, epoch when persisted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

from evaccess.domain.errors import LockedOut, PairingDisabled


@dataclass(frozen=True, kw_only=True, slots=True)
class LockoutRules:
    max_failures: int = 5
    window_s: float = 60.0
    lockout_s: float = 300.0
    escalation: float = 2.0
    max_lockout_s: float = 24 * 3600.0
    failure_cap: int | None = None

    def lockout_duration(self, level: int) -> float:
        """How long lockout number ``level`` (1-based) lasts."""
        return min(self.lockout_s * self.escalation ** (level - 1), self.max_lockout_s)


KEYPAD_RULES = LockoutRules()
BLUETOOTH_RULES = LockoutRules(failure_cap=100)


@dataclass(frozen=True, kw_only=True, slots=True)
class LockoutState:
    failures: tuple[float, ...] = ()
    locked_until: float = 0.0
    level: int = 0
    consecutive_failures: int = 0
    disabled: bool = False

    def is_locked(self, now: float) -> bool:
        return self.disabled or now < self.locked_until


class LockoutKind(StrEnum):
    LOCKED = "locked"
    DISABLED = "disabled"


@dataclass(frozen=True, kw_only=True, slots=True)
class LockoutEvent:
    """Raised by a failure that locked or disabled the entry point (becomes a security event)."""

    kind: LockoutKind
    level: int
    duration_s: float | None
    consecutive_failures: int


def check(state: LockoutState, now: float) -> None:
    """Raise ``LockedOut`` (or ``PairingDisabled``) when attempts are refused now."""
    if state.disabled:
        raise PairingDisabled(
            "PIN entry is disabled after too many failed attempts; re-enable it from the server",
            retry_after=float("inf"),
        )
    if now < state.locked_until:
        remaining = state.locked_until - now
        raise LockedOut(
            f"too many failed attempts; try again in {wait_text(remaining)}",
            retry_after=remaining,
        )


def attempts_left(state: LockoutState, now: float, rules: LockoutRules) -> int:
    """How many more failures the entry point takes before it locks (or is disabled): 0
    while it is locked or disabled."""
    if state.is_locked(now):
        return 0
    recent = sum(1 for t in state.failures if now - t < rules.window_s)
    left = rules.max_failures - recent
    if rules.failure_cap is not None:
        left = min(left, rules.failure_cap - state.consecutive_failures)
    return max(0, left)


def wait_text(seconds: float) -> str:
    """``45 s``, ``3 min``, ``2 h``: how long a person has to wait, rounded up."""
    whole = max(1, math.ceil(seconds))
    if whole < 120:
        return f"{whole} s"
    if whole < 2 * 3600:
        return f"{math.ceil(whole / 60)} min"
    return f"{math.ceil(whole / 3600)} h"


def record_failure(
    state: LockoutState, now: float, rules: LockoutRules
) -> tuple[LockoutState, LockoutEvent | None]:
    """Count one failed attempt; returns the new state and the lockout it caused, if any."""
    consecutive = state.consecutive_failures + 1
    if rules.failure_cap is not None and consecutive >= rules.failure_cap:
        new = replace(state, failures=(), consecutive_failures=consecutive, disabled=True)
        event = LockoutEvent(
            kind=LockoutKind.DISABLED,
            level=state.level,
            duration_s=None,
            consecutive_failures=consecutive,
        )
        return new, event
    recent = (*(t for t in state.failures if now - t < rules.window_s), now)
    if len(recent) < rules.max_failures:
        return replace(state, failures=recent, consecutive_failures=consecutive), None
    level = state.level + 1
    duration = rules.lockout_duration(level)
    new = LockoutState(
        failures=(),
        locked_until=now + duration,
        level=level,
        consecutive_failures=consecutive,
    )
    event = LockoutEvent(
        kind=LockoutKind.LOCKED, level=level, duration_s=duration, consecutive_failures=consecutive
    )
    return new, event


def record_success(state: LockoutState) -> LockoutState:
    """A correct PIN resets the counters (a lockout in force stays in force)."""
    return LockoutState(locked_until=state.locked_until, disabled=state.disabled)


def reenable(state: LockoutState) -> LockoutState:
    """The owner re-enabled PIN entry from the server: everything starts afresh."""
    return LockoutState()
