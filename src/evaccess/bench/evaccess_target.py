"""The evaccess server under benchmark: the real OCPP endpoint on the real database backend
(SQLite in a work directory), seeded with chargers, their owners and real keypad PINs.

``python -m evaccess.bench.evaccess_target WORKDIR CHARGERS`` seeds (or reuses) the
database, writes ``identities.json`` (serial, OCPP password, keypad code per charger) and
prints ``READY <port>`` once the endpoint listens. Seeding goes through bulk inserts with
the server's own hashing and key handling: 10,000 chargers take seconds, not minutes.

``--api-users N`` (with ``--seed-only``) also seeds the people ``evaccess bench api`` logs
in as (``seed_api``). The database is ``EVACCESS_DATABASE_URL`` when set (the bench sets
it for a PostgreSQL run), else SQLite in WORKDIR; keys are ``EVACCESS_KEYS_DIR`` or
WORKDIR/keys, as for the server that serves the data directory afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import resource
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, text

from evaccess.bench.fleet import FLEET_FIRMWARE, FLEET_MODEL, FLEET_VENDOR
from evaccess.domain.access import GrantKind, Role
from evaccess.domain.clock import SystemClock, SystemRandom
from evaccess.domain.pins import trivial_reasons
from evaccess.server.bootstrap import build_context
from evaccess.server.context import Context
from evaccess.server.db.migrate import upgrade
from evaccess.server.db.models import (
    Charger,
    Grant,
    KeypadPin,
    Membership,
    Organisation,
    OutboxCommand,
    Ownership,
    User,
)
from evaccess.server.db.types import new_id
from evaccess.server.ocpp.server import serve_ocpp
from evaccess.server.services import bluetooth_pins
from evaccess.server.services.ocpp_backend import DbOcppBackend
from evaccess.server.services.ocpp_passwords import hash_ocpp_password
from evaccess.server.settings import Settings

KEYPAD_DIGITS = 8  # 10,000 users need a roomy PIN space
IDENTITIES = "identities.json"
API_IDENTITIES = "api-identities.json"
API_ORGANISATION = "Benchmark API members"
API_KEYPAD_DIGITS = 8
"""The bench sets thousands of fresh keypad PINs in the API members' space: a roomy one."""


def _settings(workdir: Path, database_url: str | None = None) -> Settings:
    if database_url is None:
        return Settings(data_dir=workdir, log_level="WARNING")
    return Settings(data_dir=workdir, log_level="WARNING", database_url=database_url)


