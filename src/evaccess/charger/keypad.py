"""Where keypad codes come from: a script (``--keypad``), stdin lines, or the terminal.

Each source is an async iterator of codes; the charger prints one decision line per code
and never echoes the code (OCPP 2.0.1 C04.FR.04: KeyCodes are not logged).
"""

from __future__ import annotations

import asyncio
import getpass
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TextIO


async def scripted(codes: Iterable[str]) -> AsyncIterator[str]:
    for code in codes:
        yield code.strip()


async def _blocking_reads(read: Callable[[], str | None]) -> AsyncIterator[str]:
    """Run ``read`` in a daemon thread (``None`` = end of input) and yield what it returns.

    A daemon thread, not the loop's executor: a read blocked on the terminal must not keep
    the program from exiting on Ctrl-C.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def pump() -> None:
        while True:
            try:
                value = read()
            except (EOFError, OSError):
                value = None
            loop.call_soon_threadsafe(queue.put_nowait, value)
            if value is None:
                return

    threading.Thread(target=pump, name="keypad", daemon=True).start()
    while (code := await queue.get()) is not None:
        yield code.strip()


def lines(stream: TextIO) -> AsyncIterator[str]:
    """One code per line until end of input (stdin that is not a terminal)."""
    return _blocking_reads(lambda: stream.readline() or None)


def terminal(prompt: str = "keypad code: ") -> AsyncIterator[str]:
    """Hidden input on a terminal, like a keypad that shows stars; ends on Ctrl-D."""
    return _blocking_reads(lambda: getpass.getpass(prompt))


def from_stdin(stream: TextIO | None = None) -> AsyncIterator[str]:
    stream = stream or sys.stdin
    return terminal() if stream.isatty() else lines(stream)
