"""The phone as a Bluetooth LE central (Bumble): find a charger by its advertised name,
connect, and speak the Access Service (docs/ble-protocol.md) to it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from uuid import UUID

from bumble import smp
from bumble.att import ATT_Error
from bumble.core import UUID as BtUUID
from bumble.core import AdvertisingData, ProtocolError
from bumble.core import ConnectionError as BumbleConnectionError
from bumble.core import TimeoutError as BumbleTimeoutError
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.hci import Address
from bumble.pairing import PairingConfig, PairingDelegate
from bumble.smp import ErrorCode as SmpErrorCode
from bumble.transport import open_transport
from bumble.transport.common import Transport, TransportInitError, TransportSpecError

from evaccess.ble_logging import silence_secret_debug_logs
from evaccess.domain.clock import RandomSource
from evaccess.domain.errors import (
    EvAccessError,
    InvalidInput,
    LockedOut,
    NotAuthenticated,
    NotFound,
)
from evaccess.protocol import ble_access as proto

log = logging.getLogger(__name__)

SCAN_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
MTU = 247
DIRECT_CONNECT_S = 1.0
CANCEL_GRACE_S = 1.0
DISCONNECT_TIMEOUT_S = 2.0


async def disconnect_quietly(connection: Connection) -> None:
    """Disconnect unless the link is already gone (the charger may end it first)."""
    device = connection.device
    if device is None or device.connections.get(connection.handle) is not connection:
        return
    try:
        await asyncio.wait_for(connection.disconnect(), DISCONNECT_TIMEOUT_S)
    except Exception:
        log.debug("disconnect failed", exc_info=True)


def _hardened_session() -> type[smp.Session]:
    """The phone's side of passkey mode's hardening (docs/ble-protocol.md section 9): a
    fresh ECDH key pair per pairing, and a fake charger reflecting the phone's own public
    key is refused (CVE-2020-26558 pattern). Subclasses Bumble's internal ``smp.Session``
    (Bumble is pinned)."""

    class PhoneSession(smp.Session):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if self.pairing_config.oob is None:
                self.ecc_key = type(self.ecc_key).generate()

        def on_smp_pairing_public_key_command(
            self, command: smp.SMP_Pairing_Public_Key_Command
        ) -> None:
            if command.public_key_x == self.ecc_key.x[::-1]:
                log.warning("refused pairing: the charger reflected this phone's public key")
                self.send_pairing_failed(smp.ErrorCode.DHKEY_CHECK_FAILED)
                return
            super().on_smp_pairing_public_key_command(command)

    return PhoneSession


class _KeyboardDelegate(PairingDelegate):
    """Passkey mode: the phone 'types' the charger's PIN as the LE SC passkey."""

    def __init__(self, pin: str) -> None:
        super().__init__(io_capability=PairingDelegate.DISPLAY_OUTPUT_AND_KEYBOARD_INPUT)
        self._pin = pin

    async def get_number(self) -> int | None:
        return int(self._pin)


