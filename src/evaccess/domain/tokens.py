"""RFID cards and other OCPP identification tokens of a user: formats, status, answers.

OCPP 2.0.1 ``IdTokenEnumType`` names the kinds; evaccess registers the ones a charger reads
or a back office issues (ISO14443, ISO15693, Central, eMAID, MacAddress). KeyCode tokens
are keypad PINs (``domain.pins``). An ``idToken`` is case insensitive (2.0.1 §2.46
IdTokenType) and at most 36 characters; a 1.6J ``idTag`` at most 20: each value is
normalised before it is digested, so the form a reader sends does not matter.

Everything here is pure: the database, keys and clock are the caller's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from evaccess.domain.errors import InvalidInput

MAX_ID_TOKEN = 36
"""IdTokenType.idToken (2.0.1): identifierString of at most 36 characters."""
MAX_LABEL = 100
MASK_VISIBLE = 4
"""Characters of a card number shown to people (the last ones, like a bank card)."""
DEFAULT_CACHE_TTL_S = 3600.0
"""How long a charger may keep an answer in its authorization cache (``cacheExpiryDateTime``):
the bound on how long a revoked card may still work off line when ClearCache cannot reach it."""


class TokenType(StrEnum):
    """The registrable kinds (2.0.1 IdTokenEnumType wire names)."""

    ISO14443 = "ISO14443"
    ISO15693 = "ISO15693"
    CENTRAL = "Central"
    EMAID = "eMAID"
    MAC_ADDRESS = "MacAddress"


class TokenStatus(StrEnum):
    """What is stored; ``Expired`` is not stored but follows from ``expires_at``."""

    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"


class Answer(StrEnum):
    """AuthorizationStatusEnumType (2.0.1) values evaccess answers for a registered token;
    1.6J ``AuthorizationStatus`` has all but ``Unknown`` (answered ``Invalid`` there)."""

    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    UNKNOWN = "Unknown"


_HEX = re.compile(r"[0-9A-F]+")
_EMAID = re.compile(r"([A-Z]{2})-?([A-Z0-9]{3})-?([A-Z0-9]{9})(?:-?([A-Z0-9]))?")
"""ISO 15118-2 Annex H / DIN SPEC 91286 eMAID: country, provider, instance, optional check
character, optionally separated by dashes (14 or 15 characters without them)."""
_PRINTABLE = re.compile(r"[\x21-\x7e]+")


def _hex(value: str, lengths: tuple[int, ...], what: str) -> str:
    if len(value) not in lengths or not _HEX.fullmatch(value):
        sizes = " or ".join(str(n) for n in lengths)
        raise InvalidInput(f"{what} must be {sizes} hexadecimal characters", code="bad_card_number")
    return value


def normalise(token_type: TokenType, value: str) -> str:
    """The canonical form of a token value (upper case; no separators), or ``InvalidInput``
    naming the expected format (never echoing the value)."""
    raw = value.strip().upper()
    match token_type:
        case TokenType.ISO14443:
            # A 4- or 7-byte UID (ISO/IEC 14443-3 single and double size), hex.
            return _hex(raw, (8, 14), "an ISO14443 card number")
        case TokenType.ISO15693:
            # The 8-byte UID (ISO/IEC 15693-3), hex.
            return _hex(raw, (16,), "an ISO15693 card number")
        case TokenType.MAC_ADDRESS:
            return _hex(re.sub(r"[:\-]", "", raw), (12,), "a MAC address")
        case TokenType.EMAID:
            found = _EMAID.fullmatch(raw)
            if found is None:
                raise InvalidInput(
                    "an eMAID is country (2 letters), provider (3), instance (9) and an "
                    "optional check character, dashes allowed between them",
                    code="bad_card_number",
                )
            return "".join(part for part in found.groups() if part)
        case TokenType.CENTRAL:
            if not raw or len(raw) > MAX_ID_TOKEN or not _PRINTABLE.fullmatch(raw):
                raise InvalidInput(
                    f"a Central token is 1 to {MAX_ID_TOKEN} printable characters, no spaces",
                    code="bad_card_number",
                )
            return raw


def parse_type(name: str) -> TokenType:
    """A token type from its wire name, case insensitive (``iso14443``, ``emaid``...)."""
    for token_type in TokenType:
        if token_type.value.casefold() == name.strip().casefold():
            return token_type
    raise InvalidInput(
        "token type must be one of " + ", ".join(t.value for t in TokenType), code="bad_token_type"
    )


def check_group(group_id_token: str | None) -> str | None:
    """A ``groupIdToken`` (2.0.1 IdTokenInfo; 1.6 ``parentIdTag``, at most 20 characters)."""
    if group_id_token is None or not group_id_token.strip():
        return None
    group = group_id_token.strip().upper()
    if len(group) > 20 or not _PRINTABLE.fullmatch(group):
        raise InvalidInput(
            "a group id is 1 to 20 printable characters, no spaces (1.6J parentIdTag)",
            code="bad_group_id",
        )
    return group


def check_label(label: str | None) -> str | None:
    if label is None or not label.strip():
        return None
    if len(label) > MAX_LABEL or any(not ch.isprintable() for ch in label):
        raise InvalidInput(f"a label is at most {MAX_LABEL} printable characters", code="bad_label")
    return label.strip()


def mask(normalised: str) -> str:
    """What people are shown of a card number: its last characters only."""
    return "…" + normalised[-MASK_VISIBLE:]


def effective_status(status: TokenStatus, expires_at: datetime | None, now: datetime) -> Answer:
    """Blocked wins over Expired; a token past its expiry is Expired (2.0.1 C05)."""
    if status is TokenStatus.BLOCKED:
        return Answer.BLOCKED
    if expires_at is not None and now >= expires_at:
        return Answer.EXPIRED
    return Answer.ACCEPTED


class Purpose(StrEnum):
    """What a charger wants the token for."""

    AUTHORIZE = "authorize"
    """Authorize: the charger decides with the answer (and its groupIdToken) what to do."""
    START = "start"
    """A transaction starts (or goes on) on this token."""
    STOP = "stop"
    """A transaction ends on this token."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenFacts:
    status: TokenStatus
    expires_at: datetime | None
    allowed_here: bool
    """Its user may use this charger (the keypad's access check)."""
    master_pass: bool
    """Its group is the charger organisation's ``MasterPassGroupId``."""


def decide(facts: TokenFacts, purpose: Purpose, now: datetime) -> Answer:
    """The answer for a registered token.

    Blocked and Expired are answered as such wherever the token is shown. A master pass
    (2.0.1 C16) may stop any transaction and start none: it is Accepted for Authorize
    (with its groupIdToken, from which the charger knows it may only stop) and for a stop
    at any charger, and Invalid for a start."""
    state = effective_status(facts.status, facts.expires_at, now)
    if state is not Answer.ACCEPTED:
        return state
    if facts.master_pass:
        return Answer.INVALID if purpose is Purpose.START else Answer.ACCEPTED
    return Answer.ACCEPTED if facts.allowed_here else Answer.INVALID


def cache_expiry(now: datetime, ttl_s: float, expires_at: datetime | None) -> datetime:
    """``cacheExpiryDateTime``: within ``ttl_s``, and never after the token's own expiry."""
    bound = now + timedelta(seconds=ttl_s)
    return bound if expires_at is None else min(bound, expires_at)
