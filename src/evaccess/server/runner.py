"""``evaccess server run``: migrate, make sure there is an administrator, then serve the REST
API (uvicorn) and the OCPP endpoint in one process, on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Awaitable, Callable

import uvicorn

from evaccess.domain.errors import ConfigurationError
from evaccess.server.api.app import create_app
from evaccess.server.bootstrap import (
    BootstrapAdmin,
    build_context,
    ensure_bootstrap_admin,
    migrate,
    prepare_database_file,
)
from evaccess.server.context import Context
from evaccess.server.ocpp.server import Compression, serve_ocpp
from evaccess.server.ocpp.tls import CertificateChain, server_tls_context
from evaccess.server.services import claims, notifications, outbox, transfers
from evaccess.server.services.ocpp_backend import DbOcppBackend, forget_connections
from evaccess.server.settings import Settings

log = logging.getLogger("evaccess.server")

TRANSFER_EXPIRY_INTERVAL_S = 60.0
"""How often the server records the lapse of open transfers past their time (an open
transfer already reads as expired the moment its time is up; this makes the row say so)."""

OUTBOX_SWEEP_INTERVAL_S = 15.0
"""Cluster mode: how often a node pokes its connected chargers that have open commands (a
wake-up lost between nodes delays a command by at most this)."""


class _TypeOnly(logging.Filter):
    """uvicorn logs an exception that left the app with its traceback and message; the
    message of a database error quotes the statement's parameters (password hashes among
    them). Keep the line, name the type, drop the rest. The app catches its own exceptions
    (a 500 problem), so this only meets what escapes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            kind = type(record.exc_info[1]).__name__
            record.msg = f"{str(record.msg).strip()} ({kind}; traceback not logged)"
            record.exc_info = None
            record.exc_text = None
        return True


_TYPE_ONLY = _TypeOnly()


def quiet_uvicorn_errors() -> None:
    """No traceback nor exception message in uvicorn's log (idempotent)."""
    for name in ("uvicorn.error", "uvicorn.asgi", "uvicorn"):
        logger = logging.getLogger(name)
        if _TYPE_ONLY not in logger.filters:
            logger.addFilter(_TYPE_ONLY)


