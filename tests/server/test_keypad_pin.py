"""Keypad PINs: storage, the taken-PIN oracle, generation, resolution and throttling."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError

from evaccess.domain.access import GrantKind, Role
from evaccess.domain.errors import LockedOut
from evaccess.server.db.models import AuditRecord, KeypadPin
from evaccess.server.services import accounts, keypad_pins, organisations
from tests.server.support import PASSWORD, build_world, client_for, share


@pytest.fixture
async def world(ctx):
    return await build_world(ctx)


def url(world, who: str | None = None) -> str:
    base = f"/api/organisations/{world.org.id}"
    return (
        f"{base}/keypad-pin" if who is None else f"{base}/members/{world.users[who].id}/keypad-pin"
    )


async def test_set_own_pin_stores_only_a_digest(ctx, world, canaries):
    canaries.add("5829")
    async with client_for(ctx) as client:
        response = await client.put(
            url(world), json={"pin": "5829"}, headers=await world.headers("member")
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"user_id": world.users["member"].id, "digits": 4}
        assert "5829" not in response.text
    async with ctx.db.read() as session:
        row = await session.scalar(select(KeypadPin))
    assert row.digest == ctx.keypad_hasher.digest(world.org.root_id, "5829")
    assert len(row.digest) == 32


@pytest.mark.parametrize("pin", ["0000", "1234", "1111", "1212", "4321", "2580", "1990"])
async def test_trivial_pins_rejected(ctx, world, pin):
    async with client_for(ctx) as client:
        response = await client.put(
            url(world), json={"pin": pin}, headers=await world.headers("member")
        )
        assert response.status_code == 422
        assert response.json()["code"] == "pin_rejected"
        assert pin not in response.text


async def test_taken_pin_answers_exactly_like_a_blocked_one_and_is_audited(ctx, world, canaries):
    canaries.add("5829")
    async with client_for(ctx) as client:
        await client.put(url(world), json={"pin": "5829"}, headers=await world.headers("owner"))
        member = await world.headers("member")
        taken = await client.put(url(world), json={"pin": "5829"}, headers=member)
        blocked = await client.put(url(world), json={"pin": "1234"}, headers=member)
    assert taken.status_code == blocked.status_code == 422
    strip = lambda body: {k: v for k, v in body.items() if k != "request_id"}  # noqa: E731
    assert strip(taken.json()) == strip(blocked.json())
    async with ctx.db.read() as session:
        actions = (await session.scalars(select(AuditRecord.action))).all()
    assert actions.count("keypad_pin.collision") == 1


async def test_rejections_are_rate_limited_per_setter(ctx, world, clock):
    async with client_for(ctx) as client:
        headers = await world.headers("member")
        codes = [
            (await client.put(url(world), json={"pin": "1111"}, headers=headers)).status_code
            for _ in range(6)
        ]
        assert codes == [422, 422, 422, 422, 429, 429]
        limited = await client.put(url(world), json={"pin": "1111"}, headers=headers)
        assert int(limited.headers["retry-after"]) > 0
        clock.advance(3601)
        again = await client.put(url(world), json={"pin": "1111"}, headers=headers)
        assert again.status_code == 422


async def test_generated_pin_is_shown_once_and_works(ctx, world, canaries):
    async with client_for(ctx) as client:
        response = await client.post(f"{url(world)}/generate", headers=await world.headers("owner"))
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        pin = response.json()["pin"]
        canaries.add(pin)
    assert len(pin) == 4
    charger = world.chargers["old"]
    assert await keypad_pins.resolve(ctx, charger.id, pin) == world.users["owner"].id


async def test_admin_sets_a_members_pin_but_a_member_cannot(ctx, world, canaries):
    canaries.add("6047", "6048")
    async with client_for(ctx) as client:
        by_admin = await client.put(
            url(world, "member"), json={"pin": "6047"}, headers=await world.headers("admin")
        )
        assert by_admin.status_code == 200
        by_member = await client.put(
            url(world, "owner"), json={"pin": "6048"}, headers=await world.headers("member")
        )
        assert by_member.status_code == 403
        stranger = await client.put(
            url(world, "member"), json={"pin": "6048"}, headers=await world.headers("other_admin")
        )
        assert stranger.status_code == 404
        members = (
            await client.get(
                f"/api/organisations/{world.org.id}/members", headers=await world.headers("admin")
            )
        ).json()
    assert {m["email"]: m["has_keypad_pin"] for m in members}["member@example.com"] is True


async def test_subgroups_share_the_pin_space(ctx, world, canaries):
    canaries.add("7351")
    await organisations.add_member(
        ctx, world.actor("super_admin"), world.subgroup.id, "stranger@example.com", Role.USER
    )
    await keypad_pins.set_pin(
        ctx, world.actor("owner"), world.org.id, world.users["owner"].id, "7351"
    )
    async with client_for(ctx) as client:
        response = await client.put(
            f"/api/organisations/{world.subgroup.id}/keypad-pin",
            json={"pin": "7351"},
            headers=await world.headers("stranger"),
        )
    assert response.status_code == 422


async def test_resolve_only_for_users_allowed_at_that_charger(ctx, world, canaries):
    canaries.add("8163", "8164")
    await keypad_pins.set_pin(
        ctx, world.actor("member"), world.org.id, world.users["member"].id, "8163"
    )
    charger = world.chargers["old"]
    assert await keypad_pins.resolve(ctx, charger.id, "8163") is None  # member holds no grant there
    await share(world, "old", "member", GrantKind.USER)
    assert await keypad_pins.resolve(ctx, charger.id, "8163") == world.users["member"].id
    assert await keypad_pins.resolve(ctx, charger.id, "8164") is None  # nobody's PIN


async def _locked_keypad(ctx, world, canaries):
    """The owner's PIN 9274 set, and the charger's keypad locked by five wrong codes."""
    canaries.add("9274")
    await keypad_pins.set_pin(
        ctx, world.actor("owner"), world.org.id, world.users["owner"].id, "9274"
    )
    charger = world.chargers["old"]
    for guess in ("1000", "1001", "1002", "1003", "1004"):
        assert await keypad_pins.resolve(ctx, charger.id, guess) is None
    return charger


def _statements(ctx) -> list[str]:
    """Every SQL statement either engine runs from now on."""
    statements: list[str] = []
    for engine in (ctx.db.engine.sync_engine, ctx.db._read_engine.sync_engine):
        event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    return statements


async def test_keypad_locks_after_five_failures_and_answers_without_the_database(
    ctx, world, clock, canaries
):
    charger = await _locked_keypad(ctx, world, canaries)
    statements = _statements(ctx)
    with pytest.raises(LockedOut) as locked:
        await keypad_pins.resolve(ctx, charger.id, "9274")
    assert statements == []
    assert locked.value.retry_after == pytest.approx(300)
    clock.advance(301)
    assert await keypad_pins.resolve(ctx, charger.id, "9274") == world.users["owner"].id
    async with client_for(ctx) as client:
        events = await client.get(
            f"/api/chargers/{charger.id}/security-events", headers=await world.headers("owner")
        )
    assert [e["event_type"] for e in events.json()] == ["evaccess.KeypadLockout"]


async def test_crowding_warns_above_one_percent(ctx, world):
    await organisations.update_settings(
        ctx, world.actor("super_admin"), world.org.id, keypad_pin_digits=4
    )
    async with client_for(ctx) as client:
        report = (
            await client.get(
                f"/api/organisations/{world.org.id}/keypad-pins/crowding",
                headers=await world.headers("admin"),
            )
        ).json()
    assert report == {
        "members_with_pin": 0,
        "digits": 4,
        "space": 10000,
        "ratio": 0.0,
        "warning": False,
        "message": None,
    }


async def test_organisation_may_require_longer_pins(ctx, world, canaries):
    canaries.add("40572913")
    async with client_for(ctx) as client:
        settings = await client.patch(
            f"/api/organisations/{world.org.id}/settings",
            json={"keypad_pin_digits": 8},
            headers=await world.headers("super_admin"),
        )
        assert settings.status_code == 200
        headers = await world.headers("member")
        short = await client.put(url(world), json={"pin": "5829"}, headers=headers)
        assert short.status_code == 422
        assert "8 digits" in short.json()["detail"]
        assert (
            await client.put(url(world), json={"pin": "40572913"}, headers=headers)
        ).status_code == 200
        too_long = await client.patch(
            f"/api/organisations/{world.org.id}/settings",
            json={"keypad_pin_digits": 9},
            headers=await world.headers("super_admin"),
        )
        assert too_long.status_code == 422


async def test_concurrent_setters_never_duplicate_or_fail(ctx, world, canaries):
    """32 members set PINs at once, half of them the same PIN: exactly one wins it, the
    others get the ordinary rejection; nobody gets a 500."""
    people = []
    for i in range(32):
        user = await accounts.create_user(ctx, f"driver{i}@example.com", PASSWORD)
        await organisations.add_member(
            ctx, world.actor("super_admin"), world.org.id, user.email, Role.USER
        )
        people.append(user)
    contested = "3706"
    pins = [contested if i % 2 == 0 else f"{5100 + i * 7}" for i in range(32)]
    canaries.add(*pins)
    async with client_for(ctx) as client:
        tokens = [
            (await accounts.login(ctx, u.email, PASSWORD, client=f"c{i}")).token
            for i, u in enumerate(people)
        ]
        responses = await asyncio.gather(
            *(
                client.put(
                    url(world), json={"pin": pin}, headers={"Authorization": f"Bearer {token}"}
                )
                for pin, token in zip(pins, tokens, strict=True)
            )
        )
    statuses = [r.status_code for r in responses]
    assert 500 not in statuses
    assert statuses.count(200) == 17  # 16 distinct PINs + one winner of the contested one
    assert statuses.count(422) == 15
    async with ctx.db.read() as session:
        rows = await session.scalar(select(func.count()).select_from(KeypadPin))
        distinct = await session.scalar(select(func.count(func.distinct(KeypadPin.digest))))
    assert rows == distinct == 17


async def test_revoked_and_expired_access_stop_the_keypad_at_once(ctx, world, clock, canaries):
    from datetime import timedelta

    from evaccess.server.services import grants

    canaries.add("8163")
    await keypad_pins.set_pin(
        ctx, world.actor("member"), world.org.id, world.users["member"].id, "8163"
    )
    charger = world.chargers["old"]
    await share(world, "old", "member", GrantKind.USER)
    assert (
        await keypad_pins.resolve(ctx, charger.id, "8163") == world.users["member"].id
    )  # now cached
    grant = next(
        g
        for g in await grants.list_grants(ctx, world.actor("owner"), charger.id)
        if g.email == "member@example.com"
    )
    await grants.revoke_grant(ctx, world.actor("owner"), charger.id, grant.grant.id)
    assert await keypad_pins.resolve(ctx, charger.id, "8163") is None

    await share(world, "old", "member", GrantKind.SERVICE, expires_in=timedelta(hours=1))
    assert await keypad_pins.resolve(ctx, charger.id, "8163") == world.users["member"].id
    clock.advance(3601)
    assert await keypad_pins.resolve(ctx, charger.id, "8163") is None


async def test_an_admin_cannot_set_the_pin_of_someone_who_outranks_them(ctx, world, canaries):
    canaries.add("6047")
    async with client_for(ctx) as client:
        response = await client.put(
            url(world, "super_admin"), json={"pin": "6047"}, headers=await world.headers("admin")
        )
        assert response.status_code == 403
        ok = await client.put(
            url(world, "admin"), json={"pin": "6047"}, headers=await world.headers("super_admin")
        )
        assert ok.status_code == 200


async def test_a_stale_index_answers_while_it_refreshes_in_the_background(
    ctx, world, clock, canaries
):
    """Past its TTL the index keeps answering (a reload must not stall every keypad) and
    reloads once in the background; a local change is never answered from old data."""
    canaries.add("8163")
    await keypad_pins.set_pin(
        ctx, world.actor("owner"), world.org.id, world.users["owner"].id, "8163"
    )
    charger = world.chargers["old"]
    assert await keypad_pins.resolve(ctx, charger.id, "8163") == world.users["owner"].id
    loaded = ctx.keypad_index.get(charger.id)
    clock.advance(31)
    assert await keypad_pins.resolve(ctx, charger.id, "8163") == world.users["owner"].id
    await ctx.keypad_index.refreshed()
    assert ctx.keypad_index.get(charger.id).loaded_at > loaded.loaded_at


async def test_a_locked_keypad_is_refused_before_a_cold_index_reads_the_database(
    ctx, world, canaries
):
    charger = await _locked_keypad(ctx, world, canaries)
    ctx.keypad_index.invalidate()  # nothing in memory: the next code would read the database
    statements = _statements(ctx)
    with pytest.raises(LockedOut):
        await keypad_pins.resolve(ctx, charger.id, "9274")
    assert statements == []


async def test_a_pin_set_that_keeps_losing_races_is_a_conflict_not_a_rejection(
    ctx, world, canaries, monkeypatch
):
    """Concurrent sets of one person's PIN that lose the unique index every time: the PIN
    was not refused, so the answer is 409 (try again), with no collision audited and
    nothing counted against the setter's rejection budget."""
    canaries.add("9274")

    async def lost_race(*args: object) -> bool:
        raise IntegrityError("INSERT INTO keypad_pins", {}, Exception("unique violation"))

    monkeypatch.setattr(keypad_pins, "_clashes", lost_race)
    async with client_for(ctx) as client:
        headers = await world.headers("owner")
        for _ in range(keypad_pins.STORE_ATTEMPTS * 3):  # more than the rejection budget
            answer = await client.put(url(world), json={"pin": "9274"}, headers=headers)
            assert answer.status_code == 409, answer.text
            assert answer.json()["code"] == "conflict"
        monkeypatch.undo()
        answer = await client.put(url(world), json={"pin": "9274"}, headers=headers)
        assert answer.status_code == 200, answer.text
    async with ctx.db.read() as session:
        actions = list(await session.scalars(select(AuditRecord.action)))
    assert "keypad_pin.collision" not in actions
