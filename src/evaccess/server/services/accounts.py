"""Accounts: users with argon2id passwords, opaque bearer tokens, throttled login."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import cast

from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from zxcvbn.frequency_lists import FREQUENCY_LISTS  # type: ignore[import-untyped]

from evaccess.domain.access import StaffRole
from evaccess.domain.clock import RandomSource
from evaccess.domain.errors import (
    Conflict,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
)
from evaccess.server.audit import AuditEntry
from evaccess.server.context import Context
from evaccess.server.db.models import ApiToken, User
from evaccess.server.services.relations import Actor

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256


@cache
def common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords, as bundled with zxcvbn (lower-cased)."""
    return frozenset(p.casefold() for p in FREQUENCY_LISTS["passwords"])


def normalise_email(email: str) -> str:
    try:
        return validate_email(email, check_deliverability=False).normalized.casefold()
    except EmailNotValidError:
        raise InvalidInput("not a valid email address") from None


def check_password(password: str, email: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"passwords have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"passwords have at most {MAX_PASSWORD_LENGTH} characters")
    folded = password.casefold()
    if folded in common_passwords() or folded == email.split("@")[0] or folded == email:
        raise InvalidInput("this password is too common; choose another")
    if len(set(password)) < 3:
        raise InvalidInput("this password is too simple; choose another")


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def typed_code(rng: RandomSource, nbytes: int = 32) -> str:
    """A URL-safe random code for a person to paste (an invitation code): ``nbytes`` of
    randomness in base64url, never starting with ``-``, which a command line would take for
    an option (``evaccess app accept -L6QQ…``: "No such option: -L")."""
    while True:
        code = base64.urlsafe_b64encode(rng.token_bytes(nbytes)).rstrip(b"=").decode()
        if not code.startswith("-"):
            return code


@dataclass(frozen=True, kw_only=True, slots=True)
class IssuedToken:
    token: str
    expires_at: datetime
    user_id: str


async def create_user(
    ctx: Context, email: str, password: str, *, is_system_admin: bool = False
) -> User:
    """An account made by an operator (``evaccess admin create-user``) or a test; says
    ``user_exists`` for a registered address, which only an operator gets to see."""
    email = normalise_email(email)
    check_password(password, email)
    password_hash = await asyncio.to_thread(ctx.passwords.hash, password)
    async with ctx.db.transaction() as session:
        if await session.scalar(select(User.id).where(User.email == email)):
            raise Conflict("a user with this email exists", code="user_exists")
        return await _insert_user(ctx, session, email, password_hash, is_system_admin)


async def sign_up(ctx: Context, email: str, password: str) -> None:
    """Self sign-up (``POST /api/users``), only where ``EVACCESS_ALLOW_SIGNUP`` is on.

    Nothing tells a registered address from a new one, as login does not: both cost one
    password hash and one audited write, and both return nothing. A registered address
    keeps its account and password; the attempt is audited (``user.signup_existing``)."""
    if not ctx.allow_signup:
        raise PermissionDenied(
            "self sign-up is off on this server: ask an administrator for an account",
            code="signup_disabled",
        )
    email = normalise_email(email)
    check_password(password, email)
    password_hash = await asyncio.to_thread(ctx.passwords.hash, password)
    async with ctx.db.transaction() as session:
        existing = await session.scalar(select(User.id).where(User.email == email))
        if existing is not None:
            await ctx.audit.append(
                session, AuditEntry(action="user.signup_existing", subject_id=existing)
            )
            return
        await _insert_user(ctx, session, email, password_hash, False)


async def _insert_user(
    ctx: Context, session: AsyncSession, email: str, password_hash: str, is_system_admin: bool
) -> User:
    user = User(
        email=email,
        password_hash=password_hash,
        is_system_admin=is_system_admin,
        created_at=ctx.clock.now(),
    )
    session.add(user)
    await session.flush()
    await ctx.audit.append(session, AuditEntry(action="user.created", subject_id=user.id))
    return user


_DUMMY_HASH: dict[int, str] = {}


async def login(ctx: Context, email: str, password: str, *, client: str) -> IssuedToken:
    """Check a password and issue a token; an unknown email costs the same hash as a known
    one. Throttled per (account, address) pair, and more slowly per account and per address
    (``context.LOGIN_*_RULES``): guesses from one address never lock the owner out at
    another, and a success resets only its own pair, so an attacker cannot wipe the slower
    counters by logging in to an account of their own."""
    try:
        email = normalise_email(email)
    except InvalidInput:
        raise NotAuthenticated("wrong email or password") from None
    throttles = (
        (ctx.login_throttle, f"{email}|{client}"),
        (ctx.login_account_throttle, email),
        (ctx.login_client_throttle, client),
    )
    for throttle, key in throttles:
        await throttle.check(key)
    async with ctx.db.read() as session:
        user = await session.scalar(select(User).where(User.email == email))
    if not await _verify(ctx, user.password_hash if user else None, password):
        for throttle, key in throttles:
            await throttle.failure(key)
        raise NotAuthenticated("wrong email or password")
    assert user is not None
    await ctx.login_throttle.success(f"{email}|{client}")
    token = secrets.token_urlsafe(32)
    now = ctx.clock.now()
    expires = now + timedelta(seconds=ctx.token_ttl_s)
    async with ctx.db.transaction() as session:
        session.add(
            ApiToken(
                user_id=user.id, token_hash=token_digest(token), created_at=now, expires_at=expires
            )
        )
        if ctx.passwords.check_needs_rehash(user.password_hash):
            fresh = await asyncio.to_thread(ctx.passwords.hash, password)
            (await session.get_one(User, user.id)).password_hash = fresh
    return IssuedToken(token=token, expires_at=expires, user_id=user.id)


async def _verify(ctx: Context, stored: str | None, password: str) -> bool:
    if stored is None:
        key = id(ctx.passwords)
        if key not in _DUMMY_HASH:
            _DUMMY_HASH[key] = await asyncio.to_thread(ctx.passwords.hash, secrets.token_hex(8))
        stored = _DUMMY_HASH[key]
        await asyncio.to_thread(_safe_verify, ctx, stored, password)
        return False
    return await asyncio.to_thread(_safe_verify, ctx, stored, password)


def _safe_verify(ctx: Context, stored: str, password: str) -> bool:
    try:
        return bool(ctx.passwords.verify(stored, password))
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, kw_only=True, slots=True)
class SignedIn:
    """Who a token belongs to, and when its session began (the portal asks for the password
    again before a reveal in a session older than a few minutes)."""

    actor: Actor
    started_at: datetime


