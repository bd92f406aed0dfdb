"""``evaccess app claim ...`` and ``evaccess app support ...`` against the real REST API
in-process: a new occupant files a claim with the purchase agreement, the owner sees it and
may object, two support agents approve, and the errors a person can cause are one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evaccess.app import claims as claims_cli
from evaccess.app import cli as app_cli
from evaccess.domain.access import StaffRole
from evaccess.domain.claim import OBJECTION_WINDOW
from evaccess.server.context import Context
from evaccess.server.services import accounts, claims
from tests.app.test_access_commands import WALLBOX, app_env, make_app
from tests.conftest import ManualClock
from tests.e2e.conftest import one_line_error
from tests.server.support import PASSWORD, build_world

__all__ = ["app_env"]  # the fixture, shared

PDF = b"%PDF-1.4\n%%EOF\n"


async def test_claim_file_list_object_and_the_support_queue(
    app_env: Any, ctx: Context, clock: ManualClock, tmp_path: Path
) -> None:
    world = await build_world(ctx)
    for name in ("agent_a", "agent_b"):
        world.users[name] = await accounts.create_user(ctx, f"{name}@support.example", PASSWORD)
        await accounts.set_staff_role(ctx, f"{name}@support.example", StaffRole.SUPPORT)
    app = await make_app(app_env, world)
    app.monkeypatch.setattr(claims_cli, "ApiClient", app_cli.ApiClient)  # the bridged client
    agreement = tmp_path / "agreement.pdf"
    agreement.write_bytes(PDF)
    not_a_pdf = tmp_path / "agreement.txt"
    not_a_pdf.write_text("I bought it, honest")
    forged = tmp_path / "forged.pdf"
    forged.write_text("I bought it, honest")
    claim_args = ("claim", "file", WALLBOX, "--address", "12 Harbour Lane", "--installer", "Volt")

    await app.login("stranger")
    assert ".pdf, .png or .jpg" in one_line_error(
        await app(*claim_args, "--document", str(not_a_pdf)), 2
    )
    assert "PDF, PNG or JPEG" in one_line_error(
        await app(*claim_args, "--document", str(forged)), 2
    )
    assert "cannot read" in one_line_error(
        await app(*claim_args, "--document", str(tmp_path / "missing.pdf")), 2
    )
    filed = await app.ok(*claim_args, "--document", str(agreement))
    assert "may object until" in filed.stdout
    [claim] = await app.json("claim", "list")
    assert (claim["serial"], claim["role"], claim["state"]) == (WALLBOX, "claimant", "filed")
    assert "only support agents" in one_line_error(await app("support", "queue"), 4)

    await app.login("owner")
    listed = await app.ok("claim", "list")
    assert "evaccess app claim object" in listed.stdout

    await app.login("agent_a")
    queue = await app.ok("support", "queue")
    assert "stranger@example.com" in queue.stdout and WALLBOX in queue.stdout
    saved = tmp_path / "saved.pdf"
    shown = await app.ok("support", "show", claim["id"], "--document-out", str(saved))
    assert "12 Harbour Lane" in shown.stdout and saved.read_bytes() == PDF
    assert (
        "a second, different support agent"
        in (await app.ok("support", "approve", claim["id"])).stdout
    )
    assert "second, different support agent" in one_line_error(
        await app("support", "approve", claim["id"]), 4
    )
    await app.login("agent_b")
    assert "window closes" in (await app.ok("support", "approve", claim["id"])).stdout

    await app.login("owner")
    stopped = await app.ok("claim", "object", claim["id"])
    assert "you keep the charger" in stopped.stdout
    clock.advance(OBJECTION_WINDOW.total_seconds())
    assert await claims.complete_due(ctx) == 0
    await app.login("stranger")
    [after] = await app.json("claim", "list")
    assert after["state"] == "objected"
    assert "the owner objected to it" in one_line_error(
        await app("claim", "withdraw", claim["id"]), 6
    )
    assert "no such claim" in one_line_error(await app("claim", "object", "nope"), 5)
