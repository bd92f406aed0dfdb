"""Where keypad codes come from: a script (``--keypad``), stdin lines, or the terminal.

Each source is an async iterator of codes; the charger prints one decision line per code
and never echoes the code (OCPP 2.0.1 C04.FR.04: KeyCodes are not logged).
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import AsyncIterator, Iterable
from typing import TextIO


async def scripted(codes: Iterable[str]) -> AsyncIterator[str]:
    for code in codes:
        yield code.strip()


async def lines(stream: TextIO) -> AsyncIterator[str]:
    """One code per line until end of input (stdin that is not a terminal)."""
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, stream.readline)
        if not line:
            return
        yield line.strip()


async def terminal(prompt: str = "keypad code: ") -> AsyncIterator[str]:
    """Hidden input on a terminal, like a keypad that shows stars; ends on Ctrl-D."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            code = await loop.run_in_executor(None, getpass.getpass, prompt)
        except EOFError:
            return
        yield code.strip()


def from_stdin(stream: TextIO | None = None) -> AsyncIterator[str]:
    stream = stream or sys.stdin
    return terminal() if stream.isatty() else lines(stream)
