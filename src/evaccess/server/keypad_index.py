"""Who may use each charger's keypad, by PIN digest, kept in memory: a keypad entry then
costs one HMAC and one dictionary lookup instead of several queries.

Freshness, strongest first:
- every change to grants or keypad PINs in this process calls ``invalidate()`` after its
  commit: nothing loaded before it is used again (the epoch moves on);
- an entry holding a grant that has since expired is not used;
- after ``ttl_s`` an entry is *stale*: still answered from, while one background refresh
  reloads its organisation tree. This bounds how long a change made by another server node
  takes to be seen here, without stalling keypad answers behind a reload.

Cluster mode (``EVACCESS_REDIS_URL``): ``invalidate()`` also tells the other nodes
(``IndexBroadcast``, Redis pub/sub), whose index ``drop()``s everything on receipt, so there
is no stale bound (``ttl_s`` infinite). While this node is not subscribed (at start, and
whenever the subscription is lost) the index is ``suspend()``ed: it caches nothing, every
keypad entry reads the database; ``resume()`` after subscribing again drops what was cached,
which covers every change missed meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from evaccess.domain.clock import Clock

DEFAULT_TTL_S = 30.0


@dataclass(frozen=True, kw_only=True, slots=True)
class ChargerKeypad:
    epoch: int
    loaded_at: float
    valid_until: datetime | None
    spaces: tuple[tuple[str, Mapping[bytes, str]], ...]
    """(PIN space key, who may use this keypad by digest) pairs: the organisation's space
    (per-charger grants, and the members its policy lets in, a mapping shared by all the
    chargers of that organisation) and the current owner's personal space."""


class IndexBroadcast(Protocol):
    """Tells the other server nodes that their keypad index is out of date (cluster mode)."""

    def publish(self) -> None:
        """Called after a commit; never blocks nor raises (the adapter retries)."""


class KeypadIndex:
    def __init__(
        self,
        clock: Clock,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        max_chargers: int = 100_000,
        broadcast: IndexBroadcast | None = None,
    ) -> None:
        self.epoch = 0
        self._broadcast = broadcast
        self._suspended = broadcast is not None
        """Cluster mode starts suspended: nothing is cached until the node is subscribed."""
        self._clock = clock
        self._ttl_s = ttl_s
        self._max = max_chargers
        self._entries: dict[str, ChargerKeypad] = {}
        self.loading = asyncio.Lock()
        """Held while an organisation tree is being loaded (one load at a time)."""
        self._refresh: asyncio.Task[None] | None = None

    def get(self, charger_id: str) -> ChargerKeypad | None:
        """The entry to answer from (possibly stale), or ``None``: load it first."""
        entry = self._entries.get(charger_id)
        if entry is None or self._suspended:
            return None
        if entry.epoch != self.epoch or (
            entry.valid_until is not None and self._clock.now() >= entry.valid_until
        ):
            del self._entries[charger_id]
            return None
        return entry

    def is_stale(self, entry: ChargerKeypad) -> bool:
        return self._clock.monotonic() - entry.loaded_at >= self._ttl_s

    def refresh_soon(self, load: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Reload in the background (one refresh at a time); answers go on meanwhile."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.get_running_loop().create_task(load())

    async def refreshed(self) -> None:
        """Wait for a background refresh in flight, if any."""
        if self._refresh is not None:
            await self._refresh

    def put(self, charger_id: str, entry: ChargerKeypad) -> None:
        if entry.epoch != self.epoch or self._suspended:
            return  # something changed while it loaded (or nothing may be kept): drop it
        if len(self._entries) >= self._max and charger_id not in self._entries:
            self._entries.clear()
        self._entries[charger_id] = entry

    def invalidate(self) -> None:
        """After a commit that changed keypad access: here, and on every other node."""
        self.drop()
        if self._broadcast is not None:
            self._broadcast.publish()

    def drop(self) -> None:
        """Forget everything loaded (a load in flight is not kept either)."""
        self.epoch += 1
        self._entries.clear()

    @property
    def suspended(self) -> bool:
        return self._suspended

    def suspend(self) -> None:
        """Changes made elsewhere may go unseen: cache nothing until ``resume``."""
        self._suspended = True
        self.drop()

    def resume(self) -> None:
        """Changes made elsewhere are seen again: cache again, from a fresh start."""
        self.drop()
        self._suspended = False
