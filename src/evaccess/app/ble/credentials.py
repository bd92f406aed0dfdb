"""The phone's Bluetooth identity and the credentials chargers issued it, under
``app_home()`` (directory 0700, files 0600): ``credentials/SERIAL.json`` (one phone id per
charger in each)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from evaccess.app.session import app_home
from evaccess.domain.clock import RandomSource
from evaccess.domain.errors import IntegrityFailure, InvalidInput, NotFound
from evaccess.protocol.ble_access import PHONE_ID_BYTES

_SERIAL = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True, kw_only=True, slots=True)
class PairedCharger:
    serial: str
    phone_id: bytes
    secret: bytes
    address: str | None = None
    """The charger's static address, to reconnect without scanning."""
    handles: dict[str, int] = field(default_factory=dict)
    """GATT handles by characteristic UUID (GATT caching; rediscovered when stale)."""

    def __repr__(self) -> str:  # never print the secret
        return f"PairedCharger(serial={self.serial!r}, phone_id={self.phone_id.hex()!r})"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)


class CredentialStore:
    def __init__(self, home: Path | None = None) -> None:
        self.home = home or app_home()
        self._dir = self.home / "credentials"

    def phone_id(self, rng: RandomSource, serial: str) -> bytes:
        """The id this phone shows charger ``serial``: the one of its credential there, else
        a fresh random one. One id per charger, never per installation: PHONE_ID travels in
        clear (docs/ble-protocol.md section 11), and a shared id would let a listener follow
        the phone from charger to charger."""
        try:
            return self.load(serial).phone_id
        except NotFound:
            return rng.token_bytes(PHONE_ID_BYTES)

    def _path(self, serial: str) -> Path:
        if not _SERIAL.match(serial):
            raise InvalidInput("a charger serial is letters, digits, '.', '_' or '-'")
        return self._dir / f"{serial}.json"

    def save(self, credential: PairedCharger) -> Path:
        path = self._path(credential.serial)
        _write_private(
            path,
            json.dumps(
                {
                    "serial": credential.serial,
                    "phone_id": credential.phone_id.hex(),
                    "secret": credential.secret.hex(),
                    "address": credential.address,
                    "handles": credential.handles,
                }
            ),
        )
        return path

    def load(self, serial: str) -> PairedCharger:
        path = self._path(serial)
        try:
            data = json.loads(path.read_text())
            return PairedCharger(
                serial=data["serial"],
                phone_id=bytes.fromhex(data["phone_id"]),
                secret=bytes.fromhex(data["secret"]),
                address=data.get("address"),
                handles={str(k): int(v) for k, v in (data.get("handles") or {}).items()},
            )
        except FileNotFoundError:
            raise NotFound(
                f"this phone is not paired with charger {serial}: run `evaccess app pair`"
            ) from None
        except (ValueError, KeyError, TypeError):
            raise IntegrityFailure(f"the credential for charger {serial} is unreadable") from None

    def find(self, serial: str) -> PairedCharger | None:
        try:
            return self.load(serial)
        except NotFound:
            return None

    def delete(self, serial: str) -> None:
        self._path(serial).unlink(missing_ok=True)
