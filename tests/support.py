"""Shared test support: wait for a condition, never a fixed time.

``eventually`` polls a condition from a coroutine; ``eventually_blocking`` is the same wait
for the tests that drive separate processes from plain (synchronous) code. Both return the
condition's first truthy value, fail at once when ``unless`` reports a reason to give up
(a process that exited, a socket the server closed), and fail with ``what`` after
``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

ASYNC_TIMEOUT_S = 10.0
BLOCKING_TIMEOUT_S = 60.0


class _Wait:
    """One wait's deadline and its failure messages, shared by both forms."""

    def __init__(self, what: str, timeout: float, unless: Callable[[], object] | None) -> None:
        self.what = what
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.unless = unless

    def check(self) -> None:
        if self.unless is not None and (reason := self.unless()):
            raise AssertionError(f"gave up waiting for {self.what}: {reason}")
        if time.monotonic() > self.deadline:
            raise AssertionError(f"waited {self.timeout:g} s for {self.what}")


async def eventually(
    predicate: Callable[[], Any],
    what: str = "the condition",
    *,
    timeout: float = ASYNC_TIMEOUT_S,
    interval: float = 0.01,
    unless: Callable[[], object] | None = None,
) -> Any:
    """Await until ``predicate()`` (a value or an awaitable) is truthy; return that value."""
    wait = _Wait(what, timeout, unless)
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        wait.check()
        await asyncio.sleep(interval)


def eventually_blocking(
    predicate: Callable[[], Any],
    what: str = "the condition",
    *,
    timeout: float = BLOCKING_TIMEOUT_S,
    interval: float = 0.1,
    unless: Callable[[], object] | None = None,
) -> Any:
    """Block until ``predicate()`` is truthy; return that value."""
    wait = _Wait(what, timeout, unless)
    while True:
        if value := predicate():
            return value
        wait.check()
        time.sleep(interval)