class PhoneCentral:
    """One Bumble device for the app, attached to ``transport`` (``tcp-client:...``,
    ``usb:0``, ...)."""

    def __init__(self, transport: str, *, rng: RandomSource, name: str = "evaccess-app") -> None:
        self._spec = transport
        self._rng = rng
        self._name = name
        self._transport: Transport | None = None
        self.device: Device | None = None

    async def __aenter__(self) -> Self:
        silence_secret_debug_logs()
        try:
            self._transport = await open_transport(self._spec)
        except (TransportSpecError, TransportInitError) as exc:
            raise InvalidInput(
                f"cannot open Bluetooth transport {self._spec!r} ({type(exc).__name__})"
            ) from None
        address = bytearray(self._rng.token_bytes(6))
        address[5] |= 0xC0  # static random address (Core Vol 6 Part B 1.3.2.1)
        device = Device.with_hci(
            self._name,
            Address(bytes(address), Address.RANDOM_DEVICE_ADDRESS),
            self._transport.source,
            self._transport.sink,
        )
        device.irk = self._rng.token_bytes(16)
        device.smp_manager.session_proxy = _hardened_session()
        await device.power_on()
        self.device = device
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.device is not None:
            for connection in list(self.device.connections.values()):
                await disconnect_quietly(connection)
            await self.device.power_off()
        if self._transport is not None:
            await self._transport.close()

    async def find(self, serial: str, within_s: float = SCAN_TIMEOUT_S) -> Address:
        """Scan for the charger advertising ``evaccess-SERIAL``."""
        assert self.device is not None
        wanted = proto.advertised_name(serial)
        found: asyncio.Future[Address] = asyncio.get_running_loop().create_future()

        def on_advertisement(advertisement: Advertisement) -> None:
            name = advertisement.data.get(AdvertisingData.COMPLETE_LOCAL_NAME)
            if name == wanted and not found.done() and advertisement.is_connectable:
                found.set_result(advertisement.address)

        self.device.on(self.device.EVENT_ADVERTISEMENT, on_advertisement)
        await self.device.start_scanning(filter_duplicates=False, scan_interval=20, scan_window=20)
        try:
            return await asyncio.wait_for(found, within_s)
        except TimeoutError:
            raise NotFound(f"charger {serial} is not in Bluetooth range") from None
        finally:
            self.device.remove_listener(self.device.EVENT_ADVERTISEMENT, on_advertisement)
            await self.device.stop_scanning()

    async def connect(
        self,
        serial: str,
        within_s: float = CONNECT_TIMEOUT_S,
        *,
        known: KnownCharger | None = None,
    ) -> ChargerSession:
        """Connect to the charger: straight to its ``known`` address (a charger keeps its
        static address) with its cached handles, else by scanning and discovering."""
        assert self.device is not None
        if known is not None:
            connection = await self._try_connect(Address(known.address), DIRECT_CONNECT_S)
            if connection is not None:
                session = ChargerSession(connection, serial=serial, rng=self._rng)
                await session.use_handles(known.handles)
                return session
        address = await self.find(serial, within_s)
        connection = await self._try_connect(address, within_s)
        if connection is None:
            raise NotFound(f"charger {serial} did not accept the connection")
        session = ChargerSession(connection, serial=serial, rng=self._rng)
        await session.discover()
        return session

    async def _try_connect(self, address: Address, within_s: float) -> Connection | None:
        """Connect, or ``None`` after ``within_s``: Bumble then cancels the attempt at the
        controller (LE Create Connection Cancel), so the controller is free again."""
        assert self.device is not None
        try:
            # Bumble's connect(timeout=...) on the virtual controller never times out when
            # nobody advertises (the cancellation is never reported): the outer wait_for bounds it.
            return await asyncio.wait_for(
                self.device.connect(address, timeout=within_s), within_s + CANCEL_GRACE_S
            )
        except (TimeoutError, BumbleTimeoutError, ProtocolError, BumbleConnectionError):
            return None


@dataclass(frozen=True, kw_only=True, slots=True)
class KnownCharger:
    """What a phone remembers about a charger it paired with (no secret here)."""

    address: str
    handles: Mapping[UUID, int]


