"""Anchors the audit chain outside the database (issue 11).

The chain names the first bad record after any edit, deletion, insertion or reordering, but
it cannot tell that records were cut from its *end* together with the head row. A
checkpoint closes that gap: one JSON line ``{"chain", "seq", "head", "at", "sig"}`` appended
to a file outside the data directory (``EVACCESS_AUDIT_CHECKPOINT_FILE``). ``sig`` is
HMAC-SHA256 under a key derived from the audit key for this purpose only, over the other
fields; ``chain`` names the audit key (a fingerprint, not the key), so one file can hold
the checkpoints of several servers and each reads only its own.

When more than lane 1 is in use (PostgreSQL, ``audit.LANES``) the line also holds
``"lanes": [[lane, seq, mac], ...]``, each lane's head, under the same signature; ``seq`` is
then the highest record number and ``head`` a SHA-256 over the lanes' heads.

``check`` compares the database with the latest checkpoint of this chain: a lane that ends
before its checkpointed record, or holds a different record there, fails; so does any line
of this chain whose signature does not verify. The heads are read as committed, and a lane's
records only grow, so appends running meanwhile never make a checkpoint disagree.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from evaccess.domain.clock import Clock
from evaccess.domain.errors import AuditChainBroken, ConfigurationError
from evaccess.server.db.models import AuditHead, AuditRecord
from evaccess.server.keys import KeyProvider

GENESIS = bytes(32)
_PURPOSE = b"evaccess audit checkpoint v1"
_CHAIN_ID = b"chain id"
_FIELDS = ("chain", "seq", "head", "at", "sig")


@dataclass(frozen=True, kw_only=True, slots=True)
class Head:
    """The log's head: the last record's number and the digest of the lanes' heads (with one
    lane in use, as on SQLite, that lane's last mac)."""

    seq: int
    digest: bytes


LaneHead = tuple[int, int, bytes]
"""(lane, seq of its last record, that record's mac)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Checkpoint:
    seq: int
    head: bytes
    at: datetime
    lanes: tuple[LaneHead, ...]
    """The heads of the lanes in use then (one line of the file holds them when there are
    several; a line without them was written with only lane 1 in use)."""


async def read_lanes(session: AsyncSession) -> tuple[LaneHead, ...]:
    """The heads of the lanes in use."""
    rows = await session.execute(
        select(AuditHead.id, AuditHead.seq, AuditHead.mac)
        .where(AuditHead.seq > 0)
        .order_by(AuditHead.id)
    )
    return tuple((lane, seq, mac) for lane, seq, mac in rows)


def _digest(lanes: tuple[LaneHead, ...]) -> Head:
    if not lanes:
        return Head(seq=0, digest=GENESIS)
    if len(lanes) == 1 and lanes[0][0] == 1:
        return Head(seq=lanes[0][1], digest=lanes[0][2])
    listed = [[lane, seq, mac.hex()] for lane, seq, mac in lanes]
    digest = hashlib.sha256(json.dumps(listed, separators=(",", ":")).encode()).digest()
    return Head(seq=max(seq for _, seq, _ in lanes), digest=digest)


async def read_head(session: AsyncSession) -> Head:
    return _digest(await read_lanes(session))


def _signed_fields(chain: str, seq: int, head: str, at: str, lanes: list[Any] | None) -> bytes:
    fields: list[Any] = [chain, seq, head, at]
    if lanes is not None:
        fields.append(lanes)
    return json.dumps(fields, separators=(",", ":")).encode()


def _lanes_field(value: object) -> list[Any] | None:
    """The ``lanes`` field of a line: ``[[lane, seq, mac hex], ...]``, or None when absent."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(item, list)
        and len(item) == 3
        and isinstance(item[0], int)
        and isinstance(item[1], int)
        and isinstance(item[2], str)
        for item in value
    ):
        raise TypeError
    return value


