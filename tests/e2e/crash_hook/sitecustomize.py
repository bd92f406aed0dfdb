"""A test-only hook that a server process under test loads at start (this directory on its
PYTHONPATH; production never has it): it counts the steps of one ownership-transfer
acceptance and kills the process with SIGKILL at step ``EVACCESS_TEST_CRASH_AT``.

A step is each SQL statement the acceptance sends (SQLAlchemy ``before_cursor_execute``),
the commit (``commit``: before the database is asked to commit), and the moment the service
returned (``returned``: committed, no answer sent yet). Only statements of the acceptance's
own task count (a context variable set around ``transfers.accept_transfer``), not those of
the server's background tasks. Before each step the hook appends one line to
``EVACCESS_TEST_CRASH_LOG``: ``<step> <kind> <first words of the statement>`` (statement
text only: parameters, and so any secret, never reach it), so the test knows where each
crash happened and when a run had no step left to crash at."""

from __future__ import annotations

import contextvars
import functools
import os
import signal
from typing import Any

_AT = os.environ.get("EVACCESS_TEST_CRASH_AT")
_LOG = os.environ.get("EVACCESS_TEST_CRASH_LOG")
_armed: contextvars.ContextVar[bool] = contextvars.ContextVar("crash_armed", default=False)
_steps = [0]


def _step(kind: str, what: str = "") -> None:
    if not _armed.get():
        return
    _steps[0] += 1
    assert _LOG is not None
    line = f"{_steps[0]} {kind} {' '.join(what.split()[:4])}".rstrip() + "\n"
    fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    if _steps[0] == int(str(_AT)):
        os.kill(os.getpid(), signal.SIGKILL)


def _install() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from evaccess.server.services import transfers

    @event.listens_for(Engine, "before_cursor_execute")
    def _statement(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        _step("statement", statement)

    @event.listens_for(Engine, "commit")
    def _commit(conn: Any) -> None:
        _step("commit")

    accept = transfers.accept_transfer

    @functools.wraps(accept)
    async def accept_transfer(*args: Any, **kwargs: Any) -> Any:
        token = _armed.set(True)
        try:
            accepted = await accept(*args, **kwargs)
            _step("returned")
            return accepted
        finally:
            _armed.reset(token)

    transfers.accept_transfer = accept_transfer  # type: ignore[assignment]


if _AT and _LOG:
    _install()
