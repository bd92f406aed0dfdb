"""Anchors the audit chain outside the database (issue 11).

The chain names the first bad record after any edit, deletion, insertion or reordering, but
it cannot tell that records were cut from its *end* together with the head row. A
checkpoint closes that gap: one JSON line ``{"chain", "seq", "head", "at", "sig"}`` appended
to a file outside the data directory (``EVACCESS_AUDIT_CHECKPOINT_FILE``). ``sig`` is
HMAC-SHA256 under a key derived from the audit key for this purpose only, over the other
fields; ``chain`` names the audit key (a fingerprint, not the key), so one file can hold
the checkpoints of several servers and each reads only its own.

``check`` compares the database with the latest checkpoint of this chain: a log that ends
before the checkpointed record, or holds a different record there, fails; so does any line
of this chain whose signature does not verify.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

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
    """The head row: the last sequence number and its record's mac (the chain's digest)."""

    seq: int
    digest: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class Checkpoint:
    seq: int
    head: bytes
    at: datetime


async def read_head(session: AsyncSession) -> Head:
    head = await session.get(AuditHead, 1)
    if head is None:
        return Head(seq=0, digest=GENESIS)
    return Head(seq=head.seq, digest=head.mac)


def _signed_fields(chain: str, seq: int, head: str, at: str) -> bytes:
    return json.dumps([chain, seq, head, at], separators=(",", ":")).encode()


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
                entry = Checkpoint(
                    seq=seq, head=bytes.fromhex(digest), at=datetime.fromisoformat(at)
                )
                signature = bytes.fromhex(sig)
            except (ValueError, KeyError, TypeError):
                raise AuditChainBroken(f"{where} is not a checkpoint") from None
            if chain_ != chain:
                continue  # another server's chain
            good = hmac.new(key, _signed_fields(chain, seq, digest, at), "sha256").digest()
            if not hmac.compare_digest(good, signature):
                raise AuditChainBroken(f"{where}: bad signature (the checkpoint was altered)")
            found = entry
        return found

    async def check(self, session: AsyncSession) -> Checkpoint | None:
        """Compare the log with the latest checkpoint (call after the chain verified)."""
        checkpoint = self.latest()
        if checkpoint is None:
            return None
        head = await read_head(session)
        when = checkpoint.at.isoformat(timespec="seconds")
        if head.seq < checkpoint.seq:
            raise AuditChainBroken(
                f"the audit log ends at record {head.seq}, before its checkpoint at record "
                f"{checkpoint.seq} ({when}): records were removed at the end"
            )
        mac = await session.scalar(select(AuditRecord.mac).where(AuditRecord.seq == checkpoint.seq))
        if mac is None or not hmac.compare_digest(mac, checkpoint.head):
            raise AuditChainBroken(
                f"audit record {checkpoint.seq} differs from the checkpoint of {when}: "
                "the log was rewritten from there on"
            )
        return checkpoint

    async def write(self, session: AsyncSession) -> Checkpoint:
        """Append a checkpoint of the current head; refuses when the log already disagrees
        with the previous checkpoint."""
        await self.check(session)
        head = await read_head(session)
        checkpoint = Checkpoint(seq=head.seq, head=head.digest, at=self._clock.now())
        key = self._key()
        chain = self._chain(key)
        digest, at = checkpoint.head.hex(), checkpoint.at.isoformat()
        signature = hmac.new(key, _signed_fields(chain, head.seq, digest, at), "sha256")
        line = json.dumps(
            {
                "chain": chain,
                "seq": head.seq,
                "head": digest,
                "at": at,
                "sig": signature.hexdigest(),
            }
        )
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
