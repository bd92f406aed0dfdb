"""The server's composition root: settings in, a wired ``Context`` out. Nothing is wired
at import time; tests build their own context with frozen time and seeded randomness."""

from __future__ import annotations

import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.profiles import RFC_9106_LOW_MEMORY
from sqlalchemy import func, inspect, make_url, select
from sqlalchemy.exc import DBAPIError

from evaccess.domain.access import Role
from evaccess.domain.clock import Clock, RandomSource, SystemClock, SystemRandom
from evaccess.domain.errors import ConfigurationError
from evaccess.domain.lockout import KEYPAD_RULES, LockoutRules
from evaccess.server.audit import AuditEntry, AuditLog
from evaccess.server.cluster.node import ClusterNode
from evaccess.server.cluster.redis import RedisCluster
from evaccess.server.context import (
    COMMISSIONING_RULES,
    LOGIN_ACCOUNT_RULES,
    LOGIN_CLIENT_RULES,
    LOGIN_RULES,
    PIN_SET_RULES,
    Context,
    NotifierSlot,
)
from evaccess.server.db.engine import Database, make_engine
from evaccess.server.db.migrate import upgrade
from evaccess.server.db.models import Membership, Organisation, User
from evaccess.server.documents import DocumentStore
from evaccess.server.keypad_index import KeypadIndex
from evaccess.server.keys import EnvKeyProvider, FileKeyProvider, KeyProvider
from evaccess.server.mail import delivery_from_url
from evaccess.server.services.accounts import create_user, normalise_email
from evaccess.server.settings import Settings
from evaccess.server.throttle import Throttle, ThrottleRegistry
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
    cluster = (
        RedisCluster(
            settings.redis_url.get_secret_value(),
            prefix=settings.redis_prefix,
            node_id=settings.node_id,
            clock=clock,
        )
        if settings.redis_url is not None
        else None
    )

    def throttle(name: str, rules: LockoutRules) -> Throttle:
        assert clock is not None
        return ThrottleRegistry(rules, clock) if cluster is None else cluster.throttle(name, rules)

    # Cluster mode: keypad index changes and outbox wake-ups travel between the nodes, so
    # the index needs no stale bound (``keypad_index``).
    node = ClusterNode(cluster) if cluster is not None else None
    keypad_index = (
        KeypadIndex(clock) if node is None else KeypadIndex(clock, ttl_s=math.inf, broadcast=node)
    )
    notifier = NotifierSlot(remote=node)
    if node is not None:
        node.attach(keypad_index, notifier)

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
        allow_signup=settings.allow_signup,
        reauth_after_s=settings.portal_reauth_s,
        keypad_throttle=throttle("keypad", KEYPAD_RULES),
        login_throttle=throttle("login", LOGIN_RULES),
        login_account_throttle=throttle("login-account", LOGIN_ACCOUNT_RULES),
        login_client_throttle=throttle("login-client", LOGIN_CLIENT_RULES),
        pin_set_throttle=throttle("pin-set", PIN_SET_RULES),
        keypad_index=keypad_index,
        notifier=notifier,
        auth_cache_ttl_s=settings.auth_cache_ttl_s,
        commissioning_throttle=throttle("commissioning", COMMISSIONING_RULES),
        commissioning_code_ttl_s=settings.commissioning_code_ttl_days * 86400,
        documents=DocumentStore(settings.resolved_claim_dir),
        claim_objection_s=settings.claim_objection_days * 86400,
        claim_document_max_bytes=int(settings.claim_document_max_mb * 1024 * 1024),
        cluster=node,
        delivery=delivery_from_url(
            settings.smtp_url.get_secret_value() if settings.smtp_url else None,
            settings.smtp_from,
        ),
    )


def database_label(settings: Settings) -> str:
    """Which database, for people: the SQLite file, or the URL without its password."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        return f"SQLite {url.database}"
    return f"PostgreSQL {url.render_as_string(hide_password=True).split('://', 1)[1]}"


def prepare_database_file(settings: Settings, *, create: bool) -> None:
    """Check a SQLite path before SQLAlchemy meets it, with one line naming the problem:
    a file where its directory should be, a directory that is not there (never created
    silently: a typo would start an empty database), or, for an admin command
    (``create=False``), no database yet. ``server run`` creates the file 0600."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    path = Path(url.database)
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            raise ConfigurationError(f"database path {path}: {parent} is a file, not a directory")
    if path.exists():
        return
    if not create:
        raise ConfigurationError(
            f"no database at {path}: `evaccess server run` creates it "
            "(or set EVACCESS_DATA_DIR or EVACCESS_DATABASE_URL to the server's)"
        )
    if not path.parent.is_dir():
        raise ConfigurationError(f"database path {path}: directory {path.parent} does not exist")
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def _unreachable(settings: Settings, exc: Exception) -> ConfigurationError:
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    text = str(cause).strip()
    reason = getattr(cause, "strerror", None) or (text.splitlines()[0] if text else "")
    return ConfigurationError(
        f"cannot open the database ({database_label(settings)}): {reason or type(cause).__name__}"
    )


async def migrate(settings: Settings) -> None:
    """Bring the database to the newest schema; an unreachable database is one line."""
    try:
        await upgrade(settings.resolved_database_url)
    except (OSError, DBAPIError) as exc:
        raise _unreachable(settings, exc) from None


async def require_schema(settings: Settings) -> None:
    """For admin commands: the server must have created this database (an empty
    PostgreSQL database is refused, not migrated into a fresh evaccess)."""
    prepare_database_file(settings, create=False)
    engine = make_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: inspect(c).get_table_names())
    except (OSError, DBAPIError) as exc:
        raise _unreachable(settings, exc) from None
    finally:
        await engine.dispose()
    if "alembic_version" not in tables:
        raise ConfigurationError(
            f"{database_label(settings)} holds no evaccess data: `evaccess server run` creates it"
        )
    await migrate(settings)


@dataclass(frozen=True, kw_only=True, slots=True)
class BootstrapAdmin:
    email: str
    password: str
    organisation_id: str
    organisation_name: str


async def ensure_bootstrap_admin(ctx: Context, email: str) -> BootstrapAdmin | None:
    """On the very first start (no users at all), create a system super-admin with a random
    one-time password and a first organisation. Never a default password."""
    async with ctx.db.read() as session:
        if await session.scalar(select(func.count()).select_from(User)):
            return None

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
    return BootstrapAdmin(
        email=user.email, password=password, organisation_id=org.id, organisation_name=org.name
    )
