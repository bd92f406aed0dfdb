"""What the charger's Bluetooth half keeps across restarts, under ``state_dir`` (0600).

- ``ble-credentials.json``: one credential per phone id. The charger needs each secret to
  check the phone's HMAC (docs/ble-protocol.md section 5.4), so the secrets are stored as-is;
  the file is created 0600 in a 0700 directory and replaced atomically.
- ``ble-lockout.json``: the PIN lockout state (``domain.lockout``), times in epoch seconds.
- ``ble-settings.json``: the settings phones wrote that are not secret (Wi-Fi SSID, current
  limit); the Wi-Fi password is never stored (``charger.ble.settings``).
- ``ble-identity.json``: the charger's static random address and IRK, kept across restarts
  (Core Vol 6 Part B 1.3.2.1: a static address does not change while powered; phones find a
  charger they know without scanning, and resolve its private addresses with the IRK).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from evaccess.domain.clock import RandomSource
from evaccess.domain.errors import IntegrityFailure
from evaccess.domain.lockout import LockoutState
from evaccess.protocol.ble_access import StoredCredential


def write_private(path: Path, data: Any) -> None:
    """Atomically replace ``path`` with JSON, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        raise IntegrityFailure(f"{path.name} is unreadable") from None


class IssuedCredentials:
    """The credentials this charger issued, by phone id (hex)."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / "ble-credentials.json"
        raw = _read(self._path) or {}
        self._items: dict[bytes, StoredCredential] = {
            bytes.fromhex(phone_id): StoredCredential(
                phone_id=bytes.fromhex(phone_id),
                secret=bytes.fromhex(entry["secret"]),
                with_pin=bool(entry["with_pin"]),
            )
            for phone_id, entry in raw.items()
        }

    def get(self, phone_id: bytes) -> StoredCredential | None:
        return self._items.get(phone_id)

    def put(self, credential: StoredCredential) -> None:
        self._items[credential.phone_id] = credential
        self._save()

    def delete(self, phone_id: bytes) -> bool:
        found = self._items.pop(phone_id, None) is not None
        if found:
            self._save()
        return found

    def delete_where(self, *, with_pin: bool) -> list[bytes]:
        gone = [pid for pid, cred in self._items.items() if cred.with_pin is with_pin]
        for phone_id in gone:
            del self._items[phone_id]
        if gone:
            self._save()
        return gone

    def clear(self) -> list[bytes]:
        gone = list(self._items)
        self._items.clear()
        self._save()
        return gone

    def __len__(self) -> int:
        return len(self._items)

    def _save(self) -> None:
        write_private(
            self._path,
            {
                cred.phone_id.hex(): {"secret": cred.secret.hex(), "with_pin": cred.with_pin}
                for cred in self._items.values()
            },
        )


class LockoutStore:
    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / "ble-lockout.json"

    def load(self) -> LockoutState:
        raw = _read(self._path)
        if not raw:
            return LockoutState()
        return LockoutState(
            failures=tuple(float(t) for t in raw["failures"]),
            locked_until=float(raw["locked_until"]),
            level=int(raw["level"]),
            consecutive_failures=int(raw["consecutive_failures"]),
            disabled=bool(raw["disabled"]),
        )

    def save(self, state: LockoutState) -> None:
        data = asdict(state)
        data["failures"] = list(state.failures)
        write_private(self._path, data)


class SettingsStore:
    """The non-secret settings phones wrote (``ChargerSettings.values`` of ``PERSISTED`` keys)."""

    PERSISTED = ("wifi_ssid", "current_limit_a")

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / "ble-settings.json"

    def load(self) -> dict[str, Any]:
        raw = _read(self._path)
        if not isinstance(raw, dict):
            return {}
        return {key: raw[key] for key in self.PERSISTED if key in raw}

    def save(self, values: dict[str, Any]) -> None:
        write_private(self._path, {k: values[k] for k in self.PERSISTED if k in values})


def load_identity(state_dir: Path, rng: RandomSource) -> tuple[bytes, bytes]:
    """(static random address as 6 little-endian bytes, IRK), created on first start."""
    path = state_dir / "ble-identity.json"
    raw = _read(path)
    if raw:
        return bytes.fromhex(raw["address"]), bytes.fromhex(raw["irk"])
    address = bytearray(rng.token_bytes(6))
    address[5] |= 0xC0  # static random address: the two most significant bits are 1
    irk = rng.token_bytes(16)
    write_private(path, {"address": bytes(address).hex(), "irk": irk.hex()})
    return bytes(address), irk