class AuditAnchor:
    def __init__(self, path: Path, keys: KeyProvider, clock: Clock) -> None:
        self.path = path
        self._keys = keys
        self._clock = clock

    def _key(self) -> bytes:
        return hmac.new(self._keys.load().audit, _PURPOSE, hashlib.sha256).digest()

    def _chain(self, key: bytes) -> str:
        return hmac.new(key, _CHAIN_ID, hashlib.sha256).hexdigest()[:16]

    def latest(self) -> Checkpoint | None:
        """This chain's last checkpoint, or None; ``AuditChainBroken`` if the file was
        altered (a line that is no checkpoint, or one of ours with a bad signature)."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._unusable(exc) from None
        key = self._key()
        chain = self._chain(key)
        found: Checkpoint | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"audit checkpoint file {self.path} line {number}"
            try:
                data = json.loads(line)
                chain_, seq, digest, at, sig = (data[k] for k in _FIELDS)
                if not isinstance(seq, int) or not all(
                    isinstance(v, str) for v in (chain_, digest, at, sig)
                ):
                    raise TypeError
                listed = _lanes_field(data.get("lanes"))
                head = bytes.fromhex(digest)
                lanes = (
                    ((1, seq, head),)
                    if listed is None
                    else tuple((lane, n, bytes.fromhex(mac)) for lane, n, mac in listed)
                )
                entry = Checkpoint(seq=seq, head=head, at=datetime.fromisoformat(at), lanes=lanes)
                signature = bytes.fromhex(sig)
            except (ValueError, KeyError, TypeError):
                raise AuditChainBroken(f"{where} is not a checkpoint") from None
            if chain_ != chain:
                continue  # another server's chain
            signed = _signed_fields(chain, seq, digest, at, listed)
            good = hmac.new(key, signed, "sha256").digest()
            if not hmac.compare_digest(good, signature):
                raise AuditChainBroken(f"{where}: bad signature (the checkpoint was altered)")
            found = entry
        return found

    async def check(self, session: AsyncSession) -> Checkpoint | None:
        """Compare the log with the latest checkpoint (call after the chain verified)."""
        checkpoint = self.latest()
        if checkpoint is None:
            return None
        now = {lane: seq for lane, seq, _ in await read_lanes(session)}
        when = checkpoint.at.isoformat(timespec="seconds")
        for lane, seq, mac in checkpoint.lanes:
            log = "the audit log" if lane == 1 else f"audit lane {lane}"
            if now.get(lane, 0) < seq:
                raise AuditChainBroken(
                    f"{log} ends at record {now.get(lane, 0)}, before its checkpoint at record "
                    f"{seq} ({when}): records were removed at the end"
                )
            there = await session.scalar(
                select(AuditRecord.mac).where(AuditRecord.seq == seq, AuditRecord.lane == lane)
            )
            if there is None or not hmac.compare_digest(there, mac):
                raise AuditChainBroken(
                    f"audit record {seq} differs from the checkpoint of {when}: "
                    "the log was rewritten from there on"
                )
        return checkpoint

    async def write(self, session: AsyncSession) -> Checkpoint:
        """Append a checkpoint of the lanes' heads; refuses when the log already disagrees
        with the previous checkpoint."""
        await self.check(session)
        lanes = await read_lanes(session)
        head = _digest(lanes)
        checkpoint = Checkpoint(seq=head.seq, head=head.digest, at=self._clock.now(), lanes=lanes)
        key = self._key()
        chain = self._chain(key)
        digest, at = checkpoint.head.hex(), checkpoint.at.isoformat()
        listed = (
            None
            if lanes == ((1, head.seq, head.digest),) or not lanes
            else [[lane, seq, mac.hex()] for lane, seq, mac in lanes]
        )
        signature = hmac.new(key, _signed_fields(chain, head.seq, digest, at, listed), "sha256")
        fields: dict[str, Any] = {"chain": chain, "seq": head.seq, "head": digest, "at": at}
        if listed is not None:
            fields["lanes"] = listed
        line = json.dumps(fields | {"sig": signature.hexdigest()})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise self._unusable(exc) from None
        return checkpoint

    def _unusable(self, exc: OSError) -> ConfigurationError:
        return ConfigurationError(
            f"audit checkpoint file {self.path}: {exc.strerror or type(exc).__name__} "
            "(EVACCESS_AUDIT_CHECKPOINT_FILE)"
        )
