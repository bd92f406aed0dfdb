"""The security counters of every node in Redis: the Redis adapter of ``throttle.Throttle``.

One hash per key (``<prefix>throttle:<throttle>:<digest of the key>``: no email or address
in Redis), changed by one Lua script per failure, so two nodes counting at once never lose
a failure. The script is ``domain.lockout.record_failure`` line for line (failures in the
window, lockout with escalation, the disabling cap), on the epoch seconds of the node's
clock (the nodes keep their clocks in step with NTP): the results are the in-process
adapter's. Every hash expires once nothing of it matters any more (its lockout is over and
a window and the longest lockout have passed), except a disabled one, which stays.

Redis unreachable: every call raises ``ClusterUnavailable`` (the attempt is refused, not
let through uncounted); the client reconnects by itself on the next call once Redis is
back. The log says so once per outage, naming the error's type only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from evaccess.domain import lockout
from evaccess.domain.clock import Clock
from evaccess.domain.errors import ClusterUnavailable

log = logging.getLogger("evaccess.cluster")

TIMEOUT_S = 1.0
"""Connect, reply and free-connection timeout: a node waits at most this long (each) before
failing closed."""
MAX_CONNECTIONS = 64
"""Connections to Redis a node's counters keep at most; more callers wait for one."""

_FAILURE = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local max_failures = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local lockout_s = tonumber(ARGV[4])
local escalation = tonumber(ARGV[5])
local max_lockout = tonumber(ARGV[6])
local cap = tonumber(ARGV[7])
local retain = tonumber(ARGV[8])
local function fmt(x) return string.format('%.17g', x) end
local s = redis.call('HMGET', key, 'f', 'u', 'l', 'c', 'd')
local locked_until = tonumber(s[2]) or 0
local level = tonumber(s[3]) or 0
local consecutive = (tonumber(s[4]) or 0) + 1
if cap and consecutive >= cap then
  redis.call('HSET', key, 'f', '', 'u', fmt(locked_until), 'l', level, 'c', consecutive, 'd', '1')
  redis.call('PERSIST', key)
  return {'disabled', tostring(level), '', tostring(consecutive)}
end
local recent = {}
if s[1] then
  for t in string.gmatch(s[1], '%S+') do
    if now - tonumber(t) < window then table.insert(recent, t) end
  end
end
table.insert(recent, fmt(now))
if #recent < max_failures then
  redis.call('HSET', key, 'f', table.concat(recent, ' '), 'u', fmt(locked_until), 'l', level,
    'c', consecutive)
  if s[5] == '1' then
    redis.call('PERSIST', key)
  else
    redis.call('EXPIRE', key, math.ceil(math.max(locked_until - now, 0) + retain))
  end
  return false
end
level = level + 1
local duration = math.min(lockout_s * escalation ^ (level - 1), max_lockout)
redis.call('HSET', key, 'f', '', 'u', fmt(now + duration), 'l', level, 'c', consecutive, 'd', '0')
redis.call('EXPIRE', key, math.ceil(duration + retain))
return {'locked', tostring(level), fmt(duration), tostring(consecutive)}
"""

_SUCCESS = """
local s = redis.call('HMGET', KEYS[1], 'u', 'd')
if (tonumber(s[1]) or 0) == 0 and s[2] ~= '1' then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'f', '', 'l', 0, 'c', 0)
end
return 0
"""

_SETTLE = (
    """
local held = redis.call('HMGET', KEYS[1], 'u', 'd')
if held[2] == '1' then return {'blocked', 'inf'} end
local held_until = tonumber(held[1]) or 0
if tonumber(ARGV[1]) < held_until then
  return {'blocked', string.format('%.17g', held_until - tonumber(ARGV[1]))}
end
if ARGV[9] == '1' then
  if held_until == 0 then
    redis.call('DEL', KEYS[1])
  else
    redis.call('HSET', KEYS[1], 'f', '', 'l', 0, 'c', 0)
  end
  return false
end
"""
    + _FAILURE
)
"""``check`` and then ``_SUCCESS`` (ARGV[9] is ``1``) or ``_FAILURE`` (the same ARGV 1-8),
in one script: the keypad's one round trip per code."""


@dataclass(slots=True)
class _Queued:
    script: AsyncScript
    keys: list[str]
    args: list[Any]
    reply: asyncio.Future[Any]


