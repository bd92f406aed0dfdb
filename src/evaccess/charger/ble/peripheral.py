"""The charger's Bluetooth LE peripheral: the evaccess Access Service (docs/ble-protocol.md)
on a Bumble ``Device``, plus the ``BluetoothControl`` port the OCPP half drives.

Authentication is the protocol's own session layer (``protocol.ble_access.ChargerLink`` per
link, run against the charger's ``PinGuard``), never ``connection.authenticated`` (Bumble
sets it after *any* pairing, Just Works and legacy included, and
READ_REQUIRES_AUTHENTICATION checks only that): configuration characteristics answer
INSUFFICIENT_AUTHENTICATION until the link's session is authenticated by the PIN exchange
or a phone credential, and their values are sealed under that session's keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bumble import smp
from bumble.att import ATT_Error
from bumble.core import AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.hci import Address
from bumble.pairing import PairingConfig, PairingDelegate
from bumble.transport import open_transport
from bumble.transport.common import Transport, TransportInitError, TransportSpecError

from evaccess.ble_logging import silence_secret_debug_logs
from evaccess.charger.ble.advertising import AdvertisingSupervisor
from evaccess.charger.ble.guard import ATTEMPT_TIMEOUT_S, PinGuard
from evaccess.charger.ble.settings import SETTINGS, ChargerSettings, Setting
from evaccess.charger.ble.smp_policy import policy_session
from evaccess.charger.ble.store import (
    IssuedCredentials,
    LockoutStore,
    SettingsStore,
    load_identity,
)
from evaccess.charger.ble.timers import ClockTimers
from evaccess.charger.ports import BluetoothControl, BluetoothPinSettings, ServerLink
from evaccess.domain.clock import Clock, RandomSource
from evaccess.domain.errors import ConfigurationError, EvAccessError, InvalidInput
from evaccess.protocol import ble_access as proto
from evaccess.protocol.ocpp_components import SecurityEventType

log = logging.getLogger(__name__)

REPLY_GRACE_S = 0.05
UNAUTHENTICATED_LINK_TIMEOUT_S = 30.0
"""A link without an authenticated session is closed after this long (no idle squatting)."""


class _PasskeyDelegate(PairingDelegate):
    """LE SC Passkey Entry: the charger 'displays' its PIN, the phone types it."""

    def __init__(self, guard: PinGuard) -> None:
        super().__init__(io_capability=PairingDelegate.DISPLAY_OUTPUT_ONLY)
        self._guard = guard

    async def generate_passkey(self) -> int:
        pin = self._guard.pin_settings.pin
        if pin is None:  # refused earlier by the policy; never reached
            raise ConfigurationError("no Bluetooth PIN provisioned")
        return int(pin)


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
        pin_mode: proto.PinMode | str = proto.PinMode.PAKE,
    ) -> None:
        try:
            mode = proto.PinMode(pin_mode)
        except ValueError:
            raise ConfigurationError(
                f"unknown Bluetooth PIN mode {pin_mode!r}: use pake or passkey"
            ) from None
        _check_settings(pin_settings, mode)
        self.transport_spec = transport
        self.serial = serial
        self.state_dir = state_dir
        self.server = server
        self.rng = rng
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.timers = ClockTimers(clock)
        self.guard = PinGuard(
            serial=serial,
            pin_mode=mode,
            pin_settings=pin_settings,
            credentials=IssuedCredentials(state_dir),
            lockout_store=LockoutStore(state_dir),
            server=server,
            clock=clock,
            rng=rng,
            timers=self.timers,
            end_link=self._end_link,
        )
        self.config = ChargerSettings(server, self.guard, SettingsStore(state_dir))
        self.links: dict[Connection, proto.ChargerLink] = {}
        self._connections: dict[proto.ChargerLink, Connection] = {}
        self._replies: dict[Connection, bytes] = {}
        self._drop_after_reply: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._transport: Transport | None = None
        self.device: Device | None = None
        self.advertising = AdvertisingSupervisor(
            self._advertise, lambda: self.device is not None and self.device.is_advertising
        )

    @property
    def passkey_mode(self) -> bool:  # SmpPolicy
        return self.guard.passkey_mode

    @property
    def wifi_password(self) -> str | None:
        """For the network manager only (memory only: never logged, reported or stored)."""
        return self.config.wifi_password

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
        device.irk = irk  # Bumble's default IRK is all zeros
        device.add_service(self._service())
        device.pairing_config_factory = self._pairing_config
        device.smp_manager.session_proxy = policy_session(self)
        device.on(device.EVENT_CONNECTION, self._on_connection)
        self.device = device
        await device.power_on()
        async with self.advertising.lock:
            await self._advertise()
        await self.config.report_stored()
        log.info(
            "advertising as %s (PIN %s, checked by %s)",
            proto.advertised_name(self.serial),
            "required" if self.guard.pin_settings.required else "not required",
            self.guard.pin_mode.value,
        )

    async def stop(self) -> None:
        self.advertising.stop()
        self.timers.cancel_all()
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
        if self.device is None:
            return  # stopped meanwhile
        try:
            await self._start_advertising(self.device)
        except Exception:
            # a start that failed half-way may leave Bumble believing it advertises
            with contextlib.suppress(Exception):
                await self.device.stop_advertising()
            raise

    async def _start_advertising(self, device: Device) -> None:
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
        await device.start_advertising(
            auto_restart=False,  # the supervisor restarts it, also while phones are connected
            advertising_data=bytes(data),
            scan_response_data=bytes(scan_response),
            advertising_interval_min=20,
            advertising_interval_max=20,
        )

    # --- GATT (the layout is protocol.ble_access.CHARACTERISTICS) ----------------------------

    def _service(self) -> Service:
        plain: dict[str, tuple[Any, Any]] = {
            "info": (self._read_info, None),
            "access": (self._read_access, self._write_access),
        }
        characteristics: list[Characteristic[bytes]] = []
        for spec in proto.CHARACTERISTICS:
            if spec.sealed:
                setting = SETTINGS[spec.name]
                reader: Any = self._sealed_reader(spec, setting) if setting.read else None
                writer: Any = self._sealed_writer(spec, setting)
            else:
                reader, writer = plain[spec.name]
            characteristics.append(
                Characteristic(
                    str(spec.uuid).upper(),
                    Characteristic.Properties(int(spec.properties)),  # the same GATT bits
                    Characteristic.READABLE | Characteristic.WRITEABLE,
                    CharacteristicValue(read=reader, write=writer),
                )
            )
        return Service(str(proto.SERVICE_UUID).upper(), characteristics)

    def _read_info(self, connection: Connection) -> bytes:
        state, retry = self.guard.lockout_state()
        link = self.links.get(connection)
        info = proto.ChargerInfo(
            serial=self.serial,
            versions=proto.SUPPORTED_VERSIONS,
            pin_required=self.guard.pin_settings.required,
            pin_mode=self.guard.pin_mode,
            pairing_state=state,
            retry_after=int(retry + 0.999),
            # 5.2: nC, remembered by the link for its next PAKE_START
            nonce=link.info_nonce()
            if link is not None
            else self.rng.token_bytes(proto.NONCE_BYTES),
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
        if link.authenticated and not was_authenticated:
            log.info("phone %s authenticated", (link.phone_id or b"").hex()[:8])
        if self.guard.has_events:
            self._spawn(self.guard.report_events())

    def _read_access(self, connection: Connection) -> bytes:
        if connection in self._drop_after_reply:
            # the phone has its answer (e.g. "wrong PIN"): now end the link
            self._drop_after_reply.discard(connection)
            self._later(REPLY_GRACE_S, connection)
        return self._replies.pop(connection, b"")

    def _session(self, connection: Connection) -> tuple[proto.ChargerLink, proto.SessionCipher]:
        link = self.links.get(connection)
        if link is None or not link.authenticated or link.cipher is None:
            raise ATT_Error(proto.AttErrorCode.INSUFFICIENT_AUTHENTICATION)
        return link, link.cipher

    def _sealed_reader(
        self, spec: proto.CharacteristicSpec, setting: Setting
    ) -> Callable[[Connection], bytes]:
        assert setting.read is not None
        read_value = setting.read

        def read(connection: Connection) -> bytes:
            _, cipher = self._session(connection)
            return proto.seal_json(cipher, spec.uuid, read_value(self.config))

        return read

    def _sealed_writer(
        self, spec: proto.CharacteristicSpec, setting: Setting
    ) -> Callable[[Connection, bytes], Coroutine[Any, Any, None]]:
        async def write(connection: Connection, value: bytes) -> None:
            link, cipher = self._session(connection)
            try:
                await setting.write(self.config, proto.open_json(cipher, spec.uuid, bytes(value)))
            except Exception as exc:
                if not isinstance(exc, EvAccessError):
                    # e.g. the OCPP half failed to queue the report: the type only, never values
                    log.warning("could not apply %s (%s)", setting.label, type(exc).__name__)
                raise ATT_Error(proto.att_code(exc)) from None
            log.info("phone %s changed %s", (link.phone_id or b"").hex()[:8], setting.label)

        return write

    # --- connections and pairing ---------------------------------------------------------

    def _on_connection(self, connection: Connection) -> None:
        link = proto.ChargerLink(self.guard, self.rng)
        self.links[connection] = link
        self._connections[link] = connection
        self.advertising.kick()
        self.timers.call_later(
            UNAUTHENTICATED_LINK_TIMEOUT_S, lambda: self._end_idle_link(connection)
        )
        connection.on(connection.EVENT_DISCONNECTION, lambda _reason: self._on_gone(connection))
        connection.on(connection.EVENT_PAIRING, lambda *_: self._on_paired(connection))
        connection.on(
            connection.EVENT_PAIRING_FAILURE, lambda reason: self._on_pairing_failed(connection)
        )

    def _end_idle_link(self, connection: Connection) -> None:
        link = self.links.get(connection)
        if link is not None and not link.authenticated:
            log.info("closing a link that did not authenticate in time")
            self._spawn(self._disconnect(connection))

    def _end_link(self, link: proto.ChargerLink, after_reply: bool) -> None:
        connection = self._connections.get(link)
        if connection is None:
            return
        if not after_reply:
            self._spawn(self._disconnect(connection))
            return
        # After a wrong PIN the link ends once the phone read the answer (or soon).
        self._drop_after_reply.add(connection)
        self.timers.call_later(
            ATTEMPT_TIMEOUT_S / 10, lambda: self._spawn(self._disconnect(connection))
        )

    def _on_gone(self, connection: Connection) -> None:
        link = self.links.pop(connection, None)
        self._replies.pop(connection, None)
        self._drop_after_reply.discard(connection)
        if link is not None:
            self._connections.pop(link, None)
            self.guard.link_gone(link)
        self._spawn(self.guard.report_events())
        self.advertising.kick()

    def _pairing_config(self, connection: Connection) -> PairingConfig:
        if self.guard.passkey_mode:
            return PairingConfig(
                sc=True, mitm=True, bonding=False, delegate=_PasskeyDelegate(self.guard)
            )
        # PAKE mode: LE SC Just Works may encrypt the link; the PIN is checked by the PAKE.
        return PairingConfig(sc=True, mitm=False, bonding=False)

    # SmpPolicy (charger.ble.smp_policy)
    def passkey_refusal(self) -> smp.ErrorCode | None:
        if not self.guard.pin_settings.required or self.guard.pin_settings.pin is None:
            return smp.ErrorCode.PAIRING_NOT_SUPPORTED
        if self.guard.passkey_locked():
            return smp.ErrorCode.REPEATED_ATTEMPTS
        return None

    def passkey_attempt_started(self, connection: Connection) -> None:
        if (link := self.links.get(connection)) is not None:
            self.guard.passkey_started(link)

    def pairing_refused(self, connection: Connection, reason: str) -> None:
        log.warning("refused pairing from %s: %s", connection.peer_address, reason)

    def _on_paired(self, connection: Connection) -> None:
        if (link := self.links.get(connection)) is not None:
            self.guard.passkey_finished(link, success=True)

    def _on_pairing_failed(self, connection: Connection) -> None:
        link = self.links.get(connection)
        if link is not None and self.guard.passkey_finished(link, success=False):
            self._later(REPLY_GRACE_S, connection)
        self._spawn(self.guard.report_events())

    # --- BluetoothControl ------------------------------------------------------------------

    async def apply_pin_settings(self, settings: BluetoothPinSettings) -> None:
        _check_settings(settings, self.guard.pin_mode)
        newly_required = settings.required and not self.guard.pin_settings.required
        if settings != self.guard.pin_settings:
            log.info(
                "PIN settings from the server: PIN %s, %s, %s",
                "required" if settings.required else "not required",
                "set" if settings.pin is not None else "none set",
                "changeable from a phone" if settings.changeable else "not changeable",
            )
        self.guard.pin_settings = settings
        if newly_required:
            gone = self.guard.credentials.delete_where(with_pin=False)
            if gone:
                log.info("a PIN is now required: %d PIN-less credentials dropped", len(gone))
            if self.device is not None:
                for connection in list(self.device.connections.values()):
                    await self._disconnect(connection)

    async def revoke_all_credentials(self) -> None:
        gone = self.guard.credentials.clear()
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
        found = self.guard.credentials.delete(raw)
        for link in self.links.values():
            if link.phone_id == raw:
                link.revoke()
        log.info("revoked phone %s (%s)", phone_id[:8], "found" if found else "unknown")
        if found:
            await self.server.send_security_event(
                SecurityEventType.BLUETOOTH_CREDENTIAL_REVOKED, f"phone_id={phone_id}"
            )

    async def reenable_pin_pairing(self) -> None:
        self.guard.reenable()
        log.info("Bluetooth PIN pairing re-enabled")

    # --- helpers ---------------------------------------------------------------------------

    def _later(self, delay_s: float, connection: Connection) -> None:
        """Disconnect after ``delay_s`` of loop time (the reply on its way first)."""
        asyncio.get_running_loop().call_later(
            delay_s, lambda: self._spawn(self._disconnect(connection))
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


def _check_settings(settings: BluetoothPinSettings, pin_mode: proto.PinMode) -> None:
    if settings.required and settings.pin is None:
        raise ConfigurationError("a Bluetooth PIN is required but none is provisioned")
    if pin_mode is proto.PinMode.PASSKEY and settings.pin == "000000":
        raise ConfigurationError(
            "passkey mode cannot use the PIN 000000 (it is not a valid LE passkey)"
        )


if TYPE_CHECKING:  # mypy checks the peripheral against the port it serves

    def _port(peripheral: BlePeripheral) -> BluetoothControl:
        return peripheral


__all__ = ["BlePeripheral"]
