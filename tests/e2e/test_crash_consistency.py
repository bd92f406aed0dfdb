"""Issue 9's crash consistency: the server killed with SIGKILL at each step of an ownership
transfer acceptance restarts into a state with exactly one owner and nothing half revoked.

The server is the real ``evaccess server run`` process; a test-only hook on its PYTHONPATH
(``tests/e2e/crash_hook/sitecustomize.py``) numbers the acceptance's steps (every SQL
statement, the commit, the service's return) and kills the process at step N. One run per
N, N = 1, 2, ... until the crash falls after the return: every run starts the server again
on the database the previous run crashed (so each start is the restart under test, and a
database still in its old state is the next run's starting point), checks the state, then
asks for the acceptance again. SQLite (a file) and PostgreSQL (a database of its own)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from evaccess.domain.access import GrantKind
from evaccess.domain.clock import SystemClock
from evaccess.domain.ownership_transfer import TransferState
from evaccess.server.bootstrap import build_context
from evaccess.server.db.migrate import upgrade
from evaccess.server.db.models import (
    BluetoothPin,
    Grant,
    Invitation,
    OutboxCommand,
    Ownership,
    OwnershipTransfer,
    PhoneCredential,
)
from evaccess.server.services import keypad_pins, ownership, transfers
from evaccess.server.services.invitations import invite
from evaccess.server.services.outbox import CommandKind
from evaccess.server.settings import Settings
from tests.conftest import POSTGRES_URL
from tests.e2e.conftest import EVACCESS, Cli, _wait_for_health, free_port
from tests.server.support import PASSWORD, add_charger, build_world, share

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

HOOK = Path(__file__).parent / "crash_hook"
ROOT = Path(__file__).resolve().parents[2]
SERIAL = "WB-900009"


@dataclass(frozen=True)
class Seeded:
    charger_id: str
    old_owner: str
    new_owner: str
    transfer_id: str
    token: str
    """The recipient's API token (tokens live in the database: it survives restarts)."""
    old: State


@dataclass(frozen=True)
class State:
    owners: tuple[str, ...]
    grants: frozenset[tuple[str, str]]
    invitations: frozenset[str]
    phones: frozenset[str]
    transfer: str
    commands: frozenset[tuple[str, str]]
    """Open outbox commands (id, kind)."""
    pin: tuple[bool, object]
    """The Bluetooth PIN row: has a pending PIN, when it last changed (never ciphertexts:
    they would show in an assertion message)."""


async def _state(url: str, charger_id: str, transfer_id: str) -> State:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:

            async def ids(statement: object) -> list[tuple[str, ...]]:
                return [tuple(row) for row in (await conn.execute(statement)).all()]  # type: ignore[arg-type]

            owners = await ids(
                select(Ownership.owner_id).where(
                    Ownership.charger_id == charger_id, Ownership.ended_at.is_(None)
                )
            )
            grants = await ids(
                select(Grant.user_id, Grant.kind).where(
                    Grant.charger_id == charger_id, Grant.revoked_at.is_(None)
                )
            )
            invitations = await ids(
                select(Invitation.id).where(
                    Invitation.charger_id == charger_id,
                    Invitation.revoked_at.is_(None),
                    Invitation.accepted_at.is_(None),
                )
            )
            phones = await ids(
                select(PhoneCredential.id).where(
                    PhoneCredential.charger_id == charger_id, PhoneCredential.revoked_at.is_(None)
                )
            )
            [(transfer,)] = await ids(
                select(OwnershipTransfer.state).where(OwnershipTransfer.id == transfer_id)
            )
            commands = await ids(
                select(OutboxCommand.id, OutboxCommand.kind).where(
                    OutboxCommand.charger_id == charger_id, OutboxCommand.completed_at.is_(None)
                )
            )
            [pin] = await ids(
                select(BluetoothPin.pending_ciphertext.is_not(None), BluetoothPin.updated_at).where(
                    BluetoothPin.charger_id == charger_id
                )
            )
    finally:
        await engine.dispose()
    return State(
        owners=tuple(o for (o,) in owners),
        grants=frozenset((u, str(k)) for u, k in grants),
        invitations=frozenset(i for (i,) in invitations),
        phones=frozenset(p for (p,) in phones),
        transfer=transfer,
        commands=frozenset((i, k) for i, k in commands),
        pin=(pin[0], pin[1]),
    )


