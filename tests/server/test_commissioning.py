"""Commissioning by QR sticker through the REST API and the services: the scan makes the
account the owner and shows the PIN; reused, forged and expired codes are refused by name;
the sixth failed scan in a row is throttled; failures are audited; the packaging label only
for manufacturers of vendors that print the PIN."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select

from evaccess.domain.access import StaffRole
from evaccess.domain.errors import Conflict, NotFound, PermissionDenied, PolicyViolation
from evaccess.protocol import sticker
from evaccess.server.db.models import AuditRecord, CommissioningCode, Notification
from evaccess.server.services import accounts, commissioning, registration
from tests.server.support import build_world, client_for

ZAPTEC_PIN = "739104"


@pytest.fixture
async def world(ctx, canaries):
    world = await build_world(ctx)
    sa = world.actor("super_admin")
    stickers = {}
    for key, serial, vendor, model, firmware, pin in (
        ("new_wallbox", "WB-900009", "Wallbox", "Pulsar Max", "6.11.4", None),
        ("new_zaptec", "ZAP-900010", "Zaptec", "Go", "2.4.1", ZAPTEC_PIN),
    ):
        reg = await registration.register(
            ctx, sa, organisation_id=world.org.id, serial=serial, vendor=vendor, model=model,
            firmware=firmware, factory_pin=pin,
        )  # fmt: skip
        world.chargers[key] = reg.charger
        assert reg.sticker is not None
        stickers[key] = reg.sticker.payload
        canaries.add(sticker.parse(reg.sticker.payload).code)
    canaries.add(ZAPTEC_PIN)
    world.stickers = stickers
    return world


def forged(payload: str) -> str:
    parsed = sticker.parse(payload)
    flipped = ("B" if parsed.code[0] == "A" else "A") + parsed.code[1:]
    return sticker.StickerPayload(serial=parsed.serial, code=flipped).format()


async def scan(client, world, who, payload):
    return await client.post(
        "/api/commissioning/scan", json={"payload": payload}, headers=await world.headers(who)
    )


async def test_a_scan_makes_the_account_owner_and_shows_the_pin(ctx, world, canaries):
    async with client_for(ctx) as client:
        response = await scan(client, world, "stranger", world.stickers["new_zaptec"])
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["serial"] == "ZAP-900010"
        assert body["bluetooth_pin"]["pin"] == ZAPTEC_PIN
        assert body["bluetooth_pin"]["basis"] == "owner"
        assert response.headers["cache-control"] == "no-store"
        charger_id = world.chargers["new_zaptec"].id
        detail = await client.get(
            f"/api/chargers/{charger_id}", headers=await world.headers("stranger")
        )
        assert detail.status_code == 200
    async with ctx.db.read() as session:
        actions = (
            await session.scalars(
                select(AuditRecord.action).where(AuditRecord.charger_id == charger_id)
            )
        ).all()
        row = await session.get(CommissioningCode, charger_id)
    assert "charger.commissioned" in actions
    assert "bluetooth_pin.revealed" in actions
    assert row.used_at is not None


async def test_the_qr_alone_reveals_nothing(ctx, world):
    async with client_for(ctx) as client:
        response = await client.post(
            "/api/commissioning/scan", json={"payload": world.stickers["new_zaptec"]}
        )
    assert response.status_code == 401
    assert ZAPTEC_PIN not in response.text


async def test_a_used_code_is_void(ctx, world):
    async with client_for(ctx) as client:
        assert (
            await scan(client, world, "stranger", world.stickers["new_wallbox"])
        ).status_code == 200
        for who in ("stranger", "member"):
            again = await scan(client, world, who, world.stickers["new_wallbox"])
            assert again.status_code == 403
            assert again.json()["code"] == "commissioning_code_used"
            assert "has an owner" in again.json()["detail"]


async def test_a_forged_code_is_refused_without_echo(ctx, world):
    payload = forged(world.stickers["new_wallbox"])
    async with client_for(ctx) as client:
        response = await scan(client, world, "stranger", payload)
    assert response.status_code == 403
    assert response.json()["code"] == "commissioning_code_invalid"
    assert sticker.parse(payload).code not in response.text


async def test_an_expired_code_is_refused(ctx, world, clock):
    clock.advance(ctx.commissioning_code_ttl_s + 1)
    async with client_for(ctx) as client:
        response = await scan(client, world, "stranger", world.stickers["new_wallbox"])
    assert response.status_code == 403
    assert response.json()["code"] == "commissioning_code_expired"


async def test_the_sixth_failure_in_a_row_is_throttled_and_failures_are_audited(ctx, world, clock):
    payload = forged(world.stickers["new_wallbox"])
    async with client_for(ctx) as client:
        for _ in range(5):
            response = await scan(client, world, "stranger", payload)
            assert response.status_code == 403
        sixth = await scan(client, world, "stranger", world.stickers["new_wallbox"])
        assert sixth.status_code == 429
        assert sixth.json()["code"] == "commissioning_throttled"
        assert "24 h" in sixth.json()["detail"]
        # the charger is locked too: another account cannot go on guessing
        other = await scan(client, world, "member", world.stickers["new_wallbox"])
        assert other.status_code == 429
        # and 24 h later the right sticker works
        clock.advance(24 * 3600 + 1)
        assert (
            await scan(client, world, "member", world.stickers["new_wallbox"])
        ).status_code == 200
    async with ctx.db.read() as session:
        failures = (
            await session.scalars(
                select(AuditRecord).where(AuditRecord.action == commissioning.SCAN_FAILED)
            )
        ).all()
        told = (
            await session.scalars(
                select(Notification).where(Notification.user_id == world.users["stranger"].id)
            )
        ).all()
    assert len(failures) == 5
    assert [n.kind for n in told] == ["lockout"]


async def test_reissuing_voids_the_old_sticker_and_is_refused_once_owned(ctx, world):
    sa = world.actor("super_admin")
    old = world.stickers["new_wallbox"]
    new = await commissioning.issue(ctx, sa, "WB-900009")
    with pytest.raises(commissioning.ScanRefused, match="not valid"):
        await commissioning.scan(ctx, world.actor("stranger"), old)
    done = await commissioning.scan(ctx, world.actor("stranger"), new.payload)
    assert done.serial == "WB-900009"
    with pytest.raises(Conflict, match="has an owner"):
        await commissioning.issue(ctx, sa, "WB-900009")
    with pytest.raises(NotFound):  # an outsider is not told the organisation exists
        await commissioning.issue(ctx, world.actor("stranger"), "ZAP-900010")


async def test_packaging_label_only_for_manufacturers_of_vendors_that_print_it(ctx, world):
    plain = world.actor("super_admin")
    with pytest.raises(PermissionDenied, match="manufacturer staff role"):
        await commissioning.packaging_label(ctx, plain, "ZAP-900010")
    await accounts.set_staff_role(ctx, plain.email, StaffRole.MANUFACTURER)
    sa = replace(plain, staff_role=StaffRole.MANUFACTURER)
    with pytest.raises(PermissionDenied, match="manufacturer"):  # the role alone is not enough
        await commissioning.packaging_label(
            ctx, replace(world.actor("admin"), staff_role=StaffRole.MANUFACTURER), "ZAP-900010"
        )
    label = await commissioning.packaging_label(ctx, sa, "ZAP-900010")
    assert label.pin == ZAPTEC_PIN
    assert sticker.parse(label.payload).serial == "ZAP-900010"
    with pytest.raises(PolicyViolation, match="does not print"):
        await commissioning.packaging_label(ctx, sa, "WB-900009")
    with pytest.raises(PermissionDenied, match="manufacturer"):
        await commissioning.packaging_label(ctx, world.actor("admin"), "ZAP-900010")
    with pytest.raises(Conflict, match="has had an owner"):
        await commissioning.packaging_label(ctx, sa, "ZAP-200002")
    # the label's code is the charger's sticker code now
    done = await commissioning.scan(ctx, world.actor("stranger"), label.payload)
    assert done.pin is not None
    async with ctx.db.read() as session:
        records = (
            await session.scalars(
                select(AuditRecord).where(
                    AuditRecord.action == "bluetooth_pin.revealed",
                    AuditRecord.charger_id == world.chargers["new_zaptec"].id,
                )
            )
        ).all()
    assert {r.basis for r in records} == {"manufacturer", "owner"}


async def test_the_owner_is_told_when_someone_else_sees_the_pin(ctx, world, canaries):
    async with client_for(ctx) as client:
        response = await client.post(
            f"/api/chargers/{world.chargers['zaptec'].id}/bluetooth-pin/reveal",
            headers=await world.headers("service"),
        )
        assert response.status_code == 200
        canaries.add(response.json()["pin"])
    async with ctx.db.read() as session:
        told = (
            await session.scalars(
                select(Notification).where(Notification.user_id == world.users["owner"].id)
            )
        ).all()
    assert [n.kind for n in told] == ["bluetooth_pin.revealed"]
    assert "service@example.com" in told[0].body
    assert response.json()["pin"] not in told[0].body + told[0].subject


async def test_two_scans_at_once_make_exactly_one_owner(ctx, world):
    import asyncio

    results = await asyncio.gather(
        commissioning.scan(ctx, world.actor("stranger"), world.stickers["new_wallbox"]),
        commissioning.scan(ctx, world.actor("member"), world.stickers["new_wallbox"]),
        return_exceptions=True,
    )
    done = [r for r in results if isinstance(r, commissioning.Commissioned)]
    refused = [r for r in results if isinstance(r, commissioning.ScanRefused)]
    assert (len(done), len(refused)) == (1, 1), results
    assert refused[0].code == "commissioning_code_used"
