"""The Bluetooth PIN lifecycle through the REST API."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from evaccess.server.db.models import BluetoothPin
from tests.server.support import build_world, client_for, confirm_pin_push


@pytest.fixture
async def world(ctx):
    return await build_world(ctx)


async def reveal(client, world, who: str, key: str):
    return await client.post(
        f"/api/chargers/{world.chargers[key].id}/bluetooth-pin/reveal",
        headers=await world.headers(who),
    )


async def test_mandatory_pin_is_pending_until_the_charger_confirms(ctx, world, canaries):
    async with client_for(ctx) as client:
        charger = world.chargers["wallbox"]
        headers = await world.headers("owner")
        state = (
            await client.get(f"/api/chargers/{charger.id}/bluetooth-pin", headers=headers)
        ).json()
        assert state["requirement"] == "mandatory"
        assert state["status"] == "pending"
        push = await confirm_pin_push(ctx, charger.serial)
        assert push is not None
        assert push.required
        assert push.changeable
        assert push.pin is not None
        assert len(push.pin) == 6
        canaries.add(push.pin)
        state = (
            await client.get(f"/api/chargers/{charger.id}/bluetooth-pin", headers=headers)
        ).json()
        assert state["status"] == "active"
        response = await reveal(client, world, "owner", "wallbox")
        assert response.status_code == 200
        assert response.json()["pin"] == push.pin
        assert response.headers["cache-control"] == "no-store"


async def test_pin_never_in_list_or_detail_payloads(ctx, world, canaries):
    async with client_for(ctx) as client:
        headers = await world.headers("owner")
        pin = (await reveal(client, world, "owner", "wallbox")).json()["pin"]
        canaries.add(pin)
        listing = await client.get("/api/chargers", headers=headers)
        detail = await client.get(f"/api/chargers/{world.chargers['wallbox'].id}", headers=headers)
        state = await client.get(
            f"/api/chargers/{world.chargers['wallbox'].id}/bluetooth-pin", headers=headers
        )
        for response in (listing, detail, state):
            assert response.status_code == 200
            assert pin not in response.text


@pytest.mark.parametrize(
    ("who", "key", "status"),
    [
        ("owner", "wallbox", 200),
        ("invited", "wallbox", 200),
        ("service", "wallbox", 200),
        ("owner", "zaptec", 200),
        ("service", "zaptec", 200),
        ("invited", "zaptec", 403),  # Zaptec: only the owner and service access see the PIN
        ("admin", "wallbox", 403),  # organisation admins manage, but hold no grant
        ("member", "wallbox", 404),
        ("stranger", "wallbox", 404),
        ("other_admin", "wallbox", 404),
        ("owner", "old", 404),  # 6.7.16: no PIN at all
    ],
)
async def test_who_may_reveal(ctx, world, canaries, who, key, status):
    async with client_for(ctx) as client:
        response = await reveal(client, world, who, key)
        assert response.status_code == status, response.text
        if status == 200:
            canaries.add(response.json()["pin"])
        else:
            assert "pin" not in response.json()


async def test_reveal_history_lists_who_and_when(ctx, world, canaries, clock):
    async with client_for(ctx) as client:
        canaries.add((await reveal(client, world, "invited", "wallbox")).json()["pin"])
        clock.advance(60)
        canaries.add((await reveal(client, world, "service", "wallbox")).json()["pin"])
        url = f"/api/chargers/{world.chargers['wallbox'].id}/bluetooth-pin/reveals"
        history = (await client.get(url, headers=await world.headers("owner"))).json()
        assert [h["actor_email"] for h in history] == ["service@example.com", "invited@example.com"]
        assert [h["basis"] for h in history] == ["service", "user"]
        assert all(h["request_id"] for h in history)
        assert (await client.get(url, headers=await world.headers("invited"))).status_code == 403


async def test_optional_pin_enable_then_required(ctx, world, canaries):
    async with client_for(ctx) as client:
        cid = world.chargers["optional"].id
        headers = await world.headers("owner")
        state = (await client.get(f"/api/chargers/{cid}/bluetooth-pin", headers=headers)).json()
        assert (state["requirement"], state["status"], state["can_enable"]) == (
            "optional",
            "none",
            True,
        )
        assert (await reveal(client, world, "owner", "optional")).status_code == 404
        denied = await client.post(
            f"/api/chargers/{cid}/bluetooth-pin/enable", headers=await world.headers("invited")
        )
        assert denied.status_code == 403
        state = (
            await client.post(f"/api/chargers/{cid}/bluetooth-pin/enable", headers=headers)
        ).json()
        assert (state["required"], state["status"]) == (True, "pending")
        push = await confirm_pin_push(ctx, world.chargers["optional"].serial)
        assert push is not None
        canaries.add(push.pin or "")
        assert (await reveal(client, world, "owner", "optional")).json()["pin"] == push.pin


async def test_change_stays_pending_until_accepted(ctx, world, canaries):
    async with client_for(ctx) as client:
        charger = world.chargers["wallbox"]
        first = await confirm_pin_push(ctx, charger.serial)
        assert first is not None
        canaries.add(first.pin or "", "739104")
        headers = await world.headers("owner")
        url = f"/api/chargers/{charger.id}/bluetooth-pin"
        state = (await client.post(f"{url}/change", json={"pin": "739104"}, headers=headers)).json()
        assert state["status"] == "changing"
        assert (await reveal(client, world, "owner", "wallbox")).json()["pin"] == first.pin
        refused = await confirm_pin_push(ctx, charger.serial, accept=False)
        assert refused is not None
        assert refused.pin == "739104"
        assert (await reveal(client, world, "owner", "wallbox")).json()["pin"] == first.pin
        # The server asks again (e.g. a later change); this time the charger accepts.
        await client.post(f"{url}/change", json={"pin": "739104"}, headers=headers)
        await confirm_pin_push(ctx, charger.serial)
        assert (await reveal(client, world, "owner", "wallbox")).json()["pin"] == "739104"


@pytest.mark.parametrize(
    ("key", "code"), [("zaptec", "policy_violation"), ("optional", "policy_violation")]
)
async def test_change_refused_where_policy_forbids(ctx, world, key, code):
    async with client_for(ctx) as client:
        response = await client.post(
            f"/api/chargers/{world.chargers[key].id}/bluetooth-pin/change",
            json={},
            headers=await world.headers("owner"),
        )
        assert response.status_code == 409
        assert response.json()["code"] == code


async def test_trivial_chosen_pin_rejected_without_echo(ctx, world):
    async with client_for(ctx) as client:
        response = await client.post(
            f"/api/chargers/{world.chargers['wallbox'].id}/bluetooth-pin/change",
            json={"pin": "123456"},
            headers=await world.headers("owner"),
        )
        assert response.status_code == 422
        assert "123456" not in response.text
        wrong_type = await client.post(
            f"/api/chargers/{world.chargers['wallbox'].id}/bluetooth-pin/change",
            json={"pin": 654321},
            headers=await world.headers("owner"),
        )
        assert wrong_type.status_code == 422
        assert "654321" not in wrong_type.text


async def test_swapped_ciphertexts_fail_loudly(ctx, world, canaries):
    a, b = world.chargers["wallbox"], world.chargers["zaptec"]
    for serial in (a.serial, b.serial):
        push = await confirm_pin_push(ctx, serial)
        canaries.add(push.pin if push and push.pin else "")
    async with ctx.db.transaction() as session:
        rows = {r.charger_id: r for r in (await session.scalars(select(BluetoothPin))).all()}
        ct_a, ct_b = rows[a.id].active_ciphertext, rows[b.id].active_ciphertext
        await session.execute(
            update(BluetoothPin)
            .where(BluetoothPin.charger_id == a.id)
            .values(active_ciphertext=ct_b)
        )
        await session.execute(
            update(BluetoothPin)
            .where(BluetoothPin.charger_id == b.id)
            .values(active_ciphertext=ct_a)
        )
    async with client_for(ctx) as client:
        for key in ("wallbox", "zaptec"):
            response = await reveal(client, world, "owner", key)
            assert response.status_code == 500
            assert response.json()["code"] == "integrity_failure"
            assert "pin" not in response.json()


async def test_reveal_fails_closed_when_audit_write_fails(ctx, world, canaries, monkeypatch):
    async def broken_append(session, entry):
        raise OSError("disk full")

    async with client_for(ctx) as client:
        monkeypatch.setattr(ctx.audit, "append", broken_append)
        response = await reveal(client, world, "owner", "wallbox")
        assert response.status_code == 503
        assert response.json()["code"] == "audit_unavailable"
        assert "pin" not in response.json()
        monkeypatch.undo()
        ok = await reveal(client, world, "owner", "wallbox")
        canaries.add(ok.json()["pin"])
        history = await client.get(
            f"/api/chargers/{world.chargers['wallbox'].id}/bluetooth-pin/reveals",
            headers=await world.headers("owner"),
        )
        assert len(history.json()) == 1


async def test_firmware_upgrade_to_611_makes_pin_mandatory(ctx, world, canaries):
    from evaccess.server.ocpp.backend import BootInfo
    from evaccess.server.services.ocpp_backend import DbOcppBackend

    charger = world.chargers["optional"]
    async with client_for(ctx) as client:
        url = f"/api/chargers/{charger.id}/bluetooth-pin"
        headers = await world.headers("owner")
        assert (await client.get(url, headers=headers)).json()["status"] == "none"
        await DbOcppBackend(ctx).boot(
            charger.serial, BootInfo(vendor="Wallbox", model="Pulsar Plus", firmware="6.11.0")
        )
        state = (await client.get(url, headers=headers)).json()
        assert (state["requirement"], state["status"], state["changeable"]) == (
            "mandatory",
            "pending",
            True,
        )
        push = await confirm_pin_push(ctx, charger.serial)
        assert push is not None
        canaries.add(push.pin or "")
        assert push.required


async def test_owner_revokes_phones_and_reenables_pairing_through_ocpp(ctx, world, clock):
    from evaccess.server.ocpp.backend import ReenablePinPairing, RevokeCredentials
    from evaccess.server.services.ocpp_backend import DbOcppBackend

    charger = world.chargers["wallbox"]
    async with client_for(ctx) as client:
        headers = await world.headers("owner")
        one = await client.post(
            f"/api/chargers/{charger.id}/bluetooth/revoke-phones",
            json={"phone_id": "phone-7"},
            headers=headers,
        )
        clock.advance(1)  # commands are delivered in the order they were made
        every = await client.post(
            f"/api/chargers/{charger.id}/bluetooth/revoke-phones", json={}, headers=headers
        )
        clock.advance(1)
        again = await client.post(
            f"/api/chargers/{charger.id}/bluetooth/reenable-pairing", headers=headers
        )
        denied = await client.post(
            f"/api/chargers/{charger.id}/bluetooth/revoke-phones",
            json={},
            headers=await world.headers("invited"),
        )
    assert (one.status_code, every.status_code, again.status_code, denied.status_code) == (
        202,
        202,
        202,
        403,
    )
    for accepted, kind in zip(
        (one, every, again),
        ("revoke_credentials", "revoke_credentials", "reenable_pin_pairing"),
        strict=True,
    ):
        body = accepted.json()
        assert (body["kind"], body["charger_online"]) == (kind, False)
        assert (
            body["detail"] == "The charger is offline: it gets the command when it next connects."
        )
    commands = [
        c
        for c in await DbOcppBackend(ctx).pending_commands(charger.serial)
        if not hasattr(c, "pin")
    ]
    assert [type(c) for c in commands] == [RevokeCredentials, RevokeCredentials, ReenablePinPairing]
    assert [c.phone_id for c in commands[:2]] == ["phone-7", None]


async def test_super_admin_assigns_a_charger_to_a_subgroup_member(ctx, world):
    from evaccess.domain.access import Role
    from evaccess.server.services import organisations

    await organisations.add_member(
        ctx, world.actor("super_admin"), world.subgroup.id, "stranger@example.com", Role.USER
    )
    async with client_for(ctx) as client:
        assigned = await client.post(
            f"/api/chargers/{world.chargers['wallbox'].id}/assign",
            json={"user_id": world.users["stranger"].id},
            headers=await world.headers("super_admin"),
        )
        assert assigned.status_code == 201, assigned.text
        seen = await client.get("/api/chargers", headers=await world.headers("stranger"))
    assert [c["serial"] for c in seen.json()] == [world.chargers["wallbox"].serial]


async def test_ending_an_ownership_revokes_everything_derived_from_it_in_one_transaction(
    ctx, world
):
    """Issue 2: grants, invitations and phone credentials all hang off the ownership, so a
    transfer can end them together (one UPDATE per table, one transaction)."""
    from sqlalchemy import select

    from evaccess.domain.access import GrantKind
    from evaccess.server.db.models import Grant, Invitation, PhoneCredential
    from evaccess.server.services import invitations, ownership

    charger = world.chargers["wallbox"]
    pending = await invitations.invite(
        ctx, world.actor("owner"), charger.id, email="later@example.com", kind=GrantKind.USER
    )
    async with ctx.db.transaction() as session:
        owned = await ownership.current(session, charger.id)
        session.add(
            PhoneCredential(
                charger_id=charger.id,
                ownership_id=owned.id,
                phone_id="phone-1",
                created_at=ctx.clock.now(),
            )
        )
    async with ctx.db.transaction() as session:
        owned = await ownership.current(session, charger.id)
        counts = await ownership.end(session, ctx, owned)
    ownership.access_changed(ctx, charger)
    assert counts == {"grants": 3, "invitations": 1, "phones": 1}  # owner, invited, service
    async with ctx.db.read() as session:
        assert await ownership.current(session, charger.id) is None
        open_grants = (
            await session.scalars(
                select(Grant).where(Grant.charger_id == charger.id, Grant.revoked_at.is_(None))
            )
        ).all()
        invitation = await session.get(Invitation, pending.invitation.id)
        phone = await session.scalar(select(PhoneCredential))
    assert open_grants == []
    assert invitation.revoked_at is not None
    assert phone.revoked_at is not None
    async with client_for(ctx) as client:
        for who in ("owner", "invited", "service"):
            response = await client.get(
                f"/api/chargers/{charger.id}", headers=await world.headers(who)
            )
            assert response.status_code == 404, who


async def test_a_command_to_a_connected_charger_says_it_is_on_its_way(ctx, world):
    """Asked of the live socket, not of the database's flag (which a crash leaves set)."""
    from evaccess.server.ocpp.server import serve_ocpp
    from evaccess.server.services.ocpp_backend import DbOcppBackend
    from tests.cluster_support import FakeCharger
    from tests.support import eventually

    charger = world.chargers["wallbox"]
    server = await serve_ocpp(DbOcppBackend(ctx), port=0, clock=ctx.clock)
    ctx.notifier.target = server.notifier
    try:
        async with client_for(ctx) as client:
            headers = await world.headers("owner")
            url = f"/api/chargers/{charger.id}/bluetooth"
            fake = await FakeCharger.connect(
                server.port, charger.serial, world.ocpp_passwords["wallbox"]
            )
            try:
                sent = len(fake.calls)
                online = await client.post(f"{url}/reenable-pairing", headers=headers)
                state = await client.get(f"{url}-pin", headers=headers)
                await eventually(
                    lambda: any(c[2] == "SetVariables" for c in fake.calls[sent:]),
                    "the command to reach the charger",
                )
            finally:
                await fake.close()
            await eventually(lambda: not server.notifier.holds(charger.serial), "the close")
            offline = await client.post(f"{url}/reenable-pairing", headers=headers)
            later = await client.get(f"{url}-pin", headers=headers)
    finally:
        ctx.notifier.target = None
        await server.close()
    assert online.status_code == offline.status_code == 202
    assert online.json()["charger_online"] and state.json()["charger_online"]
    assert online.json()["detail"] == "The charger is connected: the command is on its way."
    assert not offline.json()["charger_online"] and not later.json()["charger_online"]


async def test_a_lone_node_starts_with_no_charger_online(ctx, world):
    """A crash leaves ``online`` set; the next start of a node without a cluster clears it
    (``runner.serve``) until each charger connects again."""
    from evaccess.server.db.models import Charger
    from evaccess.server.services.ocpp_backend import forget_connections

    async with ctx.db.transaction() as session:
        await session.execute(update(Charger).values(online=True))
    assert await forget_connections(ctx) == len(world.chargers)
    async with client_for(ctx) as client:
        listing = await client.get("/api/chargers", headers=await world.headers("owner"))
    assert listing.json() and not any(c["online"] for c in listing.json())
    assert await forget_connections(ctx) == 0
