"""Real ``evaccess server run`` processes on one PostgreSQL and one Redis, as operators run
them behind a load balancer:

- a charger connected to node A; its owner's keypad PIN set through node C and deleted
  through node B is refused at A; a Bluetooth PIN change and a phone revocation made
  through B reach the charger on A; 5 wrong keypad PINs for one charger's identity, sent
  through A, B and C, lock it;
- a login throttle holds across nodes;
- node A killed with SIGKILL: its charger reconnects to B and every command created
  meanwhile reaches it exactly once (by phone id);
- Redis stopped and started again: no 500, logins refused with 503, keypad codes refused,
  a command created meanwhile delivered once Redis is back.

Needs EVACCESS_TEST_POSTGRES_URL and a Redis (EVACCESS_TEST_REDIS_URL, else 127.0.0.1:6379);
skipped, saying so, without them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from evaccess.server.services.outbox import CommandKind
from tests.cluster_support import FakeCharger, OwnRedis
from tests.conftest import POSTGRES_URL, Canaries, _fresh_postgres
from tests.e2e.conftest import (
    EVACCESS,
    Cli,
    _wait_for_announcement,
    _wait_for_health,
    free_port,
    leaked,
)
from tests.support import eventually, eventually_blocking

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(300)]

REDIS_URL = os.environ.get("EVACCESS_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
OWNER = "owner@example.com"
OWNER_PASSWORD = "plum tractor 7 lantern"
KEYPAD_PIN = "5829"
SERIAL = "WB-C0042"
FIRMWARE = "6.11.2"  # Bluetooth PIN on and changeable
REVOKE = CommandKind.REVOKE_CREDENTIALS


@dataclass
class Node:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    ocpp_port: int
    log: Path
    env: dict[str, str]


@pytest.fixture
def cluster_env(cli: Cli, tmp_path: Path) -> Iterator[dict[str, str]]:
    if POSTGRES_URL is None:
        pytest.skip("EVACCESS_TEST_POSTGRES_URL is not set: the cluster test needs PostgreSQL")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except (redis.RedisError, OSError) as exc:
        pytest.skip(f"no Redis at {REDIS_URL} ({type(exc).__name__}): the cluster test needs one")
    prefix = f"evaccess-e2e-{uuid.uuid4().hex}:"
    databases = _fresh_postgres(POSTGRES_URL)
    database_url = next(databases)
    yield cli.env | {
        "EVACCESS_DATABASE_URL": database_url,
        "EVACCESS_REDIS_URL": REDIS_URL,
        "EVACCESS_REDIS_PREFIX": prefix,
        "EVACCESS_KEYS_DIR": str(tmp_path / "keys"),  # one key set for every node
    }
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()
    for _ in databases:  # drops the database
        pass


def _start(name: str, base: dict[str, str], tmp_path: Path) -> Node:
    port, ocpp_port = free_port(), free_port()
    env = base | {
        "EVACCESS_NODE_ID": name,
        "EVACCESS_DATA_DIR": str(tmp_path / name),
        "EVACCESS_OCPP_PORT": str(ocpp_port),
        "EVACCESS_AUDIT_CHECKPOINT_FILE": str(tmp_path / f"{name}-checkpoints.jsonl"),
    }
    log = tmp_path / f"{name}.out"
    with log.open("wb") as out:
        process = subprocess.Popen(
            (*EVACCESS, "server", "run", "--port", str(port)),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    return Node(name, process, f"http://127.0.0.1:{port}", ocpp_port, log, env)


def _start_nodes(
    names: tuple[str, ...],
    env: dict[str, str],
    tmp_path: Path,
    canaries: Canaries,
    nodes: list[Node],
) -> dict[str, str]:
    """Start the first node (the first start: its one-time admin credentials) and then the
    others on the same database, each healthy; ``nodes`` gets them as they start, so that
    the caller stops them whatever happens. Returns the first start's announcement."""
    first = _start(names[0], env, tmp_path)
    nodes.append(first)
    announced = _wait_for_announcement(first.process, first.log, first.log)
    canaries.add(announced["password"])
    _wait_for_health(first.process, first.url)
    others = [_start(name, env, tmp_path) for name in names[1:]]
    nodes.extend(others)
    for node in others:
        _wait_for_health(node.process, node.url)
    return announced


def _stop(*processes: subprocess.Popen[Any] | None) -> None:
    for process in processes:
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(timeout=15)


