"""The charger's PIN-attempt guard: the ``ChargerContext`` every link's state machine
(``protocol.ble_access.ChargerLink``) runs against. One PIN exchange at a time per charger,
each counted by the lockout of ``domain.lockout`` (``BLUETOOTH_RULES``, persisted), the LE
passkey attempts of passkey mode counted the same way, the lockout events reported to the
server, and the credentials issued to phones."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from evaccess.charger.ble.store import IssuedCredentials, LockoutStore
from evaccess.charger.ble.timers import ClockTimers, Timer
from evaccess.charger.ports import BluetoothPinSettings, ServerLink
from evaccess.domain import lockout
from evaccess.domain.clock import Clock, RandomSource
from evaccess.protocol import ble_access as proto
from evaccess.protocol.ocpp_components import SecurityEventType

log = logging.getLogger(__name__)

ATTEMPT_TIMEOUT_S = 10.0
"""A PIN exchange not confirmed within this time ends (counted as a failure) so one phone
cannot hold the one-at-a-time exchange slot."""


class PinGuard:
    """Implements ``proto.ChargerContext`` for all links of one charger."""

    def __init__(
        self,
        *,
        serial: str,
        pin_mode: proto.PinMode,
        pin_settings: BluetoothPinSettings,
        credentials: IssuedCredentials,
        lockout_store: LockoutStore,
        server: ServerLink,
        clock: Clock,
        rng: RandomSource,
        timers: ClockTimers,
        end_link: Callable[[proto.ChargerLink, bool], None],
    ) -> None:
        self.serial = serial
        self.pin_mode = pin_mode
        self.pin_settings = pin_settings
        self.credentials = credentials
        self._store = lockout_store
        self.lockout = lockout_store.load()
        self._server = server
        self._clock = clock
        self._rng = rng
        self._timers = timers
        self._end_link = end_link
        """Close a link: now (a timed-out exchange), or once it read the answer (a wrong PIN)."""
        self.attempt: proto.ChargerLink | None = None
        self._attempt_timer: Timer | None = None
        self._passkey_attempts: set[proto.ChargerLink] = set()
        self._closing: set[proto.ChargerLink] = set()
        """Links this guard had closed (a wrong PIN, a timed-out exchange) that are not gone yet:
        they start no exchange, so none can be cut short by that close and free the slot."""
        self._events: list[lockout.LockoutEvent] = []
        self._issued: list[bytes] = []
        """Phones issued a credential since the last report (the server lists them)."""

    @property
    def passkey_mode(self) -> bool:
        return self.pin_mode is proto.PinMode.PASSKEY

    # --- ChargerContext ----------------------------------------------------------------------

    def pin_password(self) -> bytes | None:
        if self.passkey_mode or not self.pin_settings.required or self.pin_settings.pin is None:
            return None
        return self.pin_settings.pin.encode()

    def pin_by_passkey(self) -> bool:
        return self.passkey_mode and self.pin_settings.required

    def pin_exchange_allowed(
        self, link: proto.ChargerLink, *, use_pin: bool
    ) -> proto.ErrorCode | None:
        if link in self._closing:
            return proto.ErrorCode.UNEXPECTED_MESSAGE  # the phone connects again
        if not use_pin:
            if self.passkey_mode and self.pin_settings.required and not link.link_authenticated:
                return proto.ErrorCode.LINK_NOT_AUTHENTICATED
            return None
        state, _ = self.lockout_state()
        if state is proto.PairingState.DISABLED:
            return proto.ErrorCode.PAIRING_DISABLED
        if state is proto.PairingState.LOCKED:
            return proto.ErrorCode.LOCKED
        if self.attempt is not None and self.attempt is not link:
            return proto.ErrorCode.BUSY
        return None

    def lockout_state(self) -> tuple[proto.PairingState, float]:
        return proto.pairing_state(self.lockout, self._now())

    def attempts_left(self) -> int:
        return lockout.attempts_left(self.lockout, self._now(), lockout.BLUETOOTH_RULES)

    def begin_attempt(self, link: proto.ChargerLink) -> None:
        self.attempt = link
        self._attempt_timer = self._timers.call_later(
            ATTEMPT_TIMEOUT_S, lambda: self._close(link, after_reply=False)
        )

    def end_attempt(self, link: proto.ChargerLink, *, success: bool) -> None:
        self._release_attempt()
        self._count(success=success)
        if not success:
            self._close(link, after_reply=True)

    def credential(self, phone_id: bytes) -> proto.StoredCredential | None:
        return self.credentials.get(phone_id)

    def issue_credential(self, phone_id: bytes, *, with_pin: bool) -> bytes:
        secret = self._rng.token_bytes(proto.SECRET_BYTES)
        self.credentials.put(
            proto.StoredCredential(phone_id=phone_id, secret=secret, with_pin=with_pin)
        )
        log.info("issued a credential to phone %s", phone_id.hex()[:8])
        self._issued.append(phone_id)
        return secret

    def forget(self, phone_id: bytes) -> None:
        self.credentials.delete(phone_id)
        log.info("phone %s forgot its credential", phone_id.hex()[:8])

    # --- passkey mode: the LE pairing is the PIN attempt --------------------------------------

    def passkey_locked(self) -> bool:
        return self.lockout.is_locked(self._now())

    def passkey_started(self, link: proto.ChargerLink) -> None:
        self._passkey_attempts.add(link)

    def passkey_finished(self, link: proto.ChargerLink, *, success: bool) -> bool:
        """Count a passkey attempt on ``link`` if one was started; whether one was."""
        if link not in self._passkey_attempts:
            return False
        self._passkey_attempts.discard(link)
        self._count(success=success)
        if success:
            link.link_authenticated = True
        return True

    def link_gone(self, link: proto.ChargerLink) -> None:
        link.close()  # an unconfirmed PIN exchange counts as a failed guess
        self.passkey_finished(link, success=False)
        if self.attempt is link:
            self._release_attempt()
        self._closing.discard(link)

    # --- the rest ----------------------------------------------------------------------------

    def reenable(self) -> None:
        self.lockout = lockout.reenable(self.lockout)
        self._store.save(self.lockout)

    async def report_events(self) -> None:
        """Send the credentials issued and the lockout events counted since the last call to
        the server."""
        events, self._events = self._events, []
        issued, self._issued = self._issued, []
        for phone_id in issued:
            await self._server.send_security_event(
                SecurityEventType.BLUETOOTH_CREDENTIAL_ISSUED, f"phone_id={phone_id.hex()}"
            )
        for event in events:
            if event.kind is lockout.LockoutKind.DISABLED:
                log.warning(
                    "Bluetooth PIN pairing disabled after %d failures", event.consecutive_failures
                )
                await self._server.send_security_event(
                    SecurityEventType.BLUETOOTH_PIN_PAIRING_DISABLED,
                    f"consecutive_failures={event.consecutive_failures}",
                )
            else:
                log.warning("Bluetooth PIN pairing locked for %.0f s", event.duration_s or 0)
                await self._server.send_security_event(
                    SecurityEventType.BLUETOOTH_PIN_LOCKOUT,
                    f"level={event.level} duration_s={int(event.duration_s or 0)}"
                    f" consecutive_failures={event.consecutive_failures}",
                )

    @property
    def has_events(self) -> bool:
        return bool(self._events or self._issued)

    def _close(self, link: proto.ChargerLink, *, after_reply: bool) -> None:
        self._closing.add(link)
        self._end_link(link, after_reply)

    def _release_attempt(self) -> None:
        self.attempt = None
        if self._attempt_timer is not None:
            self._attempt_timer.cancel()
            self._attempt_timer = None

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def _count(self, *, success: bool) -> None:
        before = self.lockout
        if success:
            self.lockout = lockout.record_success(self.lockout)
        else:
            self.lockout, event = lockout.record_failure(
                self.lockout, self._now(), lockout.BLUETOOTH_RULES
            )
            log.warning(
                "wrong Bluetooth PIN (%d consecutive failures)", self.lockout.consecutive_failures
            )
            if event is not None:
                self._events.append(event)
        if self.lockout != before:  # a success after a success changes nothing: no fsync
            self._store.save(self.lockout)


if TYPE_CHECKING:  # mypy checks the guard against the port it serves

    def _port(guard: PinGuard) -> proto.ChargerContext:
        return guard
