"""The commissioning sticker's payload: ``EVA1:<serial>:<code>``.

``EVA1`` names the format and its version (a later format is refused by name, not misread);
the serial is the charger's; the code is the one-time commissioning code, 100 random bits
written as 20 characters of RFC 4648 base32 without padding (upper case: QR alphanumeric
mode keeps the symbol small). Pure: no I/O, no randomness (the caller passes the bytes).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from evaccess.domain.errors import InvalidInput

PREFIX = "EVA"
VERSION = 1
CODE_BYTES = 13
"""Random bytes drawn for a code; 100 of their 104 bits are kept (at least 80 required)."""
CODE_CHARS = 20
"""A code is 20 base32 characters: 100 bits."""
CODE_BITS = CODE_CHARS * 5
_SERIAL = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_CODE = re.compile(rf"^[A-Z2-7]{{{CODE_CHARS}}}$")


@dataclass(frozen=True, kw_only=True, slots=True)
class StickerPayload:
    serial: str
    code: str

    def __post_init__(self) -> None:
        if not _SERIAL.match(self.serial):
            raise InvalidInput("a sticker's serial has 1-64 letters, digits, '-', '_' or '.'")
        if not _CODE.match(self.code):
            raise InvalidInput(f"a sticker's commissioning code has {CODE_CHARS} base32 characters")

    def format(self) -> str:
        return f"{PREFIX}{VERSION}:{self.serial}:{self.code}"


def code_from_bytes(random_bytes: bytes) -> str:
    """The code for ``random_bytes`` (at least ``CODE_BYTES`` of them)."""
    if len(random_bytes) < CODE_BYTES:
        raise ValueError(f"a commissioning code needs {CODE_BYTES} random bytes")
    return base64.b32encode(random_bytes[:CODE_BYTES]).decode()[:CODE_CHARS]


def normalise_code(code: str) -> str:
    """A code as people may type it (lower case, spaces, dashes) in its canonical form."""
    return code.replace(" ", "").replace("-", "").upper()


def parse(text: str) -> StickerPayload:
    """The payload read from a sticker, or ``InvalidInput`` saying what is wrong (never
    echoing the code)."""
    text = text.strip()
    head, sep, rest = text.partition(":")
    if not sep or not head.upper().startswith(PREFIX):
        raise InvalidInput("this is not an evaccess commissioning sticker (it starts with EVA1:)")
    version = head[len(PREFIX) :]
    if not version.isdigit():
        raise InvalidInput("this is not an evaccess commissioning sticker (it starts with EVA1:)")
    if int(version) != VERSION:
        raise InvalidInput(
            f"sticker format version {int(version)} is not supported (this app reads {VERSION})"
        )
    serial, sep, code = rest.rpartition(":")
    if not sep:
        raise InvalidInput("the sticker's payload has no commissioning code")
    code = normalise_code(code)
    if len(code) == CODE_CHARS and not _CODE.match(code):
        raise InvalidInput("the sticker's commissioning code is not base32")
    return StickerPayload(serial=serial, code=code)
