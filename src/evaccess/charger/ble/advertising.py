"""Supervised advertising: the charger advertises again after every connection and every
disconnection (several phones may be connected; one idling must not hide the charger), one
start at a time under a lock (Bumble's advertising code asserts when two overlap), and after
a failed start (e.g. an HCI error at the controller's connection limit) again: the first retry
at once (a controller often refuses only while it is still busy with the connection or
disconnection that triggered the restart), then with back-off until it succeeds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.05
"""Wait before the second retry; doubled after every further failure up to ``MAX_RETRY_S``."""
MAX_RETRY_S = 2.0


class AdvertisingSupervisor:
    def __init__(
        self,
        start: Callable[[], Awaitable[None]],
        is_advertising: Callable[[], bool],
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._start = start
        self._is_advertising = is_advertising
        self._sleep = sleep
        self.lock = asyncio.Lock()
        """Held around every start (also the first, by the peripheral)."""
        self._task: asyncio.Task[None] | None = None
        self._wanted = False
        self.failures = 0
        """Failed starts so far (for tests and diagnostics)."""

    def kick(self) -> None:
        """Advertise again unless already advertising (after a connection or disconnection)."""
        self._wanted = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        self._wanted = False
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        delay = 0.0  # the first retry after a failure: at once (after yielding to the loop)
        while self._wanted:
            self._wanted = False
            async with self.lock:
                if self._is_advertising():
                    continue
                try:
                    await self._start()
                except Exception as exc:
                    self.failures += 1
                    self._wanted = True
                    log.warning(
                        "cannot advertise now (%s): retrying in %.2f s", type(exc).__name__, delay
                    )
                else:
                    delay = 0.0
                    continue
            await self._sleep(delay)
            delay = min(max(delay * 2, FIRST_BACKOFF_S), MAX_RETRY_S)
