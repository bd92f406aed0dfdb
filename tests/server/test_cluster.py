"""Cluster mode: the security counters shared by server nodes through Redis.

Against the real Redis on 127.0.0.1:6379 (a key prefix of each test's own, deleted after);
skipped, saying so, when it is not reachable. The outage test starts a Redis of its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from evaccess.domain import lockout
from evaccess.domain.clock import ManualClock
from evaccess.domain.errors import ClusterUnavailable, LockedOut
from evaccess.server.cluster.node import ClusterNode
from evaccess.server.cluster.redis import RedisCluster
from evaccess.server.context import Context
from evaccess.server.db.models import Charger as ChargerRow
from evaccess.server.db.models import OutboxCommand
from evaccess.server.ocpp.server import OcppServer, serve_ocpp
from evaccess.server.runner import start_background_tasks, stop_background_tasks
from evaccess.server.services import bluetooth_pins, keypad_pins, outbox
from evaccess.server.services.ocpp_backend import DbOcppBackend
from evaccess.server.throttle import Throttle, ThrottleRegistry
from tests.cluster_support import FakeCharger, OwnRedis, free_port, reachable
from tests.server.support import PASSWORD, build_world, client_for, make_context
from tests.support import eventually

REQUIRED = os.environ.get("EVACCESS_TEST_REDIS_URL")
"""Set (CI): the Redis to use, and a missing one fails the tests instead of skipping them."""
REDIS_URL = REQUIRED or "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis, its keys deleted after."""
    reason = reachable(REDIS_URL)
    if reason is not None:
        if REQUIRED:
            pytest.fail(f"EVACCESS_TEST_REDIS_URL is set but Redis does not answer ({reason})")
        pytest.skip(f"no Redis on 127.0.0.1:6379 ({reason}): cluster tests need one")
    mine = f"evaccess-test-{uuid.uuid4().hex}:"
    yield mine
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{mine}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
async def cluster(prefix: str, clock: ManualClock) -> AsyncIterator[RedisCluster]:
    link = RedisCluster(REDIS_URL, prefix=prefix, node_id="test", clock=clock)
    yield link
    await link.aclose()


@pytest.fixture(params=["memory", "redis"])
async def make_throttle(request: pytest.FixtureRequest, clock: ManualClock) -> AsyncIterator[Any]:
    """Builds a throttle of one adapter: the same rule table runs against both."""
    link: RedisCluster | None = None
    if request.param == "redis":
        link = RedisCluster(
            REDIS_URL, prefix=request.getfixturevalue("prefix"), node_id="t", clock=clock
        )

    def make(rules: lockout.LockoutRules, name: str = "t") -> Throttle:
        return ThrottleRegistry(rules, clock) if link is None else link.throttle(name, rules)

    yield make
    if link is not None:
        await link.aclose()


async def test_five_failures_lock_with_escalation_and_a_success_resets_the_level(
    make_throttle: Any, clock: ManualClock
) -> None:
    throttle = make_throttle(lockout.KEYPAD_RULES)
    for _ in range(4):
        assert await throttle.failure("k") is None
        clock.advance(1)
    assert await throttle.is_locked("k") is None
    await throttle.check("k")
    event = await throttle.failure("k")
    assert event == lockout.LockoutEvent(
        kind=lockout.LockoutKind.LOCKED, level=1, duration_s=300.0, consecutive_failures=5
    )
    assert await throttle.is_locked("k") == pytest.approx(300)
    with pytest.raises(LockedOut) as locked:
        await throttle.check("k")
    assert locked.value.retry_after == pytest.approx(300)
    assert await throttle.is_locked("other") is None  # keys apart
    clock.advance(300)
    assert await throttle.is_locked("k") is None
    for _ in range(4):
        assert await throttle.failure("k") is None
    event = await throttle.failure("k")  # the second lockout lasts twice as long
    assert event is not None and (event.level, event.duration_s) == (2, 600.0)
    assert event.consecutive_failures == 10
    await throttle.success("k")  # a lockout in force stays in force ...
    assert await throttle.is_locked("k") == pytest.approx(600)
    clock.advance(600)
    for _ in range(4):
        assert await throttle.failure("k") is None
    event = await throttle.failure("k")  # ... but the level starts afresh
    assert event is not None and (event.level, event.duration_s) == (1, 300.0)
    assert event.consecutive_failures == 5


