"""``evaccess server run``: migrate, make sure there is an administrator, then serve the REST
API (uvicorn) and the OCPP endpoint in one process, on one event loop."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

import uvicorn

from evaccess.server.api.app import create_app
from evaccess.server.bootstrap import BootstrapAdmin, build_context, ensure_bootstrap_admin, migrate
from evaccess.server.context import Context
from evaccess.server.ocpp.server import serve_ocpp, server_tls_context
from evaccess.server.services.ocpp_backend import DbOcppBackend
from evaccess.server.settings import Settings

log = logging.getLogger("evaccess.server")


async def serve(
    settings: Settings,
    *,
    announce: Callable[[Settings, BootstrapAdmin | None], None],
    context: Context | None = None,
) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.data_dir.chmod(0o700)  # the database holds ciphertexts and digests: keep it private
    logging.getLogger("alembic").setLevel(logging.WARNING)
    await migrate(settings)
    ctx = context or build_context(settings)
    admin = await ensure_bootstrap_admin(ctx, settings.bootstrap_admin_email)
    tls = (
        server_tls_context(settings.tls_cert, settings.tls_key)
        if settings.tls_cert is not None and settings.tls_key is not None
        else None
    )
    ocpp = await serve_ocpp(
        DbOcppBackend(ctx),
        host=settings.ocpp_host or settings.host,
        port=settings.ocpp_port,
        ssl=tls,
        clock=ctx.clock,
    )
    ctx.notifier.target = ocpp.notifier
    config = uvicorn.Config(
        create_app(settings, context=ctx),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=True,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again with the
    # handler it found at start; the default one would kill the process before the database
    # is closed. This one only asks for the shutdown already done: ``server run`` returns,
    # the ``finally`` below runs, and the exit status is 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: setattr(server, "should_exit", True))
    announce(settings, admin)
    try:
        await server.serve()
    finally:
        ctx.notifier.target = None
        await ocpp.close()
        await ctx.db.dispose()
