"""Keys live outside the database, behind one narrow port.

Three kinds of key: the Bluetooth PIN *vault* keys (versioned: rotation adds a version and
re-encrypts), the *audit* chain key and the keypad *pepper*. The default adapter keeps one
file per key under ``DATA_DIR/keys`` (created 0600 on first start, directory 0700); the
environment adapter reads them from ``EVACCESS_KEYS`` for deployments whose secrets come
from an orchestrator.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from evaccess.domain.clock import RandomSource
from evaccess.domain.errors import ConfigurationError

KEY_BYTES = 32
_VAULT_FILE = re.compile(r"^vault-v(\d+)\.key$")


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyRing:
    vault: dict[int, bytes]
    audit: bytes
    keypad_pepper: bytes

    @property
    def vault_version(self) -> int:
        return max(self.vault)


class KeyProvider(Protocol):
    def load(self) -> KeyRing:
        """The current keys (cheap: called for every keypad entry)."""

    def reload(self) -> KeyRing:
        """The keys as they are now (another process may have added a vault version)."""

    def add_vault_key(self, rng: RandomSource) -> int:
        """Create the next vault key version; returns its number."""


class FileKeyProvider:
    """One base64 file per key in ``directory``; missing keys are created on first use.

    Keys are read once and kept. A rotation (another process adding ``vault-vN.key``) is
    noticed by one ``stat`` of the directory, at most every ``recheck_s`` seconds, or at
    once through ``reload()`` when a ciphertext names a version not loaded yet."""

    def __init__(self, directory: Path, rng: RandomSource, *, recheck_s: float = 1.0) -> None:
        self.directory = directory
        self._rng = rng
        self._recheck_s = recheck_s
        self._ring: KeyRing | None = None
        self._mtime_ns = -1
        self._checked_at = float("-inf")

    def load(self) -> KeyRing:
        now = time.monotonic()
        if self._ring is not None and now - self._checked_at < self._recheck_s:
            return self._ring
        self._checked_at = now
        if self._ring is None:
            self._ensure()
        mtime_ns = os.stat(self.directory).st_mtime_ns
        if self._ring is None or mtime_ns != self._mtime_ns:
            self._ring, self._mtime_ns = self._read_all(), mtime_ns
        return self._ring

    def reload(self) -> KeyRing:
        self._checked_at = float("-inf")
        return self.load()

    def _read_all(self) -> KeyRing:
        names = os.listdir(self.directory)
        vault = {
            int(m.group(1)): self._read(name)
            for name in names
            if (m := _VAULT_FILE.match(name)) is not None
        }
        return KeyRing(
            vault=vault,
            audit=self._read("audit.key"),
            keypad_pepper=self._read("keypad-pepper.key"),
        )

    def add_vault_key(self, rng: RandomSource) -> int:
        version = self.reload().vault_version + 1
        self._create(f"vault-v{version}.key", rng)
        self.reload()
        return version

    def _ensure(self) -> None:
        if not self.directory.exists():
            self.directory.mkdir(parents=True, mode=0o700)
        for name in ("audit.key", "keypad-pepper.key"):
            if not (self.directory / name).exists():
                self._create(name, self._rng)
        if not any(_VAULT_FILE.match(n) for n in os.listdir(self.directory)):
            self._create("vault-v1.key", self._rng)

    def _create(self, name: str, rng: RandomSource) -> None:
        path = self.directory / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return  # another process created it first: use theirs
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(rng.token_bytes(KEY_BYTES)).decode() + "\n")

    def _read(self, name: str) -> bytes:
        path = self.directory / name
        if path.stat().st_mode & 0o077:
            raise ConfigurationError(f"key file {path} is readable by others: chmod 600 it")
        return _decode(path.read_text().strip(), name)


class EnvKeyProvider:
    """Keys from the ``EVACCESS_KEYS`` JSON document (read-only: rotate by deploying a new
    document with one more vault version, then running ``evaccess admin rotate-keys``)."""

    def __init__(self, document: str) -> None:
        try:
            data = json.loads(document)
            self._ring = KeyRing(
                vault={int(v): _decode(k, f"vault v{v}") for v, k in data["vault"].items()},
                audit=_decode(data["audit"], "audit"),
                keypad_pepper=_decode(data["keypad_pepper"], "keypad_pepper"),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ConfigurationError(
                'EVACCESS_KEYS must be JSON: {"vault": {"1": b64}, "audit": b64, "keypad_pepper": b64}'
            ) from None
        if not self._ring.vault:
            raise ConfigurationError("EVACCESS_KEYS holds no vault key")

    def load(self) -> KeyRing:
        return self._ring

    def reload(self) -> KeyRing:
        return self._ring

    def add_vault_key(self, rng: RandomSource) -> int:
        raise ConfigurationError(
            "keys come from EVACCESS_KEYS: add a vault version there, then rotate"
        )


def _decode(text: str, name: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"key {name} is not base64") from None
    if len(key) != KEY_BYTES:
        raise ConfigurationError(f"key {name} must be {KEY_BYTES} bytes")
    return key
