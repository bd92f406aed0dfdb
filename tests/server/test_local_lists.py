"""Offline keypad use: local lists for organisations that opt in, exact differentials."""

from __future__ import annotations

import pytest

from evaccess.domain.access import GrantKind
from evaccess.server.ocpp.backend import SendLocalList
from evaccess.server.services import grants, keypad_pins, organisations
from evaccess.server.services.ocpp_backend import DbOcppBackend
from tests.server.support import build_world, share


@pytest.fixture
async def world(ctx):
    return await build_world(ctx)


async def lists(backend, serial):
    return [c for c in await backend.pending_commands(serial) if isinstance(c, SendLocalList)]


async def test_no_local_list_unless_the_organisation_opts_in(ctx, world, canaries):
    canaries.add("6194")
    backend = DbOcppBackend(ctx)
    serial = world.chargers["old"].serial
    await keypad_pins.set_pin(
        ctx, world.actor("owner"), world.org.id, world.users["owner"].id, "6194"
    )
    assert await lists(backend, serial) == []


async def test_local_list_lifecycle(ctx, world, canaries):
    canaries.add("6194", "6195", "7302")
    backend = DbOcppBackend(ctx)
    charger = world.chargers["old"]  # the keypad charger
    await organisations.update_settings(
        ctx, world.actor("super_admin"), world.org.id, offline_keypad=True
    )
    await keypad_pins.set_pin(
        ctx, world.actor("owner"), world.org.id, world.users["owner"].id, "6194"
    )
    await keypad_pins.set_pin(
        ctx, world.actor("member"), world.org.id, world.users["member"].id, "7302"
    )

    [first] = await lists(backend, charger.serial)
    assert (first.version, first.full) == (1, False)
    assert [(e.id_token, e.user_id) for e in first.entries] == [("6194", world.users["owner"].id)]
    await backend.command_result(charger.serial, first.command_id, accepted=True)
    assert await backend.local_list_version(charger.serial) == 1
    assert await lists(backend, charger.serial) == []

    # A new PIN: the old code is removed and the new one added, in one differential.
    await keypad_pins.set_pin(
        ctx, world.actor("owner"), world.org.id, world.users["owner"].id, "6195"
    )
    [change] = await lists(backend, charger.serial)
    assert (change.version, change.full, change.removed) == (2, False, ("6194",))
    assert [e.id_token for e in change.entries] == ["6195"]
    await backend.command_result(charger.serial, change.command_id, accepted=True)

    # The member gets access: added. Then loses it: removed.
    await share(world, "old", "member", GrantKind.USER)
    [added] = await lists(backend, charger.serial)
    assert [e.id_token for e in added.entries] == ["7302"]
    await backend.command_result(charger.serial, added.command_id, accepted=True)
    grant = next(
        g
        for g in await grants.list_grants(ctx, world.actor("owner"), charger.id)
        if g.email == "member@example.com"
    )
    await grants.revoke_grant(ctx, world.actor("owner"), charger.id, grant.grant.id)
    [removed] = await lists(backend, charger.serial)
    assert (removed.version, removed.removed, removed.entries) == (4, ("7302",), ())
    await backend.command_result(charger.serial, removed.command_id, accepted=True)

    # The charger reports another version on connect: a full list with a greater version.
    await backend.request_local_list_resync(charger.serial, charger_version=9)
    [full] = await lists(backend, charger.serial)
    assert (full.version, full.full, [e.id_token for e in full.entries]) == (10, True, ["6195"])
    await backend.command_result(charger.serial, full.command_id, accepted=True)
    assert await backend.local_list_version(charger.serial) == 10

    # Opting out empties the charger's list and drops the sealed copies.
    await organisations.update_settings(
        ctx, world.actor("super_admin"), world.org.id, offline_keypad=False
    )
    [emptied] = await lists(backend, charger.serial)
    assert (emptied.version, emptied.removed, emptied.entries) == (11, ("6195",), ())


async def test_a_superseded_update_the_charger_accepted_still_counts(ctx, world, canaries):
    canaries.add("6194", "6195")
    backend = DbOcppBackend(ctx)
    serial = world.chargers["old"].serial
    await organisations.update_settings(
        ctx, world.actor("super_admin"), world.org.id, offline_keypad=True
    )
    await keypad_pins.set_pin(
        ctx, world.actor("owner"), world.org.id, world.users["owner"].id, "6194"
    )
    [sent] = await lists(backend, serial)
    await keypad_pins.set_pin(
        ctx, world.actor("owner"), world.org.id, world.users["owner"].id, "6195"
    )
    # The first update reached the charger before the second was queued.
    await backend.command_result(serial, sent.command_id, accepted=True)
    [next_update] = await lists(backend, serial)
    assert (
        next_update.version,
        next_update.removed,
        [e.id_token for e in next_update.entries],
    ) == (2, ("6194",), ["6195"])
