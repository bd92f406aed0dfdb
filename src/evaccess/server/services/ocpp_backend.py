"""``OcppBackend`` on the database: what the OCPP endpoint asks, answered by the services.

Hot path: ``authorize_keycode`` answers a locked keypad from memory and otherwise does one
indexed keypad lookup. Charger ids on the wire are serials; rows are found by serial.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from evaccess.domain.errors import ClusterUnavailable, LockedOut
from evaccess.domain.policy import Refusal, review_report
from evaccess.domain.tokens import Purpose
from evaccess.protocol.ocpp_components import KEYCODE_TOKEN_TYPE
from evaccess.server.audit import AuditEntry
from evaccess.server.context import Context
from evaccess.server.db.models import (
    Charger,
    ChargerSetting,
    ConnectorStatus,
    Organisation,
    OutboxCommand,
    SecurityEvent,
    Transaction,
    TransactionEventRecord,
)
from evaccess.server.ocpp import backend as port
from evaccess.server.services import (
    bluetooth_pins,
    keypad_pins,
    local_lists,
    notifications,
    outbox,
    tokens,
)
from evaccess.server.services.bluetooth_pins import facts_of
from evaccess.server.services.ocpp_passwords import verify_ocpp_password

REFUSAL_EVENTS: dict[Refusal, str] = {
    Refusal.IDENTITY_CHANGED: "evaccess.ReportedIdentityChanged",
    Refusal.FIRMWARE_DOWNGRADE: "evaccess.FirmwareDowngrade",
    Refusal.FIRMWARE_UNREADABLE: "evaccess.FirmwareUnreadable",
}
"""Security events the server records when a BootNotification is not applied in full."""
MAX_SETTING_LENGTH = 255
SECRET_SETTING_WORDS = ("password", "pin", "key", "secret", "token")
AUTHORIZE_REUSE_S = 60.0
"""A transaction start carrying the code of this charger's last Authorize, at most this long
after it, is answered from that Authorize: the code was typed once, so it is looked up and
counted against the keypad throttle once."""


@dataclass(frozen=True, slots=True)
class _Authorized:
    code: bytes
    """A keyed digest of the code (the code itself is kept nowhere)."""
    at: float
    result: port.AuthorizeResult


async def forget_connections(ctx: Context) -> int:
    """At the start of a lone node (no cluster): no charger is connected yet, whatever the
    database recorded before the last stop (a crash leaves ``online`` set). Returns how
    many chargers were marked offline. Not in cluster mode: other nodes hold sockets."""
    async with ctx.db.transaction() as session:
        result = await session.execute(
            update(Charger).where(Charger.online.is_(True)).values(online=False)
        )
    return int(result.rowcount)  # type: ignore[attr-defined]


class DbOcppBackend:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._ids: dict[str, str] = {}
        self._authorized: dict[str, _Authorized] = {}
        self._code_key = ctx.rng.token_bytes(32)
        self.refused_auth = 0

    async def _charger(self, session: AsyncSession, serial: str) -> Charger:
        charger = await session.scalar(select(Charger).where(Charger.serial == serial))
        if charger is None:
            raise LookupError("charger unknown")  # the endpoint authenticated it: cannot happen
        self._ids[serial] = charger.id
        return charger

    async def _charger_id(self, serial: str) -> str | None:
        if serial not in self._ids:
            async with self._ctx.db.read() as session:
                found = await session.scalar(select(Charger.id).where(Charger.serial == serial))
            if found is None:
                return None
            self._ids[serial] = found
        return self._ids[serial]

    async def authenticate(self, charger_id: str, password: str) -> port.AuthOutcome:
        async with self._ctx.db.read() as session:
            stored = await session.scalar(
                select(Charger.ocpp_password_hash).where(Charger.serial == charger_id)
            )
        if stored is None:
            self.refused_auth += 1
            return port.AuthOutcome.UNKNOWN_CHARGER
        if not verify_ocpp_password(stored, password):
            self.refused_auth += 1
            return port.AuthOutcome.BAD_PASSWORD
        return port.AuthOutcome.ACCEPTED

    async def authenticate_certificate(self, charger_id: str) -> port.AuthOutcome:
        """Profile 3: the CA vouched for the CN; the charger must still be registered."""
        async with self._ctx.db.read() as session:
            known = await session.scalar(select(Charger.id).where(Charger.serial == charger_id))
        if known is None:
            self.refused_auth += 1
            return port.AuthOutcome.UNKNOWN_CHARGER
        return port.AuthOutcome.ACCEPTED

    async def connection_changed(self, charger_id: str, *, online: bool, protocol: str) -> None:
        async with self._ctx.db.transaction() as session:
            charger = await self._charger(session, charger_id)
            charger.online = online
            charger.ocpp_protocol = protocol
            charger.last_seen_at = self._ctx.clock.now()

    async def boot(self, charger_id: str, info: port.BootInfo) -> None:
        now = self._ctx.clock.now()
        async with self._ctx.db.transaction() as session:
            charger = await self._charger(session, charger_id)
            # Accepted whatever it reports (refusing the boot would only take the charger
            # off line), but applied as a ratchet: what would lower the PIN protection is
            # kept out of the policy and recorded for the owner (domain.policy).
            review = review_report(
                facts_of(charger), vendor=info.vendor, model=info.model, firmware=info.firmware
            )
            for refused in review.refused:
                session.add(
                    SecurityEvent(
                        charger_id=charger.id,
                        event_type=REFUSAL_EVENTS[refused.reason],
                        at=now,
                        tech_info=refused.detail[:255],
                        received_at=now,
                    )
                )
            changed = (charger.vendor, charger.model, charger.firmware) != (
                info.vendor,
                info.model,
                info.firmware or charger.firmware,
            )
            charger.firmware = review.facts.firmware
            charger.last_seen_at = now
            # Every boot re-pushes the PIN settings (a charger may have lost them); a
            # firmware change may make the PIN mandatory, which generates one first.
            await bluetooth_pins.apply_policy(session, self._ctx, charger)
            # ... and the master pass group, when its organisation chain sets one (C16).
            if await tokens.master_pass_group_of(session, charger) is not None:
                await outbox.queue(
                    session, self._ctx, charger.id, outbox.CommandKind.SET_MASTER_PASS_GROUP
                )
            if changed:
                await self._ctx.audit.append(
                    session,
                    AuditEntry(
                        action="charger.firmware_reported",
                        organisation_id=charger.organisation_id,
                        charger_id=charger.id,
                        details={
                            "vendor": info.vendor,
                            "model": info.model,
                            "firmware": info.firmware,
                            "refused": ",".join(r.reason for r in review.refused) or None,
                        },
                    ),
                )

    async def heartbeat(self, charger_id: str, at: datetime) -> None:
        async with self._ctx.db.transaction() as session:
            (await self._charger(session, charger_id)).last_seen_at = self._ctx.clock.now()

    async def status(
        self, charger_id: str, *, evse_id: int, connector_id: int, status: str, at: datetime
    ) -> None:
        async with self._ctx.db.transaction() as session:
            charger = await self._charger(session, charger_id)
            row = await session.get(ConnectorStatus, (charger.id, evse_id, connector_id))
            if row is None:
                session.add(
                    ConnectorStatus(
                        charger_id=charger.id,
                        evse_id=evse_id,
                        connector_id=connector_id,
                        status=status,
                        updated_at=at,
                    )
                )
            else:
                row.status, row.updated_at = status, at

    async def authorize_keycode(self, charger_id: str, code: str) -> port.AuthorizeResult:
        result = await self._resolve_keycode(charger_id, code)
        self._authorized[charger_id] = _Authorized(
            code=self._code_digest(code), at=self._ctx.clock.monotonic(), result=result
        )
        return result

    def _code_digest(self, code: str) -> bytes:
        return hmac.new(self._code_key, code.encode(), hashlib.sha256).digest()

    async def _keycode_of_transaction(self, charger_id: str, code: str) -> port.AuthorizeResult:
        """The answer for a code a transaction event carries: its Authorize's, if it had one."""
        last = self._authorized.pop(charger_id, None)
        if (
            last is not None
            and self._ctx.clock.monotonic() - last.at <= AUTHORIZE_REUSE_S
            and hmac.compare_digest(last.code, self._code_digest(code))
        ):
            return last.result
        return await self._resolve_keycode(charger_id, code)

    async def _resolve_keycode(self, charger_id: str, code: str) -> port.AuthorizeResult:
        # A locked keypad is answered from memory: the throttle is keyed by the serial's row
        # id, cached after the first lookup.
        internal = self._ids.get(charger_id) or await self._charger_id(charger_id)
        if internal is None:
            return port.AuthorizeResult(accepted=False)
        try:
            user_id = await keypad_pins.resolve(self._ctx, internal, code)
        except LockedOut as exc:
            return port.AuthorizeResult(accepted=False, locked=True, retry_after_s=exc.retry_after)
        except ClusterUnavailable:
            # Fail closed: no code is tried that cannot be counted (docs/security.md); the
            # charger's own local list still answers for its holders.
            return port.AuthorizeResult(accepted=False)
        return port.AuthorizeResult(accepted=user_id is not None, user_id=user_id)

    async def authorize_token(
        self, charger_id: str, id_token: str, token_type: str | None, *, stopping: bool = False
    ) -> port.AuthorizeResult:
        purpose = Purpose.STOP if stopping else Purpose.AUTHORIZE
        return await self._token_answer(charger_id, id_token, token_type, purpose, authorizing=True)

    async def _token_answer(
        self,
        charger_id: str,
        id_token: str,
        token_type: str | None,
        purpose: Purpose,
        *,
        authorizing: bool = False,
    ) -> port.AuthorizeResult:
        """KeyCode: the keypad; a card type: the card registry; untyped (a 1.6J idTag): a
        card if one has this number, else a keypad code."""
        if token_type == KEYCODE_TOKEN_TYPE:
            return await self._keycode(charger_id, id_token, authorizing=authorizing)
        if token_type is not None and token_type not in tokens.WIRE_TYPES:
            # Local, NoAuthorization: no registry of evaccess's, and no guess to throttle
            return port.AuthorizeResult(accepted=False, status="Unknown")
        internal = self._ids.get(charger_id) or await self._charger_id(charger_id)
        if internal is None:
            return port.AuthorizeResult(accepted=False)
        try:
            answer = await tokens.resolve(
                self._ctx,
                internal,
                id_token,
                token_type,
                purpose,
                count_miss=token_type is not None,
            )
        except LockedOut as exc:
            return port.AuthorizeResult(accepted=False, locked=True, retry_after_s=exc.retry_after)
        except ClusterUnavailable:
            return port.AuthorizeResult(accepted=False)
        if answer is not None:
            return answer
        if token_type is None:
            return await self._keycode(charger_id, id_token, authorizing=authorizing)
        return port.AuthorizeResult(accepted=False, status="Unknown")

    async def _keycode(
        self, charger_id: str, code: str, *, authorizing: bool
    ) -> port.AuthorizeResult:
        """An Authorize is looked up and counted; a transaction event reuses its answer."""
        if authorizing:
            return await self.authorize_keycode(charger_id, code)
        return await self._keycode_of_transaction(charger_id, code)

    async def transaction_event(
        self, charger_id: str, event: port.TransactionEvent
    ) -> port.AuthorizeResult | None:
        answer: port.AuthorizeResult | None = None
        user_id: str | None = None
        if event.id_token is not None:
            ended = event.event_type is port.TransactionEventType.ENDED
            answer = await self._token_answer(
                charger_id,
                event.id_token,
                event.id_token_type,
                Purpose.STOP if ended else Purpose.START,
            )
            user_id = answer.user_id
        try:
            async with self._ctx.db.transaction() as session:
                charger = await self._charger(session, charger_id)
                session.add(
                    TransactionEventRecord(
                        charger_id=charger.id,
                        transaction_id=event.transaction_id,
                        seq_no=event.seq_no,
                        event_type=event.event_type,
                        trigger_reason=event.trigger_reason,
                        at=event.timestamp,
                        offline=event.offline,
                    )
                )
                await session.flush()
                tx = await session.scalar(
                    select(Transaction).where(
                        Transaction.charger_id == charger.id,
                        Transaction.transaction_id == event.transaction_id,
                    )
                )
                if tx is None:
                    tx = Transaction(
                        charger_id=charger.id,
                        transaction_id=event.transaction_id,
                        user_id=user_id,
                        started_at=event.timestamp,
                        offline=event.offline,
                    )
                    session.add(tx)
                elif user_id is not None and tx.user_id is None:
                    tx.user_id = user_id
                if event.id_token is not None and tx.token_type is None:
                    # The type only: the token value (a keypad code) is never stored.
                    # 1.6J idTags are untyped: the type of the card that answered, else
                    # KeyCode (an untyped idTag no card has is looked up as a keypad code).
                    kind = event.id_token_type or (answer and answer.token_type)
                    tx.token_type = (kind or KEYCODE_TOKEN_TYPE)[:20]
                ended = event.event_type is port.TransactionEventType.ENDED
                if event.meter_wh is not None:
                    if tx.meter_start_wh is None and not ended:
                        tx.meter_start_wh = event.meter_wh
                    tx.meter_wh = event.meter_wh
                if ended:
                    tx.ended_at = event.timestamp
                    tx.stop_reason = event.stopped_reason and event.stopped_reason[:64]
        except IntegrityError:
            pass  # the same (transaction, seqNo) again: a resend after a lost reply
        return answer

    async def security_event(
        self, charger_id: str, *, event_type: str, at: datetime, tech_info: str | None
    ) -> None:
        async with self._ctx.db.transaction() as session:
            charger = await self._charger(session, charger_id)
            session.add(
                SecurityEvent(
                    charger_id=charger.id,
                    event_type=event_type[:64],
                    at=at,
                    tech_info=(tech_info or None) and tech_info[:255],
                    received_at=self._ctx.clock.now(),
                )
            )
            await notifications.tell_owner_of_lockout(
                session, charger, event_type, now=self._ctx.clock.now()
            )
            await bluetooth_pins.credential_reported(
                session, self._ctx, charger, event_type, tech_info
            )

    async def pending_commands(self, charger_id: str) -> list[port.ChargerCommand]:
        async with self._ctx.db.read() as session:
            charger = await self._charger(session, charger_id)
            commands: list[port.ChargerCommand] = []
            for command in await outbox.open_commands(session, charger.id):
                args = outbox.arguments(command)
                match outbox.CommandKind(command.kind):
                    case outbox.CommandKind.SET_BLUETOOTH_PIN:
                        pin, required, changeable = await bluetooth_pins.push_settings(
                            session, self._ctx, charger
                        )
                        commands.append(
                            port.SetBluetoothPin(
                                command_id=command.id,
                                pin=pin,
                                required=required,
                                changeable=changeable,
                            )
                        )
                    case outbox.CommandKind.REVOKE_CREDENTIALS:
                        commands.append(
                            port.RevokeCredentials(
                                command_id=command.id, phone_id=args.get("phone_id")
                            )
                        )
                    case outbox.CommandKind.REENABLE_PIN_PAIRING:
                        commands.append(port.ReenablePinPairing(command_id=command.id))
                    case outbox.CommandKind.CLEAR_CACHE:
                        commands.append(port.ClearCache(command_id=command.id))
                    case outbox.CommandKind.SET_MASTER_PASS_GROUP:
                        group = await tokens.master_pass_group_of(session, charger)
                        commands.append(port.SetMasterPassGroup(command_id=command.id, group=group))
                    case outbox.CommandKind.SEND_LOCAL_LIST:
                        org = await session.get_one(Organisation, charger.organisation_id)
                        commands.append(local_lists.command_for(self._ctx, command, org))
        return commands

    async def command_result(self, charger_id: str, command_id: str, *, accepted: bool) -> None:
        requeued = False
        async with self._ctx.db.transaction() as session:
            charger = await self._charger(session, charger_id)
            command = await session.get(OutboxCommand, command_id)
            if command is None or command.charger_id != charger.id:
                return
            if command.kind == outbox.CommandKind.SET_BLUETOOTH_PIN:
                await bluetooth_pins.confirm_push(session, self._ctx, charger, command, accepted)
                return
            command.completed_at = command.completed_at or self._ctx.clock.now()
            command.accepted = accepted
            if command.kind == outbox.CommandKind.SEND_LOCAL_LIST and accepted:
                # The charger holds what it accepted, even if a newer update superseded
                # this one meanwhile: record it, then recompute what is still missing.
                await local_lists.accepted(session, charger, command)
                await session.flush()
                requeued = await local_lists.sync(session, self._ctx, charger) is not None
        if requeued:
            self._ctx.notifier.poke(charger_id)

    async def pin_changed_by_charger(self, charger_id: str, new_pin: str) -> bool:
        async with self._ctx.db.transaction() as session:
            charger = await self._charger(session, charger_id)
            return await bluetooth_pins.changed_on_charger(session, self._ctx, charger, new_pin)

    async def configuration_reported(self, charger_id: str, changes: dict[str, str]) -> None:
        now = self._ctx.clock.now()
        async with self._ctx.db.transaction() as session:
            charger = await self._charger(session, charger_id)
            for key, value in changes.items():
                if any(word in key.casefold() for word in SECRET_SETTING_WORDS):
                    continue  # never store a secret a charger might report by mistake
                row = await session.get(ChargerSetting, (charger.id, key[:64]))
                if row is None:
                    session.add(
                        ChargerSetting(
                            charger_id=charger.id,
                            key=key[:64],
                            value=str(value)[:MAX_SETTING_LENGTH],
                            updated_at=now,
                        )
                    )
                else:
                    row.value, row.updated_at = str(value)[:MAX_SETTING_LENGTH], now

    async def local_list_version(self, charger_id: str) -> int:
        async with self._ctx.db.read() as session:
            return (await self._charger(session, charger_id)).local_list_version

    async def request_local_list_resync(self, charger_id: str, *, charger_version: int) -> None:
        async with self._ctx.db.transaction() as session:
            charger = await self._charger(session, charger_id)
            await local_lists.sync(
                session, self._ctx, charger, full=True, min_version=charger_version
            )