async def test_failures_outside_the_window_do_not_count(
    make_throttle: Any, clock: ManualClock
) -> None:
    throttle = make_throttle(lockout.KEYPAD_RULES)
    for _ in range(4):
        assert await throttle.failure("k") is None
    clock.advance(59.5)
    assert await throttle.failure("k") is not None  # 5 within 60 s
    throttle = make_throttle(lockout.KEYPAD_RULES, "u")
    for _ in range(4):
        assert await throttle.failure("k") is None
    clock.advance(60)
    assert await throttle.failure("k") is None  # the first 4 are 60 s old: out
    assert await throttle.is_locked("k") is None


async def test_lockouts_are_capped_and_the_failure_cap_disables(
    make_throttle: Any, clock: ManualClock
) -> None:
    rules = lockout.LockoutRules(
        max_failures=2, lockout_s=10.0, escalation=10.0, max_lockout_s=500.0, failure_cap=7
    )
    throttle = make_throttle(rules)
    durations = []
    for _ in range(3):
        await throttle.failure("k")
        event = await throttle.failure("k")
        assert event is not None
        durations.append(event.duration_s)
        clock.advance(1000)
    assert durations == [10.0, 100.0, 500.0]
    event = await throttle.failure("k")  # the 7th in a row
    assert event == lockout.LockoutEvent(
        kind=lockout.LockoutKind.DISABLED, level=3, duration_s=None, consecutive_failures=7
    )
    clock.advance(10**6)
    assert await throttle.is_locked("k") == float("inf")
    with pytest.raises(lockout.PairingDisabled):
        await throttle.check("k")
    await throttle.success("k")
    assert await throttle.is_locked("k") == float("inf")


async def test_random_sequences_give_both_adapters_the_same_answers(
    prefix: str, clock: ManualClock
) -> None:
    """1,000 random steps on a few keys: the Redis adapter answers as the in-process one
    (``settle`` is the keypad's one-round-trip check and count)."""
    rules = lockout.LockoutRules(max_failures=3, window_s=20.0, lockout_s=15.0, failure_cap=40)
    memory = ThrottleRegistry(rules, clock)
    link = RedisCluster(REDIS_URL, prefix=prefix, node_id="t", clock=clock)
    shared = link.throttle("t", rules)
    steps = random.Random(1313)
    try:
        for _ in range(1000):
            key = steps.choice("abc")
            op = steps.choice(
                ("failure", "failure", "failure", "success", "advance", "settle", "settle")
            )
            if op == "advance":
                clock.advance(steps.choice((0.5, 3.0, 7.0, 16.0)))
            elif op == "settle":
                succeeded = steps.random() < 0.3
                answers = []
                for throttle in (memory, shared):
                    try:
                        answers.append(await throttle.settle(key, succeeded=succeeded))
                    except LockedOut as exc:
                        answers.append((type(exc), round(exc.retry_after, 6)))
                assert answers[0] == answers[1]
            elif op == "failure":
                assert await shared.failure(key) == await memory.failure(key)
            else:
                await memory.success(key)
                await shared.success(key)
            want = await memory.is_locked(key)
            got = await shared.is_locked(key)
            assert (got is None) == (want is None)
            if want is not None:
                assert got == pytest.approx(want, abs=1e-6)
    finally:
        await link.aclose()


async def test_every_key_expires_and_carries_no_email(cluster: RedisCluster, prefix: str) -> None:
    throttle = cluster.throttle("login-account", lockout.KEYPAD_RULES)
    await throttle.failure("someone@example.com")
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    assert len(keys) == 1 and keys[0].startswith(f"{prefix}throttle:login-account:")
    assert "someone" not in keys[0]
    assert 0 < client.ttl(keys[0]) <= 60 + 24 * 3600
    await throttle.success("someone@example.com")
    assert list(client.scan_iter(match=f"{prefix}*")) == []  # nothing left to keep
    client.close()


async def _node(database_url: str, keys: Path, clock: ManualClock, rng: Any, **s: Any) -> Context:
    return await make_context(database_url, keys, clock=clock, rng=rng, **s)


