"""The audit log: append-only, each record chained to the one before it by an HMAC whose key
lives outside the database. ``verify`` walks the chain and names the first bad record after
any edit, deletion, insertion or reordering.

The log is a few chains side by side, *lanes*: SQLite has one, PostgreSQL ``LANES``. A
record extends one lane (its ``prev_mac`` is that lane's previous mac) and an append locks
that lane's head row until its transaction ends; on PostgreSQL it takes any lane that no
other transaction holds (``FOR UPDATE SKIP LOCKED``), so the audited writes of several nodes
do not queue behind one row. Record numbers come from one sequence, taken while the lane is
held, so they increase within each lane and order the whole log.

A chain cannot tell that records were cut from its *end* together with its head row; a
signed checkpoint of the heads kept outside the database closes that gap
(``audit_anchor``). The same holds for a whole lane relabelled as another empty one, which
moves no record out of order and changes no record.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from evaccess.domain.clock import Clock
from evaccess.server.db.models import AuditHead, AuditRecord
from evaccess.server.keys import KeyProvider

GENESIS = bytes(32)
"""The mac before a lane's first record."""
LANES = 16
"""PostgreSQL's lanes (migration 0010 creates their head rows): more than the audited
transactions that two busy nodes hold at once (``evaccess bench cluster``)."""

_RECORDS = cast(Table, AuditRecord.__table__)
_HEADS = cast(Table, AuditHead.__table__)
_HEAD = select(AuditHead.id, AuditHead.seq, AuditHead.mac).where(AuditHead.id == 1)
"""SQLite's one lane (the write transaction already holds the database's lock)."""
_FREE_LANE = text(
    "SELECT l.id, l.seq, l.mac, nextval('audit_seq') AS next FROM (SELECT id, seq, mac "
    "FROM audit_head WHERE id <= :lanes ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) AS l"
)
"""PostgreSQL: lock the first lane no other transaction holds, and number the record."""
_THIS_LANE = text(
    "SELECT l.id, l.seq, l.mac, nextval('audit_seq') AS next FROM (SELECT id, seq, mac "
    "FROM audit_head WHERE id = :lane FOR UPDATE) AS l"
)
"""PostgreSQL: the lane this transaction holds already, or (all lanes busy) wait for one."""
_MORE_NUMBERS = text("SELECT nextval('audit_seq') FROM generate_series(2, :n)")
_MOVE_HEAD = (
    update(_HEADS)
    .where(_HEADS.c.id == bindparam("lane"))
    .values(seq=bindparam("new_seq"), mac=bindparam("new_mac"))
)
_COLUMNS = tuple(c.key for c in _RECORDS.columns)
_MOVED = _MOVE_HEAD.returning(_HEADS.c.id).cte("moved")
_APPEND_ONE = insert(_RECORDS).from_select(
    list(_COLUMNS),
    select(*(bindparam(c.key, type_=c.type) for c in _RECORDS.columns)).select_from(_MOVED),
)
"""PostgreSQL: ``WITH moved AS (UPDATE audit_head …) INSERT INTO audit_records SELECT …``."""
_LANE_HELD = "audit_lane"
"""``session.info`` key: the lane this transaction locked (a second append reuses it, so one
transaction never waits for a lane while holding another)."""
Detail = str | int | float | bool | None


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditEntry:
    action: str
    actor_id: str | None = None
    organisation_id: str | None = None
    charger_id: str | None = None
    subject_id: str | None = None
    basis: str | None = None
    request_id: str | None = None
    details: Mapping[str, Detail] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class VerifyReport:
    records: int
    first_bad_seq: int | None
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.first_bad_seq is None and self.reason is None


def _canonical(seq: int, at: datetime, entry: AuditEntry, details: str) -> bytes:
    fields = [
        seq, at.isoformat(), entry.action, entry.actor_id, entry.organisation_id,
        entry.charger_id, entry.subject_id, entry.basis, entry.request_id, details,
    ]  # fmt: skip
    return json.dumps(fields, separators=(",", ":")).encode()


