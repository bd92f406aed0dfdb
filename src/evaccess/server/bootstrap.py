"""The server's composition root: settings in, a wired ``Context`` out. Nothing is wired
at import time; tests build their own context with frozen time and seeded randomness."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.profiles import RFC_9106_LOW_MEMORY
from sqlalchemy import func, select

from evaccess.domain.access import Role
from evaccess.domain.clock import Clock, RandomSource, SystemClock, SystemRandom
from evaccess.domain.lockout import KEYPAD_RULES
from evaccess.server.context import LOGIN_RULES, PIN_SET_RULES, Context
from evaccess.server.db.engine import Database
from evaccess.server.db.migrate import upgrade
from evaccess.server.db.models import Membership, Organisation, User
from evaccess.server.keypad_index import KeypadIndex
from evaccess.server.keys import EnvKeyProvider, FileKeyProvider, KeyProvider
from evaccess.server.services.audit import AuditEntry, AuditLog
from evaccess.server.settings import Settings
from evaccess.server.throttle import ThrottleRegistry
from evaccess.server.vault import KeypadHasher, PinVault


def key_provider(settings: Settings, rng: RandomSource) -> KeyProvider:
    if settings.keys is not None:
        return EnvKeyProvider(settings.keys.get_secret_value())
    return FileKeyProvider(settings.resolved_keys_dir, rng)


def build_context(
    settings: Settings,
    *,
    clock: Clock | None = None,
    rng: RandomSource | None = None,
    passwords: PasswordHasher | None = None,
    database: Database | None = None,
) -> Context:
    clock = clock or SystemClock()
    rng = rng or SystemRandom()
    keys = key_provider(settings, rng)
    keys.load()  # fail fast: create or check key files before serving
    return Context(
        db=database or Database(settings.resolved_database_url),
        clock=clock,
        rng=rng,
        keys=keys,
        vault=PinVault(keys, rng),
        keypad_hasher=KeypadHasher(keys),
        audit=AuditLog(keys, clock),
        passwords=passwords or PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY),
        token_ttl_s=settings.token_ttl_hours * 3600,
        keypad_throttle=ThrottleRegistry(KEYPAD_RULES, clock),
        login_throttle=ThrottleRegistry(LOGIN_RULES, clock),
        pin_set_throttle=ThrottleRegistry(PIN_SET_RULES, clock),
        keypad_index=KeypadIndex(clock),
    )


async def migrate(settings: Settings) -> None:
    await upgrade(settings.resolved_database_url)


@dataclass(frozen=True, kw_only=True, slots=True)
class BootstrapAdmin:
    email: str
    password: str
    organisation_id: str


async def ensure_bootstrap_admin(ctx: Context, email: str) -> BootstrapAdmin | None:
    """On the very first start (no users at all), create a system super-admin with a random
    one-time password and a first organisation. Never a default password."""
    async with ctx.db.read() as session:
        if await session.scalar(select(func.count()).select_from(User)):
            return None
    from evaccess.server.services.accounts import create_user, normalise_email

    password = secrets.token_urlsafe(18)
    user = await create_user(ctx, normalise_email(email), password, is_system_admin=True)
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        org = Organisation(name="My organisation", created_at=now, root_id="")
        session.add(org)
        await session.flush()
        org.root_id = org.id
        session.add(
            Membership(
                user_id=user.id, organisation_id=org.id, role=Role.SUPER_ADMIN, created_at=now
            )
        )
        await ctx.audit.append(
            session,
            AuditEntry(
                action="bootstrap.admin_created", subject_id=user.id, organisation_id=org.id
            ),
        )
    return BootstrapAdmin(email=user.email, password=password, organisation_id=org.id)
