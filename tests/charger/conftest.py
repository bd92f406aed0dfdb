from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from evaccess.charger.config import Backoff, ChargerConfig
from evaccess.charger.run import RunningCharger, run_charger
from evaccess.domain.clock import ManualClock
from evaccess.protocol.ocpp_frames import OcppVersion
from tests.charger.csms import TestCsms
from tests.support import eventually

PASSWORD = "s3cret-charger-password"
SERIAL = "EVA-0001"


class SeededRandom:
    def __init__(self, seed: int = 7) -> None:
        self._r = random.Random(seed)

    def randbelow(self, n: int) -> int:
        return self._r.randrange(n)

    def token_bytes(self, n: int) -> bytes:
        return self._r.randbytes(n)


class KeypadFeed:
    """Codes typed by the test, one at a time; ``close`` ends the input."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()

    def type(self, code: str) -> None:
        self._queue.put_nowait(code)

    def close(self) -> None:
        self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[str]:
        while (code := await self._queue.get()) is not None:
            yield code


class Running:
    """A charger running in the test's event loop, its printed lines, and its task."""

    def __init__(self, task: asyncio.Task[Any], lines: list[str], keypad: KeypadFeed) -> None:
        self.task = task
        self.lines = lines
        self.keypad = keypad
        self.charger: RunningCharger | None = None

    async def booted(self) -> RunningCharger:
        await eventually(lambda: self.charger is not None and self.charger.booted.is_set())
        assert self.charger is not None
        return self.charger

    async def decision(self, code: str) -> str:
        before = len([line for line in self.lines if line.startswith("keypad:")])
        self.keypad.type(code)
        await eventually(
            lambda: len([line for line in self.lines if line.startswith("keypad:")]) > before,
            what="a keypad decision",
        )
        return [line for line in self.lines if line.startswith("keypad:")][-1]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def csms() -> AsyncIterator[TestCsms]:
    server = TestCsms(passwords={SERIAL: PASSWORD}, accepted_codes={"4821"}, heartbeat_s=1)
    await server.start()
    yield server
    if server._server is not None:
        await server.stop()


def make_config(
    tmp_path: Path, csms: TestCsms, *, protocol: OcppVersion = OcppVersion.V201, **extra: Any
) -> ChargerConfig:
    values: dict[str, Any] = {
        "serial": SERIAL,
        "vendor": "evaccess",
        "model": "test",
        "firmware": "1.0",
        "server": csms.url,
        "password": PASSWORD,
        "protocol": protocol,
        "state_dir": tmp_path / "state",
        "session_s": 0.3,
        "backoff": Backoff(initial_s=0.05, max_s=0.2),
        "response_timeout_s": 5.0,
    }
    values.update(extra)
    return ChargerConfig(**values)


def start_charger(config: ChargerConfig) -> Running:
    lines: list[str] = []
    keypad = KeypadFeed()
    running: Running

    def started(charger: RunningCharger) -> None:
        running.charger = charger

    task = asyncio.create_task(
        run_charger(
            config,
            clock=ManualClock(),
            rng=SeededRandom(),
            keypad=keypad.__aiter__(),
            say=lines.append,
            started=started,
        )
    )
    running = Running(task, lines, keypad)
    return running
