"""The authorization matrix: every REST route × every way a person can relate to it.

One declarative table (``ROWS``) says, per route, which relations succeed and with what
status; every other relation gets 403 if it can see the resource and 404 if it cannot
(deny by default, and an invisible charger or organisation looks exactly like a missing
one), and an anonymous caller gets 401. ``test_every_route_has_an_expectation`` walks
``app.routes`` so that a new route without a row fails.

Each request is one that would succeed if allowed (a valid body, a grant or invitation
that exists), so a 403 is never a validation error in disguise. Within a row the denied
relations go first, so a state-changing call that succeeds does not mask a later denial;
a row's ``prepare`` rebuilds what each call consumes. Rows are grouped by area, one world
per area and many cells per test, so that the file stays fast on both databases.

Beside the matrix: invisible chargers and organisations answer byte for byte like missing
ones, listings show exactly what the detail routes open, and access ends at once with an
expired or revoked grant or a logged-out token.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from itertools import count
from typing import Any

import httpx
import pytest
from starlette.routing import BaseRoute

from evaccess.domain.access import GrantKind, Role, StaffRole
from evaccess.domain.pins import trivial_reasons
from evaccess.domain.tokens import TokenType
from evaccess.server.api.app import create_app
from evaccess.server.db.models import Charger
from evaccess.server.portal.web import PortalRoute
from evaccess.server.services import (
    accounts,
    claims,
    grants,
    invitations,
    keypad_pins,
    organisations,
    ownership,
    registration,
    tokens,
    transfers,
)
from evaccess.server.settings import Settings
from tests.conftest import Canaries
from tests.server.support import PASSWORD, World, build_world, client_for, share

# --- relations ------------------------------------------------------------------------------

ANONYMOUS = "anonymous"
RELATIONS = (
    ANONYMOUS,
    "root",  # system administrator: creates organisations, sees nothing by that alone
    "super_admin",  # of the charger's organisation (Acme)
    "admin",
    "member",  # role user in Acme, no grant on the charger
    "owner",  # owner grant (and role user in Acme)
    "invited",  # user grant, accepted invitation
    "service",  # service grant
    "other_admin",  # super-admin of another organisation (Rival)
    "stranger",  # an account related to nothing
    "support",  # a support agent of the operator: reviews claims, sees no charger
)
AUTHENTICATED = RELATIONS[1:]
ORG_MEMBERS = frozenset({"super_admin", "admin", "member", "owner"})
CHARGER_SEERS = frozenset({"super_admin", "admin", "owner", "invited", "service"})

Expectation = Mapping[str, int]


def scoped(ok: int, allowed: set[str], visible: frozenset[str]) -> dict[str, int]:
    """``ok`` for ``allowed``; 403 for the rest of ``visible``; 404 for everyone else."""
    assert allowed <= visible, allowed - visible
    cells = {who: ok if who in allowed else 403 if who in visible else 404 for who in AUTHENTICATED}
    return {ANONYMOUS: 401} | cells


def org(ok: int, *allowed: str) -> dict[str, int]:
    """A route on the Acme organisation: its members see it, admins of Rival do not."""
    return scoped(ok, set(allowed), ORG_MEMBERS)


def charger(ok: int, *allowed: str) -> dict[str, int]:
    """A route on an Acme charger: grant holders and Acme admins see it."""
    return scoped(ok, set(allowed), CHARGER_SEERS)


def everyone(ok: int, *, anonymous: int = 401) -> dict[str, int]:
    return {ANONYMOUS: anonymous} | dict.fromkeys(AUTHENTICATED, ok)


def public(ok: int) -> dict[str, int]:
    return everyone(ok, anonymous=ok)


def support_only(ok: int) -> dict[str, int]:
    """A route of the support queue: agents only; every other account is refused."""
    return {ANONYMOUS: 401} | {who: ok if who == "support" else 403 for who in AUTHENTICATED}


# --- the world each area runs in -------------------------------------------------------------


@dataclass
class Env:
    world: World
    client: httpx.AsyncClient
    canaries: Canaries
    tokens: dict[str, str] = field(default_factory=dict)
    serial: Iterator[int] = field(default_factory=lambda: count(1))
    keypad_pins: Iterator[str] = field(default_factory=lambda: _keypad_pins())
    memo: dict[str, str] = field(default_factory=dict)

    @property
    def ctx(self) -> Any:
        return self.world.ctx

    def user_id(self, name: str) -> str:
        return self.world.users[name].id

    async def token(self, who: str) -> str:
        if who not in self.tokens:
            self.tokens[who] = await self.world.token(who)
        return self.tokens[who]

    def unique(self, stem: str) -> str:
        return f"{stem}-{next(self.serial)}"

    def keypad_pin(self) -> str:
        pin = next(self.keypad_pins)
        self.canaries.add(pin)
        return pin


def _keypad_pins() -> Iterator[str]:
    """Distinct 4-digit PINs that pass the block list (all in one PIN space, none taken)."""
    for n in range(3107, 10_000, 61):
        pin = f"{n:04d}"
        if not trivial_reasons(pin):
            yield pin


async def make_env(ctx: Any, canaries: Canaries) -> Env:
    world = await build_world(ctx)
    assert world.org is not None
    assert world.other_org is not None
    sa = world.actor("super_admin")
    for name in ("target", "spare", "support"):
        world.users[name] = await accounts.create_user(ctx, f"{name}@example.com", PASSWORD)
    await accounts.set_staff_role(ctx, "support@example.com", StaffRole.SUPPORT)
    # ``target``: a plain member of Acme whom admins act on (keypad PIN, role, assignment).
    await organisations.add_member(ctx, sa, world.org.id, "target@example.com", Role.USER)
    # ``lobby``: invitations accepted by every relation land here, so nobody's access to the
    # chargers the other rows use changes.
    reg = await registration.register(
        ctx,
        sa,
        organisation_id=world.org.id,
        serial="WB-500005",
        vendor="Wallbox",
        model="Pulsar Plus",
        firmware="6.11.0",
        owner_email=world.users["owner"].email,
    )
    world.chargers["lobby"] = reg.charger
    # ``rival``: a charger of the other organisation, which Acme people must not tell apart
    # from a charger that does not exist.
    reg = await registration.register(
        ctx,
        world.actor("other_admin"),
        organisation_id=world.other_org.id,
        serial="RV-600006",
        vendor="Wallbox",
        model="Pulsar Max",
        firmware="6.11.4",
        owner_email=world.users["other_admin"].email,
    )
    world.chargers["rival"] = reg.charger
    return Env(world=world, client=client_for(ctx), canaries=canaries)


# --- rows ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Prepared:
    """What one call needs beyond the row: path parameters, a body, another token."""

    params: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    token: str | None = None
    files: Mapping[str, tuple[str, bytes, str]] | None = None
    """A multipart upload (sent with ``data`` as its form fields instead of ``json``)."""
    data: Mapping[str, str] | None = None


Prepare = Callable[[Env, str], Awaitable[Prepared]]


@dataclass(frozen=True, kw_only=True, slots=True)
class Row:
    area: str
    method: str
    path: str
    expect: Expectation
    charger: str = "wallbox"
    """Which charger ``{charger_id}`` names."""
    target: str = "target"
    """Whose id ``{user_id}`` is."""
    json: Any = None
    prepare: Prepare | None = None
    code: str | None = None
    """The problem ``code`` when the allowed relations are refused for another reason."""
    note: str = ""

    @property
    def route(self) -> tuple[str, str]:
        return self.method, self.path

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}" + (f" [{self.note}]" if self.note else "")


def _body(make: Callable[[Env, str], Any]) -> Prepare:
    async def prepare(env: Env, who: str) -> Prepared:
        return Prepared(json=make(env, who))

    return prepare


async def _fresh_token(env: Env, who: str) -> Prepared:
    """Logout revokes the token it is called with: give each relation a token of its own."""
    if who == ANONYMOUS:
        return Prepared()
    return Prepared(token=await env.world.token(who))


async def _password_change(env: Env, who: str) -> Prepared:
    """Everyone may change their own password (to the same one, so later logins still work)."""
    body = {"current_password": PASSWORD, "new_password": PASSWORD}
    if who == ANONYMOUS:
        return Prepared(json=body)
    return Prepared(token=await env.world.token(who), json=body)


async def _login(env: Env, who: str) -> Prepared:
    person = "stranger" if who == ANONYMOUS else who
    return Prepared(json={"email": env.world.users[person].email, "password": PASSWORD})


async def _new_account(env: Env, who: str) -> Prepared:
    email = f"{env.unique('new')}@example.com"
    await accounts.create_user(env.ctx, email, PASSWORD)
    return Prepared(json={"email": email, "role": "user"})


async def _new_admin_account(env: Env, who: str) -> Prepared:
    email = f"{env.unique('new')}@example.com"
    await accounts.create_user(env.ctx, email, PASSWORD)
    return Prepared(json={"email": email, "role": "admin"})


async def _own_keypad_pin_exists(env: Env, who: str) -> Prepared:
    """Deleting needs a PIN to delete: members get one first (others cannot have one)."""
    if who in ORG_MEMBERS:
        await _generate_keypad_pin(env, who, who)
    return Prepared()


async def _personal_keypad_pin_exists(env: Env, who: str) -> Prepared:
    """Only charger owners have a personal PIN to delete (others get 404: nothing to delete)."""
    if who in OWNERS:
        await keypad_pins.set_personal_pin(env.ctx, env.world.actor(who), None)
    return Prepared()


def _card_number(env: Env) -> str:
    number = f"CA{next(env.serial):06X}"
    env.canaries.add(number)
    return number


async def _target_card(env: Env, who: str) -> Prepared:
    """A fresh card of ``target`` for each call (a delete consumes it)."""
    assert env.world.org is not None
    card = await tokens.add_card(
        env.ctx,
        env.world.actor("super_admin"),
        env.world.org.id,
        user_id=env.user_id("target"),
        token_type=TokenType.ISO14443,
        number=_card_number(env),
    )
    return Prepared(params={"card_id": card.id})


OWNERS = frozenset({"owner", "other_admin"})  # of the Acme chargers; of the Rival one


def owners(ok: int, others: int) -> dict[str, int]:
    """A personal route: ``ok`` for charger owners, ``others`` for everyone else."""
    return {ANONYMOUS: 401} | {who: ok if who in OWNERS else others for who in AUTHENTICATED}


async def _target_keypad_pin_exists(env: Env, who: str) -> Prepared:
    await _generate_keypad_pin(env, "super_admin", "target")
    return Prepared()


async def _generate_keypad_pin(env: Env, by: str, person: str) -> None:
    assert env.world.org is not None
    result = await keypad_pins.set_pin(
        env.ctx, env.world.actor(by), env.world.org.id, env.user_id(person), None
    )
    assert result.generated_pin is not None
    env.canaries.add(result.generated_pin)


async def _spare_grant(env: Env, who: str) -> Prepared:
    """A live user grant of ``spare`` on the wallbox (re-created once a call revoked it)."""
    grant_id = await _grant_id(env, "spare", GrantKind.USER)
    if grant_id is None:
        await share(env.world, "wallbox", "spare", GrantKind.USER)
        grant_id = await _grant_id(env, "spare", GrantKind.USER)
    assert grant_id is not None
    return Prepared(params={"grant_id": grant_id})


async def _owner_grant(env: Env, who: str) -> Prepared:
    grant_id = await _grant_id(env, "owner", GrantKind.OWNER)
    assert grant_id is not None
    return Prepared(params={"grant_id": grant_id})


async def _grant_id(env: Env, person: str, kind: GrantKind) -> str | None:
    views = await grants.list_grants(
        env.ctx, env.world.actor("owner"), env.world.chargers["wallbox"].id
    )
    return next(
        (
            v.grant.id
            for v in views
            if v.grant.user_id == env.user_id(person) and v.grant.kind == kind
        ),
        None,
    )


async def _rival_grant(env: Env, who: str) -> Prepared:
    """A grant on the other organisation's charger, named under an Acme charger's path."""
    views = await grants.list_grants(
        env.ctx, env.world.actor("other_admin"), env.world.chargers["rival"].id
    )
    return Prepared(params={"grant_id": views[0].grant.id})


async def _rival_invitation(env: Env, who: str) -> Prepared:
    if "rival_invitation" not in env.memo:
        issued = await invitations.invite(
            env.ctx,
            env.world.actor("other_admin"),
            env.world.chargers["rival"].id,
            email="friend@example.com",
            kind=GrantKind.USER,
        )
        env.memo["rival_invitation"] = issued.invitation.id
    return Prepared(params={"invitation_id": env.memo["rival_invitation"]})


async def _open_invitation(env: Env, who: str) -> Prepared:
    """An open invitation to the wallbox (a new one once a call revoked the last)."""
    wallbox = env.world.chargers["wallbox"].id
    owner = env.world.actor("owner")
    pending = await invitations.list_invitations(env.ctx, owner, wallbox)
    if not pending:
        issued = await invitations.invite(
            env.ctx, owner, wallbox, email="friend@example.com", kind=GrantKind.USER
        )
        pending = [issued.invitation]
    return Prepared(params={"invitation_id": pending[0].id})


async def _invitation_for_caller(env: Env, who: str) -> Prepared:
    """An invitation to the lobby charger addressed to the caller (to a spare account for an
    anonymous caller, who is refused before the token is looked at)."""
    if who == ANONYMOUS:
        return await _invitation_for_someone_else(env, who)
    issued = await invitations.invite(
        env.ctx,
        env.world.actor("owner"),
        env.world.chargers["lobby"].id,
        email=env.world.users[who].email,
        kind=GrantKind.USER,
    )
    return Prepared(json={"token": issued.token})


async def _invitation_for_someone_else(env: Env, who: str) -> Prepared:
    """One invitation for ``spare``, which nobody else can accept (so it stays open)."""
    if "spare_invitation" not in env.memo:
        issued = await invitations.invite(
            env.ctx,
            env.world.actor("owner"),
            env.world.chargers["lobby"].id,
            email=env.world.users["spare"].email,
            kind=GrantKind.USER,
        )
        env.memo["spare_invitation"] = issued.token
    return Prepared(json={"token": env.memo["spare_invitation"]})


def _new_charger(env: Env, who: str) -> dict[str, Any]:
    return {
        "serial": env.unique("EVB"),
        "vendor": "Wallbox",
        "model": "Pulsar Plus",
        "firmware": "6.11.2",
    }


# --- ownership -------------------------------------------------------------------------------


async def _charger_of(env: Env, memo: str, owner: str, *, shared: bool = False) -> str:
    """A charger of Acme owned by ``owner`` kept under ``memo`` (a new one once it has no
    owner any more), shared with ``invited`` and ``service`` when ``shared``."""
    if memo in env.memo:
        async with env.ctx.db.read() as session:
            if await ownership.current(session, env.memo[memo]) is not None:
                return env.memo[memo]
    assert env.world.org is not None
    reg = await registration.register(
        env.ctx, env.world.actor("super_admin"), organisation_id=env.world.org.id,
        serial=env.unique("OWN"), vendor="Wallbox", model="Pulsar Plus", firmware="6.11.2",
        owner_email=env.world.users[owner].email,
    )  # fmt: skip
    env.memo[memo] = reg.charger.id
    if shared:
        key = f"charger-{memo}-{next(env.serial)}"
        env.world.chargers[key] = reg.charger
        await share(env.world, key, "invited", GrantKind.USER)
        await share(env.world, key, "service", GrantKind.SERVICE)
    return reg.charger.id


async def _released_charger(env: Env, who: str) -> Prepared:
    return Prepared(params={"charger_id": await _charger_of(env, "release", "owner", shared=True)})


async def _transfer_to_caller(env: Env, who: str) -> Prepared:
    """A charger of ``spare`` offered to the caller (to ``target`` for an anonymous caller)."""
    charger_id = await _charger_of(env, env.unique("accept"), "spare")
    to = "target" if who == ANONYMOUS else who
    started = await transfers.start_transfer(
        env.ctx, env.world.actor("spare"), charger_id, env.world.users[to].email
    )
    return Prepared(params={"transfer_id": started.id})


async def _owners_open_transfer(env: Env, who: str) -> Prepared:
    """An open transfer by ``owner`` to ``spare`` (a new one once a call cancelled it)."""
    charger_id = await _charger_of(env, "cancel", "owner")
    mine = [
        t for t in await transfers.list_transfers(env.ctx, env.world.actor("owner"))
        if t.charger_id == charger_id and t.state == "open"
    ]  # fmt: skip
    if not mine:
        mine = [
            await transfers.start_transfer(
                env.ctx, env.world.actor("owner"), charger_id, "spare@example.com"
            )
        ]
    return Prepared(params={"transfer_id": mine[0].id})


async def _service_grant_end(env: Env, who: str) -> Prepared:
    grant_id = await _grant_id(env, "service", GrantKind.SERVICE)
    assert grant_id is not None
    until = env.ctx.clock.now() + timedelta(days=20)
    return Prepared(params={"grant_id": grant_id}, json={"expires_at": until.isoformat()})


async def _no_open_transfer(env: Env, who: str) -> Prepared:
    """The wallbox without an open transfer (the owner's successful call opens one)."""
    for t in await transfers.list_transfers(env.ctx, env.world.actor("owner")):
        if t.charger_id == env.world.chargers["wallbox"].id and t.state == "open":
            await transfers.cancel_transfer(env.ctx, env.world.actor("owner"), t.id)
    return Prepared(json={"email": "spare@example.com"})


PDF = b"%PDF-1.7\n%%EOF\n"


async def _claim_upload(env: Env, who: str) -> Prepared:
    """A claim form for a charger of ``spare`` (a new one per call: 3 claims per charger)."""
    charger_id = await _charger_of(env, env.unique("claim"), "spare")
    async with env.ctx.db.read() as session:
        serial = (await session.get_one(Charger, charger_id)).serial
    return Prepared(
        files={"document": ("agreement.pdf", PDF, "application/pdf")},
        data={"serial": serial, "installation_address": "1 Quay St", "installer_name": "Volt"},
    )


async def _filed_claim(env: Env, by: str, against: str = "spare") -> str:
    charger_id = await _charger_of(env, env.unique("claimed"), against)
    async with env.ctx.db.read() as session:
        serial = (await session.get_one(Charger, charger_id)).serial
    view = await claims.file_claim(
        env.ctx, env.world.actor(by), serial,
        installation_address="1 Quay St", installer_name="Volt", document=PDF,
    )  # fmt: skip
    return view.id


async def _callers_claim(env: Env, who: str) -> Prepared:
    """A claim the caller filed (``target``'s for an anonymous caller)."""
    return Prepared(
        params={"claim_id": await _filed_claim(env, "target" if who == ANONYMOUS else who)}
    )


async def _claim_against_owner(env: Env, who: str) -> Prepared:
    """A claim by ``spare`` against a charger of ``owner``."""
    return Prepared(params={"claim_id": await _filed_claim(env, "spare", against="owner")})


async def _queued_claim(env: Env, who: str) -> Prepared:
    return Prepared(params={"claim_id": await _filed_claim(env, "target")})


async def _rejectable_claim(env: Env, who: str) -> Prepared:
    return Prepared(
        params={"claim_id": await _filed_claim(env, "target")}, json={"reason": "no proof"}
    )


ORG = "/api/organisations/{org_id}"
CHARGER = "/api/chargers/{charger_id}"
OPTIONAL = "Wallbox 6.8: PIN optional"

ROWS: tuple[Row, ...] = (
    # --- documentation and health: public -------------------------------------------------
    Row(area="people", method="GET", path="/health", expect=public(200)),
    Row(area="people", method="GET", path="/openapi.json", expect=public(200)),
    Row(area="people", method="GET", path="/docs", expect=public(200)),
    Row(area="people", method="GET", path="/docs/oauth2-redirect", expect=public(200)),
    Row(area="people", method="GET", path="/redoc", expect=public(200)),
    # --- accounts -----------------------------------------------------------------------------
    Row(area="people", method="POST", path="/api/auth/login", expect=public(200), prepare=_login),
    Row(
        area="people",
        method="POST",
        path="/api/auth/logout",
        expect=everyone(204),
        prepare=_fresh_token,
    ),
    Row(
        area="people",
        method="POST",
        path="/api/users",
        expect=public(202),
        prepare=_body(
            lambda env, who: {"email": f"{env.unique('signup')}@example.com", "password": PASSWORD}
        ),
        note="with EVACCESS_ALLOW_SIGNUP on (the matrix's setting); off: 403 signup_disabled",
    ),
    Row(area="people", method="GET", path="/api/me", expect=everyone(200)),
    Row(area="people", method="GET", path="/api/me/transactions", expect=everyone(200)),
    # --- organisations --------------------------------------------------------------------------
    Row(area="people", method="GET", path="/api/organisations", expect=everyone(200)),
    Row(
        area="people",
        method="POST",
        path="/api/organisations",
        expect=everyone(403) | {"root": 201},
        prepare=_body(lambda env, who: {"name": env.unique("Org")}),
        note="system administrators only",
    ),
    Row(area="people", method="GET", path=ORG, expect=org(200, *ORG_MEMBERS)),
    Row(
        area="people",
        method="POST",
        path=f"{ORG}/subgroups",
        expect=org(201, "super_admin"),
        prepare=_body(lambda env, who: {"name": env.unique("Depot")}),
    ),
    Row(
        area="people",
        method="PATCH",
        path=f"{ORG}/settings",
        expect=org(200, "super_admin"),
        json={"offline_keypad": True},
    ),
    Row(
        area="people",
        method="GET",
        path=f"{ORG}/members",
        expect=org(200, "super_admin", "admin"),
    ),
    Row(
        area="people",
        method="POST",
        path=f"{ORG}/members",
        expect=org(201, "super_admin", "admin"),
        prepare=_new_account,
        note="role user",
    ),
    Row(
        area="people",
        method="POST",
        path=f"{ORG}/members",
        expect=org(201, "super_admin"),
        prepare=_new_admin_account,
        note="role admin: assigning roles is for super-admins",
    ),
    Row(
        area="people",
        method="PATCH",
        path=f"{ORG}/members/{{user_id}}",
        expect=org(204, "super_admin"),
        json={"role": "user"},
    ),
    Row(area="people", method="GET", path=f"{ORG}/audit", expect=org(200, "super_admin")),
    # --- keypad PINs ------------------------------------------------------------------------------
    Row(
        area="people",
        method="PUT",
        path=f"{ORG}/keypad-pin",
        expect=org(200, *ORG_MEMBERS),
        prepare=_body(lambda env, who: {"pin": env.keypad_pin()}),
    ),
    Row(
        area="people",
        method="POST",
        path=f"{ORG}/keypad-pin/generate",
        expect=org(200, *ORG_MEMBERS),
    ),
    Row(
        area="people",
        method="DELETE",
        path=f"{ORG}/keypad-pin",
        expect=org(204, *ORG_MEMBERS),
        prepare=_own_keypad_pin_exists,
    ),
    Row(
        area="people",
        method="PUT",
        path=f"{ORG}/members/{{user_id}}/keypad-pin",
        expect=org(200, "super_admin", "admin"),
        prepare=_body(lambda env, who: {"pin": env.keypad_pin()}),
    ),
    Row(
        area="people",
        method="POST",
        path=f"{ORG}/members/{{user_id}}/keypad-pin/generate",
        expect=org(200, "super_admin", "admin"),
    ),
    Row(
        area="people",
        method="DELETE",
        path=f"{ORG}/members/{{user_id}}/keypad-pin",
        expect=org(204, "super_admin", "admin"),
        prepare=_target_keypad_pin_exists,
    ),
    Row(
        area="people",
        method="GET",
        path=f"{ORG}/keypad-pins/crowding",
        expect=org(200, "super_admin", "admin"),
    ),
    Row(
        area="people",
        method="PUT",
        path="/api/me/keypad-pin",
        expect=owners(200, 403),
        prepare=_body(lambda env, who: {"pin": env.keypad_pin()}),
        note="a personal PIN: charger owners only",
    ),
    Row(
        area="people",
        method="POST",
        path="/api/me/keypad-pin/generate",
        expect=owners(200, 403),
    ),
    Row(
        area="people",
        method="DELETE",
        path="/api/me/keypad-pin",
        expect=owners(204, 404),
        prepare=_personal_keypad_pin_exists,
    ),
    Row(
        area="people",
        method="PUT",
        path=f"{ORG}/member-access",
        expect=org(200, "super_admin", "admin"),
        json={"member_access": "assigned"},
    ),
    # Last of its area: a password change ends every session of the person who makes it.
    Row(
        area="people",
        method="POST",
        path="/api/auth/password",
        expect=everyone(204),
        prepare=_password_change,
    ),
    # --- chargers ---------------------------------------------------------------------------------
    Row(
        area="chargers",
        method="POST",
        path=f"{ORG}/chargers",
        expect=org(201, "super_admin", "admin"),
        prepare=_body(_new_charger),
    ),
    Row(area="chargers", method="GET", path="/api/chargers", expect=everyone(200)),
    Row(area="chargers", method="GET", path=CHARGER, expect=charger(200, *CHARGER_SEERS)),
    Row(
        area="chargers",
        method="GET",
        path=f"{CHARGER}/transactions",
        expect=charger(200, *CHARGER_SEERS),
        note="everybody's for owner and admins, else one's own",
    ),
    Row(
        area="chargers",
        method="POST",
        path=f"{CHARGER}/assign",
        expect=charger(201, "super_admin"),
        prepare=_body(lambda env, who: {"user_id": env.user_id("target")}),
    ),
    Row(
        area="chargers",
        method="GET",
        path=f"{CHARGER}/security-events",
        expect=charger(200, "owner", "service", "super_admin", "admin"),
    ),
    # --- grants and invitations -----------------------------------------------------------------
    Row(
        area="chargers",
        method="GET",
        path=f"{CHARGER}/grants",
        expect=charger(200, "owner", "super_admin"),
    ),
    Row(
        area="chargers",
        method="DELETE",
        path=f"{CHARGER}/grants/{{grant_id}}",
        expect=charger(204, "owner", "super_admin"),
        prepare=_spare_grant,
    ),
    Row(
        area="chargers",
        method="DELETE",
        path=f"{CHARGER}/grants/{{grant_id}}",
        expect=charger(409, "owner", "super_admin"),
        prepare=_owner_grant,
        code="owner_grant",
        note="the owner grant: ownership ends by transfer",
    ),
    Row(
        area="chargers",
        method="DELETE",
        path=f"{CHARGER}/grants/{{grant_id}}",
        expect=charger(404, "owner", "super_admin"),
        prepare=_rival_grant,
        code="not_found",
        note="a grant on another organisation's charger",
    ),
    Row(
        area="chargers",
        method="POST",
        path=f"{CHARGER}/invitations",
        expect=charger(201, "owner", "super_admin"),
        json={"email": "friend@example.com", "kind": "user"},
    ),
    Row(
        area="chargers",
        method="GET",
        path=f"{CHARGER}/invitations",
        expect=charger(200, "owner", "super_admin"),
    ),
    Row(
        area="chargers",
        method="DELETE",
        path=f"{CHARGER}/invitations/{{invitation_id}}",
        expect=charger(204, "owner", "super_admin"),
        prepare=_open_invitation,
    ),
    Row(
        area="chargers",
        method="DELETE",
        path=f"{CHARGER}/invitations/{{invitation_id}}",
        expect=charger(404, "owner", "super_admin"),
        prepare=_rival_invitation,
        code="not_found",
        note="an invitation to another organisation's charger",
    ),
    Row(
        area="chargers",
        method="POST",
        path="/api/invitations/accept",
        expect=everyone(200),
        prepare=_invitation_for_caller,
        note="addressed to the caller",
    ),
    Row(
        area="chargers",
        method="POST",
        path="/api/invitations/accept",
        expect=everyone(404),
        prepare=_invitation_for_someone_else,
        code="not_found",
        note="addressed to someone else",
    ),
    # --- ownership ---------------------------------------------------------------------------------
    Row(
        area="chargers",
        method="POST",
        path=f"{CHARGER}/transfers",
        expect=charger(201, "owner"),
        prepare=_no_open_transfer,
    ),
    Row(area="chargers", method="GET", path="/api/transfers", expect=everyone(200)),
    Row(
        area="chargers",
        method="POST",
        path="/api/transfers/{transfer_id}/accept",
        expect=everyone(200),
        prepare=_transfer_to_caller,
        note="offered to the caller",
    ),
    Row(
        area="chargers",
        method="POST",
        path="/api/transfers/{transfer_id}/cancel",
        expect={ANONYMOUS: 401} | {who: 200 if who == "owner" else 404 for who in AUTHENTICATED},
        prepare=_owners_open_transfer,
        code="not_found",
        note="started by the owner",
    ),
    Row(
        area="chargers",
        method="POST",
        path=f"{CHARGER}/release",
        expect=charger(200, "owner"),
        prepare=_released_charger,
        note="a charger of its own: the call ends everyone's access",
    ),
    Row(
        area="chargers",
        method="PATCH",
        path=f"{CHARGER}/grants/{{grant_id}}",
        expect=charger(200, "owner", "super_admin"),
        prepare=_service_grant_end,
        note="the end of service access",
    ),
    # --- claims through support --------------------------------------------------------------------
    Row(
        area="claims",
        method="POST",
        path="/api/claims",
        expect=everyone(201),
        prepare=_claim_upload,
        note="a charger of someone else",
    ),
    Row(area="claims", method="GET", path="/api/claims", expect=everyone(200)),
    Row(
        area="claims",
        method="POST",
        path="/api/claims/{claim_id}/withdraw",
        expect=everyone(200),
        prepare=_callers_claim,
        note="filed by the caller",
    ),
    Row(
        area="claims",
        method="POST",
        path="/api/claims/{claim_id}/object",
        expect={ANONYMOUS: 401} | {who: 200 if who == "owner" else 404 for who in AUTHENTICATED},
        prepare=_claim_against_owner,
        code="not_found",
        note="against the owner's charger",
    ),
    Row(area="claims", method="GET", path="/api/support/claims", expect=support_only(200)),
    Row(
        area="claims",
        method="GET",
        path="/api/support/claims/{claim_id}",
        expect=support_only(200),
        prepare=_queued_claim,
    ),
    Row(
        area="claims",
        method="GET",
        path="/api/support/claims/{claim_id}/document",
        expect=support_only(200),
        prepare=_queued_claim,
    ),
    Row(
        area="claims",
        method="POST",
        path="/api/support/claims/{claim_id}/approve",
        expect=support_only(200),
        prepare=_queued_claim,
    ),
    Row(
        area="claims",
        method="POST",
        path="/api/support/claims/{claim_id}/reject",
        expect=support_only(200),
        prepare=_rejectable_claim,
    ),
    # --- Bluetooth PIN ------------------------------------------------------------------------------
    Row(
        area="chargers",
        method="GET",
        path=f"{CHARGER}/bluetooth-pin",
        expect=charger(200, *CHARGER_SEERS),
    ),
    Row(
        area="chargers",
        method="POST",
        path=f"{CHARGER}/bluetooth-pin/reveal",
        expect=charger(200, "owner", "invited", "service"),
        note="Wallbox: owner, invited, service",
    ),
    Row(
        area="chargers",
        method="POST",
        path=f"{CHARGER}/bluetooth-pin/reveal",
        charger="zaptec",
        expect=charger(200, "owner", "service"),
        note="Zaptec: owner and service only",
    ),
    Row(
        area="chargers",
        method="POST",
        path=f"{CHARGER}/bluetooth-pin/reveal",
        charger="old",
        expect=charger(404, *CHARGER_SEERS),
        code="no_bluetooth_pin",
        note="Wallbox 6.7.16: no PIN to reveal",
    ),
    Row(
        area="chargers",
        method="GET",
        path=f"{CHARGER}/bluetooth-pin/reveals",
        expect=charger(200, "owner"),
    ),
    Row(
        area="chargers",
        method="POST",
        path=f"{CHARGER}/bluetooth/revoke-phones",
        expect=charger(202, "owner", "service"),
        json={"phone_id": None},
    ),
    Row(
        area="chargers",
        method="POST",
        path=f"{CHARGER}/bluetooth/reenable-pairing",
        expect=charger(202, "owner", "service"),
    ),
    Row(
        area="chargers",
        method="POST",
        path=f"{CHARGER}/bluetooth-pin/change",
        expect=charger(200, "owner", "service"),
        json={"pin": None},
        note="Wallbox 6.11: changeable",
    ),
    Row(
        area="chargers",
        method="POST",
        path=f"{CHARGER}/bluetooth-pin/change",
        charger="zaptec",
        expect=charger(409, "owner", "service"),
        json={"pin": None},
        code="policy_violation",
        note="Zaptec: fixed PIN",
    ),
    Row(
        area="chargers",
        method="POST",
        path=f"{CHARGER}/bluetooth-pin/enable",
        charger="optional",
        expect=charger(200, "owner"),
        note=OPTIONAL,
    ),
    # --- RFID cards (server/api/cards.py) ---------------------------------------------------------
    Row(
        area="cards",
        method="POST",
        path=f"{ORG}/cards",
        expect=org(201, "super_admin", "admin"),
        prepare=_body(
            lambda env, who: {
                "user_id": env.user_id("target"),
                "type": "ISO14443",
                "number": _card_number(env),
            }
        ),
        note="a card of another member: admins",
    ),
    Row(area="cards", method="GET", path=f"{ORG}/cards", expect=org(200, "super_admin", "admin")),
    Row(
        area="cards",
        method="PATCH",
        path="/api/cards/{card_id}",
        expect=scoped(200, {"super_admin", "admin"}, frozenset({"super_admin", "admin"})),
        prepare=_target_card,
        json={"status": "Blocked"},
        note="a card one may not manage is not there",
    ),
    Row(
        area="cards",
        method="DELETE",
        path="/api/cards/{card_id}",
        expect=scoped(204, {"super_admin", "admin"}, frozenset({"super_admin", "admin"})),
        prepare=_target_card,
    ),
    Row(
        area="cards",
        method="PUT",
        path=f"{ORG}/master-pass-group",
        expect=org(200, "super_admin"),
        json={"group_id": "MASTER"},
    ),
    # --- commissioning (server/api/commissioning.py) ----------------------------------------
    Row(
        area="commissioning",
        method="POST",
        path="/api/commissioning/scan",
        expect=everyone(403),
        prepare=_body(lambda env, who: {"payload": f"EVA1:NOSUCH-{who}:AAAAAAAAAAAAAAAAAAAA"}),
        code="commissioning_code_invalid",
        note="a forged sticker: refused to every account, one failure each",
    ),
)
AREAS = sorted({row.area for row in ROWS})


# --- running a cell ----------------------------------------------------------------------------


def denied_first(expect: Expectation) -> list[str]:
    """Relations in the order to try them: refusals before successes."""
    return sorted(RELATIONS, key=lambda who: 200 <= expect[who] < 300)


async def call(
    env: Env, row: Row, who: str, prepared: Prepared | None = None, **override: str
) -> httpx.Response:
    if prepared is None:
        prepared = await row.prepare(env, who) if row.prepare else Prepared()
    assert env.world.org is not None
    params = {
        "org_id": env.world.org.id,
        "charger_id": env.world.chargers[row.charger].id,
        "user_id": env.user_id(row.target),
        **prepared.params,
        **override,
    }
    token = prepared.token or (None if who == ANONYMOUS else await env.token(who))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    json = prepared.json if prepared.json is not None else row.json
    if prepared.files is not None:
        response = await env.client.request(
            row.method,
            row.path.format(**params),
            files=prepared.files,
            data=prepared.data,
            headers=headers,
        )
    else:
        response = await env.client.request(
            row.method, row.path.format(**params), json=json, headers=headers
        )
    _remember_secrets(env.canaries, response)
    return response


def _remember_secrets(canaries: Canaries, response: httpx.Response) -> None:
    if response.content and response.headers["content-type"].startswith("application/json"):
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("pin"), str):
            canaries.add(body["pin"])


