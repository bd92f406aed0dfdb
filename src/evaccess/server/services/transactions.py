"""Charging sessions (OCPP transactions) as the people who may see them see them: a
charger's owner and its organisation's admins see all of that charger's, anyone else who
sees the charger only their own. The token that started a session is shown by its type
only; its value (a keypad code) is never stored, so it cannot be shown."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, or_, select

from evaccess.domain.access import Basis, ChargerAction, allowed_bases
from evaccess.server.context import Context
from evaccess.server.db.models import Charger, Transaction, User
from evaccess.server.services import ownership
from evaccess.server.services.relations import Actor, charger_for

DEFAULT_LIMIT = 200


@dataclass(frozen=True, kw_only=True, slots=True)
class TransactionView:
    id: str
    transaction_id: str
    """The charger's own id for the session."""
    charger_serial: str
    user_email: str | None
    """``None``: the token matched nobody (or was not a keypad PIN)."""
    started_at: datetime
    stopped_at: datetime | None
    meter_wh: float | None
    """The last meter reading (the register, not the session's share)."""
    energy_wh: float | None
    """Energy delivered in this session, when the charger reported a reading before the end."""
    token_type: str | None
    stop_reason: str | None
    offline: bool


def _query() -> Select[Transaction, str, str]:  # email is None after the outer join
    return (
        select(Transaction, Charger.serial, User.email)
        .join(Charger, Charger.id == Transaction.charger_id)
        .outerjoin(User, User.id == Transaction.user_id)
        .order_by(Transaction.started_at.desc(), Transaction.id)
    )


def _view(tx: Transaction, serial: str, email: str | None) -> TransactionView:
    energy = (
        None
        if tx.meter_wh is None or tx.meter_start_wh is None
        else max(tx.meter_wh - tx.meter_start_wh, 0.0)
    )
    return TransactionView(
        id=tx.id,
        transaction_id=tx.transaction_id,
        charger_serial=serial,
        user_email=email,
        started_at=tx.started_at,
        stopped_at=tx.ended_at,
        meter_wh=tx.meter_wh,
        energy_wh=energy,
        token_type=tx.token_type,
        stop_reason=tx.stop_reason,
        offline=tx.offline,
    )


async def for_charger(
    ctx: Context, actor: Actor, charger_id: str, *, limit: int = DEFAULT_LIMIT
) -> list[TransactionView]:
    """A charger's sessions, newest first: all of them for its owner and admins, otherwise
    the caller's own. A charger the caller cannot see does not exist."""
    async with ctx.db.read() as session:
        access = await charger_for(session, actor, charger_id, ChargerAction.VIEW, ctx.clock)
        charger = access.charger
        query = _query().where(Transaction.charger_id == charger.id)
        everyone = allowed_bases(ChargerAction.VIEW_ALL_TRANSACTIONS, access.bases)
        if not everyone:
            query = query.where(Transaction.user_id == actor.user_id)
        elif everyone == {Basis.OWNER}:
            # An owner sees the sessions of their own ownership, not those of the one before.
            owned = await ownership.current(session, charger.id)
            if owned is not None:
                query = query.where(
                    or_(
                        Transaction.started_at >= owned.started_at,
                        Transaction.user_id == actor.user_id,
                    )
                )
        rows = (await session.execute(query.limit(limit))).all()
    return [_view(tx, serial, email) for tx, serial, email in rows]


async def for_user(
    ctx: Context, actor: Actor, *, limit: int = DEFAULT_LIMIT
) -> list[TransactionView]:
    """The caller's own sessions at any charger, newest first."""
    async with ctx.db.read() as session:
        query = _query().where(Transaction.user_id == actor.user_id)
        rows = (await session.execute(query.limit(limit))).all()
    return [_view(tx, serial, email) for tx, serial, email in rows]
