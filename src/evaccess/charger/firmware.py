"""The charger's behaviour, independent of the OCPP version and of the socket.

``Firmware`` owns the persistent state (``charger/state.py``), the keypad (OCPP 2.0.1 C04:
KeyCode authorization, local list then authorization cache when offline, throttled with
``domain.lockout``; cards alike, C01, and a master pass, C16), the
charging session, the Bluetooth settings from the server's custom component, and the outbox
of messages that must reach the server exactly once. It implements ``ServerLink`` for the
Bluetooth peripheral. The OCPP adapters (``charger/ocpp_client.py``) translate wire messages
to these methods; the connection loop (``charger/run.py``) attaches a ``CsmsLink`` while
the server is reachable.

No method logs or raises with a keypad code or a PIN in its text.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from evaccess.charger.config import ChargerConfig
from evaccess.charger.ocpp_messages import (
    ConnectorState,
    Messages,
    Request,
    StopReason,
    TokenInfo,
)
from evaccess.charger.ports import BluetoothControl
from evaccess.charger.state import (
    AuthorizationState,
    CachedAuthorization,
    LocalAuthorization,
    LocalList,
    QueuedMessage,
    StateStore,
)
from evaccess.domain import lockout
from evaccess.domain.clock import Clock, RandomSource
from evaccess.domain.errors import LockedOut
from evaccess.domain.pins import BLUETOOTH_PIN_DIGITS
from evaccess.protocol.ocpp_components import (
    KEYCODE_TOKEN_TYPE,
    WRITE_ONLY_VARIABLES,
    BluetoothVariable,
    DataTransferMessage,
    SecurityEventType,
)

log = logging.getLogger(__name__)

ACCEPTED = "Accepted"
REVOKE_ALL = "*"


class LinkDown(Exception):
    """The server could not be reached or did not answer in time."""


class CsmsLink(Protocol):
    """A live OCPP connection to the server, after an accepted BootNotification."""

    async def request(self, request: Request) -> dict[str, Any] | None:
        """Send one Call; the CallResult payload (snake_case), ``None`` for a CallError.

        Raises ``LinkDown`` when the connection is lost or the reply does not come.
        """


class SettingStatus(StrEnum):
    """Outcome of a write on the custom component (2.0.1 SetVariableStatusEnumType values)."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"


class ReadStatus(StrEnum):
    """Outcome of a read (2.0.1 GetVariableStatusEnumType values)."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"


class LocalListStatus(StrEnum):
    """2.0.1 SendLocalListStatusEnumType / 1.6 UpdateStatus (common values)."""

    ACCEPTED = "Accepted"
    FAILED = "Failed"
    VERSION_MISMATCH = "VersionMismatch"


EXPIRED = "Expired"


UNTYPED = ""
"""The type of a local-list entry that came as a 1.6J idTag, which has none."""


@dataclass(frozen=True, kw_only=True, slots=True)
class LocalListUpdate:
    """One entry of a SendLocalList; ``status`` ``None`` removes the token (differential)."""

    id_token: str
    token_type: str
    """``UNTYPED`` for a 1.6J idTag: it answers for a keypad code and a card alike."""
    status: str | None
    group_id_token: str | None = None
    expires_at: datetime | None = None
    """The entry's ``cacheExpiryDateTime`` / ``expiryDate``, if any."""


class KeypadOutcome(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    STOPPED = "stopped"
    """A master pass (C16) ended the session in progress."""
    LOCKED = "locked"
    BUSY = "busy"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, kw_only=True, slots=True)
