"""Who may use each charger's keypad, by PIN digest, kept in memory: a keypad entry then
costs one HMAC and one dictionary lookup instead of several queries.

Any change to grants or keypad PINs calls ``invalidate()``, so this process never answers
from stale data; entries also expire at the earliest grant expiry they contain and after
``ttl_s``, which bounds how long another server node's change can take to be seen here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from evaccess.domain.clock import Clock

DEFAULT_TTL_S = 10.0


@dataclass(frozen=True, kw_only=True, slots=True)
class ChargerKeypad:
    epoch: int
    loaded_at: float
    valid_until: datetime | None
    root_id: str
    users: dict[bytes, str]


class KeypadIndex:
    def __init__(
        self, clock: Clock, *, ttl_s: float = DEFAULT_TTL_S, max_chargers: int = 100_000
    ) -> None:
        self.epoch = 0
        self._clock = clock
        self._ttl_s = ttl_s
        self._max = max_chargers
        self._entries: dict[str, ChargerKeypad] = {}
        self.loading = asyncio.Lock()
        """Held while an organisation tree is being loaded (one load at a time)."""

    def get(self, charger_id: str) -> ChargerKeypad | None:
        entry = self._entries.get(charger_id)
        if entry is None:
            return None
        if (
            entry.epoch != self.epoch
            or self._clock.monotonic() - entry.loaded_at >= self._ttl_s
            or (entry.valid_until is not None and self._clock.now() >= entry.valid_until)
        ):
            del self._entries[charger_id]
            return None
        return entry

    def put(self, charger_id: str, entry: ChargerKeypad) -> None:
        if entry.epoch != self.epoch:
            return  # something changed while it loaded: do not keep it
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[charger_id] = entry

    def invalidate(self) -> None:
        self.epoch += 1
        self._entries.clear()
