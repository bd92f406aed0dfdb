"""What the OCPP endpoint asks of the rest of the server: one narrow port.

The endpoint (protocol handling, sessions, frames) knows nothing of the database; the
server's services implement ``OcppBackend`` (``server/services/ocpp_backend.py``) and an
in-memory adapter serves the endpoint's own tests. Server -> charger commands follow an
outbox pattern: services store what a charger must receive and call
``ChargerNotifier.poke``; the session (on poke, and on every (re)connect) fetches
``pending_commands`` and reports each outcome with ``command_result``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class AuthOutcome(StrEnum):
    ACCEPTED = "accepted"
    UNKNOWN_CHARGER = "unknown_charger"
    BAD_PASSWORD = "bad_password"


@dataclass(frozen=True, kw_only=True, slots=True)
class BootInfo:
    vendor: str
    model: str
    firmware: str | None
    serial: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthorizeResult:
    """``accepted`` only for a user allowed at this charger; ``locked`` when the keypad is
    locked (answered without a database lookup)."""

    accepted: bool
    locked: bool = False
    user_id: str | None = None
    retry_after_s: float | None = None
    status: str | None = None
    """The AuthorizationStatus to answer when it is not simply Accepted/Invalid (a card:
    Blocked, Expired, Unknown)."""
    group_id_token: str | None = None
    """IdTokenInfo.groupIdToken (2.0.1) / idTagInfo.parentIdTag (1.6)."""
    cache_expiry: datetime | None = None
    """IdTokenInfo.cacheExpiryDateTime (2.0.1) / idTagInfo.expiryDate (1.6)."""
    token_type: str | None = None
    """The type of the registered token that answered (a card's ISO14443, ...): how an
    untyped 1.6J idTag is recorded; ``None`` when no card matched."""


class TransactionEventType(StrEnum):
    STARTED = "Started"
    UPDATED = "Updated"
    ENDED = "Ended"


@dataclass(frozen=True, kw_only=True, slots=True)
class TransactionEvent:
    transaction_id: str
    event_type: TransactionEventType
    seq_no: int
    timestamp: datetime
    trigger_reason: str
    id_token: str | None = None
    """The KeyCode (or RFID id) that started it, when the charger sends one."""
    id_token_type: str | None = None
    evse_id: int | None = None
    meter_wh: float | None = None
    offline: bool = False
    stopped_reason: str | None = None
    """Why an Ended transaction stopped (2.0.1 ``stoppedReason``, 1.6 ``reason``)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SetBluetoothPin:
    command_id: str
    pin: str | None
    required: bool
    changeable: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class RevokeCredentials:
    command_id: str
    phone_id: str | None
    """``None``: every phone."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ReenablePinPairing:
    command_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class LocalListEntry:
    id_token: str
    """A keypad code or card number (only for organisations that opted into offline use)."""
    user_id: str
    token_type: str = "KeyCode"
    group_id_token: str | None = None
    expires_at: datetime | None = None
    """A card's expiry: the charger's list answers it Invalid afterwards (cacheExpiryDateTime
    / expiryDate of the entry)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SendLocalList:
    """Bring the charger's local authorization list to ``version``: full replaces it,
    differential adds ``entries`` and removes ``removed`` (docs/security.md on exposure)."""

    command_id: str
    version: int
    full: bool
    entries: tuple[LocalListEntry, ...] = ()
    removed: tuple[str, ...] = field(default=())
    """Keypad codes to remove."""
    removed_tokens: tuple[tuple[str, str], ...] = ()
    """Cards to remove: (number, token type)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ClearCache:
    """Empty the charger's authorization cache (2.0.1 C11; 1.6 §5.4): a card or an access
    was revoked."""

    command_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class SetMasterPassGroup:
    """``AuthCtrlr.MasterPassGroupId`` (2.0.1 C16) as the charger's organisation chain sets
    it (``None``: cleared). 1.6J has no such key: completed without a Call."""

    command_id: str
    group: str | None


ChargerCommand = (
    SetBluetoothPin
    | RevokeCredentials
    | ReenablePinPairing
    | SendLocalList
    | ClearCache
    | SetMasterPassGroup
)


class OcppBackend(Protocol):
    async def authenticate(self, charger_id: str, password: str) -> AuthOutcome:
        """Check a charger's Basic Auth password (counts refusals)."""

    async def authenticate_certificate(self, charger_id: str) -> AuthOutcome:
        """Security profile 3: TLS verified a client certificate whose CN is ``charger_id``
        against the configured CA; ``ACCEPTED`` for a known charger (counts refusals)."""

    async def connection_changed(self, charger_id: str, *, online: bool, protocol: str) -> None:
        """The charger connected (with this subprotocol) or went away."""

    async def boot(self, charger_id: str, info: BootInfo) -> None:
        """BootNotification: record vendor, model, firmware; re-evaluate the PIN policy
        (which may queue a ``SetBluetoothPin``)."""

    async def heartbeat(self, charger_id: str, at: datetime) -> None: ...

    async def status(
        self, charger_id: str, *, evse_id: int, connector_id: int, status: str, at: datetime
    ) -> None:
        """StatusNotification: the connector's state (Available, Occupied, Faulted, ...)."""

    async def authorize_keycode(self, charger_id: str, code: str) -> AuthorizeResult:
        """A PIN typed on the keypad (throttled per charger)."""

    async def authorize_token(
        self, charger_id: str, id_token: str, token_type: str | None, *, stopping: bool = False
    ) -> AuthorizeResult:
        """Authorize for any token: a KeyCode is ``authorize_keycode``; a card is answered
        with its stored status and group. ``token_type`` None: a 1.6J idTag (untyped: a
        card, else a keypad code). ``stopping``: the token ends a transaction."""

    async def transaction_event(
        self, charger_id: str, event: TransactionEvent
    ) -> AuthorizeResult | None:
        """Store a transaction event exactly once (idempotent on transaction id + seq_no);
        when it carries a KeyCode, the answer for it."""

    async def security_event(
        self, charger_id: str, *, event_type: str, at: datetime, tech_info: str | None
    ) -> None: ...

    async def pending_commands(self, charger_id: str) -> list[ChargerCommand]:
        """What the charger must still receive, oldest first."""

    async def command_result(self, charger_id: str, command_id: str, *, accepted: bool) -> None:
        """The charger accepted (or refused) a command; a pending PIN becomes active here."""

    async def pin_changed_by_charger(self, charger_id: str, new_pin: str) -> bool:
        """A phone changed the PIN on the charger; ``False`` when the policy forbids it."""

    async def configuration_reported(self, charger_id: str, changes: dict[str, str]) -> None: ...

    async def local_list_version(self, charger_id: str) -> int:
        """The version the server last had the charger accept (0: none)."""

    async def request_local_list_resync(self, charger_id: str, *, charger_version: int) -> None:
        """GetLocalListVersion on connect found ``charger_version`` on the charger, which is
        not ``local_list_version``: queue a full ``SendLocalList`` whose version is greater
        than both (versions only grow; an empty list for organisations that did not opt in)
        and drop the list updates still queued for the charger: the full list supersedes them."""


class ChargerNotifier(Protocol):
    """Implemented by the OCPP endpoint: something is waiting for this charger."""

    def poke(self, charger_id: str) -> None: ...


class ChargerEndpoint(ChargerNotifier, Protocol):
    """The OCPP endpoint as the cluster sees it: which chargers hold a socket here."""

    def holds(self, charger_id: str) -> bool:
        """The charger is connected to this node."""

    def connected_chargers(self) -> list[str]: ...

    def hand_over(self, charger_id: str) -> None:
        """The charger connected to another node: close its socket here, without marking
        it offline (the other node holds it now)."""


class ChargerRegistry(Protocol):
    """Which node holds each charger's socket (cluster mode; ``None``: one node)."""

    async def connected(self, charger_id: str) -> None:
        """This node holds the charger's socket now: another node holding an older one is
        told to close it. Never raises (Redis lost: registered again once it is back)."""

    async def disconnected(self, charger_id: str) -> bool:
        """The socket here closed; ``False`` when another node holds the charger since (it
        must not be marked offline then). Never raises."""
