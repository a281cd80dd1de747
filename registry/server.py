"""Serving: ``run`` (everything, locally) and ``serve registry`` (production, one part)."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from aiohttp import web

from registry import runtime
from registry.app import make_app
from registry.config import Settings

__all__ = ["run_local", "serve_registry"]

_logger = logging.getLogger(__name__)


async def _wait_for_stop() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _serve(settings: Settings, dsn: str, *, local: bool) -> None:
    started = time.monotonic()
    await runtime.migrate_database(dsn)
    services = await runtime.build_services(settings, generate_secrets=local)
    admin_key = await runtime.ensure_admin_key(dsn) if local else None
    app = make_app(services, dsn)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    base = f"http://{settings.host}:{settings.port}"
    if admin_key:
        print(f"\nadmin key (shown once, keep it): {admin_key}\n", flush=True)
    print(f"registry:  {base}  (docs {base}/docs, OpenAPI {base}/v1/openapi.json)", flush=True)
    print(f"ready in {time.monotonic() - started:.2f} s; Ctrl-C stops", flush=True)
    try:
        await _wait_for_stop()
    finally:
        runtime.progress("stopping …")
        await runner.cleanup()


def run_local(settings: Settings) -> int:
    """The whole service on loopback, on the embedded database unless DATABASE_URL is set."""
    settings = settings.model_copy(update={"dev_mode": True})
    with runtime.database(settings) as db:
        asyncio.run(_serve(settings, db.dsn, local=True))
    return 0


def serve_registry(settings: Settings, *, embedded_db: bool) -> int:
    with runtime.database(settings, allow_embedded=embedded_db) as db:
        asyncio.run(_serve(settings, db.dsn, local=False))
    return 0
