"""An ``OcppBackend`` kept in memory: the endpoint's tests, demos and benchmarks use it.

It really keeps state: chargers with salted password hashes, keypad codes as
HMAC(pepper, organisation ‖ code) with the keypad throttle of ``domain.lockout`` per
charger, transactions stored once per (transaction id, seqNo), security events, and a
command outbox whose results activate a pending Bluetooth PIN or a local list version.
The database adapter (``server/services``) replaces it in ``evaccess server run``.

Charger passwords are high-entropy machine secrets (2.0.1 A00.FR.205: at least 16
characters), so a salted SHA-256 is enough here; a slow hash would only slow reconnect storms.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import count

from evaccess.domain import lockout
from evaccess.domain.clock import Clock, RandomSource, SystemRandom
from evaccess.domain.lockout import KEYPAD_RULES, LockoutRules, LockoutState
from evaccess.protocol.ocpp_components import KEYCODE_TOKEN_TYPE, SecurityEventType
from evaccess.server.ocpp.backend import (
    AuthorizeResult,
    AuthOutcome,
    BootInfo,
    ChargerCommand,
    ChargerNotifier,
    LocalListEntry,
    ReenablePinPairing,
    RevokeCredentials,
    SendLocalList,
    SetBluetoothPin,
    TransactionEvent,
    TransactionEventType,
)


@dataclass(frozen=True, kw_only=True, slots=True)
class SecurityEventRecord:
    charger_id: str
    event_type: str
    at: datetime
    tech_info: str | None


@dataclass(kw_only=True, slots=True)
class ChargerRecord:
    charger_id: str
    organisation_id: str
    password_salt: bytes
    password_hash: bytes
    pin_changeable: bool = True
    boot: BootInfo | None = None
    online: bool = False
    protocol: str | None = None
    last_heartbeat: datetime | None = None
    statuses: dict[tuple[int, int], str] = field(default_factory=dict)
    active_pin: str | None = None
    pending_pin: str | None = None
    pin_settings: tuple[bool, bool] | None = None
    """(required, changeable) of the last PIN push queued: every boot pushes them again."""
    configuration: dict[str, str] = field(default_factory=dict)
    list_version: int = 0
    """The local list version the charger accepted last."""
    queued_list_version: int = 0
    """The highest version queued (versions only grow)."""
    keypad: LockoutState = field(default_factory=LockoutState)


@dataclass(kw_only=True, slots=True)
class KeypadUser:
    user_id: str
    organisation_id: str
    chargers: frozenset[str] | None
    """None: every charger of the organisation."""
    code: str | None
    """Kept only for organisations that opted into local lists (the charger needs it)."""


class InMemoryOcppBackend:
    """State in dicts; every method is the ``OcppBackend`` contract (``backend.py``)."""

    def __init__(
        self,
        *,
        clock: Clock,
        random: RandomSource | None = None,
        keypad_rules: LockoutRules = KEYPAD_RULES,
    ) -> None:
        self.clock = clock
        self.random = random or SystemRandom()
        self.keypad_rules = keypad_rules
        self._pepper = self.random.token_bytes(32)
        self.chargers: dict[str, ChargerRecord] = {}
        self.keycodes: dict[bytes, KeypadUser] = {}
        self.local_list_orgs: set[str] = set()
        self.transactions: dict[tuple[str, str], dict[int, TransactionEvent]] = {}
        self._transaction_answers: dict[tuple[str, str, int], AuthorizeResult | None] = {}
        self.security_events: list[SecurityEventRecord] = []
        self.outbox: dict[str, list[ChargerCommand]] = {}
        self.command_results: dict[str, bool] = {}
        self.auth_refusals = {AuthOutcome.UNKNOWN_CHARGER: 0, AuthOutcome.BAD_PASSWORD: 0}
        self.notifier: ChargerNotifier | None = None
        self._command_ids = count(1)

    # --- administration (what the REST API does in the real server) ---------------------

    def _hash(self, salt: bytes, password: str) -> bytes:
        return hashlib.sha256(salt + password.encode()).digest()

    def add_charger(
        self, charger_id: str, password: str, *, organisation_id: str, pin_changeable: bool = True
    ) -> ChargerRecord:
        salt = self.random.token_bytes(16)
        record = ChargerRecord(
            charger_id=charger_id,
            organisation_id=organisation_id,
            password_salt=salt,
            password_hash=self._hash(salt, password),
            pin_changeable=pin_changeable,
        )
        self.chargers[charger_id] = record
        return record

    def _keycode_key(self, organisation_id: str, code: str) -> bytes:
        message = organisation_id.encode() + b"\x00" + code.encode()
        return hmac.digest(self._pepper, message, "sha256")

    def add_keycode(
        self,
        user_id: str,
        code: str,
        *,
        organisation_id: str,
        chargers: Iterable[str] | None = None,
    ) -> None:
        """Give a user a keypad code (unique per organisation) and update local lists."""
        key = self._keycode_key(organisation_id, code)
        if key in self.keycodes:
            raise ValueError("keypad code not available")
        opted_in = organisation_id in self.local_list_orgs
        self.keycodes[key] = KeypadUser(
            user_id=user_id,
            organisation_id=organisation_id,
            chargers=frozenset(chargers) if chargers is not None else None,
            code=code if opted_in else None,
        )
        if opted_in:
            self._queue_differential(
                organisation_id, added=(LocalListEntry(id_token=code, user_id=user_id),)
            )

    def remove_keycode(self, code: str, *, organisation_id: str) -> None:
        user = self.keycodes.pop(self._keycode_key(organisation_id, code))
        if user.code is not None:
            self._queue_differential(organisation_id, removed=(code,))

    def opt_into_local_list(self, organisation_id: str) -> None:
        """Codes added from now on go to the organisation's chargers' local lists."""
        self.local_list_orgs.add(organisation_id)

    def _next_command_id(self) -> str:
        return f"cmd-{next(self._command_ids)}"

    def queue(self, charger_id: str, command: ChargerCommand) -> str:
        commands = self.outbox.setdefault(charger_id, [])
        if isinstance(command, SetBluetoothPin):
            # Only the newest undelivered PIN push matters (as in the database outbox).
            commands[:] = [c for c in commands if not isinstance(c, SetBluetoothPin)]
        commands.append(command)
        if self.notifier is not None:
            self.notifier.poke(charger_id)
        return command.command_id

    def set_bluetooth_pin(
        self, charger_id: str, pin: str | None, *, required: bool = True, changeable: bool = True
    ) -> str:
        charger = self.chargers[charger_id]
        charger.pending_pin = pin
        charger.pin_settings = (required, changeable)
        return self.queue(
            charger_id,
            SetBluetoothPin(
                command_id=self._next_command_id(),
                pin=pin,
                required=required,
                changeable=changeable,
            ),
        )

    def revoke_credentials(self, charger_id: str, phone_id: str | None = None) -> str:
        return self.queue(
            charger_id, RevokeCredentials(command_id=self._next_command_id(), phone_id=phone_id)
        )

    def reenable_pin_pairing(self, charger_id: str) -> str:
        return self.queue(charger_id, ReenablePinPairing(command_id=self._next_command_id()))

    def _org_chargers(self, organisation_id: str) -> list[ChargerRecord]:
        return [c for c in self.chargers.values() if c.organisation_id == organisation_id]

    def _queue_differential(
        self,
        organisation_id: str,
        *,
        added: tuple[LocalListEntry, ...] = (),
        removed: tuple[str, ...] = (),
    ) -> None:
        for charger in self._org_chargers(organisation_id):
            version = max(charger.queued_list_version, charger.list_version) + 1
            charger.queued_list_version = version
            entries = tuple(e for e in added if self._allowed(charger.charger_id, e.user_id))
            self.queue(
                charger.charger_id,
                SendLocalList(
                    command_id=self._next_command_id(),
                    version=version,
                    full=False,
                    entries=entries,
                    removed=removed,
                ),
            )

    def _allowed(self, charger_id: str, user_id: str) -> bool:
        return any(
            u.user_id == user_id and (u.chargers is None or charger_id in u.chargers)
            for u in self.keycodes.values()
        )

    def _full_list(self, charger: ChargerRecord) -> tuple[LocalListEntry, ...]:
        if charger.organisation_id not in self.local_list_orgs:
            return ()
        return tuple(
            LocalListEntry(id_token=u.code, user_id=u.user_id)
            for u in self.keycodes.values()
            if u.code is not None
            and u.organisation_id == charger.organisation_id
            and (u.chargers is None or charger.charger_id in u.chargers)
        )

    # --- OcppBackend -------------------------------------------------------------------

    async def authenticate(self, charger_id: str, password: str) -> AuthOutcome:
        charger = self.chargers.get(charger_id)
        if charger is None:
            outcome = AuthOutcome.UNKNOWN_CHARGER
        elif hmac.compare_digest(
            self._hash(charger.password_salt, password), charger.password_hash
        ):
            return AuthOutcome.ACCEPTED
        else:
            outcome = AuthOutcome.BAD_PASSWORD
        self.auth_refusals[outcome] += 1
        return outcome

    async def authenticate_certificate(self, charger_id: str) -> AuthOutcome:
        if charger_id in self.chargers:
            return AuthOutcome.ACCEPTED
        self.auth_refusals[AuthOutcome.UNKNOWN_CHARGER] += 1
        return AuthOutcome.UNKNOWN_CHARGER

    async def connection_changed(self, charger_id: str, *, online: bool, protocol: str) -> None:
        charger = self.chargers[charger_id]
        charger.online = online
        charger.protocol = protocol if online else None

    async def boot(self, charger_id: str, info: BootInfo) -> None:
        charger = self.chargers[charger_id]
        charger.boot = info
        if charger.pin_settings is not None:
            # Like the database backend: every boot re-pushes the PIN settings (a charger
            # may have lost them), superseding a push not delivered yet.
            required, changeable = charger.pin_settings
            pin = charger.pending_pin if charger.pending_pin is not None else charger.active_pin
            self.queue(
                charger_id,
                SetBluetoothPin(
                    command_id=self._next_command_id(),
                    pin=pin,
                    required=required,
                    changeable=changeable,
                ),
            )

    async def heartbeat(self, charger_id: str, at: datetime) -> None:
        self.chargers[charger_id].last_heartbeat = at

    async def status(
        self, charger_id: str, *, evse_id: int, connector_id: int, status: str, at: datetime
    ) -> None:
        self.chargers[charger_id].statuses[(evse_id, connector_id)] = status

    async def authorize_keycode(self, charger_id: str, code: str) -> AuthorizeResult:
        charger = self.chargers[charger_id]
        now = self.clock.monotonic()
        if charger.keypad.is_locked(now):
            # Answered without a lookup: a locked keypad tells nothing about the code.
            return AuthorizeResult(
                accepted=False, locked=True, retry_after_s=charger.keypad.locked_until - now
            )
        user = self.keycodes.get(self._keycode_key(charger.organisation_id, code))
        if user is not None and (user.chargers is None or charger_id in user.chargers):
            if charger.keypad.consecutive_failures:
                charger.keypad = lockout.record_success(charger.keypad)
            return AuthorizeResult(accepted=True, user_id=user.user_id)
        charger.keypad, event = lockout.record_failure(charger.keypad, now, self.keypad_rules)
        if event is not None:
            self.security_events.append(
                SecurityEventRecord(
                    charger_id=charger_id,
                    event_type=SecurityEventType.KEYPAD_LOCKOUT,
                    at=self.clock.now(),
                    tech_info=f"level {event.level}, {event.duration_s} s",
                )
            )
        return AuthorizeResult(accepted=False)

    async def authorize_token(
        self, charger_id: str, id_token: str, token_type: str | None, *, stopping: bool = False
    ) -> AuthorizeResult:
        if token_type in (None, KEYCODE_TOKEN_TYPE):
            return await self.authorize_keycode(charger_id, id_token)
        return AuthorizeResult(accepted=False, status="Unknown")  # no cards in memory

    async def transaction_event(
        self, charger_id: str, event: TransactionEvent
    ) -> AuthorizeResult | None:
        key = (charger_id, event.transaction_id, event.seq_no)
        if key in self._transaction_answers:
            return self._transaction_answers[key]  # a repeat: stored once, same answer
        self.transactions.setdefault((charger_id, event.transaction_id), {})[event.seq_no] = (
            replace(event, id_token=None)  # the code itself is not kept with the transaction
        )
        answer = None
        if (
            event.id_token is not None
            and event.id_token_type in (None, KEYCODE_TOKEN_TYPE)  # None: a 1.6J idTag
            and event.event_type is TransactionEventType.STARTED
        ):
            answer = await self.authorize_keycode(charger_id, event.id_token)
        self._transaction_answers[key] = answer
        return answer

    async def security_event(
        self, charger_id: str, *, event_type: str, at: datetime, tech_info: str | None
    ) -> None:
        self.security_events.append(
            SecurityEventRecord(
                charger_id=charger_id, event_type=event_type, at=at, tech_info=tech_info
            )
        )

    async def pending_commands(self, charger_id: str) -> list[ChargerCommand]:
        return list(self.outbox.get(charger_id, ()))

    async def command_result(self, charger_id: str, command_id: str, *, accepted: bool) -> None:
        commands = self.outbox.get(charger_id, [])
        command = next((c for c in commands if c.command_id == command_id), None)
        if command is None:
            return
        commands.remove(command)
        self.command_results[command_id] = accepted
        charger = self.chargers[charger_id]
        if isinstance(command, SetBluetoothPin) and accepted:
            charger.active_pin = command.pin  # a pending PIN becomes active only here
            charger.pending_pin = None
        elif isinstance(command, SendLocalList):
            if accepted:
                charger.list_version = max(charger.list_version, command.version)
            elif not command.full:
                await self.request_local_list_resync(
                    charger_id, charger_version=charger.list_version
                )

    async def pin_changed_by_charger(self, charger_id: str, new_pin: str) -> bool:
        charger = self.chargers[charger_id]
        if not charger.pin_changeable:
            return False
        charger.active_pin = new_pin
        return True

    async def configuration_reported(self, charger_id: str, changes: dict[str, str]) -> None:
        self.chargers[charger_id].configuration.update(changes)

    async def local_list_version(self, charger_id: str) -> int:
        return self.chargers[charger_id].list_version

    async def request_local_list_resync(self, charger_id: str, *, charger_version: int) -> None:
        charger = self.chargers[charger_id]
        # A full list supersedes every list update still queued.
        self.outbox[charger_id] = [
            c for c in self.outbox.get(charger_id, []) if not isinstance(c, SendLocalList)
        ]
        version = max(charger.queued_list_version, charger.list_version, charger_version) + 1
        charger.queued_list_version = version
        self.queue(
            charger_id,
            SendLocalList(
                command_id=self._next_command_id(),
                version=version,
                full=True,
                entries=self._full_list(charger),
            ),
        )