class KeypadDecision:
    """What the keypad shows after one code; never holds the code itself."""

    outcome: KeypadOutcome
    transaction_id: str | None = None
    retry_after_s: float | None = None
    offline: bool = False

    def line(self) -> str:
        """The one line printed for this decision (``keypad: ...``)."""
        match self.outcome:
            case KeypadOutcome.ACCEPTED:
                via = ", local list" if self.offline else ""
                return f"keypad: accepted (session started, transaction {self.transaction_id}{via})"
            case KeypadOutcome.STOPPED:
                return f"keypad: master pass, session ended (transaction {self.transaction_id})"
            case KeypadOutcome.REJECTED if self.retry_after_s is not None:
                return f"keypad: rejected, locked for {self.retry_after_s:.0f} s"
            case KeypadOutcome.REJECTED:
                return "keypad: rejected"
            case KeypadOutcome.LOCKED if self.retry_after_s == float("inf"):
                return "keypad: locked until re-enabled by the server"
            case KeypadOutcome.LOCKED:
                return f"keypad: locked, retry in {self.retry_after_s or 0:.0f} s"
            case KeypadOutcome.BUSY:
                return "keypad: busy (a session is in progress)"
            case KeypadOutcome.UNAVAILABLE:
                return "keypad: unavailable (charger set inoperative by the server)"
        raise AssertionError(self.outcome)  # pragma: no cover


def _parse_bool(value: str) -> bool | None:
    """OCPP 2.0.1 dataType boolean: ``true`` / ``false`` (Part 2, Appendix 2)."""
    return {"true": True, "false": False}.get(value.strip().lower())


def _is_pin_format(pin: str) -> bool:
    return pin.isascii() and pin.isdigit() and len(pin) == BLUETOOTH_PIN_DIGITS