@pytest.fixture
async def nodes(
    database_url: str, tmp_path: Path, clock: ManualClock, rng: Any, prefix: str
) -> AsyncIterator[tuple[Context, Context]]:
    """Two server nodes on one database and one Redis."""
    settings = {"redis_url": REDIS_URL, "redis_prefix": prefix}
    a = await _node(database_url, tmp_path / "keys", clock, rng, node_id="a", **settings)
    b = await _node(database_url, tmp_path / "keys", clock, rng, node_id="b", **settings)
    for node in (a, b):
        await node.start()
        await eventually(lambda n=node: _link(n).subscribed.is_set(), "the node to subscribe")
    yield a, b
    await a.close()
    await b.close()


async def test_five_wrong_keypad_pins_over_two_nodes_lock_the_charger_on_both(
    nodes: tuple[Context, Context], canaries: Any
) -> None:
    a, b = nodes
    world = await build_world(a)
    canaries.add("9274")
    await keypad_pins.set_pin(
        a, world.actor("owner"), world.org.id, world.users["owner"].id, "9274"
    )
    charger = world.chargers["old"]
    for node, guess in zip((a, b, a, b, a), ("1000", "1001", "1002", "1003", "1004"), strict=True):
        assert await keypad_pins.resolve(node, charger.id, guess) is None
    for node in (a, b):
        with pytest.raises(LockedOut) as locked:
            await keypad_pins.resolve(node, charger.id, "9274")
        assert locked.value.retry_after == pytest.approx(300)


def _link(ctx: Context) -> ClusterNode:
    assert isinstance(ctx.cluster, ClusterNode)
    return ctx.cluster


async def test_a_keypad_pin_deleted_on_one_node_is_refused_on_the_other_within_a_second(
    nodes: tuple[Context, Context], canaries: Any
) -> None:
    a, b = nodes
    world = await build_world(a)
    canaries.add("9274")
    owner = world.users["owner"]
    charger = world.chargers["old"]
    heard = _link(a).invalidations_heard
    await keypad_pins.set_pin(b, world.actor("owner"), world.org.id, owner.id, "9274")
    await eventually(lambda: _link(a).invalidations_heard > heard, "A to hear of the new PIN")
    assert await keypad_pins.resolve(a, charger.id, "9274") == owner.id
    assert a.keypad_index.get(charger.id) is not None  # answered from A's index from now on
    await keypad_pins.delete_pin(b, world.actor("owner"), world.org.id, owner.id)
    started = time.monotonic()
    await eventually(lambda: a.keypad_index.get(charger.id) is None, "A to drop its index")
    assert time.monotonic() - started < 1.0
    assert await keypad_pins.resolve(a, charger.id, "9274") is None
    # And a PIN set on B opens A's keypad at once too (no 30 s stale bound).
    await keypad_pins.set_pin(b, world.actor("owner"), world.org.id, owner.id, "9274")
    await eventually(lambda: a.keypad_index.get(charger.id) is None, "A to drop its index")
    assert await keypad_pins.resolve(a, charger.id, "9274") == owner.id


async def test_a_login_throttle_holds_across_nodes(nodes: tuple[Context, Context]) -> None:
    a, b = nodes
    world = await build_world(a)
    email = world.users["owner"].email
    async with client_for(a) as on_a, client_for(b) as on_b:
        for client in (on_a, on_b, on_a, on_b, on_a):
            wrong = await client.post(
                "/api/auth/login", json={"email": email, "password": "wrong password!"}
            )
            assert wrong.status_code == 401
        right = await on_b.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert right.status_code == 429
    assert right.json()["code"] == "locked_out"


