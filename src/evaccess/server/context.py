"""What every use case needs, built once by the composition root (``bootstrap.build``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from argon2 import PasswordHasher

from evaccess.domain.clock import Clock, RandomSource
from evaccess.domain.lockout import LockoutRules
from evaccess.server.db.engine import Database
from evaccess.server.keypad_index import KeypadIndex
from evaccess.server.keys import KeyProvider
from evaccess.server.ocpp.backend import ChargerNotifier
from evaccess.server.services.audit import AuditLog
from evaccess.server.throttle import ThrottleRegistry
from evaccess.server.vault import KeypadHasher, PinVault


class NotifierSlot:
    """Holds the OCPP endpoint's notifier once it runs; pokes before that are dropped
    (the charger fetches its outbox on connect anyway)."""

    def __init__(self) -> None:
        self.target: ChargerNotifier | None = None

    def poke(self, charger_id: str) -> None:
        if self.target is not None:
            self.target.poke(charger_id)


LOGIN_RULES = LockoutRules(max_failures=5, window_s=60.0, lockout_s=60.0, escalation=2.0)
"""Login: 5 failures in a minute lock the account (or address) for 1 min, doubling."""

PIN_SET_RULES = LockoutRules(max_failures=5, window_s=3600.0, lockout_s=3600.0, escalation=2.0)
"""Keypad PIN rejections per setter: 5 an hour, then an hour's pause (the PIN-taken oracle)."""


@dataclass(kw_only=True)
class Context:
    db: Database
    clock: Clock
    rng: RandomSource
    keys: KeyProvider
    vault: PinVault
    keypad_hasher: KeypadHasher
    audit: AuditLog
    passwords: PasswordHasher
    token_ttl_s: float
    keypad_throttle: ThrottleRegistry
    login_throttle: ThrottleRegistry
    pin_set_throttle: ThrottleRegistry
    keypad_index: KeypadIndex
    notifier: NotifierSlot = field(default_factory=NotifierSlot)
