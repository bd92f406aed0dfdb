"""Where the proofs of ownership claims (purchase agreements) are kept: files outside the
database rows, in a directory of their own (``EVACCESS_CLAIM_DIR``, default
``DATA_DIR/claims``), each under a random name, owner-only permissions (0600 in a 0700
directory). Only support reads them back, through ``services/claims``.

A file is written (temporary name, fsync, rename) before the row that names it commits; a
crash between the two leaves an unnamed file behind, never a row naming a missing file.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

from evaccess.domain.errors import NotFound

_KEY_BYTES = 16


class DocumentStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        if len(key) != 2 * _KEY_BYTES or not all(c in "0123456789abcdef" for c in key):
            raise NotFound("no such document")
        return self.directory / key

    def _put(self, data: bytes) -> str:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = secrets.token_hex(_KEY_BYTES)
        temporary = self.directory / f".{key}.part"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self._path(key))
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return key

    def _get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound("no such document") from None

    async def put(self, data: bytes) -> str:
        """Store ``data``; returns the key that names it."""
        return await asyncio.to_thread(self._put, data)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._get, key)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)
