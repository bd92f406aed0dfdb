"""Firmware versions compared as versions, not strings: "6.10.2" < "6.11"."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from evaccess.domain.errors import InvalidInput

_LEADING = re.compile(r"^\s*[vV]?(\d+(?:\.\d+)*)")
# Dotted numbers, an optional "v" before them and an optional suffix after a separator:
# "6.11.2", "v6.7.17", "6.10.2-rc1", "1.0.0+build.5". Not "6..11", "6.", "six.eleven".
_FIRMWARE = re.compile(r"[vV]?\d+(?:\.\d+)*(?:[-+_~][0-9A-Za-z]+(?:[-+_~.][0-9A-Za-z]+)*)?")
MAX_FIRMWARE_LENGTH = 64


@total_ordering
@dataclass(frozen=True, slots=True)
class Version:
    """The leading dotted-numeric part of a firmware string; trailing zeros do not count."""

    parts: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> Version | None:
        """Parse ``"6.11"``, ``"v6.7.17"``, ``"6.10.2-rc1"``; ``None`` if no number leads."""
        match = _LEADING.match(text)
        if match is None:
            return None
        parts = [int(p) for p in match.group(1).split(".")]
        while len(parts) > 1 and parts[-1] == 0:
            parts.pop()
        return cls(tuple(parts))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.parts < other.parts

    def __str__(self) -> str:
        return ".".join(map(str, self.parts))


def version(text: str) -> Version:
    """Parse a version literal written in source code (raises on a typo)."""
    parsed = Version.parse(text)
    if parsed is None:
        raise ValueError(f"not a version: {text!r}")
    return parsed


def firmware_version(text: str) -> Version:
    """A firmware version where it enters evaccess (an administrator, the REST API, a
    BootNotification). The PIN policy reads it, so a value that is not a version is refused,
    named, instead of silently counting as "too old"."""
    if len(text) > MAX_FIRMWARE_LENGTH or _FIRMWARE.fullmatch(text) is None:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise InvalidInput(f"firmware {shown!r} is not a version like 6.11.2 or v6.7.17-rc1")
    parsed = Version.parse(text)
    assert parsed is not None  # the pattern starts with what Version.parse reads
    return parsed
