"""The charger's persistent state directory (default ``./var/charger/SERIAL``).

One JSON file per concern, each replaced atomically (write a temporary file in the same
directory, ``fsync``, ``os.replace``) so a power cut leaves either the old or the new
version. Every file is created ``0600`` and the directory ``0700``: ``bluetooth.json``
holds the Bluetooth PIN and ``local_list.json`` may hold keypad codes.

Files:

- ``bluetooth.json``: the Bluetooth settings the server provisioned (custom component).
- ``local_list.json``: the local authorization list and its version (OCPP 2.0.1 D01, 1.6 §5.15).
- ``outbox.json``: messages not yet answered by the server (transactions, security events),
  in order, each with a stable id; an entry leaves only after the server's reply.
- ``counters.json``: transaction sequence numbers, 1.6 transaction ids, keypad lockout.
- ``authorization.json``: the authorization cache (2.0.1 C10, 1.6 §3.5.1: answers learnt
  online, each with the expiry the server set) and ``AuthCtrlr.MasterPassGroupId`` (C16).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaccess.charger.ports import BluetoothPinSettings

BLUETOOTH_FILE = "bluetooth.json"
LOCAL_LIST_FILE = "local_list.json"
OUTBOX_FILE = "outbox.json"
COUNTERS_FILE = "counters.json"
AUTHORIZATION_FILE = "authorization.json"


def write_atomically(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600 already; the chmod documents the intent.
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


@dataclass(frozen=True, kw_only=True, slots=True)
class BluetoothState:
    """What the server set on the custom component (``protocol/ocpp_components.py``)."""

    pin: str | None = None
    required: bool = False
    changeable: bool = False
    pairing_enabled: bool = True

    def settings(self) -> BluetoothPinSettings:
        return BluetoothPinSettings(
            pin=self.pin, required=self.required, changeable=self.changeable
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class LocalAuthorization:
    """One local list entry: an idToken (value + type) and its status."""

    id_token: str
    token_type: str
    status: str
    group_id_token: str | None = None
    expires_at: str | None = None
    """``cacheExpiryDateTime`` / ``expiryDate`` of the entry (ISO 8601): answered Expired
    afterwards (a card's own expiry)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CachedAuthorization:
    """One authorization cache entry: an Accepted answer and until when it may be used
    (``cacheExpiryDateTime`` / ``expiryDate``, ISO 8601)."""

    id_token: str
    token_type: str
    expires_at: str
    group_id_token: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthorizationState:
    cache: tuple[CachedAuthorization, ...] = ()
    master_pass_group_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class LocalList:
    version: int = 0
    entries: tuple[LocalAuthorization, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class QueuedMessage:
    """A Call waiting for the server's reply; ``payload`` is the snake_case request."""

    message_id: str
    action: str
    payload: dict[str, Any]
    local_transaction: str | None = None
    """1.6J: the charger's own id of the transaction, resolved to the server's id on send."""


@dataclass(kw_only=True)
class Counters:
    seq_no: int = 0
    transaction_ids: dict[str, int] = field(default_factory=dict)
    keypad_lockout: dict[str, Any] = field(default_factory=dict)
    active_transaction: str | None = None
    """The session in progress; still set at start means the charger lost power mid-session."""


class StateStore:
    """The state directory; every mutation is written through before it returns."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)

    # Bluetooth settings -------------------------------------------------------------------
    def load_bluetooth(self) -> BluetoothState:
        raw = read_json(self.directory / BLUETOOTH_FILE, {})
        return BluetoothState(**raw)

    def save_bluetooth(self, state: BluetoothState) -> None:
        data = {
            "pin": state.pin,
            "required": state.required,
            "changeable": state.changeable,
            "pairing_enabled": state.pairing_enabled,
        }
        write_atomically(self.directory / BLUETOOTH_FILE, data)

    # Local authorization list ---------------------------------------------------------------
    def load_local_list(self) -> LocalList:
        raw = read_json(self.directory / LOCAL_LIST_FILE, {"version": 0, "entries": []})
        entries = tuple(LocalAuthorization(**entry) for entry in raw["entries"])
        return LocalList(version=int(raw["version"]), entries=entries)

    def save_local_list(self, local_list: LocalList) -> None:
        data = {
            "version": local_list.version,
            "entries": [
                {
                    "id_token": e.id_token,
                    "token_type": e.token_type,
                    "status": e.status,
                    "group_id_token": e.group_id_token,
                    "expires_at": e.expires_at,
                }
                for e in local_list.entries
            ],
        }
        write_atomically(self.directory / LOCAL_LIST_FILE, data)

    # Authorization cache and master pass group -----------------------------------------------
    def load_authorization(self) -> AuthorizationState:
        raw = read_json(self.directory / AUTHORIZATION_FILE, {})
        return AuthorizationState(
            cache=tuple(CachedAuthorization(**entry) for entry in raw.get("cache", [])),
            master_pass_group_id=raw.get("master_pass_group_id"),
        )

    def save_authorization(self, state: AuthorizationState) -> None:
        data = {
            "cache": [
                {
                    "id_token": e.id_token,
                    "token_type": e.token_type,
                    "expires_at": e.expires_at,
                    "group_id_token": e.group_id_token,
                }
                for e in state.cache
            ],
            "master_pass_group_id": state.master_pass_group_id,
        }
        write_atomically(self.directory / AUTHORIZATION_FILE, data)

    # Outbox ---------------------------------------------------------------------------------
    def load_outbox(self) -> list[QueuedMessage]:
        raw = read_json(self.directory / OUTBOX_FILE, [])
        return [QueuedMessage(**entry) for entry in raw]

    def save_outbox(self, messages: list[QueuedMessage]) -> None:
        data = [
            {
                "message_id": m.message_id,
                "action": m.action,
                "payload": m.payload,
                "local_transaction": m.local_transaction,
            }
            for m in messages
        ]
        write_atomically(self.directory / OUTBOX_FILE, data)

    # Counters -------------------------------------------------------------------------------
    def load_counters(self) -> Counters:
        raw = read_json(self.directory / COUNTERS_FILE, {})
        return Counters(**raw)

    def save_counters(self, counters: Counters) -> None:
        data = {
            "seq_no": counters.seq_no,
            "transaction_ids": counters.transaction_ids,
            "keypad_lockout": counters.keypad_lockout,
            "active_transaction": counters.active_transaction,
        }
        write_atomically(self.directory / COUNTERS_FILE, data)
