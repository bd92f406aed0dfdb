"""Shared fixtures: frozen time, seeded randomness, a migrated database per test (SQLite
always; PostgreSQL too when EVACCESS_TEST_POSTGRES_URL is set), and the secret canaries.

Canaries: every PIN, keypad code or password a test uses is registered with ``canaries``.
After each test the database is dumped and scanned for them, and at the end of the session
every log line captured during the whole run is scanned too."""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from evaccess.domain.clock import ManualClock

if TYPE_CHECKING:
    from tests.cluster_support import OwnRedis

POSTGRES_URL = os.environ.get("EVACCESS_TEST_POSTGRES_URL")

# Every frame an evaccess OCPP session sends, in any test, is validated with jsonschema.
pytest_plugins = ("tests.ocpp.frame_guard",)


class SeededRandom:
    """Deterministic stand-in for ``SystemRandom`` (tests only)."""

    def __init__(self, seed: int = 1234) -> None:
        self._random = random.Random(seed)

    def randbelow(self, n: int) -> int:
        return self._random.randrange(n)

    def token_bytes(self, n: int) -> bytes:
        return self._random.randbytes(n)


class Canaries:
    def __init__(self) -> None:
        self.values: set[str] = set()

    def add(self, *values: str) -> None:
        self.values.update(v for v in values if v)

    def pattern(self) -> re.Pattern[str] | None:
        if not self.values:
            return None
        alternatives = "|".join(re.escape(v) for v in sorted(self.values, key=len, reverse=True))
        return re.compile(rf"(?<![0-9A-Za-z])(?:{alternatives})(?![0-9A-Za-z])")


ALL_CANARIES = Canaries()
ALL_CANARIES.add("correct horse battery staple")  # tests/server/support.py PASSWORD


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.loggers: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = record.getMessage()
        except Exception:  # a badly formatted record is still worth scanning
            line = f"{record.msg!r} {record.args!r}"
        if record.exc_info and record.exc_info[1] is not None:
            line += f" {record.exc_info[1]!r}"
        self.lines.append(line)
        self.loggers.append(record.name)


LOG_COLLECTOR = _Collector()
# Noise that is not text a secret could be in (random bytes, UUIDs, timestamps) is removed
# before scanning so that a 4-digit code cannot match by chance.
_NOISE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:?\d{2}|Z)?",
    re.IGNORECASE,
)


def scan(text: str, canaries: Canaries) -> list[str]:
    pattern = canaries.pattern()
    if pattern is None:
        return []
    return sorted({m.group(0) for m in pattern.finditer(_NOISE.sub(" ", text))})


def pytest_configure(config: pytest.Config) -> None:
    root = logging.getLogger()
    root.addHandler(LOG_COLLECTOR)
    root.setLevel(logging.DEBUG)
    # Third-party chatter at DEBUG is scanned too; aiosqlite's per-call log (every statement
    # with its parameters) is kept out as the server itself keeps it out.
    from evaccess.server.runner import quiet_sql_loggers

    quiet_sql_loggers()
    # Test clients that stand in for chargers log their own frames at DEBUG; those lines are
    # the test's, not evaccess's (the server's "websockets.server" logger stays scanned).
    logging.getLogger("websockets.client").setLevel(logging.INFO)


_WORKER_SCANS: list[dict[str, Any]] = []
"""The log scans of pytest-xdist's workers (``make test`` runs on two), for the controller."""


def _scan_the_logs() -> dict[str, Any]:
    leaked = scan("\n".join(LOG_COLLECTOR.lines), ALL_CANARIES)
    where = sorted(
        {
            name
            for name, line in zip(LOG_COLLECTOR.loggers, LOG_COLLECTOR.lines, strict=True)
            if leaked and scan(line, ALL_CANARIES)
        }
    )
    return {
        "secrets": len(ALL_CANARIES.values),
        "lines": len(LOG_COLLECTOR.lines),
        "leaked": leaked,
        "where": where,
    }