def quiet_sql_loggers() -> None:
    """aiosqlite logs every call at DEBUG with its arguments: each SQL statement and its
    parameters (argon2 and OCPP password hashes). Only its INFO and above pass, whatever
    EVACCESS_LOG_LEVEL says, as for websockets' frame log (``server/ocpp/server.py``)."""
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def configure_logging(level: str) -> None:
    """The server's logging: ``level`` (EVACCESS_LOG_LEVEL) for evaccess and the libraries,
    except those that would log secrets at DEBUG."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_sql_loggers()
    quiet_uvicorn_errors()


async def periodically(
    name: str, work: Callable[[Context], Awaitable[object]], ctx: Context, *, interval_s: float
) -> None:
    """Run ``work(ctx)`` every ``interval_s`` until cancelled; a failed pass is logged (its
    type only: a database error's message quotes parameters) and the next one tries again."""
    while True:
        try:
            await work(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a database hiccup must not end the task
            log.warning("%s pass failed: %s", name, type(exc).__name__)
        await asyncio.sleep(interval_s)


def start_background_tasks(
    ctx: Context,
    *,
    transfer_expiry_interval_s: float = TRANSFER_EXPIRY_INTERVAL_S,
    outbox_sweep_interval_s: float = OUTBOX_SWEEP_INTERVAL_S,
) -> list[asyncio.Task[None]]:
    """The server's periodic work, on ``ctx`` (its clock decides what is due): notification
    delivery, the expiry of open ownership transfers, and the handover of approved claims
    whose objection window has closed (same interval); in cluster mode the outbox sweep.
    The caller cancels them."""
    sweeps = (
        [
            asyncio.create_task(
                periodically("outbox sweep", outbox.sweep, ctx, interval_s=outbox_sweep_interval_s),
                name="outbox sweep",
            )
        ]
        if ctx.cluster is not None
        else []
    )
    return [
        *sweeps,
        asyncio.create_task(notifications.run_delivery(ctx), name="notifications"),
        asyncio.create_task(
            periodically(
                "transfer expiry",
                transfers.expire_transfers,
                ctx,
                interval_s=transfer_expiry_interval_s,
            ),
            name="transfer expiry",
        ),
        asyncio.create_task(
            periodically(
                "claim handover", claims.complete_due, ctx, interval_s=transfer_expiry_interval_s
            ),
            name="claim handover",
        ),
    ]


async def stop_background_tasks(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _listen(host: str, port: int, setting: str) -> socket.socket:
    """Bind the REST port now, before anything is created: a busy port must stop the
    first start before it prints (and loses) the admin's one-time password."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose
    # proto says TCP, and accepted sockets inherit the listener's. With Nagle on, uvicorn's
    # two writes per response (head, body) waited ~40 ms for the client's delayed ACK on
    # every request of a kept-alive connection (docs/performance.md, "REST API").
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(_bind_failure(host, port, setting, exc)) from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _bind_failure(host: str, port: int, setting: str, exc: OSError) -> str:
    reason = exc.strerror or type(exc).__name__
    return f"cannot listen on {host}:{port}: {reason.lower()} (set {setting} to move it)"


async def serve(
    settings: Settings,
    *,
    announce: Callable[[Settings, BootstrapAdmin | None], None],
    context: Context | None = None,
) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.data_dir.chmod(0o700)  # the database holds ciphertexts and digests: keep it private
    quiet_sql_loggers()
    http_socket = _listen(settings.host, settings.port, "EVACCESS_PORT or --port")
    ocpp_host = settings.ocpp_host or settings.host
    tls = (
        server_tls_context(
            [CertificateChain(cert_file=c, key_file=k) for c, k in settings.tls_chains],
            client_ca=settings.tls_client_ca,
            require_client_cert=settings.tls_require_client_cert,
        )
        if settings.tls_chains
        else None
    )
    try:
        prepare_database_file(settings, create=True)
        await migrate(settings)
        ctx = context or build_context(settings)
        if ctx.cluster is None:
            await forget_connections(ctx)
        try:
            ocpp = await serve_ocpp(
                DbOcppBackend(ctx),
                host=ocpp_host,
                port=settings.ocpp_port,
                registry=ctx.cluster.registry if ctx.cluster is not None else None,
                ssl=tls,
                clock=ctx.clock,
                compression=(
                    Compression(
                        window_bits=settings.ocpp_compression_window_bits,
                        level=settings.ocpp_compression_level,
                        mem_level=settings.ocpp_compression_mem_level,
                    )
                    if settings.ocpp_compression
                    else None
                ),
            )
        except OSError as exc:
            await ctx.close()
            raise ConfigurationError(
                _bind_failure(
                    ocpp_host, settings.ocpp_port, "EVACCESS_OCPP_PORT or --ocpp-port", exc
                )
            ) from None
    except BaseException:
        http_socket.close()
        raise
    # Both ports are ours: only now may a first start create (and print) the admin.
    admin = await ensure_bootstrap_admin(ctx, settings.bootstrap_admin_email)
    ctx.notifier.target = ocpp.notifier
    await ctx.start()
    config = uvicorn.Config(
        create_app(settings, context=ctx),
        log_level=settings.log_level.lower(),
        access_log=True,
        lifespan="on",
    )
    quiet_uvicorn_errors()  # after Config: it (re)configures uvicorn's loggers
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again with the
    # handler it found at start; the default one would kill the process before the database
    # is closed. This one only asks for the shutdown already done: ``server run`` returns,
    # the ``finally`` below runs, and the exit status is 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: setattr(server, "should_exit", True))
    announce(settings, admin)
    background = start_background_tasks(ctx)
    try:
        await server.serve(sockets=[http_socket])
    finally:
        await stop_background_tasks(background)
        ctx.notifier.target = None
        await ocpp.close()
        await ctx.close()