async def _seed(url: str, data_dir: Path) -> Seeded:
    """The world of tests/server, and in it a charger with a keypad and a changeable
    Bluetooth PIN that the owner shared with a user and a service account, with an open
    invitation, two phone credentials and the owner's keypad PIN; then the owner offers the
    charger to the stranger."""
    await upgrade(url)
    settings = Settings(database_url=url, data_dir=data_dir)
    ctx = build_context(
        settings, clock=SystemClock(), passwords=PasswordHasher.from_parameters(CHEAPEST)
    )
    try:
        world = await build_world(ctx)
        charger = await add_charger(
            world, "crash", serial=SERIAL, vendor="Wallbox", model="Pulsar Max",
            firmware="6.11.4", owner="owner", keypad=True,
        )  # fmt: skip
        await share(world, "crash", "invited", GrantKind.USER)
        await share(world, "crash", "service", GrantKind.SERVICE)
        await invite(
            ctx, world.actor("owner"), charger.id, email="later@example.com", kind=GrantKind.USER
        )
        await keypad_pins.set_personal_pin(ctx, world.actor("owner"), None)
        async with ctx.db.transaction() as session:
            owned = await ownership.current(session, charger.id)
            assert owned is not None
            for person in ("owner", "invited"):
                session.add(
                    PhoneCredential(
                        charger_id=charger.id,
                        ownership_id=owned.id,
                        phone_id=secrets.token_hex(8),
                        user_id=world.users[person].id,
                        created_at=ctx.clock.now(),
                    )
                )
        started = await transfers.start_transfer(
            ctx, world.actor("owner"), charger.id, world.users["stranger"].email
        )
        seeded = Seeded(
            charger_id=charger.id,
            old_owner=world.users["owner"].id,
            new_owner=world.users["stranger"].id,
            transfer_id=started.id,
            token=await world.token("stranger"),
            old=await _state(url, charger.id, started.id),
        )
    finally:
        await ctx.db.dispose()
    assert seeded.old.owners == (seeded.old_owner,)
    assert len(seeded.old.grants) == 3 and len(seeded.old.phones) == 2  # owner, user, service
    assert len(seeded.old.invitations) == 1 and seeded.old.transfer == TransferState.OPEN
    return seeded


def _check(state: State, seeded: Seeded) -> str:
    """Exactly one owner, and everything else of a piece with it: ``old`` or ``new``."""
    old = seeded.old
    if state.owners == (seeded.old_owner,):
        assert state == old, "the old owner, but not everything of the old ownership is intact"
        return "old"
    assert state.owners == (seeded.new_owner,), f"owners: {state.owners}"
    assert state.grants == {(seeded.new_owner, GrantKind.OWNER.value)}
    assert not state.invitations and not state.phones
    assert state.transfer == TransferState.ACCEPTED
    new_kinds = sorted(kind for _, kind in state.commands - old.commands)
    assert CommandKind.REVOKE_CREDENTIALS in new_kinds, new_kinds
    assert CommandKind.SEND_LOCAL_LIST in new_kinds, new_kinds
    assert CommandKind.SET_BLUETOOTH_PIN in new_kinds, new_kinds  # the rotated PIN, pushed
    assert state.pin[0] and state.pin[1] != old.pin[1]
    return "new"


@dataclass
class Crashes:
    """Starts the server on one database, armed to die at a step, and asks it to accept."""

    env: dict[str, str]
    url: str
    seeded: Seeded
    journal: Path
    log: Path
    starts: int = 0

    def start(self, crash_at: int | None) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        env = self.env | {"EVACCESS_OCPP_PORT": str(free_port())}
        if crash_at is not None:
            env |= {
                "PYTHONPATH": os.pathsep.join((str(HOOK), str(ROOT), env.get("PYTHONPATH", ""))),
                "EVACCESS_TEST_CRASH_AT": str(crash_at),
                "EVACCESS_TEST_CRASH_LOG": str(self.journal),
            }
        with self.log.open("ab") as out:
            process = subprocess.Popen(
                (*EVACCESS, "server", "run", "--port", str(port)),
                stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env,
            )  # fmt: skip
        self.starts += 1
        url = f"http://127.0.0.1:{port}"
        _wait_for_health(process, url)
        return process, url

    def accept(self, url: str) -> httpx.Response | None:
        try:
            return httpx.post(
                f"{url}/api/transfers/{self.seeded.transfer_id}/accept",
                headers={"Authorization": f"Bearer {self.seeded.token}"},
                timeout=60,
            )
        except httpx.TransportError:  # the server died before it answered
            return None

    def state(self) -> str:
        return _check(
            asyncio.run(_state(self.url, self.seeded.charger_id, self.seeded.transfer_id)),
            self.seeded,
        )

    def crashed_at(self, step: int) -> str:
        """The kind of step the last run crashed at (it was the last one it wrote down)."""
        number, kind, *_ = self.journal.read_text().splitlines()[-1].split(" ", 2)
        assert int(number) == step, number
        return kind

    def last_run(self) -> list[str]:
        """Every step of the last run (the one that reached the return): ``kind what``."""
        lines = self.journal.read_text().splitlines()
        first = max(i for i, line in enumerate(lines) if line.startswith("1 "))
        return [line.split(" ", 1)[1] for line in lines[first:]]