async def test_redis_down_fails_closed_and_the_node_recovers_by_itself(
    database_url: str,
    tmp_path: Path,
    clock: ManualClock,
    rng: Any,
    own_redis: OwnRedis,
    canaries: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "evaccess.cluster")
    node = await _node(
        database_url, tmp_path / "keys", clock, rng, redis_url=own_redis.url, node_id="a"
    )
    try:
        world = await build_world(node)
        canaries.add("9274")
        owner = world.users["owner"]
        await keypad_pins.set_pin(node, world.actor("owner"), world.org.id, owner.id, "9274")
        backend = DbOcppBackend(node)
        serial = world.chargers["old"].serial
        login = {"email": owner.email, "password": PASSWORD}
        async with client_for(node) as client:
            assert (await client.post("/api/auth/login", json=login)).status_code == 200
            assert (await backend.authorize_keycode(serial, "9274")).accepted

            own_redis.stop()
            down = await client.post("/api/auth/login", json=login)
            assert down.status_code == 503
            assert down.json()["code"] == "cluster_unavailable"
            wrong = await client.post(
                "/api/auth/login", json={**login, "password": "wrong password!"}
            )
            assert wrong.status_code == 503  # refused, not answered uncounted
            answer = await backend.authorize_keycode(serial, "9274")
            assert not answer.accepted and not answer.locked
            with pytest.raises(ClusterUnavailable):
                await keypad_pins.resolve(node, world.chargers["old"].id, "9274")

            await own_redis.start()  # the same port: the client reconnects by itself

            async def logged_in() -> bool:
                return (await client.post("/api/auth/login", json=login)).status_code == 200

            await eventually(logged_in, "a login once Redis is back")
            assert (await backend.authorize_keycode(serial, "9274")).accepted
    finally:
        await node.close()
    text = caplog.text
    assert "Traceback" not in text and "internal_error" not in text
    assert "Redis unreachable" in text and "Redis reachable again" in text
    assert PASSWORD not in text and "9274" not in text