class Outbox:
    """Messages waiting for the server's reply, mirrored on disk in order."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._messages = store.load_outbox()
        self._nonempty = asyncio.Event()
        self._empty = asyncio.Event()
        self._signal()

    def _signal(self) -> None:
        if self._messages:
            self._nonempty.set()
            self._empty.clear()
        else:
            self._nonempty.clear()
            self._empty.set()

    def __len__(self) -> int:
        return len(self._messages)

    def put(self, message: QueuedMessage) -> None:
        self._messages.append(message)
        self._store.save_outbox(self._messages)
        self._signal()

    async def head(self) -> QueuedMessage:
        while not self._messages:
            await self._nonempty.wait()
        return self._messages[0]

    def remove(self, message_id: str) -> None:
        self._messages = [m for m in self._messages if m.message_id != message_id]
        self._store.save_outbox(self._messages)
        self._signal()

    async def drained(self) -> None:
        await self._empty.wait()


class Firmware:
    """One charger with one connector (EVSE 1, connector 1)."""

    def __init__(
        self,
        *,
        config: ChargerConfig,
        store: StateStore,
        messages: Messages,
        clock: Clock,
        rng: RandomSource,
    ) -> None:
        self.config = config
        self.store = store
        self.messages = messages
        self.clock = clock
        self.rng = rng
        self.bluetooth_state = store.load_bluetooth()
        self.local_list = store.load_local_list()
        self.authorization = store.load_authorization()
        self.counters = store.load_counters()
        self.outbox = Outbox(store)
        self.bluetooth: BluetoothControl | None = None
        self.link: CsmsLink | None = None
        self.available = True
        self._inoperative_after_session = False
        self.transaction_id: str | None = None
        self._session_free = asyncio.Event()
        self._session_free.set()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- housekeeping -------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background (kept referenced until done)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def connector_status(self) -> ConnectorState:
        if not self.available:
            return ConnectorState.UNAVAILABLE
        if self.transaction_id is not None:
            return ConnectorState.OCCUPIED
        return ConnectorState.AVAILABLE

    async def notify_status(self) -> None:
        """StatusNotification for the connector, when online (sent again after each boot)."""
        link = self.link
        if link is None:
            return
        try:
            await link.request(self.messages.status(self.connector_status, self.clock.now()))
        except LinkDown:
            log.info("status notification not sent: server unreachable")

    # -- Bluetooth settings (custom component, protocol/ocpp_components.py) ---------------
    async def set_bluetooth_variable(
        self, variable: BluetoothVariable, value: str
    ) -> SettingStatus:
        """Store one setting the server wrote, then forward it to the Bluetooth side."""
        state = self.bluetooth_state
        match variable:
            case BluetoothVariable.PIN:
                if not _is_pin_format(value):
                    return SettingStatus.REJECTED
                state = replace(state, pin=value)
            case BluetoothVariable.REVOKE_CREDENTIALS:
                if not value:
                    return SettingStatus.REJECTED
                await self._revoke(value)
                return SettingStatus.ACCEPTED
            case _:
                flag = _parse_bool(value)
                if flag is None:
                    return SettingStatus.REJECTED
                if variable is BluetoothVariable.PIN_REQUIRED:
                    state = replace(state, required=flag)
                elif variable is BluetoothVariable.PIN_CHANGEABLE:
                    state = replace(state, changeable=flag)
                else:
                    state = replace(state, pairing_enabled=flag)
        self.bluetooth_state = state
        self.store.save_bluetooth(state)
        log.info("bluetooth setting %s updated", variable.value)
        if self.bluetooth is not None:
            if variable is BluetoothVariable.PIN_PAIRING_ENABLED:
                if state.pairing_enabled:
                    await self.bluetooth.reenable_pin_pairing()
            else:
                await self.bluetooth.apply_pin_settings(state.settings())
        return SettingStatus.ACCEPTED

    async def _revoke(self, target: str) -> None:
        if self.bluetooth is None:
            log.info("credential revocation received; no Bluetooth peripheral attached")
            return
        if target == REVOKE_ALL:
            await self.bluetooth.revoke_all_credentials()
        else:
            await self.bluetooth.revoke_credential(target)

    def get_bluetooth_variable(self, variable: BluetoothVariable) -> tuple[ReadStatus, str | None]:
        """Read one setting; write-only ones (the PIN, the revoke action) are refused."""
        if variable in WRITE_ONLY_VARIABLES or variable is BluetoothVariable.REVOKE_CREDENTIALS:
            return ReadStatus.REJECTED, None
        state = self.bluetooth_state
        value = {
            BluetoothVariable.PIN_REQUIRED: state.required,
            BluetoothVariable.PIN_CHANGEABLE: state.changeable,
            BluetoothVariable.PIN_PAIRING_ENABLED: state.pairing_enabled,
        }[variable]
        return ReadStatus.ACCEPTED, "true" if value else "false"

    # -- local authorization list (2.0.1 D01/D02, 1.6 §5.15/§5.10) --------------------------
    def apply_local_list(
        self, *, version: int, full: bool, entries: Sequence[LocalListUpdate]
    ) -> LocalListStatus:
        current = self.local_list
        if not full and version <= current.version:
            # D01: a differential update not newer than the list held is a VersionMismatch.
            return LocalListStatus.VERSION_MISMATCH
        by_token: dict[tuple[str, str], LocalAuthorization] = (
            {} if full else {(e.id_token, e.token_type): e for e in current.entries}
        )
        for entry in entries:
            key = (entry.id_token, entry.token_type)
            if entry.status is None:
                by_token.pop(key, None)
            else:
                by_token[key] = LocalAuthorization(
                    id_token=entry.id_token,
                    token_type=entry.token_type,
                    status=entry.status,
                    group_id_token=entry.group_id_token,
                    expires_at=entry.expires_at.isoformat() if entry.expires_at else None,
                )
        self.local_list = LocalList(version=version, entries=tuple(by_token.values()))
        self.store.save_local_list(self.local_list)
        log.info("local list version %d stored (%d entries)", version, len(by_token))
        return LocalListStatus.ACCEPTED

    def _local_list_status(self, code: str, token_type: str) -> TokenInfo | None:
        found: TokenInfo | None = None
        for entry in self.local_list.entries:
            # Constant-time comparison: the time taken must not hint at a stored code.
            same = hmac.compare_digest(entry.id_token.encode(), code.encode())
            if same and entry.token_type in (token_type, UNTYPED):
                lapsed = entry.expires_at is not None and (
                    datetime.fromisoformat(entry.expires_at) <= self.clock.now()
                )
                status = EXPIRED if lapsed and entry.status == ACCEPTED else entry.status
                found = TokenInfo(status=status, group_id_token=entry.group_id_token)
        return found

    # -- authorization cache (2.0.1 C10/C11, 1.6 §3.5.1/§5.4) and master pass (C16) --------
    def _save_authorization(self, state: AuthorizationState) -> None:
        self.authorization = state
        self.store.save_authorization(state)

    def learn(self, code: str, token_type: str, info: TokenInfo) -> None:
        """Update the cache from an online answer: an Accepted one with the expiry the server
        set is kept until then; any other answer drops the token. KeyCodes are never cached:
        keypad codes work offline only through the local list the organisation opted into."""
        if token_type == KEYCODE_TOKEN_TYPE:
            return
        kept = tuple(
            e
            for e in self.authorization.cache
            if not (
                e.token_type == token_type
                and hmac.compare_digest(e.id_token.encode(), code.encode())
            )
        )
        if info.status == ACCEPTED and info.cache_expiry is not None:
            kept += (
                CachedAuthorization(
                    id_token=code,
                    token_type=token_type,
                    expires_at=info.cache_expiry.isoformat(),
                    group_id_token=info.group_id_token,
                ),
            )
        if kept != self.authorization.cache:
            self._save_authorization(replace(self.authorization, cache=kept))

    def _cached(self, code: str, token_type: str) -> TokenInfo | None:
        """An unexpired cache entry (by the injected clock); an expired one is dropped."""
        now = self.clock.now()
        found: TokenInfo | None = None
        live: list[CachedAuthorization] = []
        for entry in self.authorization.cache:
            if datetime.fromisoformat(entry.expires_at) <= now:
                continue
            live.append(entry)
            same = hmac.compare_digest(entry.id_token.encode(), code.encode())
            if same and entry.token_type == token_type:
                found = TokenInfo(status=ACCEPTED, group_id_token=entry.group_id_token)
        if len(live) != len(self.authorization.cache):
            self._save_authorization(replace(self.authorization, cache=tuple(live)))
        return found

    def clear_cache(self) -> str:
        """ClearCache (2.0.1 C11; 1.6 §5.4): forget every cached answer; Accepted."""
        self._save_authorization(replace(self.authorization, cache=()))
        log.info("authorization cache cleared")
        return ACCEPTED

    def set_master_pass_group(self, group: str | None) -> SettingStatus:
        """``AuthCtrlr.MasterPassGroupId`` (C16); empty clears it."""
        self._save_authorization(replace(self.authorization, master_pass_group_id=group or None))
        log.info("master pass group %s", "set" if group else "cleared")
        return SettingStatus.ACCEPTED

    def _is_master_pass(self, info: TokenInfo) -> bool:
        group = self.authorization.master_pass_group_id
        return (
            group is not None
            and info.group_id_token is not None
            and (info.group_id_token.casefold() == group.casefold())
        )

    # -- availability / reset -----------------------------------------------------------------
    def change_availability(self, *, operative: bool) -> str:
        """Accepted, or Scheduled when a session must end first (2.0.1 G03/G04; 1.6 §5.2)."""
        if not operative and self.transaction_id is not None:
            self._inoperative_after_session = True
            return "Scheduled"
        self._inoperative_after_session = False
        self.available = operative
        self.spawn(self.notify_status())
        return "Accepted"

    # -- keypad (C04) -------------------------------------------------------------------------
    def _lockout_state(self) -> lockout.LockoutState:
        raw = self.counters.keypad_lockout
        if not raw:
            return lockout.LockoutState()
        return lockout.LockoutState(**{**raw, "failures": tuple(raw.get("failures", ()))})

    def _save_lockout(self, state: lockout.LockoutState) -> None:
        raw = asdict(state)
        raw["failures"] = list(state.failures)
        self.counters.keypad_lockout = raw
        self.store.save_counters(self.counters)

    async def enter_code(self, code: str, *, token_type: str) -> KeypadDecision:
        """One code typed on the keypad: authorize it and start a session when accepted."""
        # Lockout times are wall-clock seconds so a reboot does not lift a lockout.
        now = self.clock.now().timestamp()
        if not self.available:
            return KeypadDecision(outcome=KeypadOutcome.UNAVAILABLE)
        state = self._lockout_state()
        try:
            lockout.check(state, now)
        except LockedOut as exc:
            return KeypadDecision(outcome=KeypadOutcome.LOCKED, retry_after_s=exc.retry_after)
        if self.transaction_id is not None and token_type == KEYCODE_TOKEN_TYPE:
            return KeypadDecision(outcome=KeypadOutcome.BUSY)  # a card may be a master pass
        info, offline = await self._authorize(code, token_type)
        if info.status == ACCEPTED:
            self._save_lockout(lockout.record_success(state))
            running = self.transaction_id
            if self._is_master_pass(info):
                # C16: a master pass stops any transaction and starts none, on or off line.
                if running is None:
                    return KeypadDecision(outcome=KeypadOutcome.REJECTED)
                await self._finish_session(running, StopReason.MASTER_PASS)
                return KeypadDecision(outcome=KeypadOutcome.STOPPED, transaction_id=running)
            if running is not None:
                return KeypadDecision(outcome=KeypadOutcome.BUSY)
            transaction_id = await self._start_session(code, token_type)
            return KeypadDecision(
                outcome=KeypadOutcome.ACCEPTED, transaction_id=transaction_id, offline=offline
            )
        new_state, event = lockout.record_failure(state, now, lockout.KEYPAD_RULES)
        self._save_lockout(new_state)
        if event is None:
            return KeypadDecision(outcome=KeypadOutcome.REJECTED)
        await self.send_security_event(
            SecurityEventType.KEYPAD_LOCKOUT,
            f"{event.kind.value}; level {event.level}; "
            f"{event.consecutive_failures} consecutive failures",
        )
        return KeypadDecision(outcome=KeypadOutcome.REJECTED, retry_after_s=event.duration_s)

    async def _authorize(self, code: str, token_type: str) -> tuple[TokenInfo, bool]:
        """The server's verdict when online (learnt by the cache), else the local list's,
        else the authorization cache's (C04, C01; D01 local list; C10 cache)."""
        link = self.link
        if link is not None:
            try:
                result = await link.request(self.messages.authorize(code, token_type))
            except LinkDown:
                log.info("authorize: server unreachable, using the local list and cache")
            else:
                info = None if result is None else self.messages.token_info(result)
                if info is None:
                    return TokenInfo(status="Invalid"), False
                self.learn(code, token_type, info)
                return info, False
        found = self._local_list_status(code, token_type) or self._cached(code, token_type)
        return found or TokenInfo(status="Unknown"), True

    async def _start_session(self, code: str, token_type: str = KEYCODE_TOKEN_TYPE) -> str:
        transaction_id = self.rng.token_bytes(8).hex()
        self.transaction_id = transaction_id
        self._session_free.clear()
        self.counters.active_transaction = transaction_id  # saved with the seqNo below
        self._queue_transaction(
            self.messages.transaction_started(
                transaction_id=transaction_id,
                code=code,
                token_type=token_type,
                now=self.clock.now(),
                seq_no=self._next_seq_no(),
                offline=self.link is None,
            ),
            transaction_id,
        )
        self.spawn(self.notify_status())
        self.spawn(self._end_session_after(transaction_id, self.config.session_s))
        return transaction_id

    async def _end_session_after(self, transaction_id: str, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if self.transaction_id == transaction_id:  # not already ended by a master pass
            await self._finish_session(transaction_id, StopReason.EV_DISCONNECTED)

    async def _finish_session(self, transaction_id: str, reason: StopReason) -> None:
        self._end_session(transaction_id, reason)
        self.transaction_id = None
        if self._inoperative_after_session:
            self._inoperative_after_session = False
            self.available = False
        self._session_free.set()
        await self.notify_status()

    def _end_session(self, transaction_id: str, reason: StopReason) -> None:
        self._queue_transaction(
            self.messages.transaction_ended(
                transaction_id=transaction_id,
                now=self.clock.now(),
                seq_no=self._next_seq_no(),
                offline=self.link is None,
                reason=reason,
            ),
            transaction_id,
        )
        self.counters.active_transaction = None
        self.store.save_counters(self.counters)

    def recover_interrupted_session(self) -> str | None:
        """A session still open at start was cut by a power loss or crash: end it (E06)."""
        transaction_id = self.counters.active_transaction
        if transaction_id is None:
            return None
        self._end_session(transaction_id, StopReason.POWER_LOSS)
        return transaction_id

    async def session_ended(self) -> None:
        await self._session_free.wait()

    def _next_seq_no(self) -> int:
        # E01: seqNo increases with every TransactionEvent; persisted so it survives reboots.
        seq_no = self.counters.seq_no
        self.counters.seq_no = seq_no + 1
        self.store.save_counters(self.counters)
        return seq_no

    def _queue_transaction(self, request: Request, transaction_id: str) -> None:
        self._queue(request, local_transaction=transaction_id)

    def _queue(self, request: Request, *, local_transaction: str | None = None) -> None:
        message = QueuedMessage(
            message_id=self.rng.token_bytes(12).hex(),
            action=request.action,
            payload=request.payload,
            local_transaction=local_transaction,
        )
        self.outbox.put(message)

    # -- outbox delivery ----------------------------------------------------------------------
    async def deliver_outbox(self, link: CsmsLink) -> None:
        """Send queued messages in order; each leaves the queue only after the server replied."""
        while True:
            message = await self.outbox.head()
            request = self._resolve(message)
            if request is None:
                self.outbox.remove(message.message_id)
                continue
            result = await link.request(request)  # LinkDown: stays queued, retried later
            if result is None:
                log.warning("server answered %s with a CallError; dropped", message.action)
            else:
                self._learn_from_transaction(message, result)
                if message.action == "StartTransaction" and message.local_transaction:
                    self.counters.transaction_ids[message.local_transaction] = int(
                        result["transaction_id"]
                    )
                    self.store.save_counters(self.counters)
            self.outbox.remove(message.message_id)

    def _learn_from_transaction(self, message: QueuedMessage, result: dict[str, Any]) -> None:
        """A TransactionEvent answer about its idToken updates the cache like an Authorize
        (2.0.1 C10; the 1.6J StartTransaction idTag is untyped: not learnt)."""
        token = message.payload.get("id_token")
        if message.action != "TransactionEvent" or not isinstance(token, dict):
            return
        info = self.messages.token_info(result)
        if info is not None:
            self.learn(str(token["id_token"]), str(token["type"]), info)

    def _resolve(self, message: QueuedMessage) -> Request | None:
        payload = dict(message.payload)
        if message.action == "StopTransaction":
            # 1.6J: the server numbered the transaction in its StartTransaction reply.
            server_id = self.counters.transaction_ids.get(message.local_transaction or "")
            if server_id is None:
                log.warning("StopTransaction for a transaction the server never numbered")
                return None
            payload["transaction_id"] = server_id
        return Request(action=message.action, payload=payload)

    # -- ServerLink (what the Bluetooth side asks) --------------------------------------------
    async def send_security_event(self, event_type: str, tech_info: str | None = None) -> None:
        self._queue(self.messages.security_event(event_type, self.clock.now(), tech_info))

    async def report_configuration(self, changes: dict[str, str]) -> None:
        self._queue(self.messages.data_transfer(DataTransferMessage.CONFIGURATION_CHANGED, changes))

    async def report_pin_changed(self, new_pin: str) -> None:
        state = replace(self.bluetooth_state, pin=new_pin)
        self.bluetooth_state = state
        self.store.save_bluetooth(state)
        self._queue(
            self.messages.data_transfer(DataTransferMessage.BLUETOOTH_PIN_CHANGED, {"pin": new_pin})
        )
