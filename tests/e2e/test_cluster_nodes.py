"""Three real ``evaccess server run`` processes on one PostgreSQL and one Redis: a charger
connected to node A, its owner's keypad PIN set through node C and deleted through node B;
the charger's next entry of that PIN on A is refused.

Needs EVACCESS_TEST_POSTGRES_URL and a Redis (EVACCESS_TEST_REDIS_URL, else 127.0.0.1:6379);
skipped, saying so, without them."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import POSTGRES_URL, Canaries, _fresh_postgres
from tests.e2e.conftest import (
    EVACCESS,
    Cli,
    _wait_for_announcement,
    _wait_for_health,
    free_port,
    leaked,
)
from tests.support import eventually_blocking

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(300)]

REDIS_URL = os.environ.get("EVACCESS_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
OWNER = "owner@example.com"
OWNER_PASSWORD = "plum tractor 7 lantern"
KEYPAD_PIN = "5829"
SERIAL = "WB-C0042"


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


def test_a_keypad_pin_deleted_through_node_b_is_refused_at_a_charger_on_node_a(
    cli: Cli, cluster_env: dict[str, str], tmp_path: Path, canaries: Canaries
) -> None:
    canaries.add(OWNER_PASSWORD, KEYPAD_PIN)
    nodes: list[Node] = []
    charger: subprocess.Popen[str] | None = None
    try:
        a = _start("a", cluster_env, tmp_path)
        nodes.append(a)
        announced = _wait_for_announcement(a.process, a.log, a.log)
        canaries.add(announced["password"])
        _wait_for_health(a.process, a.url)
        b, c = _start("b", cluster_env, tmp_path), _start("c", cluster_env, tmp_path)
        nodes += [b, c]
        for node in (b, c):
            _wait_for_health(node.process, node.url)

        admin = Cli(env=a.env)
        org, by_admin = announced["organisation"], ("--by", announced["email"])
        admin.ok("admin", "create-user", OWNER, "--password-stdin", stdin=f"{OWNER_PASSWORD}\n")
        admin.ok("admin", "add-member", org, OWNER, *by_admin)
        registration = json.loads(
            admin.ok(
                "admin", "create-charger", org, "--serial", SERIAL, "--vendor", "Wallbox",
                "--model", "Commander 2", "--firmware", "6.7.16", "--keypad", "--owner", OWNER,
                *by_admin, "--json",
            ).stdout
        )  # fmt: skip
        canaries.add(registration["ocpp_password"])

        def app_on(node: Node) -> Cli:
            app = Cli(env=node.env)
            app.ok(
                "app", "login", "--server", node.url, "--email", OWNER, "--password-stdin",
                stdin=f"{OWNER_PASSWORD}\n",
            )  # fmt: skip
            return app

        app_on(c).ok("app", "keypad-pin", "set", "--pin-stdin", stdin=f"{KEYPAD_PIN}\n")

        log = tmp_path / "charger.log"
        with log.open("w") as out:
            charger = subprocess.Popen(
                (
                    *EVACCESS, "charger", "run", "--serial", SERIAL, "--vendor", "Wallbox",
                    "--model", "Commander 2", "--firmware", "6.7.16",
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
        eventually_blocking(lambda: "ocpp: " in log.read_text(), "the charger to connect")

        def typed(line: str, count: int) -> bool:
            return log.read_text().count(line) >= count

        charger.stdin.write(f"{KEYPAD_PIN}\n")
        charger.stdin.flush()
        eventually_blocking(lambda: typed("keypad: accepted", 1), "the PIN to open on A")
        eventually_blocking(lambda: typed("charger: session ended", 1), "the session to end")

        assert "deleted" in app_on(b).ok("app", "keypad-pin", "delete").stdout
        charger.stdin.write(f"{KEYPAD_PIN}\n")
        charger.stdin.flush()
        eventually_blocking(lambda: typed("keypad: rejected", 1), "the PIN to be refused on A")
        assert log.read_text().count("keypad: accepted") == 1
        registry.close()
    finally:
        if charger is not None and charger.stdin is not None:
            charger.stdin.close()
        for process in [charger, *(n.process for n in nodes)]:
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=15)
    output = "".join(n.log.read_text() for n in nodes) + (tmp_path / "charger.log").read_text()
    assert "Traceback" not in output
    assert not leaked(output, canaries, announced["password"])


def test_a_login_throttle_holds_across_real_nodes(
    cluster_env: dict[str, str], tmp_path: Path, canaries: Canaries
) -> None:

    canaries.add(OWNER_PASSWORD)
    nodes: list[Node] = []
    try:
        a = _start("a", cluster_env, tmp_path)
        nodes.append(a)
        announced = _wait_for_announcement(a.process, a.log, a.log)
        canaries.add(announced["password"])
        _wait_for_health(a.process, a.url)
        b = _start("b", cluster_env, tmp_path)
        nodes.append(b)
        _wait_for_health(b.process, b.url)
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
        for node in nodes:
            if node.process.poll() is None:
                node.process.terminate()
                node.process.wait(timeout=15)
    output = "".join(n.log.read_text() for n in nodes)
    assert "Traceback" not in output
    assert not leaked(output, canaries, announced["password"])
