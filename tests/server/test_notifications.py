"""The notifications outbox: rows written in the caller's transaction, delivered by the log
adapter or by SMTP to a real local SMTP server (aiosmtpd), retried after failures."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from aiosmtpd.controller import Controller

from evaccess.domain.errors import ConfigurationError, InvalidInput
from evaccess.server.db.models import Notification
from evaccess.server.mail import LogDelivery, SmtpDelivery, SmtpTarget
from evaccess.server.services import notifications
from tests.server.support import build_world


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], str]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode())
        )
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


@pytest.fixture
async def world(ctx):
    return await build_world(ctx)


async def _queue(ctx, recipient, subject="Your charger", body="Someone looked at it."):
    async with ctx.db.transaction() as session:
        row = await notifications.notify(
            session, recipient, "test", subject, body, now=ctx.clock.now()
        )
    return row.id


async def test_smtp_delivers_to_a_real_server(ctx, world, smtp_server):
    inbox, port = smtp_server
    ctx.delivery = SmtpDelivery(SmtpTarget.parse(f"smtp://127.0.0.1:{port}"), "evaccess@test")
    await _queue(ctx, world.users["owner"].id)
    await _queue(ctx, "Stranger@Example.com")
    assert await notifications.deliver_due(ctx) == 2
    recipients = sorted(r for _, rcpts, _ in inbox.messages for r in rcpts)
    assert recipients == sorted([world.users["owner"].email, "stranger@example.com"])
    assert all("Someone looked at it." in content for _, _, content in inbox.messages)
    assert await notifications.deliver_due(ctx) == 0  # sent once


async def test_the_background_task_delivers_without_being_asked(ctx, world, smtp_server):
    inbox, port = smtp_server
    ctx.delivery = SmtpDelivery(SmtpTarget.parse(f"smtp://127.0.0.1:{port}"), "evaccess@test")
    task = asyncio.create_task(notifications.run_delivery(ctx, interval_s=0.01))
    try:
        await _queue(ctx, world.users["owner"].id)
        async with asyncio.timeout(10):
            while not inbox.messages:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert inbox.messages[0][1] == [world.users["owner"].email]


async def test_a_failed_delivery_is_retried_with_back_off(ctx, world, smtp_server, clock):
    inbox, port = smtp_server
    dead = SmtpDelivery(SmtpTarget.parse(f"smtp://127.0.0.1:{_free_port()}"), "e@test")
    row_id = await _queue(ctx, world.users["owner"].id)
    assert await notifications.deliver_due(ctx, dead) == 0
    async with ctx.db.read() as session:
        row = await session.get(Notification, row_id)
    assert row.attempts == 1
    assert row.last_error == "ConnectionRefusedError"
    live = SmtpDelivery(SmtpTarget.parse(f"smtp://127.0.0.1:{port}"), "e@test")
    assert await notifications.deliver_due(ctx, live) == 0  # not due yet
    clock.advance(31)
    assert await notifications.deliver_due(ctx, live) == 1
    assert len(inbox.messages) == 1


async def test_log_adapter_logs_recipient_and_kind_not_content(ctx, world, caplog):
    caplog.set_level(logging.INFO, logger="evaccess.server.mail")
    await _queue(ctx, world.users["owner"].id, body="Quite private words.")
    assert await notifications.deliver_due(ctx, LogDelivery()) == 1
    text = caplog.text
    assert world.users["owner"].email in text
    assert "test" in text
    assert "private" not in text


@pytest.mark.parametrize(
    "body",
    ["Your PIN is 482913", "open https://x.example/claim?token=abc", "code ABCDEFGHIJKLMNOPQRST"],
)
async def test_a_notification_never_carries_a_secret(ctx, world, body):
    with pytest.raises(InvalidInput, match="may not carry"):
        await _queue(ctx, world.users["owner"].id, body=body)


async def test_a_serial_number_is_not_mistaken_for_a_pin(ctx, world):
    await _queue(ctx, world.users["owner"].id, body="Charger WB-000123 was locked.")


async def test_an_all_digit_serial_named_by_the_caller_is_no_secret(ctx, world):
    async with ctx.db.transaction() as session:
        await notifications.notify(
            session,
            world.users["owner"].id,
            "test",
            "Charger 12345678 was locked",
            "Your charger 12345678 was locked.",
            known=("12345678",),
        )
        with pytest.raises(InvalidInput, match="may not carry"):
            await notifications.notify(
                session,
                world.users["owner"].id,
                "test",
                "s",
                "12345678 and PIN 482913",
                known=("12345678",),
            )


def test_smtp_url_forms():
    target = SmtpTarget.parse("smtp://me%40x:p%3Ass@mail.example:2525?starttls=true")
    assert (target.host, target.port, target.user, target.password, target.starttls) == (
        "mail.example",
        2525,
        "me@x",
        "p:ss",
        True,
    )
    assert SmtpTarget.parse("smtp://localhost").port == 25
    with pytest.raises(ConfigurationError, match="EVACCESS_SMTP_URL"):
        SmtpTarget.parse("http://localhost")


async def test_a_lockout_reported_by_the_charger_reaches_its_owner(ctx, world, smtp_server):
    from evaccess.protocol.ocpp_components import SecurityEventType
    from evaccess.server.services.ocpp_backend import DbOcppBackend

    inbox, port = smtp_server
    ctx.delivery = SmtpDelivery(SmtpTarget.parse(f"smtp://127.0.0.1:{port}"), "evaccess@test")
    backend = DbOcppBackend(ctx)
    serial = world.chargers["wallbox"].serial
    await backend.security_event(
        serial, event_type=SecurityEventType.BLUETOOTH_PIN_LOCKOUT, at=ctx.clock.now(),
        tech_info="5 failures",
    )  # fmt: skip
    await backend.security_event(
        serial, event_type="FirmwareUpdated", at=ctx.clock.now(), tech_info=None
    )
    assert await notifications.deliver_due(ctx) == 1
    ((_, rcpts, content),) = inbox.messages
    assert rcpts == [world.users["owner"].email]
    assert "Bluetooth PIN entry" in content