async def seed(
    workdir: Path, chargers: int, *, database_url: str | None = None
) -> list[dict[str, str]]:
    """Create ``chargers`` chargers, each owned by its own user with an 8-digit keypad PIN
    (in ``workdir``'s SQLite database unless ``database_url`` names another; keys in
    ``workdir/keys``)."""
    path = workdir / IDENTITIES
    if path.exists():
        existing = json.loads(path.read_text())
        if len(existing) >= chargers:
            return list(existing[:chargers])
    settings = _settings(workdir, database_url)
    await upgrade(settings.resolved_database_url)
    ctx = build_context(settings, clock=SystemClock(), rng=SystemRandom())
    now = datetime.now(UTC)
    pick = random.Random(2026)  # the bench's identities, not secrets of anyone
    org_id = new_id()
    identities: list[dict[str, str]] = []
    users, members, rows, owners, grants, pins = [], [], [], [], [], []
    codes: set[str] = set()
    for index in range(chargers):
        user_id, charger_id, ownership_id = new_id(), new_id(), new_id()
        serial = f"BENCH{index:06d}"
        password = f"bench-password-{index:06d}-{pick.getrandbits(64):016x}"
        code = ""
        while not code or code in codes or trivial_reasons(code):
            code = f"{pick.randrange(10**KEYPAD_DIGITS):0{KEYPAD_DIGITS}d}"
        codes.add(code)
        identities.append({"serial": serial, "password": password, "keycode": code})
        users.append(
            {
                "id": user_id,
                "email": f"driver{index}@bench.example.com",
                "password_hash": "!",
                "is_system_admin": False,
                "created_at": now,
            }
        )
        members.append(
            {
                "id": new_id(),
                "user_id": user_id,
                "organisation_id": org_id,
                "role": Role.USER,
                "created_at": now,
            }
        )
        rows.append(
            {
                "id": charger_id,
                "serial": serial,
                "organisation_id": org_id,
                "vendor": FLEET_VENDOR,
                "model": FLEET_MODEL,
                "firmware": FLEET_FIRMWARE,
                "production_date": None,
                "has_bluetooth": False,
                "has_keypad": True,
                "ocpp_password_hash": hash_ocpp_password(password),
                "created_at": now,
                "online": False,
                "local_list_version": 0,
            }
        )
        owners.append(
            {"id": ownership_id, "charger_id": charger_id, "owner_id": user_id, "started_at": now}
        )
        grants.append(
            {
                "id": new_id(),
                "charger_id": charger_id,
                "user_id": user_id,
                "kind": GrantKind.OWNER,
                "ownership_id": ownership_id,
                "created_at": now,
            }
        )
        pins.append({"id": new_id(), "pin_space_id": org_id, "user_id": user_id,
                     "digest": ctx.keypad_hasher.digest(org_id, code), "digits": KEYPAD_DIGITS,
                     "set_by": user_id, "updated_at": now})  # fmt: skip
    async with ctx.db.transaction() as session:
        await session.execute(
            insert(Organisation).values(
                id=org_id, name="Benchmark fleet", root_id=org_id, keypad_pin_digits=KEYPAD_DIGITS,
                offline_keypad=False, created_at=now,
            )
        )  # fmt: skip
        for model, values in (
            (User, users),
            (Membership, members),
            (Charger, rows),
            (Ownership, owners),
            (Grant, grants),
            (KeypadPin, pins),
        ):
            for start in range(0, len(values), 2000):
                await session.execute(insert(model), values[start : start + 2000])
    await analyze(ctx)
    await ctx.db.dispose()
    path.write_text(json.dumps(identities))
    return identities


async def analyze(ctx: Context) -> None:
    """Give PostgreSQL's planner statistics for what was just bulk-inserted, as autovacuum
    gives a database in use within a minute or so. Without them it took the seeded tables
    for a few rows each, and the keypad index reload of a 1,200-charger organisation ran as
    a 1.4-million-row nested loop: 2.2 s instead of ~40 ms (bench cluster)."""
    if ctx.db.engine.dialect.name == "postgresql":
        async with ctx.db.engine.begin() as conn:
            await conn.execute(text("ANALYZE"))


