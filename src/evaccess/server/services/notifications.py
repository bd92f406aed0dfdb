"""The notifications outbox: ``notify`` writes a row in the caller's transaction (so a
notification exists exactly when what it reports was committed); the server's background
task (``run_delivery``) hands due rows to the delivery port and retries failures with
back-off.

A notification tells a person that something happened and where to look (the app); it never
carries a PIN, a code, a token or a link that grants access by itself. ``notify`` refuses a
body or subject that looks like one (``_SECRET_LIKE``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from evaccess.domain.errors import InvalidInput, NotFound
from evaccess.server.context import Context
from evaccess.server.db.models import Charger, Notification, Ownership, User
from evaccess.server.mail import DeliveryFailed, DeliveryPort, Message

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
FIRST_RETRY_S = 30.0
MAX_RETRY_S = 3600.0
_SECRET_LIKE = re.compile(r"(?<![\w-])\d{4,8}(?![\w-])|https?://\S*[?#]\S*=|\b[A-Z2-7]{20}\b")
"""A PIN or keypad code (4-8 digits standing alone), a URL with parameters (a token in a
link), a commissioning code. Serial numbers such as ``WB-000123`` do not match."""


class Kind:
    """Kinds of notification (free text for others; these are the ones sent here)."""

    PIN_REVEALED = "bluetooth_pin.revealed"
    LOCKOUT = "lockout"
    COMMISSIONED = "charger.commissioned"


def _check_content(*texts: str, known: tuple[str, ...] = ()) -> None:
    """``known``: values the caller put in that are no secret (a charger's serial, which
    may be all digits), left out of the check."""
    for text in texts:
        for value in known:
            text = text.replace(value, " ")
        if _SECRET_LIKE.search(text):
            raise InvalidInput(
                "a notification may not carry a PIN, a code or an access link", code="secret"
            )


async def notify(
    session: AsyncSession,
    recipient: str,
    kind: str,
    subject: str,
    body: str,
    *,
    now: datetime | None = None,
    known: tuple[str, ...] = (),
) -> Notification:
    """Queue a notification to ``recipient`` (a user id, or an email address) in the
    caller's transaction. ``now``: the caller's clock (``ctx.clock.now()``); without it the
    database's clock stamps the row and it is due at once."""
    _check_content(subject, body, known=known)
    user_id: str | None = None
    if "@" in recipient:
        email = recipient.strip().lower()
        user_id = await session.scalar(select(User.id).where(User.email == email))
    else:
        user = await session.get(User, recipient)
        if user is None:
            raise NotFound("no such user to notify")
        user_id, email = user.id, user.email
    row = Notification(
        user_id=user_id,
        email=email,
        kind=kind,
        subject=subject[:200],
        body=body,
        attempts=0,
    )
    if now is not None:
        row.created_at = now
        row.next_attempt_at = now
    session.add(row)
    await session.flush()
    return row


async def notify_owner(
    session: AsyncSession,
    charger: Charger,
    kind: str,
    subject: str,
    body: str,
    *,
    now: datetime | None = None,
    unless: str | None = None,
) -> Notification | None:
    """``notify`` the charger's current owner (nobody when it has none, or when the owner
    is ``unless``: the person who did it)."""
    owner_id = await session.scalar(
        select(Ownership.owner_id).where(
            Ownership.charger_id == charger.id, Ownership.ended_at.is_(None)
        )
    )
    if owner_id is None or owner_id == unless:
        return None
    return await notify(session, owner_id, kind, subject, body, now=now, known=(charger.serial,))


LOCKOUT_EVENTS = {
    "evaccess.KeypadLockout": "the keypad",
    "evaccess.BluetoothPinLockout": "Bluetooth PIN entry",
    "evaccess.BluetoothPinPairingDisabled": "Bluetooth pairing",
}
"""Security events that mean "someone kept guessing": the owner is told."""


async def tell_owner_of_lockout(
    session: AsyncSession, charger: Charger, event_type: str, *, now: datetime
) -> None:
    what = LOCKOUT_EVENTS.get(event_type)
    if what is None:
        return
    await notify_owner(
        session,
        charger,
        Kind.LOCKOUT,
        f"Charger {charger.serial}: {what} locked after failed attempts",
        f"Repeated wrong entries locked {what} of your charger {charger.serial}. The app "
        "shows the charger's security events; nothing else is needed if this was you.",
        now=now,
    )


def retry_delay(attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: 30 s, doubling, at most an hour."""
    return float(min(FIRST_RETRY_S * 2.0 ** (attempts - 1), MAX_RETRY_S))


async def deliver_due(ctx: Context, port: DeliveryPort | None = None, *, limit: int = 50) -> int:
    """One pass over the outbox: send what is due, oldest first. Returns how many were sent."""
    port = port or ctx.delivery
    now = ctx.clock.now()
    async with ctx.db.read() as session:
        due = (
            await session.scalars(
                select(Notification)
                .where(
                    Notification.sent_at.is_(None),
                    Notification.failed_at.is_(None),
                    or_(
                        Notification.next_attempt_at.is_(None),
                        Notification.next_attempt_at <= now,
                    ),
                )
                .order_by(Notification.created_at, Notification.id)
                .limit(limit)
            )
        ).all()
    sent = 0
    for row in due:
        message = Message(to=row.email, kind=row.kind, subject=row.subject, body=row.body)
        error: str | None = None
        try:
            await port.send(message)
        except DeliveryFailed as exc:
            error = str(exc)[:200] or "DeliveryFailed"
        async with ctx.db.transaction() as session:
            fresh = await session.get(Notification, row.id)
            if fresh is None or fresh.sent_at is not None:
                continue
            fresh.attempts += 1
            if error is None:
                fresh.sent_at = ctx.clock.now()
                fresh.last_error = None
                sent += 1
            else:
                fresh.last_error = error
                if fresh.attempts >= MAX_ATTEMPTS:
                    fresh.failed_at = ctx.clock.now()
                    log.warning("notification %s to %s given up: %s", row.kind, row.email, error)
                else:
                    fresh.next_attempt_at = ctx.clock.now() + timedelta(
                        seconds=retry_delay(fresh.attempts)
                    )
                    log.info(
                        "notification %s to %s will be retried: %s", row.kind, row.email, error
                    )
    return sent


async def run_delivery(ctx: Context, *, interval_s: float = 2.0) -> None:
    """The server's background task: deliver due notifications every ``interval_s``
    until cancelled (an error in one pass is logged; the next pass tries again)."""
    while True:
        try:
            await deliver_due(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a database hiccup must not end the task
            log.warning("notification delivery pass failed: %s", type(exc).__name__)
        await asyncio.sleep(interval_s)
