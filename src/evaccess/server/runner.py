"""``evaccess server run``: migrate, make sure there is an administrator, then serve the REST
API (uvicorn) and the OCPP endpoint in one process, one event loop."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

import uvicorn

from evaccess.server.api.app import create_app
from evaccess.server.bootstrap import BootstrapAdmin, build_context, ensure_bootstrap_admin, migrate
from evaccess.server.context import Context
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
    app = create_app(settings, context=ctx)
    config = uvicorn.Config(
        app,
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
        await ctx.db.dispose()


def install_signal_handlers(stop: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