async def seed_api(workdir: Path, users: int) -> dict[str, object]:
    """``users`` members of their own organisation (8-digit keypad PINs), each with a real
    argon2id password hash from the server's own hasher and owning one Wallbox on firmware
    6.11.2 with Bluetooth (policy: a mandatory, changeable PIN). Each charger's PIN is made
    by the server's registration path (``bluetooth_pins.registration_rows``: generated,
    sealed, a SetBluetoothPin command queued) and confirmed as a charger's Accepted answer
    confirms it (``bluetooth_pins.confirm_push``): an active PIN, as in service.

    Every member shares one password (one argon2id hash, computed once; a login still
    verifies it in full). Writes ``api-identities.json`` (the password, the organisation,
    each member's email and charger id) for the bench; no PIN is written anywhere."""
    path = workdir / API_IDENTITIES
    if path.exists():
        existing: dict[str, object] = json.loads(path.read_text())
        return existing
    settings = _settings(workdir)
    await upgrade(settings.resolved_database_url)
    ctx = build_context(settings, clock=SystemClock(), rng=SystemRandom())
    password = f"bench-{secrets.token_urlsafe(18)}"
    password_hash = await asyncio.to_thread(ctx.passwords.hash, password)
    now = datetime.now(UTC)
    org = Organisation(
        id=new_id(), name=API_ORGANISATION, keypad_pin_digits=API_KEYPAD_DIGITS,
        offline_keypad=False, created_at=now,
    )  # fmt: skip
    org.root_id = org.id
    members: list[dict[str, str]] = []
    async with ctx.db.transaction() as session:
        session.add(org)
        await session.flush()  # no ORM relationships: flushed parents first, by hand
        chargers: list[Charger] = []
        linked: list[Membership | Ownership | Grant] = []
        for index in range(users):
            user = User(
                id=new_id(), email=f"api-member{index}@bench.example.com",
                password_hash=password_hash, is_system_admin=False, created_at=now,
            )  # fmt: skip
            charger = Charger(
                id=new_id(), serial=f"BENCHAPI{index:06d}", organisation_id=org.id,
                vendor="Wallbox", model="Pulsar Max", firmware="6.11.2", production_date=None,
                has_bluetooth=True, has_keypad=True, ocpp_password_hash="!", created_at=now,
                online=False, local_list_version=0,
            )  # fmt: skip
            ownership = Ownership(
                id=new_id(), charger_id=charger.id, owner_id=user.id, started_at=now
            )
            session.add_all([user, charger])
            linked.extend(
                [
                    Membership(id=new_id(), user_id=user.id, organisation_id=org.id,
                               role=Role.USER, created_at=now),
                    ownership,
                    Grant(id=new_id(), charger_id=charger.id, user_id=user.id,
                          kind=GrantKind.OWNER, ownership_id=ownership.id, created_at=now),
                ]
            )  # fmt: skip
            chargers.append(charger)
            members.append({"email": user.email, "charger_id": charger.id})
        await session.flush()
        session.add_all([row for row in linked if isinstance(row, Membership | Ownership)])
        await session.flush()
        session.add_all([row for row in linked if isinstance(row, Grant)])
        await session.flush()
        for charger in chargers:
            rows = bluetooth_pins.registration_rows(ctx, charger)
            session.add_all(rows)
            await session.flush()
            (command,) = (row for row in rows if isinstance(row, OutboxCommand))
            await bluetooth_pins.confirm_push(session, ctx, charger, command, accepted=True)
    await analyze(ctx)
    await ctx.db.dispose()
    seeded: dict[str, object] = {
        "organisation_id": org.id,
        "password": password,
        "digits": API_KEYPAD_DIGITS,
        "members": members,
    }
    path.write_text(json.dumps(seeded))
    path.chmod(0o600)
    return seeded


async def serve(workdir: Path, chargers: int) -> None:
    await seed(workdir, chargers)
    settings = _settings(workdir)
    ctx = build_context(settings, clock=SystemClock(), rng=SystemRandom())
    server = await serve_ocpp(DbOcppBackend(ctx), host="127.0.0.1", port=0, clock=ctx.clock)
    ctx.notifier.target = server.notifier
    sys.stdout.write(f"READY {server.port}\n")
    sys.stdout.flush()
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()
        await ctx.db.dispose()


async def _seed_all(workdir: Path, chargers: int, api_users: int) -> None:
    await seed(workdir, chargers)
    if api_users:
        await seed_api(workdir, api_users)


def main(argv: list[str]) -> None:
    """``WORKDIR CHARGERS``: seed and serve; ``WORKDIR CHARGERS --seed-only [--api-users
    N]``: seed, print ``SEEDED`` and exit (``evaccess server run`` then serves that data
    directory)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if argv[2:3] == ["--seed-only"]:
        api_users = int(argv[4]) if argv[3:4] == ["--api-users"] else 0
        asyncio.run(_seed_all(Path(argv[0]), int(argv[1]), api_users))
        sys.stdout.write("SEEDED\n")
        sys.stdout.flush()
        return
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(Path(argv[0]), int(argv[1])))


if __name__ == "__main__":
    main(sys.argv[1:])
