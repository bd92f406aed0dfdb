"""Firmware versions compared as versions, not strings: "6.10.2" < "6.11"."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_LEADING = re.compile(r"^\s*[vV]?(\d+(?:\.\d+)*)")


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
