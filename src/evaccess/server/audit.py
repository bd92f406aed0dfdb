"""The audit log: append-only, each record chained to the previous one by an HMAC whose key
lives outside the database. ``verify`` walks the chain and names the first bad record after
any edit, deletion, insertion or reordering.

The chain cannot tell that records were cut from its *end* together with the head row;
a signed checkpoint of the head kept outside the database closes that gap (``audit_anchor``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from evaccess.domain.clock import Clock
from evaccess.server.db.models import AuditHead, AuditRecord
from evaccess.server.keys import KeyProvider

GENESIS = bytes(32)

_RECORDS = cast(Table, AuditRecord.__table__)
_HEADS = cast(Table, AuditHead.__table__)
_HEAD = select(AuditHead.seq, AuditHead.mac).where(AuditHead.id == 1).with_for_update()
"""Read and locked once per transaction that appends (the row lock orders appenders)."""
_MOVE_HEAD = (
    update(_HEADS)
    .where(_HEADS.c.id == 1)
    .values(seq=bindparam("new_seq"), mac=bindparam("new_mac"))
)
_COLUMNS = tuple(c.key for c in _RECORDS.columns)
_MOVED = _MOVE_HEAD.returning(_HEADS.c.id).cte("moved")
_APPEND_ONE = insert(_RECORDS).from_select(
    list(_COLUMNS),
    select(*(bindparam(c.key, type_=c.type) for c in _RECORDS.columns)).select_from(_MOVED),
)
"""PostgreSQL: ``WITH moved AS (UPDATE audit_head …) INSERT INTO audit_records SELECT …``."""
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
    def __init__(self, keys: KeyProvider, clock: Clock) -> None:
        self._keys = keys
        self._clock = clock

    def _mac(self, prev: bytes, canonical: bytes) -> bytes:
        return hmac.new(self._keys.load().audit, prev + canonical, hashlib.sha256).digest()

    async def append(self, session: AsyncSession, entry: AuditEntry) -> AuditRecord:
        """Add a record inside the caller's transaction (it commits or rolls back with it)."""
        (record,) = await self.append_many(session, [entry])
        return record

    async def append_many(
        self, session: AsyncSession, entries: Sequence[AuditEntry]
    ) -> list[AuditRecord]:
        """Add records in order inside the caller's transaction: the head row is read and
        locked once and the records are inserted in one statement (bulk registration)."""
        head = (await session.execute(_HEAD)).first()
        seq, mac = (0, GENESIS) if head is None else (head.seq, head.mac)
        at = self._clock.now()
        records: list[AuditRecord] = []
        for entry in entries:
            seq += 1
            details = json.dumps(dict(entry.details or {}), sort_keys=True, separators=(",", ":"))
            prev, mac = mac, self._mac(mac, _canonical(seq, at, entry, details))
            records.append(
                AuditRecord(
                    seq=seq,
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
        if head is not None and len(rows) == 1 and session.get_bind().dialect.name == "postgresql":
            # The head row stays locked until the commit, and every audited write of every
            # node waits for it: one round trip less while holding it (the record and the
            # head's move in one statement) raised what two nodes sustain before the
            # lock's queue snowballs (docs/performance.md, "Several nodes").
            await session.execute(_APPEND_ONE, rows[0] | {"new_seq": seq, "new_mac": mac})
            return records
        # Core statements, not the unit of work: this runs in every audited request.
        await session.execute(insert(_RECORDS), rows)
        if head is None:  # before migration 0009 (it creates the row)
            await session.execute(insert(_HEADS).values(id=1, seq=seq, mac=mac))
        else:
            await session.execute(_MOVE_HEAD, {"new_seq": seq, "new_mac": mac})
        return records

    async def verify(self, session: AsyncSession) -> VerifyReport:
        prev, expected_seq, count = GENESIS, 1, 0
        rows = await session.stream_scalars(select(AuditRecord).order_by(AuditRecord.seq))
        async for record in rows:
            count += 1
            if record.seq != expected_seq:
                return VerifyReport(
                    records=count,
                    first_bad_seq=record.seq,
                    reason=f"expected record {expected_seq} here: records were deleted or inserted",
                )
            entry = AuditEntry(
                action=record.action,
                actor_id=record.actor_id,
                organisation_id=record.organisation_id,
                charger_id=record.charger_id,
                subject_id=record.subject_id,
                basis=record.basis,
                request_id=record.request_id,
            )
            good = self._mac(prev, _canonical(record.seq, record.at, entry, record.details))
            if record.prev_mac != prev:
                return VerifyReport(
                    records=count,
                    first_bad_seq=record.seq,
                    reason="does not follow the previous record (deleted, inserted or reordered)",
                )
            if not hmac.compare_digest(good, record.mac):
                return VerifyReport(
                    records=count, first_bad_seq=record.seq, reason="contents were altered"
                )
            prev, expected_seq = record.mac, expected_seq + 1
        head = await session.get(AuditHead, 1)
        if head is not None and (head.seq != expected_seq - 1 or head.mac != prev):
            return VerifyReport(
                records=count,
                first_bad_seq=expected_seq if head.seq >= expected_seq else head.seq,
                reason="the log ends before its recorded head: records were removed at the end",
            )
        return VerifyReport(records=count, first_bad_seq=None, reason=None)
