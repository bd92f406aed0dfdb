"""Key rotation: re-encrypt every sealed secret under the newest vault key version, in small
batches, while the server runs (it re-reads the key directory when it changes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute

from evaccess.server.audit import AuditEntry
from evaccess.server.context import Context
from evaccess.server.db.models import (
    BluetoothPin,
    Charger,
    KeypadPin,
    LocalListEntry,
    Organisation,
    OutboxCommand,
)
from evaccess.server.services import local_lists, outbox
from evaccess.server.vault import BLUETOOTH_PIN, KEYPAD_PIN, Sealed

BATCH = 200


@dataclass(frozen=True, kw_only=True, slots=True)
class Slot:
    """One sealed column pair of a table, and how its subject is named."""

    model: type[BluetoothPin] | type[KeypadPin] | type[LocalListEntry]
    ciphertext: InstrumentedAttribute[bytes | None] | InstrumentedAttribute[bytes]
    version: InstrumentedAttribute[int | None] | InstrumentedAttribute[int]
    purpose: str
    subject: Callable[[object, dict[str, str]], str]


SLOTS = (
    Slot(model=BluetoothPin, ciphertext=BluetoothPin.active_ciphertext, version=BluetoothPin.active_key_version,
         purpose=BLUETOOTH_PIN, subject=lambda row, _roots: row.charger_id),  # type: ignore[attr-defined]
    Slot(model=BluetoothPin, ciphertext=BluetoothPin.pending_ciphertext, version=BluetoothPin.pending_key_version,
         purpose=BLUETOOTH_PIN, subject=lambda row, _roots: row.charger_id),  # type: ignore[attr-defined]
    Slot(model=KeypadPin, ciphertext=KeypadPin.sealed_pin, version=KeypadPin.sealed_key_version,
         purpose=KEYPAD_PIN,
         subject=lambda row, _roots: local_lists.keypad_subject(row.pin_space_id, row.user_id)),  # type: ignore[attr-defined]
    Slot(model=LocalListEntry, ciphertext=LocalListEntry.sealed_pin, version=LocalListEntry.sealed_key_version,
         purpose=KEYPAD_PIN,
         subject=lambda row, roots: local_lists.keypad_subject(roots[row.charger_id], row.user_id)),  # type: ignore[attr-defined]
)  # fmt: skip


async def rotate_keys(ctx: Context) -> int:
    """Re-encrypt what is sealed under an older key version; returns how many values."""
    version = ctx.vault.current_version()
    done = 0
    for slot in SLOTS:
        while True:
            async with ctx.db.transaction() as session:
                roots = dict(
                    (
                        await session.execute(
                            select(Charger.id, Organisation.root_id).join(
                                Organisation, Organisation.id == Charger.organisation_id
                            )
                        )
                    ).all()
                ) if slot.model is LocalListEntry else {}  # fmt: skip
                rows = (
                    await session.scalars(
                        select(slot.model)
                        .where(slot.version < version, slot.ciphertext.is_not(None))
                        .limit(BATCH)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
                if not rows:
                    break
                for row in rows:
                    subject = slot.subject(row, roots)
                    old = Sealed(
                        ciphertext=getattr(row, slot.ciphertext.key),
                        key_version=getattr(row, slot.version.key),
                    )
                    fresh = ctx.vault.seal(
                        subject,
                        ctx.vault.open(subject, old, purpose=slot.purpose),
                        purpose=slot.purpose,
                    )
                    setattr(row, slot.ciphertext.key, fresh.ciphertext)
                    setattr(row, slot.version.key, fresh.key_version)
                done += len(rows)
                await ctx.audit.append(
                    session,
                    AuditEntry(
                        action="keys.rotated",
                        details={
                            "table": slot.model.__tablename__,
                            "values": len(rows),
                            "key_version": version,
                        },
                    ),
                )
    await _requeue_local_lists(ctx)
    return done


async def _requeue_local_lists(ctx: Context) -> None:
    """Undelivered list updates carry codes sealed under the old key: compute them afresh."""
    async with ctx.db.transaction() as session:
        chargers = (
            await session.scalars(
                select(Charger).where(
                    Charger.id.in_(
                        select(OutboxCommand.charger_id).where(
                            OutboxCommand.kind == outbox.CommandKind.SEND_LOCAL_LIST,
                            OutboxCommand.completed_at.is_(None),
                        )
                    )
                )
            )
        ).all()
        for charger in chargers:
            await local_lists.sync(session, ctx, charger)


__all__ = ["rotate_keys"]
