"""One-shot timers measured on the injected clock (``domain.clock.Clock``), so the Bluetooth
half's timeouts follow a ``ManualClock`` in tests and simulations as its lockout does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from evaccess.domain.clock import Clock

TICK_S = 0.05
"""How often (loop time) pending timers are checked against the clock."""


@dataclass(eq=False, slots=True)
class Timer:
    deadline: float
    callback: Callable[[], object] = field(repr=False)
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class ClockTimers:
    """A timer is due once ``clock.monotonic()`` reaches its deadline; pending timers are
    checked every ``TICK_S`` of loop time (no tick runs while none is pending)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._pending: list[Timer] = []
        self._tick: asyncio.TimerHandle | None = None

    def call_later(self, delay_s: float, callback: Callable[[], object]) -> Timer:
        timer = Timer(self._clock.monotonic() + delay_s, callback)
        self._pending.append(timer)
        if self._tick is None:
            self._tick = asyncio.get_running_loop().call_later(TICK_S, self._check)
        return timer

    def cancel_all(self) -> None:
        for timer in self._pending:
            timer.cancel()
        self._pending.clear()
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None

    def _check(self) -> None:
        self._tick = None
        now = self._clock.monotonic()
        due = [t for t in self._pending if t.deadline <= now or t.cancelled]
        self._pending = [t for t in self._pending if t not in due]
        for timer in due:
            if not timer.cancelled:
                timer.callback()
        if self._pending:
            self._tick = asyncio.get_running_loop().call_later(TICK_S, self._check)