@pytest.mark.settings(allow_signup=True)
@pytest.mark.parametrize("area", AREAS)
async def test_matrix(ctx: Any, canaries: Canaries, area: str) -> None:
    env = await make_env(ctx, canaries)
    wrong: list[str] = []
    cells = 0
    async with env.client:
        for row in (r for r in ROWS if r.area == area):
            assert set(row.expect) == set(RELATIONS), row.name
            for who in denied_first(row.expect):
                response = await call(env, row, who)
                cells += 1
                if response.status_code != row.expect[who]:
                    wrong.append(
                        f"{row.name} as {who}: expected {row.expect[who]}, got "
                        f"{response.status_code} {response.text[:160]}"
                    )
                elif response.status_code >= 400:
                    _assert_problem(response, row, who)
    assert not wrong, f"{len(wrong)} of {cells} cells wrong:\n" + "\n".join(wrong)


def _assert_problem(response: httpx.Response, row: Row, who: str) -> None:
    """A refusal is a problem document with the stable code its status implies."""
    assert response.headers["content-type"].startswith("application/problem+json"), row.name
    body = response.json()
    assert body["status"] == response.status_code, (row.name, who)
    if response.status_code == 401:
        assert body["code"] == "not_authenticated", (row.name, who)
        assert response.headers["www-authenticate"] == "Bearer"
    elif response.status_code == 403:  # a role refused, or the row's own refusal
        assert body["code"] in {"permission_denied", row.code}, (row.name, who, body)
    elif row.code is not None and (who in CHARGER_SEERS or "{charger_id}" not in row.path):
        assert body["code"] == row.code, (row.name, who, body)