def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist: a worker finished; keep its log scan (each worker scans its own log lines)."""
    found = getattr(node, "workeroutput", {}).get("canary_scan")
    if found is not None:
        _WORKER_SCANS.append(found)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    mine = _scan_the_logs()
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller judges and reports
        workeroutput["canary_scan"] = mine
        return
    scans = [mine, *_WORKER_SCANS]
    leaked = sorted({secret for s in scans for secret in s["leaked"]})
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if leaked:
        session.exitstatus = 1
        where = sorted({name for s in scans for name in s["where"]})
        if reporter is not None:
            reporter.write_line(
                f"CANARY SCAN FAILED: test secrets {leaked} appear in log lines of {where}",
                red=True,
            )
    elif reporter is not None:
        secrets = sum(s["secrets"] for s in scans)
        lines = sum(s["lines"] for s in scans)
        workers = f" over {len(_WORKER_SCANS)} workers" if _WORKER_SCANS else ""
        reporter.write_line(
            f"canary scan: {secrets} secrets, {lines} log lines{workers}, none leaked"
        )


@pytest.fixture
def canaries() -> Iterator[Canaries]:
    mine = Canaries()
    mine.add(*ALL_CANARIES.values)
    yield mine
    ALL_CANARIES.add(*mine.values)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))


@pytest.fixture
def rng() -> SeededRandom:
    return SeededRandom()


def _database_params() -> list[object]:
    params: list[object] = ["sqlite"]
    if POSTGRES_URL:
        params.append(pytest.param("postgres", marks=pytest.mark.postgres))
    return params


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for each test (migrating each time costs ~0.3 s)."""
    from evaccess.server.db.migrate import upgrade_sync

    path = tmp_path_factory.mktemp("template") / "evaccess.db"
    upgrade_sync(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(params=_database_params())
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Iterator[str]:
    if request.param == "sqlite":
        import shutil

        shutil.copyfile(sqlite_template, tmp_path / "evaccess.db")
        yield f"sqlite+aiosqlite:///{tmp_path / 'evaccess.db'}"
        return
    assert POSTGRES_URL is not None
    yield from _fresh_postgres(POSTGRES_URL)


_PG_TEMPLATE: list[str] = []


def _fresh_postgres(url: str) -> Iterator[str]:
    """A new database per test, cloned from a migrated template made once per session."""
    import asyncio
    import secrets

    import asyncpg

    from evaccess.server.db.migrate import upgrade_sync

    base, _, _ = url.rpartition("/")
    admin_dsn = url.replace("postgresql+asyncpg://", "postgresql://")

    async def run(*statements: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()

    if not _PG_TEMPLATE:
        template = f"evaccess_tpl_{secrets.token_hex(4)}"
        asyncio.run(run(f"CREATE DATABASE {template}"))
        upgrade_sync(f"{base}/{template}")
        _PG_TEMPLATE.append(template)
    name = f"evaccess_t_{secrets.token_hex(6)}"
    asyncio.run(run(f"CREATE DATABASE {name} TEMPLATE {_PG_TEMPLATE[0]}"))
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _PG_TEMPLATE and POSTGRES_URL:
        import asyncio

        import asyncpg

        async def drop() -> None:
            conn = await asyncpg.connect(
                POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
            )
            try:
                await conn.execute(f"DROP DATABASE IF EXISTS {_PG_TEMPLATE[0]} WITH (FORCE)")
            finally:
                await conn.close()

        asyncio.run(drop())


@pytest.fixture
async def ctx(
    request: pytest.FixtureRequest,
    database_url: str,
    tmp_path: Path,
    clock: ManualClock,
    rng: SeededRandom,
    canaries: Canaries,
) -> AsyncIterator[object]:
    """The server's context; ``@pytest.mark.settings(allow_signup=True)`` changes its
    settings for one test."""
    from tests.server.support import make_context

    marker = request.node.get_closest_marker("settings")
    overrides = dict(marker.kwargs) if marker else {}
    context = await make_context(database_url, tmp_path / "keys", clock=clock, rng=rng, **overrides)
    try:
        yield context
        dump = await dump_database(context)
        leaked = scan(dump, canaries)
        assert not leaked, f"{len(leaked)} secret(s) used by this test are in the database dump"
    finally:
        await context.db.dispose()


async def dump_database(context: object) -> str:
    """Every row of every table as text; binary columns raw (latin-1), so a plaintext PIN
    stored anywhere, in any form, would show."""
    from sqlalchemy import select

    from evaccess.server.db.models import Base

    lines: list[str] = []
    async with context.db.read() as session:  # type: ignore[attr-defined]
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                cells = [c.decode("latin-1") if isinstance(c, bytes) else str(c) for c in row]
                lines.append(f"{table.name}: " + " | ".join(cells))
    return "\n".join(lines)


@pytest.fixture
async def own_redis() -> AsyncIterator[OwnRedis]:
    """A redis-server of the test's own on a free port (outage tests stop and restart it)."""
    from tests.cluster_support import OwnRedis, free_port

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: the outage tests start one of their own")
    server = OwnRedis(free_port())
    await server.start()
    yield server
    server.stop()