_TOKENS = cast(Table, ApiToken.__table__)
_USERS = cast(Table, User.__table__)
_TOKEN_OWNER = (
    select(
        _TOKENS.c.revoked_at,
        _TOKENS.c.expires_at,
        _TOKENS.c.created_at,
        _USERS.c.id,
        _USERS.c.email,
        _USERS.c.is_system_admin,
        _USERS.c.staff_role,
    )
    .join(_USERS, _USERS.c.id == _TOKENS.c.user_id)
    .where(_TOKENS.c.token_hash == bindparam("digest"))
)
"""Built once, and Core, not ORM entities: it runs on every authenticated request."""


async def authenticate(ctx: Context, token: str, *, request_id: str | None = None) -> Actor:
    """The actor behind a bearer token (``NotAuthenticated`` if unknown, expired or revoked)."""
    return (await signed_in(ctx, token, request_id=request_id)).actor


async def signed_in(ctx: Context, token: str, *, request_id: str | None = None) -> SignedIn:
    async with ctx.db.lookup() as connection:
        row = (await connection.execute(_TOKEN_OWNER, {"digest": token_digest(token)})).first()
    if row is None:
        raise NotAuthenticated("invalid or expired token")
    if row.revoked_at is not None or row.expires_at <= ctx.clock.now():
        raise NotAuthenticated("invalid or expired token")
    actor = Actor(
        user_id=row.id,
        email=row.email,
        is_system_admin=row.is_system_admin,
        staff_role=StaffRole(row.staff_role) if row.staff_role else None,
        request_id=request_id,
    )
    return SignedIn(actor=actor, started_at=row.created_at)


async def reauthenticate(ctx: Context, token: str, password: str, *, client: str) -> IssuedToken:
    """Confirm the password of the account behind ``token`` (throttled as a login is) and
    replace the token by a fresh one: the session starts again, the old token ends."""
    actor = await authenticate(ctx, token)
    issued = await login(ctx, actor.email, password, client=client)
    await logout(ctx, token)
    return issued


async def logout(ctx: Context, token: str) -> None:
    async with ctx.db.transaction() as session:
        api_token = await session.scalar(
            select(ApiToken).where(ApiToken.token_hash == token_digest(token))
        )
        if api_token is not None and api_token.revoked_at is None:
            api_token.revoked_at = ctx.clock.now()


async def change_password(ctx: Context, actor: Actor, current: str, new: str) -> None:
    """Change one's own password; every other token of the account is revoked."""
    check_password(new, actor.email)
    await ctx.login_account_throttle.check(actor.email)
    async with ctx.db.read() as session:
        user = await session.get_one(User, actor.user_id)
    if not await _verify(ctx, user.password_hash, current):
        await ctx.login_account_throttle.failure(actor.email)
        raise NotAuthenticated("the current password is wrong")
    fresh = await asyncio.to_thread(ctx.passwords.hash, new)
    async with ctx.db.transaction() as session:
        (await session.get_one(User, actor.user_id)).password_hash = fresh
        await session.execute(
            update(ApiToken)
            .where(ApiToken.user_id == actor.user_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=ctx.clock.now())
        )
        await ctx.audit.append(
            session,
            actor.audit_entry("user.password_changed", subject_id=actor.user_id),
        )


async def user_by_email(ctx: Context, email: str) -> User:
    async with ctx.db.read() as session:
        user = await session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        raise NotFound("no user with this email")
    return user


async def reset_password(ctx: Context, email: str) -> str:
    """The operator's way back in (``evaccess admin reset-password``): a new random one-time
    password, every session of the account revoked, audited. Returns the password, which
    the caller shows once."""
    user = await user_by_email(ctx, email)
    password = secrets.token_urlsafe(18)
    fresh = await asyncio.to_thread(ctx.passwords.hash, password)
    async with ctx.db.transaction() as session:
        (await session.get_one(User, user.id)).password_hash = fresh
        await session.execute(
            update(ApiToken)
            .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=ctx.clock.now())
        )
        await ctx.audit.append(
            session, AuditEntry(action="user.password_reset", subject_id=user.id)
        )
    await ctx.login_account_throttle.success(user.email)
    return password


async def set_staff_role(ctx: Context, email: str, role: StaffRole | None) -> User:
    """The operator makes an account one of their support agents or manufacturers (or
    takes that back: ``None``); audited. Only ``evaccess admin`` reaches this: no API route
    gives a staff role."""
    user = await user_by_email(ctx, email)
    async with ctx.db.transaction() as session:
        row = await session.get_one(User, user.id)
        row.staff_role = role.value if role else None
        await ctx.audit.append(
            session,
            AuditEntry(
                action="user.staff_role_set",
                subject_id=user.id,
                details={"role": role.value if role else None},
            ),
        )
    user.staff_role = role.value if role else None
    return user
