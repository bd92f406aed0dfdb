"""Engine and sessions for SQLite (aiosqlite) and PostgreSQL (asyncpg).

SQLite allows one writer: write transactions start with ``BEGIN IMMEDIATE`` so that two
writers queue on the busy timeout instead of failing half-way with "database is locked";
read transactions use a second engine with ordinary deferred transactions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def make_engine(url: str, *, immediate: bool = False) -> AsyncEngine:
    if not url.startswith("sqlite"):
        return create_async_engine(url, pool_size=10, max_overflow=30, pool_pre_ping=True)
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


class Database:
    """``transaction()`` is the unit of work for writes, ``read()`` for reads only."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url, immediate=True)
        self._read_engine = make_engine(url) if url.startswith("sqlite") else self.engine
        self._writes = async_sessionmaker(self.engine, expire_on_commit=False)
        self._reads = async_sessionmaker(self._read_engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self._writes() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._reads() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._read_engine is not self.engine:
            await self._read_engine.dispose()