# --- coverage of the table ------------------------------------------------------------------------


# Routes that HTTP requests cannot exercise (a WebSocket endpoint, a mounted app) are listed
# here with the test that covers their authorization, so that none is skipped silently.
OUTSIDE_THE_MATRIX: dict[tuple[str, str], str] = {
    ("MOUNT", "/docs/static"): "public scripts and styles of /docs: tests/server/test_docs.py",
    ("MOUNT", "/static"): "the portal's public scripts and styles: tests/portal/",
}


def _walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:  # FastAPI keeps included routers as a branch
            inner = prefix + getattr(getattr(route, "include_context", None), "prefix", "")
            yield from _walk(included.routes, inner)
            continue
        if isinstance(route, PortalRoute):  # pages: tests/portal/test_portal_routes.py
            continue
        path = prefix + str(getattr(route, "path", repr(route)))
        methods = getattr(route, "methods", None)
        if not methods:  # a WebSocket route or a mount
            yield type(route).__name__.upper(), path
        for method in methods or ():
            if method != "HEAD":
                yield method, path


def test_every_route_has_an_expectation() -> None:
    app = create_app(Settings())
    served = set(_walk(app.routes))
    documented = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    assert documented <= served, documented - served  # the walk misses nothing
    covered = {row.route for row in ROWS} | set(OUTSIDE_THE_MATRIX)
    assert served - covered == set(), f"routes without a row: {sorted(served - covered)}"
    assert covered - served == set(), f"rows for no route: {sorted(covered - served)}"


