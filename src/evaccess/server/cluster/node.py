"""What one node tells the others through Redis, and which node holds which charger.

Channels (pub/sub) and keys, all under the node's prefix:

- ``<prefix>keypad-index``: a node changed keypad access (a keypad PIN, a grant, a member
  policy, an ownership): every other node drops its keypad index (``KeypadIndex.drop``).
- ``<prefix>node:<node id>``: to one node: ``wake`` (outbox commands wait for chargers it
  holds) and ``takeover`` (a charger it holds connected to another node: close the old
  socket).
- ``<prefix>charger:<charger id>``: the node holding the charger's socket, with a TTL
  (``REGISTRY_TTL_S``) the node renews while the socket is open.

Fail safe: pub/sub is at most once. While this node is not subscribed (at start, and after
losing Redis until it is subscribed again) its keypad index caches nothing; subscribing
again drops the index, which covers every invalidation missed meanwhile. A lost wake-up
only delays (every node sweeps the outbox for its chargers, ``runner``); a lost takeover is
found by the renewal, which closes a socket whose charger another node registered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from evaccess.server.cluster.redis import RedisCluster
from evaccess.server.context import NotifierSlot
from evaccess.server.keypad_index import KeypadIndex
from evaccess.server.ocpp.backend import ChargerRegistry

log = logging.getLogger("evaccess.cluster")

REGISTRY_TTL_S = 30
"""A charger's registration outlives its node by at most this (a crashed node)."""
RENEW_S = REGISTRY_TTL_S / 3
HEALTH_S = 1.0
"""The subscription is pinged after this long without a message; no answer within
``HEALTH_S`` more and it counts as lost (a half-open connection is found in 2 s)."""
RETRY_S = (0.1, 0.2, 0.5, 1.0)
"""Waits between attempts to subscribe again (the last one repeats)."""
BATCH = 500

_RENEW = """
local others = {}
for i, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if (not owner) or owner == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'EX', ARGV[2])
  else
    table.insert(others, i)
  end
end
return others
"""

_RELEASE = """
local owner = redis.call('GET', KEYS[1])
if not owner then return 1 end
if owner == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0
"""