class ChargerSession:
    """One connection to a charger's Access Service."""

    def __init__(self, connection: Connection, *, serial: str, rng: RandomSource) -> None:
        self.connection = connection
        self.serial = serial
        self._rng = rng
        self._peer = Peer(connection)
        self.handles: dict[UUID, int] = {}
        self._discovered = False
        self.cipher: proto.SessionCipher | None = None
        self._info_nonce: bytes | None = None

    @property
    def known(self) -> KnownCharger:
        return KnownCharger(address=str(self.connection.peer_address), handles=dict(self.handles))

    async def discover(self) -> None:
        await self._peer.request_mtu(MTU)
        services = await self._peer.discover_services([BtUUID(str(proto.SERVICE_UUID))])
        if not services:
            raise NotFound(f"charger {self.serial} does not offer the evaccess service")
        characteristics = await services[0].discover_characteristics()
        by_uuid = {UUID(str(c.uuid).replace("-", "").lower()): c for c in characteristics}
        wanted = [spec.uuid for spec in proto.CHARACTERISTICS]
        missing = [uuid for uuid in wanted if uuid not in by_uuid]
        if missing:
            raise NotFound(f"charger {self.serial} lacks part of the evaccess service")
        self.handles = {uuid: by_uuid[uuid].handle for uuid in wanted}
        self._discovered = True

    async def use_handles(self, handles: Mapping[UUID, int]) -> None:
        """Skip discovery with handles from an earlier connection (GATT caching); a session
        that finds them stale rediscovers (``rediscover``)."""
        await self._peer.request_mtu(MTU)
        self.handles = dict(handles)
        self._discovered = False

    async def rediscover(self) -> bool:
        """Discover again if the handles came from a cache; False if they were fresh."""
        if self._discovered:
            return False
        await self.discover()
        return True

    async def close(self) -> None:
        await disconnect_quietly(self.connection)

    async def info(self) -> proto.ChargerInfo:
        raw = await self._read(proto.INFO_UUID)
        info = proto.ChargerInfo.from_frame(proto.decode(bytes(raw)))
        proto.negotiate_version(info.versions)
        self._info_nonce = info.nonce
        return info

    async def _read(self, uuid: UUID) -> bytes:
        return bytes(await self.connection.gatt_client.read_value(self.handles[uuid]))

    async def _write(self, uuid: UUID, value: bytes, *, with_response: bool = True) -> None:
        await self.connection.gatt_client.write_value(
            self.handles[uuid], value, with_response=with_response
        )

    async def _exchange(self, request: bytes) -> bytes:
        """Section 3.5: the request as a Write Command, then read the reply (one round trip)."""
        await self._write(proto.ACCESS_UUID, request, with_response=False)
        return await self._read(proto.ACCESS_UUID)

    async def pair_link_with_passkey(self, pin: str) -> None:
        """Passkey mode: LE SC Passkey Entry with the PIN (section 9)."""
        assert self.connection.device is not None
        self.connection.device.pairing_config_factory = lambda _c: PairingConfig(
            sc=True, mitm=True, bonding=False, delegate=_KeyboardDelegate(pin)
        )
        try:
            await self.connection.pair()
        except ProtocolError as exc:
            if exc.error_code == SmpErrorCode.CONFIRM_VALUE_FAILED:
                raise proto.WrongPin("wrong PIN") from None
            if exc.error_code == SmpErrorCode.REPEATED_ATTEMPTS:
                raise LockedOut(
                    "too many wrong PINs: pairing is locked; try again later", retry_after=0.0
                ) from None
            raise NotAuthenticated(
                f"the charger refused Bluetooth pairing ({exc.error_name})"
            ) from None

    async def enrol(self, *, phone_id: bytes, pin: str | None) -> bytes:
        """Sections 5.1-5.3: the CPace exchange; returns the credential secret. It uses the
        charger nonce of the INFO read just before on this link (each nonce once), or reads
        INFO again."""
        nonce_c, self._info_nonce = self._info_nonce, None
        if nonce_c is None:
            await self.info()
            nonce_c, self._info_nonce = self._info_nonce, None
        assert nonce_c is not None
        pake = proto.PhonePake(
            phone_id=phone_id,
            serial=self.serial,
            pin=pin,
            nonce_c=nonce_c,
            random_bytes=self._rng.token_bytes,
        )
        reply = await self._exchange(pake.start())
        confirm = pake.on_reply(reply)
        answer = await self._exchange(confirm)
        secret, cipher = pake.on_credential(answer)
        self.cipher = cipher
        return secret

    async def authenticate(self, *, phone_id: bytes, secret: bytes) -> None:
        """Section 5.4: challenge-response with the credential."""
        auth = proto.PhoneAuth(
            phone_id=phone_id,
            serial=self.serial,
            secret=secret,
            nonce=self._rng.token_bytes(proto.NONCE_BYTES),
        )
        challenge = await self._exchange(auth.begin())
        ok = await self._exchange(auth.on_challenge(challenge))
        self.cipher = auth.on_ok(ok)

    async def forget(self, *, phone_id: bytes) -> None:
        if self.cipher is None:
            raise NotAuthenticated("authenticate first")
        reply = await self._exchange(proto.forget_request(self.cipher, phone_id))
        proto.expect_reply(reply, proto.MessageType.FORGOTTEN)
        self.cipher = None

    async def read_setting(self, uuid: UUID) -> dict[str, Any]:
        cipher = self._require_session()
        try:
            raw = await self._read(uuid)
        except ATT_Error as exc:
            raise _att_error(exc) from None
        return proto.open_json(cipher, uuid, bytes(raw))

    async def write_setting(self, uuid: UUID, value: dict[str, Any]) -> None:
        cipher = self._require_session()
        try:
            await self._write(uuid, proto.seal_json(cipher, uuid, value))
        except ATT_Error as exc:
            raise _att_error(exc) from None

    async def raw_read(self, uuid: UUID) -> bytes:
        """Read a characteristic without a session (tests: refusal of unauthenticated reads)."""
        try:
            return await self._read(uuid)
        except ATT_Error as exc:
            raise _att_error(exc) from None

    async def raw_write(self, uuid: UUID, value: bytes) -> None:
        try:
            await self._write(uuid, value)
        except ATT_Error as exc:
            raise _att_error(exc) from None

    def _require_session(self) -> proto.SessionCipher:
        if self.cipher is None:
            raise NotAuthenticated("authenticate first")
        return self.cipher


def _att_error(exc: ATT_Error) -> EvAccessError:
    return proto.att_exception(exc.error_code)