async def test_a_node_that_lost_its_subscription_forgets_its_keypad_index(
    database_url: str,
    tmp_path: Path,
    clock: ManualClock,
    rng: Any,
    own_redis: OwnRedis,
    canaries: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A change no message told this node about (made while Redis was away, here by a node
    outside the cluster) is seen once the node is subscribed again."""
    caplog.set_level(logging.INFO, "evaccess.cluster")
    a = await _node(
        database_url, tmp_path / "keys", clock, rng, redis_url=own_redis.url, node_id="a"
    )
    lone = await _node(database_url, tmp_path / "keys", clock, rng)
    try:
        await a.start()
        await eventually(lambda: _link(a).subscribed.is_set(), "A to subscribe")
        world = await build_world(a)
        canaries.add("9274")
        owner = world.users["owner"]
        charger = world.chargers["old"]
        await keypad_pins.set_pin(a, world.actor("owner"), world.org.id, owner.id, "9274")
        assert await keypad_pins.resolve(a, charger.id, "9274") == owner.id
        assert a.keypad_index.get(charger.id) is not None

        own_redis.stop()
        await eventually(lambda: a.keypad_index.suspended, "A to suspend its index")
        await keypad_pins.delete_pin(lone, world.actor("owner"), world.org.id, owner.id)
        await own_redis.start()
        await eventually(lambda: not a.keypad_index.suspended, "A to subscribe again")
        assert await keypad_pins.resolve(a, charger.id, "9274") is None
    finally:
        await a.close()
        await lone.close()
    assert "Redis subscription lost" in caplog.text
    assert "9274" not in caplog.text


@pytest.fixture
async def endpoints(
    nodes: tuple[Context, Context],
) -> AsyncIterator[tuple[OcppServer, OcppServer]]:
    """Each node's OCPP endpoint, with the charger registry, as ``server run`` wires it."""
    servers = []
    for ctx in nodes:
        server = await serve_ocpp(
            DbOcppBackend(ctx), port=0, clock=ctx.clock, registry=_link(ctx).registry
        )
        ctx.notifier.target = server.notifier
        servers.append(server)
    yield servers[0], servers[1]
    for ctx, server in zip(nodes, servers, strict=True):
        ctx.notifier.target = None
        await server.close()


def _owner_of(prefix: str, serial: str) -> str | None:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return client.get(f"{prefix}charger:{serial}")
    finally:
        client.close()


async def _online(ctx: Context, serial: str) -> bool:
    async with ctx.db.read() as session:
        return bool(
            await session.scalar(select(ChargerRow.online).where(ChargerRow.serial == serial))
        )


async def test_a_charger_connecting_to_a_second_node_is_taken_over_from_the_first(
    nodes: tuple[Context, Context], endpoints: tuple[OcppServer, OcppServer], prefix: str
) -> None:
    a, b = nodes
    on_a, on_b = endpoints
    world = await build_world(a)
    serial = world.chargers["old"].serial
    password = world.ocpp_passwords["old"]
    first = await FakeCharger.connect(on_a.port, serial, password)
    assert _owner_of(prefix, serial) == "a" and await _online(a, serial)
    second = await FakeCharger.connect(on_b.port, serial, password)
    await eventually(lambda: first.closed, "node A to close the old socket", timeout=2)
    assert first.ws.close_code == 1001  # going away
    assert _owner_of(prefix, serial) == "b"
    assert not on_a.holds(serial) and on_b.holds(serial)
    assert await _online(b, serial)  # A's old socket did not mark it offline
    await second.close()
    await eventually(lambda: _owner_of(prefix, serial) is None, "B to release the charger")


async def test_a_command_queued_on_one_node_reaches_the_charger_on_the_other(
    nodes: tuple[Context, Context], endpoints: tuple[OcppServer, OcppServer]
) -> None:
    a, b = nodes
    _, on_b = endpoints
    world = await build_world(a)
    charger = world.chargers["old"]
    fake = await FakeCharger.connect(on_b.port, charger.serial, world.ocpp_passwords["old"])
    try:
        await eventually(lambda: "GetLocalListVersion" in fake.actions, "the connect's calls")
        sent = len(fake.actions)
        delivery = await bluetooth_pins.reenable_pairing(a, world.actor("owner"), charger.id)
        started = time.monotonic()
        assert delivery.charger_online  # A holds no socket; the registry says B does
        await eventually(lambda: len(fake.actions) > sent, "the command to reach the charger")
        assert time.monotonic() - started < 1.0  # woken, not swept
        assert fake.actions[sent:] == ["SetVariables"]
    finally:
        await fake.close()


async def test_a_command_says_at_once_when_no_node_holds_the_charger(
    nodes: tuple[Context, Context], endpoints: tuple[OcppServer, OcppServer], prefix: str
) -> None:
    """The database's ``online`` flag outlives a crashed node: the registry is asked."""
    a, b = nodes
    world = await build_world(a)
    charger = world.chargers["old"]
    async with a.db.transaction() as session:
        row = await session.get(ChargerRow, charger.id)
        assert row is not None
        row.online = True  # as a node that died holding the charger left it
    owner = world.actor("owner")
    delivery = await bluetooth_pins.revoke_phones(b, owner, charger.id, None)
    assert not delivery.charger_online
    assert not (await bluetooth_pins.state(a, owner, charger.id)).charger_online
    async with a.db.read() as session:
        queued = await session.get(OutboxCommand, delivery.command_id)
    assert queued is not None and queued.completed_at is None  # kept for the next connect


async def test_without_redis_the_recorded_flag_answers(
    nodes: tuple[Context, Context], prefix: str, clock: ManualClock
) -> None:
    a, _ = nodes
    world = await build_world(a)
    charger = world.chargers["old"]
    dead = RedisCluster(
        f"redis://127.0.0.1:{free_port()}/0", prefix=prefix, node_id="a", clock=clock
    )
    a.notifier.remote = ClusterNode(dead)  # a Redis that refuses every connection
    try:
        owner = world.actor("owner")
        assert not (await bluetooth_pins.reenable_pairing(a, owner, charger.id)).charger_online
        async with a.db.transaction() as session:
            row = await session.get(ChargerRow, charger.id)
            assert row is not None
            row.online = True
        assert (await bluetooth_pins.reenable_pairing(a, owner, charger.id)).charger_online
    finally:
        await dead.aclose()


async def test_a_lost_wake_up_is_delivered_by_the_sweep(
    nodes: tuple[Context, Context], endpoints: tuple[OcppServer, OcppServer]
) -> None:
    a, b = nodes
    _, on_b = endpoints
    world = await build_world(a)
    charger = world.chargers["old"]
    fake = await FakeCharger.connect(on_b.port, charger.serial, world.ocpp_passwords["old"])
    try:
        await eventually(lambda: "GetLocalListVersion" in fake.actions, "the connect's calls")
        sent = len(fake.actions)
        a.notifier.remote = None  # the wake-up is lost
        await bluetooth_pins.reenable_pairing(a, world.actor("owner"), charger.id)
        assert len(fake.actions) == sent
        assert await outbox.sweep(a) == 0  # A holds no charger
        assert await outbox.sweep(b) == 1
        await eventually(lambda: len(fake.actions) > sent, "the command to reach the charger")
        assert fake.actions[sent:] == ["SetVariables"]
        await eventually(lambda: _none_open(b, charger.id), "the charger's answer recorded")
    finally:
        await fake.close()


async def _none_open(ctx: Context, charger_id: str) -> bool:
    async with ctx.db.read() as session:
        return not await session.scalar(
            select(OutboxCommand.id)
            .where(OutboxCommand.charger_id == charger_id, OutboxCommand.completed_at.is_(None))
            .limit(1)
        )


async def test_a_lost_takeover_is_found_by_the_renewal(
    nodes: tuple[Context, Context], endpoints: tuple[OcppServer, OcppServer], prefix: str
) -> None:
    """Another node registered the charger and its message never came: the renewal sees
    the registration is not this node's and closes the socket here."""
    a, _ = nodes
    on_a, _ = endpoints
    world = await build_world(a)
    serial = world.chargers["old"].serial
    fake = await FakeCharger.connect(on_a.port, serial, world.ocpp_passwords["old"])
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    client.set(f"{prefix}charger:{serial}", "b", ex=30)
    client.close()
    await _link(a).renew()
    await eventually(lambda: fake.closed, "node A to close the socket")
    assert not on_a.holds(serial)
    assert await _online(a, serial)  # B holds it: not marked offline
    assert _owner_of(prefix, serial) == "b"


async def test_a_cluster_node_sweeps_its_outbox_in_the_background(
    nodes: tuple[Context, Context], database_url: str, tmp_path: Path, clock: ManualClock, rng: Any
) -> None:
    lone = await _node(database_url, tmp_path / "keys", clock, rng)
    try:
        for ctx, swept in ((nodes[0], True), (lone, False)):
            tasks = start_background_tasks(ctx)
            try:
                assert ("outbox sweep" in {t.get_name() for t in tasks}) is swept
            finally:
                await stop_background_tasks(tasks)
    finally:
        await lone.close()


async def test_codes_typed_at_once_share_one_pipeline_and_every_failure_counts(
    cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipelines = []
    original = cluster.client.pipeline

    def counted(*args: Any, **kwargs: Any) -> Any:
        pipelines.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(cluster.client, "pipeline", counted)
    throttle = cluster.throttle("keypad", lockout.KEYPAD_RULES)
    answers = await asyncio.gather(*(throttle.settle("k", succeeded=False) for _ in range(5)))
    assert len(pipelines) == 1
    events = [a for a in answers if a is not None]
    assert len(events) == 1 and events[0].kind is lockout.LockoutKind.LOCKED
    assert events[0].consecutive_failures == 5
    with pytest.raises(LockedOut):
        await throttle.settle("k", succeeded=True)  # the right code, while locked


async def test_a_restarted_redis_without_the_script_runs_it_once(
    own_redis: OwnRedis, clock: ManualClock
) -> None:
    link = RedisCluster(own_redis.url, prefix="p:", node_id="a", clock=clock)
    throttle = link.throttle("keypad", lockout.KEYPAD_RULES)
    try:
        assert await throttle.settle("k", succeeded=False) is None
        plain = redis.Redis.from_url(own_redis.url, decode_responses=True)
        plain.script_flush()
        assert await throttle.settle("k", succeeded=False) is None  # NOSCRIPT, loaded, run
        assert plain.hget(throttle.redis_key("k"), "c") == "2"
        plain.close()
    finally:
        await link.aclose()


async def test_a_burst_of_lock_checks_waits_for_a_connection_instead_of_failing_closed(
    cluster: RedisCluster,
) -> None:
    """300 keypads not in memory checked at once (a reconnect storm): more callers than
    connections wait for one; before, the pool refused past 100 and they failed closed."""
    throttle = cluster.throttle("keypad", lockout.KEYPAD_RULES)
    await asyncio.gather(*(throttle.check(f"charger-{i}") for i in range(300)))