class RedisCluster:
    """The connection to Redis every throttle of a node shares; ``aclose`` at shutdown.

    ``batched`` script calls made in the same turn of the event loop (many chargers typing
    at once) travel in one pipeline: one write and one read for all of them instead of one
    each (measured: a round trip costs a node about 100 µs of CPU, mostly the two system
    calls and redis-py's per-command machinery; docs/performance.md). Each script stays
    atomic on its own, and they run in the order they were called."""

    def __init__(self, url: str, *, prefix: str, node_id: str, clock: Clock) -> None:
        self.prefix = prefix
        self.node_id = node_id
        self.clock = clock
        # A pool that makes a caller wait (at most TIMEOUT_S) for a free connection: the
        # default pool raises at once past 100 connections in use, and 100 chargers typing
        # at once with their keypads not in memory failed closed (bench cluster).
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=TIMEOUT_S,
            decode_responses=True,
            socket_timeout=TIMEOUT_S,
            socket_connect_timeout=TIMEOUT_S,
            # One immediate retry: the first command on a connection that Redis closed
            # (it restarted) fails, the retry reconnects.
            retry=Retry(NoBackoff(), 1),
        )
        self.client: Redis = Redis.from_pool(pool)
        self.failure_script = self.client.register_script(_FAILURE)
        self.success_script = self.client.register_script(_SUCCESS)
        self.settle_script = self.client.register_script(_SETTLE)
        self._up = True
        self._queue: list[_Queued] = []
        self._flushes: set[asyncio.Task[None]] = set()

    def throttle(self, name: str, rules: lockout.LockoutRules) -> RedisThrottle:
        return RedisThrottle(self, name, rules)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def batched(
        self, what: str, script: AsyncScript, keys: list[str], args: list[Any]
    ) -> Any:
        """Run one script in this turn's pipeline; fails closed as ``call`` does."""
        loop = asyncio.get_running_loop()
        queued = _Queued(script, keys, args, loop.create_future())
        self._queue.append(queued)
        if len(self._queue) == 1:
            # A task's first step runs on the loop's next turn: what this turn queues
            # after this call goes in the same pipeline.
            flush = loop.create_task(self._flush())
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        return await self.call(what, lambda: queued.reply)

    async def _flush(self) -> None:
        queued, self._queue = self._queue, []
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for q in queued:
                    pipe.evalsha(q.script.sha, len(q.keys), *q.keys, *q.args)
                replies = await pipe.execute(raise_on_error=False)
            for q, reply in zip(queued, replies, strict=True):
                if isinstance(reply, NoScriptError):
                    # Redis restarted since the script was loaded: it did not run, so
                    # running it again (the script object loads it) counts it once.
                    reply = await q.script(keys=q.keys, args=q.args)
                if isinstance(reply, Exception):
                    q.reply.set_exception(reply)
                else:
                    q.reply.set_result(reply)
        except (RedisError, OSError) as exc:
            for q in queued:
                if not q.reply.done():
                    q.reply.set_exception(exc)
        except BaseException as exc:  # cancelled at shutdown: no caller waits forever
            for q in queued:
                if not q.reply.done():
                    q.reply.set_exception(RedisError(type(exc).__name__))
            raise

    async def call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one Redis command; an error of Redis or of the network fails closed."""
        try:
            result = await fn(*args, **kwargs)
        except (RedisError, OSError) as exc:
            if self._up:
                self._up = False
                log.warning(
                    "Redis unreachable (%s on %s): security counters fail closed",
                    type(exc).__name__,
                    what,
                )
            raise ClusterUnavailable(
                "the security counters shared by the server nodes are unreachable; "
                "try again shortly"
            ) from None
        if not self._up:
            self._up = True
            log.info("Redis reachable again: security counters shared again")
        return result


class RedisThrottle:
    """One throttle of ``RedisCluster`` (``name`` keeps its keys apart from the others')."""

    def __init__(self, cluster: RedisCluster, name: str, rules: lockout.LockoutRules) -> None:
        self._cluster = cluster
        self._name = name
        self._rules = rules
        self._retain = max(rules.window_s, rules.max_lockout_s)

    @property
    def rules(self) -> lockout.LockoutRules:
        return self._rules

    def redis_key(self, key: str) -> str:
        digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
        return f"{self._cluster.prefix}throttle:{self._name}:{digest}"

    def _now(self) -> float:
        return self._cluster.clock.now().timestamp()

    async def _state(self, key: str) -> lockout.LockoutState:
        client = self._cluster.client
        until, disabled = await self._cluster.call(
            "check", client.hmget, self.redis_key(key), ["u", "d"]
        )
        return lockout.LockoutState(locked_until=float(until or 0.0), disabled=disabled == "1")

    async def check(self, key: str) -> None:
        lockout.check(await self._state(key), self._now())

    async def is_locked(self, key: str) -> float | None:
        state = await self._state(key)
        now = self._now()
        if not state.is_locked(now):
            return None
        return float("inf") if state.disabled else state.locked_until - now

    def _failure_args(self) -> list[Any]:
        rules = self._rules
        return [
            repr(self._now()),
            rules.max_failures,
            repr(rules.window_s),
            repr(rules.lockout_s),
            repr(rules.escalation),
            repr(rules.max_lockout_s),
            "" if rules.failure_cap is None else rules.failure_cap,
            repr(self._retain),
        ]

    async def failure(self, key: str) -> lockout.LockoutEvent | None:
        reply = await self._cluster.call(
            "failure",
            self._cluster.failure_script,
            keys=[self.redis_key(key)],
            args=self._failure_args(),
        )
        return _event(reply)

    async def success(self, key: str) -> None:
        await self._cluster.call(
            "success", self._cluster.success_script, keys=[self.redis_key(key)]
        )

    async def settle(self, key: str, *, succeeded: bool) -> lockout.LockoutEvent | None:
        reply = await self._cluster.batched(
            "settle",
            self._cluster.settle_script,
            [self.redis_key(key)],
            [*self._failure_args(), "1" if succeeded else "0"],
        )
        if reply and reply[0] == "blocked":
            # Raised as lockout.check raises it (LockedOut, or PairingDisabled when the
            # failure cap disabled the key), from the state the script saw.
            disabled = reply[1] == "inf"
            remaining = 0.0 if disabled else float(reply[1])
            now = self._now()
            lockout.check(
                lockout.LockoutState(locked_until=now + remaining, disabled=disabled), now
            )
        return _event(reply)


def _event(reply: Any) -> lockout.LockoutEvent | None:
    """The lockout a failure script reported, if any."""
    if not reply:
        return None
    kind, level, duration, consecutive = reply
    return lockout.LockoutEvent(
        kind=lockout.LockoutKind(kind),
        level=int(level),
        duration_s=float(duration) if duration else None,
        consecutive_failures=int(consecutive),
    )
