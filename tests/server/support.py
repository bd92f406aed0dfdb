"""Building blocks for server tests: a context, and a small world of people and chargers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST

from evaccess.domain.access import GrantKind, Role
from evaccess.domain.clock import ManualClock, RandomSource
from evaccess.server.api.app import create_app
from evaccess.server.bootstrap import build_context
from evaccess.server.context import Context
from evaccess.server.db.migrate import upgrade
from evaccess.server.db.models import Charger
from evaccess.server.ocpp.backend import SetBluetoothPin
from evaccess.server.services import accounts, invitations, organisations, registration
from evaccess.server.services.ocpp_backend import DbOcppBackend
from evaccess.server.services.relations import Actor
from evaccess.server.settings import Settings

PASSWORD = "correct horse battery staple"


async def make_context(
    url: str, keys_dir: Path, *, clock: ManualClock, rng: RandomSource, **overrides: Any
) -> Context:
    """A context on ``url``; ``overrides`` are further ``Settings`` (``allow_signup=True``)."""
    await upgrade(url)  # a no-op on the pre-migrated SQLite copy
    settings = Settings(database_url=url, keys_dir=keys_dir, data_dir=keys_dir.parent, **overrides)
    return build_context(
        settings, clock=clock, rng=rng, passwords=PasswordHasher.from_parameters(CHEAPEST)
    )


def client_for(
    ctx: Context, *, address: str = "127.0.0.1", settings: Settings | None = None
) -> httpx.AsyncClient:
    """An HTTP client of the app in this process, calling from ``address``."""
    app = create_app(settings or Settings(), context=ctx)
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def actor_of(user: accounts.User, *, system: bool = False) -> Actor:
    return Actor(user_id=user.id, email=user.email, is_system_admin=system or user.is_system_admin)


@dataclass
class World:
    """One organisation with a subgroup, another organisation, and people related to one
    charger in every way the permission table knows."""

    ctx: Context
    users: dict[str, accounts.User] = field(default_factory=dict)
    org: organisations.Organisation | None = None
    subgroup: organisations.Organisation | None = None
    other_org: organisations.Organisation | None = None
    chargers: dict[str, Charger] = field(default_factory=dict)
    ocpp_passwords: dict[str, str] = field(default_factory=dict)

    def actor(self, name: str) -> Actor:
        return actor_of(self.users[name])

    async def token(self, name: str) -> str:
        issued = await accounts.login(
            self.ctx, self.users[name].email, PASSWORD, client=f"test-{name}"
        )
        return issued.token

    async def headers(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(name)}"}


PEOPLE = (
    "root",
    "super_admin",
    "admin",
    "member",
    "owner",
    "invited",
    "service",
    "other_admin",
    "stranger",
)


async def build_world(ctx: Context) -> World:
    world = World(ctx=ctx)
    for name in PEOPLE:
        world.users[name] = await accounts.create_user(
            ctx, f"{name.replace('_', '-')}@example.com", PASSWORD, is_system_admin=name == "root"
        )
    world.org = await organisations.create_organisation(
        ctx, as_system(world.actor("super_admin")), "Acme Fleet"
    )
    world.subgroup = await organisations.create_subgroup(
        ctx, world.actor("super_admin"), world.org.id, "Depot North"
    )
    world.other_org = await organisations.create_organisation(
        ctx, as_system(world.actor("other_admin")), "Rival"
    )
    sa = world.actor("super_admin")
    for name, role in (("admin", Role.ADMIN), ("member", Role.USER), ("owner", Role.USER)):
        await organisations.add_member(ctx, sa, world.org.id, world.users[name].email, role)
    await add_charger(
        world,
        "wallbox",
        serial="WB-100001",
        vendor="Wallbox",
        model="Pulsar Max",
        firmware="6.11.4",
        owner="owner",
    )
    await add_charger(
        world,
        "zaptec",
        serial="ZAP-200002",
        vendor="Zaptec",
        model="Go",
        firmware="2.4.1",
        owner="owner",
    )
    await add_charger(
        world,
        "optional",
        serial="WB-300003",
        vendor="Wallbox",
        model="Pulsar Plus",
        firmware="6.8.2",
        owner="owner",
    )
    await add_charger(
        world,
        "old",
        serial="WB-400004",
        vendor="Wallbox",
        model="Commander 2",
        firmware="6.7.16",
        owner="owner",
        keypad=True,
    )
    for key in ("wallbox", "zaptec", "optional", "old"):
        await share(world, key, "invited", GrantKind.USER)
        await share(world, key, "service", GrantKind.SERVICE)
    return world


def as_system(actor: Actor) -> Actor:
    """The same person with system-administrator rights (to create top-level organisations)."""
    return Actor(user_id=actor.user_id, email=actor.email, is_system_admin=True)


async def add_charger(
    world: World,
    key: str,
    *,
    serial: str,
    vendor: str,
    model: str,
    firmware: str,
    owner: str | None = None,
    keypad: bool = False,
    production_date: date | None = None,
    organisation: str | None = None,
) -> Charger:
    assert world.org is not None
    reg = await registration.register(
        world.ctx,
        world.actor("super_admin"),
        organisation_id=organisation or world.org.id,
        serial=serial,
        vendor=vendor,
        model=model,
        firmware=firmware,
        keypad=keypad,
        production_date=production_date,
        owner_email=world.users[owner].email if owner else None,
    )
    world.chargers[key] = reg.charger
    world.ocpp_passwords[key] = reg.ocpp_password
    return reg.charger


async def share(
    world: World, key: str, person: str, kind: GrantKind, *, expires_in: timedelta | None = None
) -> None:
    ctx = world.ctx
    issued = await invitations.invite(
        ctx,
        world.actor("owner"),
        world.chargers[key].id,
        email=world.users[person].email,
        kind=kind,
        service_expires_at=ctx.clock.now() + expires_in if expires_in else None,
    )
    await invitations.accept_invitation(ctx, world.actor(person), issued.token)


async def confirm_pin_push(
    ctx: Context, serial: str, *, accept: bool = True
) -> SetBluetoothPin | None:
    """Play the charger's side of the OCPP push: take the newest SetBluetoothPin and answer it."""
    backend = DbOcppBackend(ctx)
    pushes = [c for c in await backend.pending_commands(serial) if isinstance(c, SetBluetoothPin)]
    if not pushes:
        return None
    await backend.command_result(serial, pushes[-1].command_id, accepted=accept)
    return pushes[-1]