class AuditLog:
    def __init__(self, keys: KeyProvider, clock: Clock, *, lanes: int = LANES) -> None:
        """``lanes``: how many of PostgreSQL's lanes to use (1: one chain, as before
        migration 0010; ``evaccess bench audit`` compares the two)."""
        if not 1 <= lanes <= LANES:
            raise ValueError(f"lanes must be 1 to {LANES}")
        self._keys = keys
        self._clock = clock
        self._lanes = lanes
        self._turn = itertools.count()

    def _mac(self, prev: bytes, canonical: bytes) -> bytes:
        return hmac.new(self._keys.load().audit, prev + canonical, hashlib.sha256).digest()

    async def append(self, session: AsyncSession, entry: AuditEntry) -> AuditRecord:
        """Add a record inside the caller's transaction (it commits or rolls back with it)."""
        (record,) = await self.append_many(session, [entry])
        return record

    async def append_many(
        self, session: AsyncSession, entries: Sequence[AuditEntry]
    ) -> list[AuditRecord]:
        """Add records in order inside the caller's transaction: one lane is locked, the
        records are numbered, chained and inserted in one statement (bulk registration)."""
        if not entries:
            return []
        postgres = session.get_bind().dialect.name == "postgresql"
        headless = False
        if postgres:
            lane, seq, mac, numbers = await self._take_lane(session, len(entries))
        else:
            head = (await session.execute(_HEAD)).first()
            headless = head is None  # before migration 0009 (it creates the row)
            lane, seq, mac = (1, 0, GENESIS) if head is None else (1, head.seq, head.mac)
            numbers = list(range(seq + 1, seq + 1 + len(entries)))
        at = self._clock.now()
        records: list[AuditRecord] = []
        for entry, seq in zip(entries, numbers, strict=True):
            details = json.dumps(dict(entry.details or {}), sort_keys=True, separators=(",", ":"))
            prev, mac = mac, self._mac(mac, _canonical(seq, at, entry, details))
            records.append(
                AuditRecord(
                    seq=seq,
                    lane=lane,
                    at=at,
                    action=entry.action,
                    actor_id=entry.actor_id,
                    organisation_id=entry.organisation_id,
                    charger_id=entry.charger_id,
                    subject_id=entry.subject_id,
                    basis=entry.basis,
                    request_id=entry.request_id,
                    details=details,
                    prev_mac=prev,
                    mac=mac,
                )
            )
        rows = [{c: getattr(r, c) for c in _COLUMNS} for r in records]
        move = {"lane": lane, "new_seq": seq, "new_mac": mac}
        if postgres and len(rows) == 1:
            # The lane stays locked until the commit: one round trip less while holding it
            # (the record and the head's move in one statement).
            await session.execute(_APPEND_ONE, rows[0] | move)
            return records
        # Core statements, not the unit of work: this runs in every audited request.
        await session.execute(insert(_RECORDS), rows)
        if headless:
            await session.execute(insert(_HEADS).values(id=1, seq=seq, mac=mac))
        else:
            await session.execute(_MOVE_HEAD, move)
        return records

    async def _take_lane(
        self, session: AsyncSession, count: int
    ) -> tuple[int, int, bytes, list[int]]:
        """Lock a lane for this transaction: (lane, its last seq, its mac, record numbers)."""
        held: int | None = session.info.get(_LANE_HELD)
        row: Row[Any] | None = None
        if held is None:
            row = (await session.execute(_FREE_LANE, {"lanes": self._lanes})).first()
        if row is None:  # held already, or every lane busy: wait for one, in turn
            lane = held if held is not None else 1 + next(self._turn) % self._lanes
            row = (await session.execute(_THIS_LANE, {"lane": lane})).first()
            if row is None:
                raise RuntimeError(f"audit lane {lane} has no head row (migration 0010)")
        session.info[_LANE_HELD] = row.id
        numbers = [row.next]
        if count > 1:
            numbers += sorted((await session.scalars(_MORE_NUMBERS, {"n": count})).all())
        return row.id, row.seq, row.mac, numbers

    async def verify(self, session: AsyncSession) -> VerifyReport:
        """Walk the log in record order, each record against its lane's previous mac, then
        each lane's head row against its last record."""
        prev: dict[int, bytes] = {}
        last: dict[int, int] = {}
        count = 0
        rows = await session.stream_scalars(select(AuditRecord).order_by(AuditRecord.seq))
        async for record in rows:
            count += 1
            entry = AuditEntry(
                action=record.action,
                actor_id=record.actor_id,
                organisation_id=record.organisation_id,
                charger_id=record.charger_id,
                subject_id=record.subject_id,
                basis=record.basis,
                request_id=record.request_id,
            )
            before = prev.get(record.lane, GENESIS)
            good = self._mac(before, _canonical(record.seq, record.at, entry, record.details))
            if record.prev_mac != before:
                return VerifyReport(
                    records=count,
                    first_bad_seq=record.seq,
                    reason="does not follow the previous record (deleted, inserted or reordered)",
                )
            if not hmac.compare_digest(good, record.mac):
                return VerifyReport(
                    records=count, first_bad_seq=record.seq, reason="contents were altered"
                )
            prev[record.lane], last[record.lane] = record.mac, record.seq
        for head in (await session.scalars(select(AuditHead).order_by(AuditHead.id))).all():
            end = last.get(head.id, 0)
            if head.seq != end or head.mac != prev.get(head.id, GENESIS):
                return VerifyReport(
                    records=count,
                    first_bad_seq=end + 1 if head.seq > end else head.seq,
                    reason="the log ends before its recorded head: records were removed at the end",
                )
        return VerifyReport(records=count, first_bad_seq=None, reason=None)
