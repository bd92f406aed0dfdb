"""What the phone app does with a charger over Bluetooth: pair (PIN -> credential),
connect with a credential, configure, forget (docs/ble-protocol.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

from bumble.att import ATT_Error

from evaccess.app.ble.central import ChargerSession, KnownCharger, PhoneCentral
from evaccess.app.ble.credentials import CredentialStore, PairedCharger
from evaccess.domain.clock import RandomSource
from evaccess.domain.errors import Conflict, NotAuthenticated
from evaccess.domain.pins import check_bluetooth_pin_format
from evaccess.protocol import ble_access as proto


@dataclass(frozen=True, kw_only=True, slots=True)
class PairResult:
    serial: str
    phone_id: str
    pin_required: bool
    pin_mode: str


@asynccontextmanager
async def _connected(
    transport: str, serial: str, rng: RandomSource, known: KnownCharger | None = None
) -> AsyncIterator[ChargerSession]:
    async with PhoneCentral(transport, rng=rng) as central:
        session = await central.connect(serial, known=known)
        try:
            yield session
        finally:
            await session.close()


async def pair(
    *,
    transport: str,
    serial: str,
    pin: str | Callable[[], Awaitable[str]] | None,
    store: CredentialStore,
    rng: RandomSource,
) -> PairResult:
    """Prove the PIN (or enrol PIN-less when the charger needs none) and keep the credential.

    ``pin`` may be a function, called only when the charger requires a PIN (revealing a PIN
    on the server is audited, so it is not fetched needlessly). Raises ``WrongPin`` for a
    wrong PIN (one failed guess on the charger), ``LockedOut`` / ``PairingDisabled`` during a
    lockout, ``Conflict`` when a PIN is needed but none given, ``PinRejected`` for a PIN
    that is not 6 digits (before anything is sent: a typo costs no guess).
    """
    if isinstance(pin, str):
        check_bluetooth_pin_format(pin)  # before the radio: not even a connection
    phone_id = store.phone_id(rng, serial)
    async with _connected(transport, serial, rng) as session:
        info = await session.info()
        # A lockout is known from INFO: no attempt, no PIN fetched, and the wait is shown.
        if info.pin_required and info.pairing_state is proto.PairingState.DISABLED:
            raise proto.error_from_frame(proto.error_frame(proto.ErrorCode.PAIRING_DISABLED))
        if info.pin_required and info.pairing_state is proto.PairingState.LOCKED:
            raise proto.error_from_frame(
                proto.error_frame(proto.ErrorCode.LOCKED, retry_after=info.retry_after)
            )
        if info.pin_required and callable(pin):
            pin = check_bluetooth_pin_format(await pin())
        if info.pin_required and pin is None:
            raise Conflict("this charger requires its Bluetooth PIN", code="pin_needed")
        if info.pin_required and info.pin_mode is proto.PinMode.PASSKEY:
            assert isinstance(pin, str)
            await session.pair_link_with_passkey(pin)
            secret = await session.enrol(phone_id=phone_id, pin=None)
        else:
            secret = await session.enrol(
                phone_id=phone_id,
                pin=pin if info.pin_required and isinstance(pin, str) else None,
            )
        known = session.known
        store.save(
            PairedCharger(
                serial=serial,
                phone_id=phone_id,
                secret=secret,
                address=known.address,
                handles={str(uuid): handle for uuid, handle in known.handles.items()},
            )
        )
        return PairResult(
            serial=serial,
            phone_id=phone_id.hex(),
            pin_required=info.pin_required,
            pin_mode=info.pin_mode.value,
        )


@asynccontextmanager
async def authenticated(
    *, transport: str, serial: str, store: CredentialStore, rng: RandomSource
) -> AsyncIterator[ChargerSession]:
    """A session authenticated with this phone's credential (no PIN)."""
    credential = store.load(serial)
    known = None
    if credential.address and credential.handles:
        known = KnownCharger(
            address=credential.address,
            handles={UUID(uuid): handle for uuid, handle in credential.handles.items()},
        )
    async with _connected(transport, serial, rng, known) as session:
        try:
            try:
                await session.authenticate(phone_id=credential.phone_id, secret=credential.secret)
            except (ATT_Error, proto.ProtocolViolation):
                if not await session.rediscover():  # stale cached handles: discover, retry
                    raise
                await session.authenticate(phone_id=credential.phone_id, secret=credential.secret)
        except NotAuthenticated as exc:
            raise NotAuthenticated(
                f"{exc.message}: pair again with `evaccess app pair {serial}`", code=exc.code
            ) from None
        if known is None or session.known != known:
            store.save(
                replace(
                    credential,
                    address=session.known.address,
                    handles={str(u): h for u, h in session.known.handles.items()},
                )
            )
        yield session


@dataclass(frozen=True, kw_only=True, slots=True)
class ConfigChange:
    wifi_ssid: str | None = None
    wifi_password: str | None = None
    current_limit_a: int | None = None
    firmware_update_url: str | None = None
    new_pin: str | None = None

    def __post_init__(self) -> None:
        """Refuse here what the charger would refuse (section 7), before any connection."""
        if self.wifi_ssid is not None:
            proto.check_wifi(self.wifi_ssid, self.wifi_password or "")
        if self.current_limit_a is not None:
            proto.check_current_limit(self.current_limit_a)
        if self.firmware_update_url is not None:
            proto.check_firmware_url(self.firmware_update_url)

    def __repr__(self) -> str:  # the Wi-Fi password and PIN stay out of any repr
        return "ConfigChange(...)"


async def configure(
    *,
    transport: str,
    serial: str,
    change: ConfigChange,
    store: CredentialStore,
    rng: RandomSource,
) -> dict[str, Any]:
    """Apply ``change``; returns the charger's (non-secret) settings read back."""
    async with authenticated(transport=transport, serial=serial, store=store, rng=rng) as s:
        if change.wifi_ssid is not None:
            await s.write_setting(
                proto.WIFI_UUID,
                {"ssid": change.wifi_ssid, "password": change.wifi_password or ""},
            )
        if change.current_limit_a is not None:
            await s.write_setting(proto.CURRENT_LIMIT_UUID, {"amps": change.current_limit_a})
        if change.firmware_update_url is not None:
            await s.write_setting(proto.FIRMWARE_UPDATE_UUID, {"url": change.firmware_update_url})
        if change.new_pin is not None:
            await s.write_setting(proto.PIN_UUID, {"pin": change.new_pin})
        wifi = await s.read_setting(proto.WIFI_UUID)
        limit = await s.read_setting(proto.CURRENT_LIMIT_UUID)
        return {"wifi_ssid": wifi.get("ssid", ""), "current_limit_a": limit.get("amps")}


async def forget(*, transport: str, serial: str, store: CredentialStore, rng: RandomSource) -> None:
    """Ask the charger to drop this phone's credential, then drop it here too."""
    credential: PairedCharger = store.load(serial)
    async with authenticated(transport=transport, serial=serial, store=store, rng=rng) as s:
        await s.forget(phone_id=credential.phone_id)
    store.delete(serial)
