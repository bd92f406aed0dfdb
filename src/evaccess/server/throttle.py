"""Lockout state per key (charger, account, client address): the port and its in-process
adapter.

The rules and transitions are ``domain.lockout``; an adapter only stores the states. One
node keeps them here (``ThrottleRegistry``); in cluster mode (``EVACCESS_REDIS_URL``) every
node shares them through Redis (``server.cluster.redis``), with the same results. An adapter
that cannot reach its store raises ``ClusterUnavailable``: the attempt is refused, never let
through uncounted (docs/security.md).
"""

from __future__ import annotations

from typing import Protocol

from evaccess.domain import lockout
from evaccess.domain.clock import Clock


class Throttle(Protocol):
    """One throttle (one set of ``LockoutRules``) over many keys."""

    @property
    def rules(self) -> lockout.LockoutRules: ...

    async def check(self, key: str) -> None:
        """Raise ``LockedOut`` if ``key`` is locked now."""

    async def is_locked(self, key: str) -> float | None:
        """Seconds until ``key`` unlocks (``inf``: disabled), or ``None``."""

    async def failure(self, key: str) -> lockout.LockoutEvent | None:
        """Count one failure; the lockout it caused, if any."""

    async def success(self, key: str) -> None:
        """A success resets the counters (a lockout in force stays in force)."""

    async def settle(self, key: str, *, succeeded: bool) -> lockout.LockoutEvent | None:
        """``check`` then ``success`` or ``failure``, as one step: raise ``LockedOut`` if
        ``key`` is locked now (nothing counted), else count the outcome; the lockout a
        failure caused, if any. The Redis adapter does it in one round trip."""


class ThrottleRegistry:
    """The in-process adapter: states in a dict, time from the clock's monotonic seconds."""

    def __init__(self, rules: lockout.LockoutRules, clock: Clock, max_keys: int = 100_000) -> None:
        self._rules = rules
        self._clock = clock
        self._states: dict[str, lockout.LockoutState] = {}
        self._max_keys = max_keys

    @property
    def rules(self) -> lockout.LockoutRules:
        return self._rules

    async def check(self, key: str) -> None:
        state = self._states.get(key)
        if state is not None:
            lockout.check(state, self._clock.monotonic())

    async def is_locked(self, key: str) -> float | None:
        state = self._states.get(key)
        now = self._clock.monotonic()
        if state is None or not state.is_locked(now):
            return None
        return float("inf") if state.disabled else state.locked_until - now

    async def failure(self, key: str) -> lockout.LockoutEvent | None:
        state = self._states.get(key, lockout.LockoutState())
        new, event = lockout.record_failure(state, self._clock.monotonic(), self._rules)
        if len(self._states) >= self._max_keys and key not in self._states:
            self._evict()
        self._states[key] = new
        return event

    async def success(self, key: str) -> None:
        state = self._states.get(key)
        if state is not None:
            reset = lockout.record_success(state)
            if reset == lockout.LockoutState():
                del self._states[key]
            else:
                self._states[key] = reset

    async def settle(self, key: str, *, succeeded: bool) -> lockout.LockoutEvent | None:
        await self.check(key)
        if succeeded:
            await self.success(key)
            return None
        return await self.failure(key)

    def _evict(self) -> None:
        """Drop states that no longer lock anything (bounded memory under a spray attack)."""
        now = self._clock.monotonic()
        for key in [k for k, s in self._states.items() if not s.is_locked(now)]:
            del self._states[key]