def _register_charger(node: Node, announced: dict[str, str], *, keypad: bool) -> dict[str, str]:
    """The owner's account, and a charger of theirs in the first organisation."""
    admin = Cli(env=node.env)
    org, by_admin = announced["organisation"], ("--by", announced["email"])
    admin.ok("admin", "create-user", OWNER, "--password-stdin", stdin=f"{OWNER_PASSWORD}\n")
    admin.ok("admin", "add-member", org, OWNER, *by_admin)
    registration: dict[str, str] = json.loads(
        admin.ok(
            "admin", "create-charger", org, "--serial", SERIAL, "--vendor", "Wallbox",
            "--model", "Commander 2", "--firmware", FIRMWARE, *(["--keypad"] if keypad else []),
            "--owner", OWNER, *by_admin, "--json",
        ).stdout
    )  # fmt: skip
    return registration


@asynccontextmanager
async def _owner_api(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    """The owner logged in to one node's REST API."""
    async with httpx.AsyncClient(base_url=node.url, timeout=10) as client:
        login = await client.post(
            "/api/auth/login", json={"email": OWNER, "password": OWNER_PASSWORD}
        )
        assert login.status_code == 200, login.text
        client.headers["Authorization"] = f"Bearer {login.json()['token']}"
        yield client


async def _revoke(api: httpx.AsyncClient, charger_id: str, phone_id: str) -> None:
    answer = await api.post(
        f"/api/chargers/{charger_id}/bluetooth/revoke-phones", json={"phone_id": phone_id}
    )
    assert answer.status_code == 202, answer.text


async def _commands(database_url: str, kind: CommandKind) -> list[asyncpg.Record]:
    """The outbox rows of one kind, read straight from PostgreSQL."""
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return list(
            await conn.fetch(
                "SELECT id, arguments, completed_at, accepted FROM charger_commands"
                " WHERE kind = $1 ORDER BY created_at",
                kind.value,
            )
        )
    finally:
        await conn.close()


async def _all_recorded(database_url: str) -> list[asyncpg.Record] | None:
    """Every revocation in the outbox, once all are recorded as delivered."""
    rows = await _commands(database_url, REVOKE)
    return rows if all(r["completed_at"] is not None for r in rows) else None


def _quiet(nodes: list[Node], canaries: Canaries, allowed: str, *more: Path) -> None:
    """No traceback, no internal error and no secret in anything the processes printed."""
    output = "".join(n.log.read_text() for n in nodes) + "".join(p.read_text() for p in more)
    assert "Traceback" not in output
    assert "internal_error" not in output and '" 500' not in output
    assert not leaked(output, canaries, allowed)


async def test_commands_and_keypad_failures_through_other_nodes_reach_the_charger_on_node_a(
    cluster_env: dict[str, str], tmp_path: Path, canaries: Canaries
) -> None:
    canaries.add(OWNER_PASSWORD, KEYPAD_PIN, "0000", "1111")
    nodes: list[Node] = []
    charger: subprocess.Popen[str] | None = None
    log = tmp_path / "charger.log"
    try:
        announced = _start_nodes(("a", "b", "c"), cluster_env, tmp_path, canaries, nodes)
        a, b, c = nodes
        registration = _register_charger(a, announced, keypad=True)
        canaries.add(registration["ocpp_password"])

        def app_on(node: Node) -> Cli:
            app = Cli(env=node.env)
            app.ok(
                "app", "login", "--server", node.url, "--email", OWNER, "--password-stdin",
                stdin=f"{OWNER_PASSWORD}\n",
            )  # fmt: skip
            return app

        app_on(c).ok("app", "keypad-pin", "set", "--pin-stdin", stdin=f"{KEYPAD_PIN}\n")

        with log.open("w") as out:
            charger = subprocess.Popen(
                (
                    *EVACCESS, "charger", "run", "--serial", SERIAL, "--vendor", "Wallbox",
                    "--model", "Commander 2", "--firmware", FIRMWARE,
                    "--server", f"ws://127.0.0.1:{a.ocpp_port}/ocpp",
                    "--state-dir", str(tmp_path / "charger"), "--keypad", "-",
                    "--session-seconds", "1",
                ),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.PIPE, text=True,
                env=a.env | {"EVACCESS_CHARGER_PASSWORD": registration["ocpp_password"]},
            )  # fmt: skip
        assert charger.stdin is not None
        registry = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        key = f"{cluster_env['EVACCESS_REDIS_PREFIX']}charger:{SERIAL}"
        eventually_blocking(lambda: registry.get(key) == "a", "node A to register the charger")
        eventually_blocking(lambda: "ocpp: boot accepted" in log.read_text(), "the boot")

        def typed(line: str, count: int) -> bool:
            return log.read_text().count(line) >= count

        # A keypad PIN set through C opens on A; deleted through B, it no longer does.
        charger.stdin.write(f"{KEYPAD_PIN}\n")
        charger.stdin.flush()
        eventually_blocking(lambda: typed("keypad: accepted", 1), "the PIN to open on A")
        eventually_blocking(lambda: typed("charger: session ended", 1), "the session to end")
        assert "deleted" in app_on(b).ok("app", "keypad-pin", "delete").stdout
        charger.stdin.write(f"{KEYPAD_PIN}\n")
        charger.stdin.flush()
        eventually_blocking(lambda: typed("keypad: rejected", 1), "the PIN to be refused on A")
        assert log.read_text().count("keypad: accepted") == 1

        # A Bluetooth PIN change and a phone revocation made through B reach the charger on A.
        charger_id = registration["id"]
        async with _owner_api(b) as api:
            changed = await api.post(f"/api/chargers/{charger_id}/bluetooth-pin/change", json={})
            assert changed.status_code == 200, changed.text
            assert changed.json()["status"] == "changing"

            async def confirmed() -> bool:
                state = (await api.get(f"/api/chargers/{charger_id}/bluetooth-pin")).json()
                return bool(state["status"] == "active" and state["pending_since"] is None)

            await eventually(confirmed, "the charger on A to confirm the new PIN", timeout=10)
            await _revoke(api, charger_id, "phone-1")

            async def revoked() -> list[asyncpg.Record]:
                rows = await _commands(cluster_env["EVACCESS_DATABASE_URL"], REVOKE)
                return [r for r in rows if r["completed_at"] is not None]

            done = await eventually(revoked, "the charger on A to take the revocation")
            assert [(json.loads(r["arguments"]), r["accepted"]) for r in done] == [
                ({"phone_id": "phone-1"}, True)
            ]
        charger.stdin.close()
        _stop(charger)
        charger = None
        eventually_blocking(lambda: registry.get(key) is None, "node A to release the charger")
        registry.close()

        # 5 wrong codes for this charger's identity, sent through A, B and C, lock it: the
        # right PIN, set again, is then refused wherever the charger connects.
        app_on(c).ok("app", "keypad-pin", "set", "--pin-stdin", stdin=f"{KEYPAD_PIN}\n")
        password = registration["ocpp_password"]
        answers = []
        for node, code in ((a, KEYPAD_PIN), (a, "0000"), (b, "1111"), (c, "0000"), (a, "1111"),
                           (b, "0000"), (c, KEYPAD_PIN)):  # fmt: skip
            fake = await FakeCharger.connect(node.ocpp_port, SERIAL, password)
            answers.append(await fake.authorize_keycode(code))
            await fake.close()
        # The fifth failure is answered Invalid and locks: the right PIN is Blocked next.
        assert answers == ["Accepted", *["Invalid"] * 5, "Blocked"], answers
    finally:
        if charger is not None and charger.stdin is not None:
            charger.stdin.close()
        _stop(charger, *(n.process for n in nodes))
    _quiet(nodes, canaries, announced["password"], log)


async def test_a_killed_node_s_charger_moves_to_another_and_gets_each_command_once(
    cluster_env: dict[str, str], tmp_path: Path, canaries: Canaries
) -> None:
    canaries.add(OWNER_PASSWORD)
    nodes: list[Node] = []
    chargers: list[FakeCharger] = []
    try:
        announced = _start_nodes(("a", "b"), cluster_env, tmp_path, canaries, nodes)
        a, b = nodes
        registration = _register_charger(a, announced, keypad=False)
        canaries.add(registration["ocpp_password"])
        charger_id, password = registration["id"], registration["ocpp_password"]

        on_a = await FakeCharger.connect(a.ocpp_port, SERIAL, password)
        chargers.append(on_a)
        async with _owner_api(b) as api:
            await _revoke(api, charger_id, "phone-0")  # crosses from B to A while A lives
            await eventually(lambda: on_a.revoked == ["phone-0"], "the command to reach A")
            # Killed after A recorded the answer: a command killed in flight may come again
            # (at least once); the ones created while A is down must come exactly once.
            database_url = cluster_env["EVACCESS_DATABASE_URL"]
            await eventually(lambda: _all_recorded(database_url), "A to record the answer")

            a.process.send_signal(signal.SIGKILL)
            a.process.wait(timeout=10)
            await eventually(lambda: on_a.closed, "the charger to see node A gone")
            for i in range(1, 6):  # the charger is offline: the outbox keeps them
                await _revoke(api, charger_id, f"phone-{i}")

            on_b = await FakeCharger.connect(b.ocpp_port, SERIAL, password)
            chargers.append(on_b)
            expected = [f"phone-{i}" for i in range(1, 6)]
            await eventually(lambda: sorted(on_b.revoked) == expected, "B to deliver them")
            await _revoke(api, charger_id, "phone-6")
            await eventually(lambda: "phone-6" in on_b.revoked, "B to deliver a new one")
            rows = await eventually(
                lambda: _all_recorded(database_url), "every command to be recorded as delivered"
            )
        received = Counter(on_a.revoked + on_b.revoked)
        assert received == {f"phone-{i}": 1 for i in range(7)}
        assert [json.loads(r["arguments"])["phone_id"] for r in rows] == list(received)
        assert all(r["accepted"] for r in rows)
    finally:
        for fake in chargers:
            await fake.close()
        _stop(*(n.process for n in nodes))
    _quiet(nodes, canaries, announced["password"])


async def test_redis_stopped_and_started_again_loses_nothing_and_fails_closed(
    cluster_env: dict[str, str], tmp_path: Path, canaries: Canaries, own_redis: OwnRedis
) -> None:
    canaries.add(OWNER_PASSWORD, KEYPAD_PIN)
    env = cluster_env | {"EVACCESS_REDIS_URL": own_redis.url}
    nodes: list[Node] = []
    fake: FakeCharger | None = None
    try:
        announced = _start_nodes(("a", "b"), env, tmp_path, canaries, nodes)
        a, b = nodes
        registration = _register_charger(a, announced, keypad=True)
        canaries.add(registration["ocpp_password"])
        charger_id = registration["id"]
        Cli(env=b.env).ok(
            "app", "login", "--server", b.url, "--email", OWNER, "--password-stdin",
            stdin=f"{OWNER_PASSWORD}\n",
        )  # fmt: skip
        Cli(env=b.env).ok("app", "keypad-pin", "set", "--pin-stdin", stdin=f"{KEYPAD_PIN}\n")
        fake = await FakeCharger.connect(a.ocpp_port, SERIAL, registration["ocpp_password"])
        assert await fake.authorize_keycode(KEYPAD_PIN) == "Accepted"
        login = {"email": OWNER, "password": OWNER_PASSWORD}

        async with _owner_api(b) as api:
            own_redis.stop()
            for node in (a, b):
                refused = await api.post(f"{node.url}/api/auth/login", json=login)
                assert refused.status_code == 503, refused.text
                assert refused.json()["code"] == "cluster_unavailable"
                health = await api.get(f"{node.url}/health")
                assert health.status_code in (200, 503), health.text
            await _revoke(api, charger_id, "phone-1")  # committed; the wake-up is lost
            assert await fake.authorize_keycode(KEYPAD_PIN) != "Accepted"  # fails closed

            await own_redis.start()  # the same port: the nodes reconnect by themselves

            async def logged_in() -> bool:
                answer = await api.post("/api/auth/login", json=login)
                return answer.status_code == 200

            await eventually(logged_in, "a login on B once Redis is back", timeout=30)
            # Delivered by A's outbox sweep (every 15 s) or its first wake-up after.
            await eventually(lambda: fake.revoked == ["phone-1"], "the command", timeout=40)
            on_a = fake

            async def opens() -> bool:
                return await on_a.authorize_keycode(KEYPAD_PIN) == "Accepted"

            await eventually(opens, "the keypad PIN to open again", timeout=30)
        assert fake.revoked == ["phone-1"]
    finally:
        if fake is not None:
            await fake.close()
        _stop(*(n.process for n in nodes))
    _quiet(nodes, canaries, announced["password"])


def test_a_login_throttle_holds_across_real_nodes(
    cluster_env: dict[str, str], tmp_path: Path, canaries: Canaries
) -> None:

    canaries.add(OWNER_PASSWORD)
    nodes: list[Node] = []
    try:
        announced = _start_nodes(("a", "b"), cluster_env, tmp_path, canaries, nodes)
        a, b = nodes
        Cli(env=a.env).ok(
            "admin", "create-user", OWNER, "--password-stdin", stdin=f"{OWNER_PASSWORD}\n"
        )
        wrong = {"email": OWNER, "password": "wrong password!"}
        for node in (a, b, a, b, a):
            assert httpx.post(f"{node.url}/api/auth/login", json=wrong).status_code == 401
        right = {"email": OWNER, "password": OWNER_PASSWORD}
        locked = httpx.post(f"{b.url}/api/auth/login", json=right)
        assert locked.status_code == 429
        assert locked.json()["code"] == "locked_out"
    finally:
        _stop(*(n.process for n in nodes))
    _quiet(nodes, canaries, announced["password"])