class ClusterNode:
    """This node's link to the others: ``IndexBroadcast`` of the keypad index,
    ``RemoteWake`` of the notifier, ``ChargerRegistry`` of the OCPP endpoint."""

    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster
        self.node_id = cluster.node_id
        self.registry: ChargerRegistry = self
        self._client = cluster.client
        prefix = cluster.prefix
        self._prefix = prefix
        self.keypad_channel = f"{prefix}keypad-index"
        self.node_channel = self.channel_of(self.node_id)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)
        self._index: KeypadIndex | None = None
        self._slot: NotifierSlot | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._invalidation_due = False
        self._publisher: asyncio.Task[None] | None = None
        self._wakes: set[str] = set()
        self._waker: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()
        self.invalidations_heard = 0
        """Keypad index changes of other nodes applied here."""
        self._lost = False
        self._registry_up = True

    def attach(self, index: KeypadIndex, slot: NotifierSlot) -> None:
        self._index = index
        self._slot = slot

    def channel_of(self, node_id: str) -> str:
        return f"{self._prefix}node:{node_id}"

    def charger_key(self, charger_id: str) -> str:
        return f"{self._prefix}charger:{charger_id}"

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._subscribe(), name="cluster subscriber"),
            loop.create_task(self._keep_registered(), name="cluster registry"),
        ]

    async def aclose(self) -> None:
        tasks = [*self._tasks, *self._background]
        for task in (self._publisher, self._waker):
            if task is not None:
                tasks.append(task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self.cluster.aclose()

    def _spawn(self, work: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # --- keypad index: IndexBroadcast ----------------------------------------------------

    def publish(self) -> None:
        """Coalesced: however many changes, one message at a time, retried until sent."""
        self._invalidation_due = True
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.get_running_loop().create_task(self._publish())

    async def _publish(self) -> None:
        attempt = 0
        while self._invalidation_due:
            self._invalidation_due = False
            try:
                await self._client.publish(self.keypad_channel, self.node_id)
                attempt = 0
            except (RedisError, OSError) as exc:
                self._invalidation_due = True
                if attempt == 0:
                    log.warning(
                        "Redis unreachable (%s): keypad index change not yet told to the "
                        "other nodes; retrying",
                        type(exc).__name__,
                    )
                await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)])
                attempt += 1

    # --- outbox: RemoteWake --------------------------------------------------------------

    def wake(self, charger_id: str) -> None:
        """Batched: the registry is read and each owning node told once per batch."""
        self._wakes.add(charger_id)
        if self._waker is None or self._waker.done():
            self._waker = asyncio.get_running_loop().create_task(self._send_wakes())

    async def _send_wakes(self) -> None:
        while self._wakes:
            batch = list(self._wakes)[:BATCH]
            self._wakes.difference_update(batch)
            try:
                owners = await self._client.mget([self.charger_key(c) for c in batch])
                by_node: dict[str, list[str]] = {}
                for charger_id, owner in zip(batch, owners, strict=True):
                    if owner is not None:
                        by_node.setdefault(str(owner), []).append(charger_id)
                for node_id, chargers in by_node.items():
                    if node_id == self.node_id:
                        if self._slot is not None:
                            for charger_id in chargers:
                                self._slot.poke_here(charger_id)
                        continue
                    message = json.dumps({"wake": chargers})
                    await self._client.publish(self.channel_of(node_id), message)
            except (RedisError, OSError) as exc:
                # Not retried: the owning node's outbox sweep delivers them.
                log.warning(
                    "Redis unreachable (%s): %d wake-ups left to the outbox sweep",
                    type(exc).__name__,
                    len(batch),
                )

    async def held(self, charger_id: str) -> bool | None:
        try:
            return bool(await self._client.exists(self.charger_key(charger_id)))
        except (RedisError, OSError) as exc:
            self._registry_failed(exc)
            return None

    # --- charger registry: ChargerRegistry ----------------------------------------------

    async def connected(self, charger_id: str) -> None:
        try:
            previous = await self._client.set(
                self.charger_key(charger_id), self.node_id, ex=REGISTRY_TTL_S, get=True
            )
            if previous is not None and previous != self.node_id:
                await self._client.publish(
                    self.channel_of(str(previous)), json.dumps({"takeover": [charger_id]})
                )
            self._registry_ok()
        except (RedisError, OSError) as exc:
            self._registry_failed(exc)

    async def disconnected(self, charger_id: str) -> bool:
        try:
            mine = await self._release(keys=[self.charger_key(charger_id)], args=[self.node_id])
        except (RedisError, OSError) as exc:
            self._registry_failed(exc)
            return True
        return bool(mine)

    def _registry_failed(self, exc: BaseException) -> None:
        if self._registry_up:
            self._registry_up = False
            log.warning(
                "Redis unreachable (%s): charger registrations renewed once it is back",
                type(exc).__name__,
            )

    def _registry_ok(self) -> None:
        if not self._registry_up:
            self._registry_up = True
            log.info("Redis reachable again: charger registrations renewed")

    async def renew(self) -> None:
        """Renew the registration of every charger connected here (registering those that
        Redis lost); close the socket of any charger another node registered since."""
        endpoint = self._slot.target if self._slot is not None else None
        if endpoint is None:
            return
        chargers = endpoint.connected_chargers()
        for start in range(0, len(chargers), BATCH):
            batch = chargers[start : start + BATCH]
            taken = await self._renew(
                keys=[self.charger_key(c) for c in batch], args=[self.node_id, REGISTRY_TTL_S]
            )
            for position in taken:
                endpoint.hand_over(batch[int(position) - 1])

    async def _keep_registered(self) -> None:
        while True:
            try:
                await self.renew()
                self._registry_ok()
            except (RedisError, OSError) as exc:
                self._registry_failed(exc)
            await asyncio.sleep(RENEW_S)

    # --- subscriber ----------------------------------------------------------------------

    async def _subscribe(self) -> None:
        attempt = 0
        while True:
            pubsub = self._client.pubsub()
            try:
                await self._listen(pubsub)
            except (RedisError, OSError, TimeoutError) as exc:
                self._subscription_lost(exc)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            if self._lost:
                await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)])
                attempt += 1
            else:
                attempt = 0

    async def _listen(self, pubsub: PubSub) -> None:
        await pubsub.subscribe(self.keypad_channel, self.node_channel)
        confirmed = 0
        while confirmed < 2:
            message = await pubsub.get_message(timeout=HEALTH_S)
            if message is None:
                raise TimeoutError("no subscription confirmation")
            if message["type"] == "subscribe":
                confirmed += 1
        # Subscribed: from now on every change is heard; what was missed before is covered
        # by dropping the index.
        if self._index is not None:
            self._index.resume()
        if self._lost:
            self._lost = False
            log.info("Redis reachable again: keypad index and wake-ups shared again")
            self._spawn(self._renew_now)
        self.subscribed.set()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=HEALTH_S)
            if message is None:
                if pinged:
                    raise TimeoutError("no answer to a ping")
                await pubsub.ping()
                pinged = True
                continue
            pinged = False
            if message["type"] == "message":
                self._on_message(message["channel"], message["data"])

    async def _renew_now(self) -> None:
        try:
            await self.renew()
        except (RedisError, OSError) as exc:
            self._registry_failed(exc)

    def _subscription_lost(self, exc: BaseException) -> None:
        self.subscribed.clear()
        if self._index is not None:
            self._index.suspend()
        if not self._lost:
            self._lost = True
            log.warning(
                "Redis subscription lost (%s): the keypad index is read from the database "
                "until it is back",
                type(exc).__name__,
            )

    def _on_message(self, channel: str, data: str) -> None:
        if channel == self.keypad_channel:
            if data != self.node_id and self._index is not None:
                self._index.drop()
                self.invalidations_heard += 1
            return
        try:
            message = json.loads(data)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if self._slot is None:
            return
        for charger_id in message.get("wake", ()):
            self._slot.poke_here(str(charger_id))
        for charger_id in message.get("takeover", ()):
            self._spawn(functools.partial(self._taken_over, str(charger_id)))

    async def _taken_over(self, charger_id: str) -> None:
        """Hand the socket over unless the charger came back here meanwhile."""
        endpoint = self._slot.target if self._slot is not None else None
        if endpoint is None or not endpoint.holds(charger_id):
            return
        try:
            owner = await self._client.get(self.charger_key(charger_id))
        except (RedisError, OSError) as exc:
            self._registry_failed(exc)
            owner = None
        if owner is not None and owner != self.node_id:
            endpoint.hand_over(charger_id)