def test_every_row_names_every_relation() -> None:
    for row in ROWS:
        assert set(row.expect) == set(RELATIONS), row.name
        assert row.expect[ANONYMOUS] in (200, 201, 202, 401), row.name


# --- invisible looks exactly like missing ----------------------------------------------------------

# Who asks, and about which real thing they may not see: the other organisation's charger
# for Acme people, an Acme charger for those without a grant on it or a seat in Acme.
INVISIBLE_CHARGERS = (
    ("owner", "rival"),
    ("super_admin", "rival"),
    ("member", "wallbox"),
    ("other_admin", "wallbox"),
    ("stranger", "wallbox"),
)
INVISIBLE_ORGS = (("super_admin", "other_org"), ("owner", "other_org"), ("other_admin", "org"))


def _without_request_id(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and the exact body bytes, less the (per-request) request id."""
    request_id = response.json()["request_id"]
    headers = sorted(
        (name, value.replace(request_id, ""))
        for name, value in response.headers.items()
        if name not in ("date", "x-request-id")
    )
    return response.status_code, headers, response.content.replace(request_id.encode(), b"")


async def test_invisible_answers_exactly_like_missing(ctx: Any, canaries: Canaries) -> None:
    """Same status, same code, same detail, same bytes: a random UUID and a real charger or
    organisation the caller may not see cannot be told apart, on every route that names one."""
    env = await make_env(ctx, canaries)
    assert env.world.org is not None
    assert env.world.other_org is not None
    orgs = {"org": env.world.org.id, "other_org": env.world.other_org.id}
    cases: list[tuple[Row, str, dict[str, str]]] = []
    for row in {r.route: r for r in ROWS}.values():
        if "{charger_id}" in row.path:
            cases += [
                (row, who, {"charger_id": env.world.chargers[key].id})
                for who, key in INVISIBLE_CHARGERS
            ]
        if "{org_id}" in row.path:
            cases += [(row, who, {"org_id": orgs[key]}) for who, key in INVISIBLE_ORGS]
    prepared: dict[tuple[str, str], Prepared] = {}
    async with env.client:
        for row, who, real_ids in cases:
            name = next(iter(real_ids))
            ids = {"grant_id": str(uuid.uuid4()), "invitation_id": str(uuid.uuid4())}
            if row.route not in prepared:  # refused before the body matters: prepare once
                prepared[row.route] = await row.prepare(env, who) if row.prepare else Prepared()
            body = prepared[row.route]
            real = await call(env, row, who, body, **ids, **real_ids)
            missing = await call(env, row, who, body, **ids, **{name: str(uuid.uuid4())})
            assert real.status_code == 404, (row.name, who, real.text)
            assert real.json()["code"] == "not_found", (row.name, who)
            assert _without_request_id(real) == _without_request_id(missing), (row.name, who)
    assert len(cases) > 100


# --- listings agree with the detail routes -------------------------------------------------------


async def test_listings_show_exactly_what_the_detail_routes_allow(
    ctx: Any, canaries: Canaries
) -> None:
    """``GET /api/chargers`` and ``GET /api/organisations`` list what the caller may open,
    no more, no less; a subgroup's admin sees the subgroup's chargers, not its parent's."""
    env = await make_env(ctx, canaries)
    world = env.world
    assert world.subgroup is not None
    assert world.org is not None
    assert world.other_org is not None
    world.users["depot_admin"] = await accounts.create_user(ctx, "depot@example.com", PASSWORD)
    await organisations.add_member(
        ctx, world.actor("super_admin"), world.subgroup.id, "depot@example.com", Role.ADMIN
    )
    reg = await registration.register(
        ctx,
        world.actor("depot_admin"),
        organisation_id=world.subgroup.id,
        serial="DP-700007",
        vendor="Zaptec",
        model="Pro",
        firmware="2.4.1",
    )
    world.chargers["depot"] = reg.charger
    orgs = {"org": world.org.id, "subgroup": world.subgroup.id, "other_org": world.other_org.id}
    sees_chargers: dict[str, set[str]] = {}
    sees_orgs: dict[str, set[str]] = {}
    async with env.client:
        for who in (*AUTHENTICATED, "depot_admin"):
            headers = {"Authorization": f"Bearer {await env.token(who)}"}
            listed = await env.client.get("/api/chargers", headers=headers)
            openable = set()
            for key, c in world.chargers.items():
                detail = await env.client.get(f"/api/chargers/{c.id}", headers=headers)
                assert detail.status_code in (200, 404), (who, key, detail.status_code)
                if detail.status_code == 200:
                    openable.add(c.serial)
            assert {c["serial"] for c in listed.json()} == openable, who
            sees_chargers[who] = {k for k, c in world.chargers.items() if c.serial in openable}
            listed = await env.client.get("/api/organisations", headers=headers)
            openable = set()
            for key, org_id in orgs.items():
                detail = await env.client.get(f"/api/organisations/{org_id}", headers=headers)
                if detail.status_code == 200:
                    openable.add(key)
            assert {orgs_key(orgs, o["id"]) for o in listed.json()} == openable, who
            sees_orgs[who] = openable
    acme = {"wallbox", "zaptec", "optional", "old", "lobby", "depot"}
    assert sees_chargers["super_admin"] == acme
    assert sees_chargers["admin"] == acme
    assert sees_chargers["owner"] == acme - {"depot"}
    assert sees_chargers["invited"] == sees_chargers["service"] == {
        "wallbox", "zaptec", "optional", "old"
    }  # fmt: skip
    assert sees_chargers["depot_admin"] == {"depot"}
    assert sees_chargers["other_admin"] == {"rival"}
    for nobody in ("root", "member", "stranger"):
        assert sees_chargers[nobody] == set(), nobody
    assert sees_orgs["super_admin"] == sees_orgs["member"] == {"org", "subgroup"}
    assert sees_orgs["depot_admin"] == {"subgroup"}
    assert sees_orgs["other_admin"] == {"other_org"}
    assert sees_orgs["invited"] == sees_orgs["stranger"] == sees_orgs["root"] == set()


def orgs_key(orgs: Mapping[str, str], org_id: str) -> str:
    return next((key for key, value in orgs.items() if value == org_id), org_id)


# --- access ends when it should ------------------------------------------------------------------


async def test_access_ends_with_the_grant_and_the_token(ctx: Any, canaries: Canaries) -> None:
    """An expired service grant, a revoked user grant and a logged-out token all stop
    working at once, on every charger route (the charger then looks missing)."""
    env = await make_env(ctx, canaries)
    world = env.world
    await share(world, "zaptec", "spare", GrantKind.SERVICE, expires_in=timedelta(hours=1))
    rows = [r for r in ROWS if "{charger_id}" in r.path and r.method == "GET"]
    async with env.client:
        for row in rows:
            assert (await call(env, replace(row, charger="zaptec"), "spare")).status_code != 404

        ctx.clock.advance(3601)  # the service visit is over
        invited_grant = await _grant_id(env, "invited", GrantKind.USER)
        assert invited_grant is not None
        revoked = await env.client.delete(
            f"/api/chargers/{world.chargers['wallbox'].id}/grants/{invited_grant}",
            headers={"Authorization": f"Bearer {await env.token('owner')}"},
        )
        assert revoked.status_code == 204
        token = await env.token("service")
        out = await env.client.post(
            "/api/auth/logout", headers={"Authorization": f"Bearer {token}"}
        )
        assert out.status_code == 204
        for row in rows:
            expired = await call(env, replace(row, charger="zaptec"), "spare")
            assert expired.status_code == 404, (row.name, "expired service grant")
            gone = await call(env, row, "invited")
            assert gone.status_code == 404, (row.name, "revoked user grant")
            logged_out = await call(env, row, "service")
            assert logged_out.status_code == 401, (row.name, "logged-out token")
        # The invited person keeps the chargers still shared with them.
        still = await env.client.get(
            f"/api/chargers/{world.chargers['zaptec'].id}",
            headers={"Authorization": f"Bearer {await env.token('invited')}"},
        )
        assert still.status_code == 200