def _run(crashes: Crashes) -> list[str]:
    """N = 1, 2, ...: start (the restart after the previous crash), check, accept, die at N."""
    kinds: list[str] = []
    step = 1
    while True:
        process, url = crashes.start(crash_at=step)
        try:
            assert crashes.state() == "old", f"after the crash at step {step - 1}"
            answer = crashes.accept(url)
            assert answer is None, f"step {step}: answered {answer.status_code if answer else ''}"
            process.wait(timeout=60)
            assert process.returncode == -signal.SIGKILL, process.returncode
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        kinds.append(crashes.crashed_at(step))
        if kinds[-1] == "returned":
            break
        step += 1
    process, _ = crashes.start(crash_at=None)  # the restart after the last crash
    try:
        assert crashes.state() == "new"
    finally:
        process.terminate()
        stopped = process.wait(timeout=30)
    assert stopped == 0  # a clean shutdown: the background tasks stop, the database closes
    written = crashes.log.read_text() + crashes.journal.read_text()
    assert "Traceback" not in written
    assert PASSWORD not in written and crashes.seeded.token not in written
    _check_steps(kinds, crashes.last_run())
    return kinds


def _check_steps(kinds: list[str], steps: list[str]) -> None:
    """Each run crashed at the step it was armed for, and those steps were all of the
    acceptance: its statements (the handover's writes among them), its commit, its return."""
    assert [step.split(" ", 1)[0] for step in steps] == kinds, (kinds, steps)
    assert kinds[-2:] == ["commit", "returned"], steps
    assert kinds.count("commit") == 1 and kinds.count("statement") == len(kinds) - 2, steps
    for write in (
        "UPDATE ownerships",
        "UPDATE grants",
        "UPDATE invitations",
        "UPDATE phone_credentials",
        "UPDATE ownership_transfers",
        "INSERT INTO ownerships",
        "INSERT INTO charger_commands",
        "UPDATE bluetooth_pins",
        # The audit record: on PostgreSQL with the head's move in one statement
        # (``audit._APPEND_ONE``: ``WITH moved AS (UPDATE audit_head …) INSERT INTO …``).
        ("INSERT INTO audit_records", "WITH moved AS (UPDATE"),
    ):
        forms = (write,) if isinstance(write, str) else write
        assert any(step.startswith(f"statement {form}") for step in steps for form in forms), (
            write,
            steps,
        )


@pytest.fixture
def postgres_url() -> Iterator[str]:
    if not POSTGRES_URL:
        pytest.skip("EVACCESS_TEST_POSTGRES_URL is not set")
    import asyncpg

    base, _, _ = POSTGRES_URL.rpartition("/")
    admin = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    name = f"evaccess_crash_{secrets.token_hex(6)}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f"CREATE DATABASE {name}"))
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def _crashes(cli: Cli, tmp_path: Path, url: str, *, sqlite: bool) -> Crashes:
    data = Path(cli.env["EVACCESS_DATA_DIR"])
    env = cli.env if sqlite else cli.env | {"EVACCESS_DATABASE_URL": url}
    seeded = asyncio.run(_seed(url, data))
    return Crashes(
        env=env, url=url, seeded=seeded, journal=tmp_path / "steps.log", log=tmp_path / "server.log"
    )


def test_sigkill_at_every_step_of_an_acceptance_on_sqlite(cli: Cli, tmp_path: Path) -> None:
    data = Path(cli.env["EVACCESS_DATA_DIR"])
    data.mkdir(mode=0o700)
    url = f"sqlite+aiosqlite:///{data / 'evaccess.db'}"
    _run(_crashes(cli, tmp_path, url, sqlite=True))


@pytest.mark.postgres
def test_sigkill_at_every_step_of_an_acceptance_on_postgres(
    cli: Cli, tmp_path: Path, postgres_url: str
) -> None:
    Path(cli.env["EVACCESS_DATA_DIR"]).mkdir(mode=0o700)
    _run(_crashes(cli, tmp_path, postgres_url, sqlite=False))
