"""Engine and sessions for SQLite (aiosqlite) and PostgreSQL (asyncpg).

SQLite allows one writer: write transactions start with ``BEGIN IMMEDIATE`` so that two
writers queue on the busy timeout instead of failing half-way with "database is locked";
read transactions use a second engine with ordinary deferred transactions.

PostgreSQL connections are pinged only when they come out of the pool after lying idle
(``PING_AFTER_IDLE_S``), not at every checkout: SQLAlchemy's ``pool_pre_ping`` on asyncpg
is three round trips (BEGIN, an empty query, ROLLBACK), which on a request of a token check
and one write transaction was 6 of its 16 writes to the socket. A connection used within the
last second is taken as alive; if the server went away in that second, the statement fails,
and SQLAlchemy, seeing a disconnect, invalidates every connection made before it, so the
requests after it connect afresh.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

PING_AFTER_IDLE_S = 1.0
"""A pooled PostgreSQL connection idle longer than this is pinged before it is handed out."""

_IDLE_SINCE = "evaccess_idle_since"


def make_engine(
    url: str,
    *,
    immediate: bool = False,
    ping_after_idle_s: float = PING_AFTER_IDLE_S,
    monotonic: Callable[[], float] = time.monotonic,
) -> AsyncEngine:
    if not url.startswith("sqlite"):
        engine = create_async_engine(url, pool_size=10, max_overflow=30)
        _ping_when_idle(engine, ping_after_idle_s, monotonic)
        return engine
    engine = create_async_engine(url, connect_args={"timeout": 30})
    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "foreign_keys=ON",
            "busy_timeout=30000",
            "synchronous=NORMAL",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    def on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "begin", on_begin)
    return engine


def _ping_when_idle(
    engine: AsyncEngine, ping_after_idle_s: float, monotonic: Callable[[], float]
) -> None:
    """SQLAlchemy's "pessimistic, custom" disconnect handling, for idle connections only: a
    failed ping raises ``DisconnectionError``, and the pool replaces the connection."""

    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = monotonic()

    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop(_IDLE_SINCE, None)
        if idle_since is None or monotonic() - idle_since <= ping_after_idle_s:
            return  # fresh from connect, or in use a moment ago
        try:
            dbapi_connection.ping()
        except Exception as error:  # whatever broke it, the pool replaces the connection
            raise exc.DisconnectionError("the pooled connection was lost") from error

    event.listen(engine.sync_engine.pool, "checkin", on_checkin)
    event.listen(engine.sync_engine.pool, "checkout", on_checkout)


class Database:
    """``transaction()`` is the unit of work for writes; ``read()`` and ``snapshot()`` read.

    ``read()`` promises each statement what was committed before it, nothing across
    statements. On PostgreSQL it runs outside a transaction (autocommit): a READ COMMITTED
    transaction gives a new snapshot to each statement anyway, so its BEGIN and COMMIT were
    two round trips that bought nothing. ``snapshot()`` is the read whose statements must
    agree with each other (the audit chain's records and its heads), and the one for
    server-side cursors (``session.stream``), which asyncpg runs only inside a transaction:
    on PostgreSQL a REPEATABLE READ, READ ONLY transaction; on SQLite a deferred read
    transaction, which in WAL mode holds one snapshot from its first read to its end.
    ``lookup()`` is ``read()`` for Core statements, without an ORM session: the token check
    runs on every request, and a session cost it half of its 0.75 ms of CPU on PostgreSQL.
    """

    def __init__(
        self,
        url: str,
        *,
        ping_after_idle_s: float = PING_AFTER_IDLE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.engine = make_engine(
            url, immediate=True, ping_after_idle_s=ping_after_idle_s, monotonic=monotonic
        )
        self._writes = async_sessionmaker(self.engine, expire_on_commit=False)
        if url.startswith("sqlite"):
            self._read_engine = make_engine(url)
            self._reads = self._snapshots = async_sessionmaker(
                self._read_engine, expire_on_commit=False
            )
            self._lookups = self._read_engine
        else:  # one pool; the isolation level is set per checkout, without a round trip
            self._read_engine = self.engine
            self._lookups = self.engine.execution_options(isolation_level="AUTOCOMMIT")
            self._reads = async_sessionmaker(self._lookups, expire_on_commit=False)
            self._snapshots = async_sessionmaker(
                self.engine.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                ),
                expire_on_commit=False,
            )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self._writes() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._reads() as session, session.begin():
            yield session

    @asynccontextmanager
    async def lookup(self) -> AsyncIterator[AsyncConnection]:
        async with self._lookups.connect() as connection:
            yield connection

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncSession]:
        async with self._snapshots() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._read_engine is not self.engine:
            await self._read_engine.dispose()
