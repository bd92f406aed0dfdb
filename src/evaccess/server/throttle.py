"""Lockout state per key (charger, account, client address) kept in this process.

The rules and transitions are ``domain.lockout``; this only stores the states. Several
server nodes share them through Redis (docs/architecture.md); one process keeps them here.
"""

from __future__ import annotations

from evaccess.domain import lockout
from evaccess.domain.clock import Clock


class ThrottleRegistry:
    def __init__(self, rules: lockout.LockoutRules, clock: Clock, max_keys: int = 100_000) -> None:
        self.rules = rules
        self._clock = clock
        self._states: dict[str, lockout.LockoutState] = {}
        self._max_keys = max_keys

    def check(self, key: str) -> None:
        """Raise ``LockedOut`` if ``key`` is locked now (no other I/O)."""
        state = self._states.get(key)
        if state is not None:
            lockout.check(state, self._clock.monotonic())

    def is_locked(self, key: str) -> float | None:
        """Seconds until ``key`` unlocks, or ``None``."""
        state = self._states.get(key)
        now = self._clock.monotonic()
        if state is None or not state.is_locked(now):
            return None
        return float("inf") if state.disabled else state.locked_until - now

    def failure(self, key: str) -> lockout.LockoutEvent | None:
        state = self._states.get(key, lockout.LockoutState())
        new, event = lockout.record_failure(state, self._clock.monotonic(), self.rules)
        if len(self._states) >= self._max_keys and key not in self._states:
            self._evict()
        self._states[key] = new
        return event

    def success(self, key: str) -> None:
        state = self._states.get(key)
        if state is not None:
            reset = lockout.record_success(state)
            if reset == lockout.LockoutState():
                del self._states[key]
            else:
                self._states[key] = reset

    def _evict(self) -> None:
        """Drop states that no longer lock anything (bounded memory under a spray attack)."""
        now = self._clock.monotonic()
        for key in [k for k, s in self._states.items() if not s.is_locked(now)]:
            del self._states[key]
