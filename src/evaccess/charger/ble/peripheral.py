"""The charger's Bluetooth LE peripheral: the evaccess Access Service (docs/ble-protocol.md)
on a Bumble ``Device``, plus the ``BluetoothControl`` port the OCPP half drives.

Authentication is this module's own session layer (``protocol.ble_access.ChargerLink`` per
link), never ``connection.authenticated`` (notes/bumble.md trap 1): configuration
characteristics answer INSUFFICIENT_AUTHENTICATION until the link's session is
authenticated by the PIN exchange or a phone credential, and their values are sealed under
that session's keys.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bumble import smp
from bumble.att import ATT_UNLIKELY_ERROR_ERROR as ATT_UNLIKELY_ERROR
from bumble.att import ATT_Error
from bumble.core import AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.hci import Address
from bumble.pairing import PairingConfig, PairingDelegate
from bumble.transport import open_transport
from bumble.transport.common import Transport, TransportInitError, TransportSpecError

from evaccess.ble_logging import silence_secret_debug_logs
from evaccess.charger.ble.smp_policy import policy_session
from evaccess.charger.ble.store import CredentialStore, LockoutStore, load_identity
from evaccess.charger.ports import BluetoothControl, BluetoothPinSettings, ServerLink
from evaccess.domain import lockout
from evaccess.domain.clock import Clock, RandomSource
from evaccess.domain.errors import (
    ConfigurationError,
    EvAccessError,
    IntegrityFailure,
    InvalidInput,
    PinRejected,
)
from evaccess.domain.pins import validate_bluetooth_pin
from evaccess.protocol import ble_access as proto
from evaccess.protocol.ocpp_components import SecurityEventType

log = logging.getLogger(__name__)

PIN_MODES = ("pake", "passkey")
ATTEMPT_TIMEOUT_S = 10.0
"""A PIN exchange not confirmed within this time ends (counted as a failure) so one phone
cannot hold the one-at-a-time exchange slot."""
REPLY_GRACE_S = 0.05
UNAUTHENTICATED_LINK_TIMEOUT_S = 30.0
"""A link without an authenticated session is closed after this long (no idle squatting)."""
PRECOMPUTE_DELAY_S = 0.05
"""Compute the next SPAKE2 message this long after one is used (off the reply's path)."""
DEFAULT_CURRENT_LIMIT_A = 16


class _PasskeyDelegate(PairingDelegate):
    """LE SC Passkey Entry: the charger 'displays' its PIN, the phone types it."""

    def __init__(self, peripheral: BlePeripheral) -> None:
        super().__init__(io_capability=PairingDelegate.DISPLAY_OUTPUT_ONLY)
        self._peripheral = peripheral

    async def generate_passkey(self) -> int:
        pin = self._peripheral.pin_settings.pin
        if pin is None:  # refused earlier by the policy; never reached
            raise ConfigurationError("no Bluetooth PIN provisioned")
        return int(pin)


class _LinkContext:
    """``proto.ChargerContext`` for one link: the peripheral seen from that link."""

    def __init__(self, peripheral: BlePeripheral, connection: Connection) -> None:
        self._p = peripheral
        self._connection = connection
        self.serial = peripheral.serial

    def pin_password(self) -> bytes | None:
        return self._p.pake_password()

    def pake_responder(self, password: bytes) -> tuple[Any, bytes]:
        return self._p.pake_responder(password)

    def pin_exchange_allowed(
        self, *, use_pin: bool, link_authenticated: bool
    ) -> proto.ErrorCode | None:
        return self._p.exchange_refusal(
            self._connection, use_pin=use_pin, link_authenticated=link_authenticated
        )

    def lockout_state(self) -> tuple[proto.PairingState, float]:
        return self._p.pairing_state()

    def attempts_left(self) -> int:
        return self._p.attempts_left()

    def begin_attempt(self) -> None:
        self._p.begin_attempt(self._connection)

    def end_attempt(self, *, success: bool) -> None:
        self._p.end_attempt(self._connection, success=success)

    def credential(self, phone_id: bytes) -> proto.StoredCredential | None:
        return self._p.credentials.get(phone_id)

    def issue_credential(self, phone_id: bytes, *, with_pin: bool) -> bytes:
        return self._p.issue_credential(phone_id, with_pin=with_pin)

    def forget(self, phone_id: bytes) -> None:
        self._p.credentials.delete(phone_id)
        log.info("phone %s forgot its credential", phone_id.hex()[:8])


class BlePeripheral:
    """The charger on Bluetooth LE. Implements ``charger.ports.BluetoothControl``."""

    def __init__(
        self,
        *,
        transport: str,
        serial: str,
        state_dir: Path,
        server: ServerLink,
        pin_settings: BluetoothPinSettings,
        clock: Clock,
        rng: RandomSource,
        pin_mode: str = "pake",
    ) -> None:
        if pin_mode not in PIN_MODES:
            raise ConfigurationError(
                f"unknown Bluetooth PIN mode {pin_mode!r}: use pake or passkey"
            )
        self._check_settings(pin_settings, pin_mode)
        self.transport_spec = transport
        self.serial = serial
        self.state_dir = state_dir
        self.server = server
        self.pin_settings = pin_settings
        self.clock = clock
        self.rng = rng
        self.pin_mode = pin_mode
        self.passkey_mode = pin_mode == "passkey"
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.credentials = CredentialStore(state_dir)
        self._lockout_store = LockoutStore(state_dir)
        self._lockout = self._lockout_store.load()
        self.links: dict[Connection, proto.ChargerLink] = {}
        self._replies: dict[Connection, bytes] = {}
        self._attempt: Connection | None = None
        self._attempt_timer: asyncio.TimerHandle | None = None
        self._passkey_attempts: set[Connection] = set()
        self._drop_after_reply: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending_events: list[lockout.LockoutEvent] = []
        self._spare_pake: tuple[bytes, Any, bytes] | None = None
        self._transport: Transport | None = None
        self.device: Device | None = None
        self.settings: dict[str, Any] = {"current_limit_a": DEFAULT_CURRENT_LIMIT_A}
        """Non-secret settings phones wrote (what the OCPP half may report)."""
        self._wifi_password: str | None = None

    @property
    def wifi_password(self) -> str | None:
        """For the network manager only (memory only: never logged, reported or stored)."""
        return self._wifi_password

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        silence_secret_debug_logs()
        try:
            self._transport = await open_transport(self.transport_spec)
        except (TransportSpecError, TransportInitError) as exc:
            raise ConfigurationError(
                f"cannot open Bluetooth transport {self.transport_spec!r} ({type(exc).__name__})"
            ) from None
        address, irk = load_identity(self.state_dir, self.rng)
        device = Device.with_hci(
            proto.advertised_name(self.serial),
            Address(address, Address.RANDOM_DEVICE_ADDRESS),
            self._transport.source,
            self._transport.sink,
        )
        device.irk = irk  # trap 7: the default IRK is all zeros
        device.add_service(self._service())
        device.pairing_config_factory = self._pairing_config
        device.smp_manager.session_proxy = policy_session(self)
        device.on(device.EVENT_CONNECTION, self._on_connection)
        self.device = device
        await device.power_on()
        await self._advertise()
        self._precompute_pake()
        log.info(
            "advertising as %s (PIN %s, checked by %s)",
            proto.advertised_name(self.serial),
            "required" if self.pin_settings.required else "not required",
            self.pin_mode,
        )

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.device is not None:
            for connection in list(self.device.connections.values()):
                await self._disconnect(connection)
            await self.device.power_off()
        if self._transport is not None:
            await self._transport.close()
        self.device = None
        self._transport = None

    async def _advertise(self) -> None:
        assert self.device is not None
        data = AdvertisingData(
            [
                (AdvertisingData.FLAGS, bytes((0x06,))),
                (
                    AdvertisingData.COMPLETE_LOCAL_NAME,
                    proto.advertised_name(self.serial).encode(),
                ),
            ]
        )
        scan_response = AdvertisingData(
            [
                (
                    AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                    proto.SERVICE_UUID.bytes[::-1],
                )
            ]
        )
        await self.device.start_advertising(
            auto_restart=False,  # _keep_advertising restarts it, also while phones are connected
            advertising_data=bytes(data),
            scan_response_data=bytes(scan_response),
            advertising_interval_min=20,
            advertising_interval_max=20,
        )

    async def _keep_advertising(self) -> None:
        """Advertise again after each connection and disconnection, so one phone holding a
        link (an attacker idling) never hides the charger from the others."""
        if self.device is None or self.device.is_advertising:
            return
        try:
            await self._advertise()
        except Exception as exc:  # e.g. the controller's connection limit: retried later
            log.warning("cannot advertise now (%s)", type(exc).__name__)

    def _end_idle_link(self, connection: Connection) -> None:
        link = self.links.get(connection)
        if link is not None and not link.authenticated:
            log.info("closing a link that did not authenticate in time")
            self._spawn(self._disconnect(connection))

    # --- GATT --------------------------------------------------------------------------------

    def _service(self) -> Service:
        rw = Characteristic.Properties.READ | Characteristic.Properties.WRITE
        access = rw | Characteristic.Properties.WRITE_WITHOUT_RESPONSE
        perms = Characteristic.READABLE | Characteristic.WRITEABLE

        def characteristic(
            uuid: Any,
            properties: Characteristic.Properties,
            read: Callable[[Connection], bytes] | None,
            write: Callable[[Connection, bytes], Any] | None,
        ) -> Characteristic[bytes]:
            return Characteristic(
                str(uuid).upper(),
                properties,
                perms,
                CharacteristicValue(read=read, write=write),
            )

        config_handlers = {
            proto.WIFI_UUID: (self._read_wifi, self._write_wifi),
            proto.CURRENT_LIMIT_UUID: (self._read_current_limit, self._write_current_limit),
            proto.FIRMWARE_UPDATE_UUID: (None, self._write_firmware_update),
            proto.PIN_UUID: (None, self._write_pin),
        }
        characteristics = [
            characteristic(proto.INFO_UUID, Characteristic.Properties.READ, self._read_info, None),
            characteristic(proto.ACCESS_UUID, access, self._read_access, self._write_access),
        ]
        for uuid, (reader, writer) in config_handlers.items():
            characteristics.append(
                characteristic(
                    uuid,
                    rw if reader else Characteristic.Properties.WRITE,
                    self._config_reader(uuid, reader) if reader else None,
                    self._config_writer(uuid, writer),
                )
            )
        return Service(str(proto.SERVICE_UUID).upper(), characteristics)

    def _read_info(self, connection: Connection) -> bytes:
        state, retry = self.pairing_state()
        info = proto.ChargerInfo(
            serial=self.serial,
            versions=proto.SUPPORTED_VERSIONS,
            pin_required=self.pin_settings.required,
            pin_mode=proto.PinMode.PASSKEY if self.passkey_mode else proto.PinMode.PAKE,
            pairing_state=state,
            retry_after=int(retry + 0.999),
        )
        return proto.encode(info.to_frame())

    def _write_access(self, connection: Connection, value: bytes) -> None:
        """Synchronous on purpose: a phone may send the request as a Write Command and read
        the reply right after (section 3.5); ATT PDUs are handled in order."""
        link = self.links.get(connection)
        if link is None:
            raise ATT_Error(proto.AttErrorCode.INSUFFICIENT_AUTHENTICATION)
        was_authenticated = link.authenticated
        self._replies[connection] = link.handle(bytes(value))
        if link.state is proto.LinkState.AUTHENTICATED and not was_authenticated:
            log.info("phone %s authenticated", (link.phone_id or b"").hex()[:8])
        if self._pending_events:
            self._spawn(self._flush_events())

    def _read_access(self, connection: Connection) -> bytes:
        if connection in self._drop_after_reply:
            # the phone has its answer (e.g. "wrong PIN"): now end the link
            self._drop_after_reply.discard(connection)
            asyncio.get_running_loop().call_later(
                REPLY_GRACE_S, lambda: self._spawn(self._disconnect(connection))
            )
        return self._replies.pop(connection, b"")

    def _session(self, connection: Connection) -> tuple[proto.ChargerLink, proto.SessionCipher]:
        link = self.links.get(connection)
        if link is None or not link.authenticated or link.cipher is None:
            raise ATT_Error(proto.AttErrorCode.INSUFFICIENT_AUTHENTICATION)
        return link, link.cipher

    def _config_reader(
        self, uuid: Any, reader: Callable[[], dict[str, Any]]
    ) -> Callable[[Connection], bytes]:
        def read(connection: Connection) -> bytes:
            _, cipher = self._session(connection)
            return proto.seal_json(cipher, uuid, reader())

        return read

    def _config_writer(
        self,
        uuid: Any,
        writer: Callable[[dict[str, Any]], Coroutine[Any, Any, None]],
    ) -> Callable[[Connection, bytes], Coroutine[Any, Any, None]]:
        async def write(connection: Connection, value: bytes) -> None:
            link, cipher = self._session(connection)
            try:
                request = proto.open_json(cipher, uuid, bytes(value))
            except IntegrityFailure:
                raise ATT_Error(proto.AttErrorCode.INTEGRITY) from None
            except InvalidInput:
                raise ATT_Error(proto.AttErrorCode.INVALID_VALUE) from None
            try:
                await writer(request)
            except PinRejected:
                raise ATT_Error(proto.AttErrorCode.PIN_REJECTED) from None
            except InvalidInput:
                raise ATT_Error(proto.AttErrorCode.INVALID_VALUE) from None
            except EvAccessError:
                raise ATT_Error(proto.AttErrorCode.NOT_PERMITTED) from None
            except Exception as exc:
                # e.g. the OCPP half failed to queue the report: the type only, never values
                log.warning("could not apply %s (%s)", _SETTING_NAMES[uuid], type(exc).__name__)
                raise ATT_Error(ATT_UNLIKELY_ERROR) from None
            log.info("phone %s changed %s", (link.phone_id or b"").hex()[:8], _SETTING_NAMES[uuid])

        return write

    # configuration values (plaintext JSON inside the sealed value; section 7)

    def _read_wifi(self) -> dict[str, Any]:
        return {"ssid": self.settings.get("wifi_ssid", "")}

    async def _write_wifi(self, request: dict[str, Any]) -> None:
        ssid, password = proto.check_wifi(request.get("ssid"), request.get("password"))
        self.settings["wifi_ssid"] = ssid
        self._wifi_password = password
        await self.server.report_configuration({"WifiSsid": ssid})

    def _read_current_limit(self) -> dict[str, Any]:
        return {"amps": self.settings["current_limit_a"]}

    async def _write_current_limit(self, request: dict[str, Any]) -> None:
        amps = proto.check_current_limit(request.get("amps"))
        self.settings["current_limit_a"] = amps
        await self.server.report_configuration({"CurrentLimit": str(amps)})

    async def _write_firmware_update(self, request: dict[str, Any]) -> None:
        url = proto.check_firmware_url(request.get("url"))
        self.settings["firmware_update_url"] = url
        await self.server.report_configuration({"FirmwareUpdateRequested": url})

    async def _write_pin(self, request: dict[str, Any]) -> None:
        if not self.pin_settings.changeable:
            raise EvAccessError("this charger's PIN policy forbids changing the PIN")
        pin = request.get("pin")
        if not isinstance(pin, str):
            raise PinRejected("a Bluetooth PIN is a string of digits")
        validate_bluetooth_pin(pin)
        # The server learns the new PIN first: if that fails the charger keeps the old one,
        # so the PIN the server reveals is never out of date.
        await self.server.report_pin_changed(pin)
        self.pin_settings = BluetoothPinSettings(
            pin=pin, required=self.pin_settings.required, changeable=True
        )
        await self.server.send_security_event(SecurityEventType.BLUETOOTH_PIN_CHANGED, "by phone")

    # --- connections and pairing ---------------------------------------------------------

    def _on_connection(self, connection: Connection) -> None:
        link = proto.ChargerLink(_LinkContext(self, connection), self.rng)
        self.links[connection] = link
        self._spawn(self._keep_advertising())
        asyncio.get_running_loop().call_later(
            UNAUTHENTICATED_LINK_TIMEOUT_S, self._end_idle_link, connection
        )
        connection.on(connection.EVENT_DISCONNECTION, lambda _reason: self._on_gone(connection))
        connection.on(connection.EVENT_PAIRING, lambda *_: self._on_paired(connection))
        connection.on(
            connection.EVENT_PAIRING_FAILURE, lambda reason: self._on_pairing_failed(connection)
        )

    def _on_gone(self, connection: Connection) -> None:
        link = self.links.pop(connection, None)
        self._replies.pop(connection, None)
        self._drop_after_reply.discard(connection)
        if link is not None:
            link.close()
        if connection in self._passkey_attempts:
            self._passkey_attempts.discard(connection)
            self._count(success=False)
        if self._attempt is connection:
            self._release_attempt()
        self._spawn(self._flush_events())
        self._spawn(self._keep_advertising())

    def _pairing_config(self, connection: Connection) -> PairingConfig:
        if self.passkey_mode:
            return PairingConfig(sc=True, mitm=True, bonding=False, delegate=_PasskeyDelegate(self))
        # PAKE mode: LE SC Just Works may encrypt the link; the PIN is checked by the PAKE.
        return PairingConfig(sc=True, mitm=False, bonding=False)

    # SmpPolicy (charger.ble.smp_policy)
    def passkey_refusal(self) -> smp.ErrorCode | None:
        if not self.pin_settings.required or self.pin_settings.pin is None:
            return smp.ErrorCode.PAIRING_NOT_SUPPORTED
        if self._lockout.is_locked(self._now()):
            return smp.ErrorCode.REPEATED_ATTEMPTS
        return None

    def passkey_attempt_started(self, connection: Connection) -> None:
        self._passkey_attempts.add(connection)

    def pairing_refused(self, connection: Connection, reason: str) -> None:
        log.warning("refused pairing from %s: %s", connection.peer_address, reason)

    def _on_paired(self, connection: Connection) -> None:
        if connection in self._passkey_attempts:
            self._passkey_attempts.discard(connection)
            self._count(success=True)
            link = self.links.get(connection)
            if link is not None:
                link.link_authenticated = True

    def _on_pairing_failed(self, connection: Connection) -> None:
        if connection in self._passkey_attempts:
            self._passkey_attempts.discard(connection)
            self._count(success=False)
            asyncio.get_running_loop().call_later(
                REPLY_GRACE_S, lambda: self._spawn(self._disconnect(connection))
            )
        self._spawn(self._flush_events())

    # --- the PIN exchange slot and the lockout (domain.lockout, BLUETOOTH_RULES) ------------

    def pake_responder(self, password: bytes) -> tuple[Any, bytes]:
        """SPAKE2_B for ``password``: the one computed ahead when it matches (its scalar
        multiplications are most of a pairing's CPU time), else a fresh one."""
        spare, self._spare_pake = self._spare_pake, None
        if spare is not None and spare[0] == password:
            result = spare[1], spare[2]
        else:
            result = proto.new_pake_responder(self.serial, password)
        asyncio.get_running_loop().call_later(PRECOMPUTE_DELAY_S, self._precompute_pake)
        return result

    def _precompute_pake(self) -> None:
        password = self.pake_password()
        if password is None or self.device is None:
            return
        if self._spare_pake is None or self._spare_pake[0] != password:
            spake, message = proto.new_pake_responder(self.serial, password)
            self._spare_pake = (password, spake, message)

    def pake_password(self) -> bytes | None:
        if self.passkey_mode or not self.pin_settings.required or self.pin_settings.pin is None:
            return None
        return self.pin_settings.pin.encode()

    def exchange_refusal(
        self, connection: Connection, *, use_pin: bool, link_authenticated: bool
    ) -> proto.ErrorCode | None:
        if not use_pin:
            if self.passkey_mode and self.pin_settings.required and not link_authenticated:
                return proto.ErrorCode.LINK_NOT_AUTHENTICATED
            return None
        state, _ = self.pairing_state()
        if state is proto.PairingState.DISABLED:
            return proto.ErrorCode.PAIRING_DISABLED
        if state is proto.PairingState.LOCKED:
            return proto.ErrorCode.LOCKED
        if self._attempt is not None and self._attempt is not connection:
            return proto.ErrorCode.BUSY
        return None

    def pairing_state(self) -> tuple[proto.PairingState, float]:
        return proto.pairing_state(self._lockout, self._now())

    def attempts_left(self) -> int:
        return lockout.attempts_left(self._lockout, self._now(), lockout.BLUETOOTH_RULES)

    def begin_attempt(self, connection: Connection) -> None:
        self._attempt = connection
        loop = asyncio.get_running_loop()
        self._attempt_timer = loop.call_later(
            ATTEMPT_TIMEOUT_S, lambda: self._spawn(self._disconnect(connection))
        )

    def end_attempt(self, connection: Connection, *, success: bool) -> None:
        self._release_attempt()
        self._count(success=success)
        if not success and connection in self.links:
            # After a wrong PIN the link ends once the phone read the answer (or soon).
            self._drop_after_reply.add(connection)
            asyncio.get_running_loop().call_later(
                ATTEMPT_TIMEOUT_S / 10, lambda: self._spawn(self._disconnect(connection))
            )

    def _release_attempt(self) -> None:
        self._attempt = None
        if self._attempt_timer is not None:
            self._attempt_timer.cancel()
            self._attempt_timer = None

    def _now(self) -> float:
        return self.clock.now().timestamp()

    def _count(self, *, success: bool) -> None:
        before = self._lockout
        if success:
            self._lockout = lockout.record_success(self._lockout)
        else:
            self._lockout, event = lockout.record_failure(
                self._lockout, self._now(), lockout.BLUETOOTH_RULES
            )
            log.warning(
                "wrong Bluetooth PIN (%d consecutive failures)", self._lockout.consecutive_failures
            )
            if event is not None:
                self._pending_events.append(event)
        if self._lockout != before:  # a success after a success changes nothing: no fsync
            self._lockout_store.save(self._lockout)

    async def _flush_events(self) -> None:
        events, self._pending_events = self._pending_events, []
        for event in events:
            if event.kind is lockout.LockoutKind.DISABLED:
                log.warning(
                    "Bluetooth PIN pairing disabled after %d failures", event.consecutive_failures
                )
                await self.server.send_security_event(
                    SecurityEventType.BLUETOOTH_PIN_PAIRING_DISABLED,
                    f"consecutive_failures={event.consecutive_failures}",
                )
            else:
                log.warning("Bluetooth PIN pairing locked for %.0f s", event.duration_s or 0)
                await self.server.send_security_event(
                    SecurityEventType.BLUETOOTH_PIN_LOCKOUT,
                    f"level={event.level} duration_s={int(event.duration_s or 0)}"
                    f" consecutive_failures={event.consecutive_failures}",
                )

    def issue_credential(self, phone_id: bytes, *, with_pin: bool) -> bytes:
        secret = self.rng.token_bytes(proto.SECRET_BYTES)
        self.credentials.put(
            proto.StoredCredential(phone_id=phone_id, secret=secret, with_pin=with_pin)
        )
        log.info("issued a credential to phone %s", phone_id.hex()[:8])
        return secret

    # --- BluetoothControl ------------------------------------------------------------------

    async def apply_pin_settings(self, settings: BluetoothPinSettings) -> None:
        self._check_settings(settings, self.pin_mode)
        newly_required = settings.required and not self.pin_settings.required
        if settings != self.pin_settings:
            log.info(
                "PIN settings from the server: PIN %s, %s, %s",
                "required" if settings.required else "not required",
                "set" if settings.pin is not None else "none set",
                "changeable from a phone" if settings.changeable else "not changeable",
            )
        self.pin_settings = settings
        if newly_required:
            gone = self.credentials.delete_where(with_pin=False)
            if gone:
                log.info("a PIN is now required: %d PIN-less credentials dropped", len(gone))
            if self.device is not None:
                for connection in list(self.device.connections.values()):
                    await self._disconnect(connection)

    async def revoke_all_credentials(self) -> None:
        gone = self.credentials.clear()
        for link in self.links.values():
            link.revoke()
        log.info("revoked all %d phone credentials", len(gone))
        await self.server.send_security_event(
            SecurityEventType.BLUETOOTH_CREDENTIAL_REVOKED, f"count={len(gone)}"
        )

    async def revoke_credential(self, phone_id: str) -> None:
        try:
            raw = bytes.fromhex(phone_id)
        except ValueError:
            raise InvalidInput("a phone id is hexadecimal") from None
        found = self.credentials.delete(raw)
        for link in self.links.values():
            if link.phone_id == raw:
                link.revoke()
        log.info("revoked phone %s (%s)", phone_id[:8], "found" if found else "unknown")
        if found:
            await self.server.send_security_event(
                SecurityEventType.BLUETOOTH_CREDENTIAL_REVOKED, f"phone_id={phone_id}"
            )

    async def reenable_pin_pairing(self) -> None:
        self._lockout = lockout.reenable(self._lockout)
        self._lockout_store.save(self._lockout)
        log.info("Bluetooth PIN pairing re-enabled")

    # --- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _check_settings(settings: BluetoothPinSettings, pin_mode: str) -> None:
        if settings.required and settings.pin is None:
            raise ConfigurationError("a Bluetooth PIN is required but none is provisioned")
        if pin_mode == "passkey" and settings.pin == "000000":
            raise ConfigurationError(
                "passkey mode cannot use the PIN 000000 (it is not a valid LE passkey)"
            )

    async def _disconnect(self, connection: Connection) -> None:
        if connection not in self.links:
            return  # already gone: its handle may belong to a newer link by now
        try:
            await connection.disconnect()
        except Exception:
            log.debug("disconnect failed", exc_info=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


_SETTING_NAMES = {
    proto.WIFI_UUID: "the Wi-Fi network",
    proto.CURRENT_LIMIT_UUID: "the current limit",
    proto.FIRMWARE_UPDATE_UUID: "firmware update",
    proto.PIN_UUID: "the Bluetooth PIN",
}

if TYPE_CHECKING:  # mypy checks the peripheral against the ports it serves

    def _ports(peripheral: BlePeripheral) -> tuple[BluetoothControl, _LinkContext]:
        context: proto.ChargerContext = _LinkContext(peripheral, cast(Connection, None))
        return peripheral, cast(_LinkContext, context)


__all__ = ["BlePeripheral"]
