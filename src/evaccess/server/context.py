"""What every use case needs, built once by the composition root (``bootstrap.build``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from argon2 import PasswordHasher

from evaccess.domain.clock import Clock, RandomSource
from evaccess.domain.lockout import LockoutRules
from evaccess.server.audit import AuditLog
from evaccess.server.db.engine import Database
from evaccess.server.documents import DocumentStore
from evaccess.server.keypad_index import KeypadIndex
from evaccess.server.keys import KeyProvider
from evaccess.server.mail import DeliveryPort, LogDelivery
from evaccess.server.ocpp.backend import ChargerEndpoint, ChargerRegistry
from evaccess.server.throttle import Throttle
from evaccess.server.vault import KeypadHasher, PinVault


class RemoteWake(Protocol):
    """Wakes the node that holds a charger's socket (cluster mode)."""

    def wake(self, charger_id: str) -> None:
        """Never blocks nor raises: a lost wake-up only delays (every node sweeps the
        outbox of its chargers)."""

    async def held(self, charger_id: str) -> bool | None:
        """Some node holds the charger's socket (its registration lives up to 30 s past a
        crashed node); ``None`` when Redis cannot tell. Never raises."""


class NotifierSlot:
    """Holds the OCPP endpoint's notifier once it runs; pokes before that are dropped
    (the charger fetches its outbox on connect anyway). In cluster mode a charger not
    connected here is woken on the node that holds it (``remote``)."""

    def __init__(self, remote: RemoteWake | None = None) -> None:
        self.target: ChargerEndpoint | None = None
        self.remote = remote

    def poke(self, charger_id: str) -> None:
        """Something waits in the outbox for ``charger_id`` (call it after the commit)."""
        if self.target is not None and self.target.holds(charger_id):
            self.target.poke(charger_id)
        elif self.remote is not None:
            self.remote.wake(charger_id)

    def poke_here(self, charger_id: str) -> None:
        """Only if the charger is connected to this node."""
        if self.target is not None:
            self.target.poke(charger_id)

    async def reaches(self, charger_id: str, *, recorded: bool) -> bool:
        """The charger is connected now, so a command queued for it goes out at once (else
        it waits in the outbox for the next connect). Asked of the live sockets: this
        node's, and in cluster mode the registry of every node's; ``recorded`` (the
        database's ``online`` flag) only when Redis cannot tell."""
        if self.target is not None and self.target.holds(charger_id):
            return True
        if self.remote is None:
            return False
        held = await self.remote.held(charger_id)
        return recorded if held is None else held


class ClusterLink(Protocol):
    """The node's connection to the other nodes (cluster mode); closed at shutdown."""

    node_id: str
    registry: ChargerRegistry
    """Which node holds each charger's socket, for the OCPP endpoint."""

    async def start(self) -> None:
        """Subscribe to the other nodes' messages and keep this node's chargers registered
        (background tasks, until ``aclose``)."""

    async def aclose(self) -> None: ...


LOGIN_RULES = LockoutRules(max_failures=5, window_s=60.0, lockout_s=60.0, escalation=2.0)
"""Login, per (account, address) pair: 5 failures in a minute lock that pair for 1 min,
doubling. Someone guessing from elsewhere never locks the owner's own address out."""

LOGIN_ACCOUNT_RULES = LockoutRules(
    max_failures=50, window_s=3600.0, lockout_s=900.0, escalation=1.0
)
"""Login, per account from all addresses: 50 failures in an hour pause it for 15 min, never
longer (a distributed guesser gets 50 guesses an hour; it cannot lock the owner out for
good)."""

LOGIN_CLIENT_RULES = LockoutRules(max_failures=30, window_s=600.0, lockout_s=600.0, escalation=2.0)
"""Login, per address over all accounts: 30 failures in 10 min pause it for 10 min, doubling
(one address spraying many accounts)."""

COMMISSIONING_RULES = LockoutRules(
    max_failures=5, window_s=24 * 3600.0, lockout_s=24 * 3600.0, escalation=1.0
)
"""Scanning a sticker, per account and per charger: 5 failed scans lock for 24 h (Easee's
pairing rule)."""

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
    allow_signup: bool = False
    reauth_after_s: float = 300.0
    """The portal asks for the password again before a reveal in an older session."""
    """Self sign-up through ``POST /api/users`` (``EVACCESS_ALLOW_SIGNUP``); off by default."""
    keypad_throttle: Throttle
    login_throttle: Throttle
    login_account_throttle: Throttle
    login_client_throttle: Throttle
    pin_set_throttle: Throttle
    keypad_index: KeypadIndex
    commissioning_throttle: Throttle
    """Failed sticker scans, keyed ``account:<user id>`` and ``charger:<serial>``."""
    commissioning_code_ttl_s: float = 730 * 86400.0
    delivery: DeliveryPort = field(default_factory=LogDelivery)
    """Where the notifications outbox delivers (``server/mail.py``)."""
    auth_cache_ttl_s: float = 3600.0
    """``cacheExpiryDateTime`` of token answers (``EVACCESS_AUTH_CACHE_TTL_S``)."""
    notifier: NotifierSlot = field(default_factory=NotifierSlot)
    documents: DocumentStore | None = None
    """Claim documents (``EVACCESS_CLAIM_DIR``); ``None``: this server takes no claims."""
    claim_objection_s: float = 7 * 86400.0
    claim_document_max_bytes: int = 10 * 1024 * 1024
    cluster: ClusterLink | None = None
    """Cluster mode (``EVACCESS_REDIS_URL``): the throttles above live in Redis."""

    async def start(self) -> None:
        """Start what runs in the background for the context (cluster mode: the link)."""
        if self.cluster is not None:
            await self.cluster.start()

    async def close(self) -> None:
        """Release the database and the cluster connection (at shutdown)."""
        await self.db.dispose()
        if self.cluster is not None:
            await self.cluster.aclose()
