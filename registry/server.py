"""Serving: ``run`` (everything, locally), ``serve registry`` and ``serve livecheck`` (production, one part
each), and ``serve livecheck --drain`` (ask a running livecheck node to drain)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from registry import runtime
from registry.app import make_app
from registry.config import Settings

__all__ = ["drain_livecheck", "run_local", "serve_livecheck", "serve_registry"]

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
    async with contextlib.AsyncExitStack() as stack:
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        node = await stack.enter_async_context(_livecheck(settings, dsn)) if local else None
        base = f"http://{settings.host}:{settings.port}"
        if admin_key:
            print(f"\nadmin key (shown once, keep it): {admin_key}\n", flush=True)
        print(f"registry:  {base}  (docs {base}/docs, OpenAPI {base}/v1/openapi.json)", flush=True)
        if node is not None:
            print(f"livecheck: {node.url}  ({node.engine.note})", flush=True)
        print(f"ready in {time.monotonic() - started:.2f} s; Ctrl-C stops", flush=True)
        try:
            await _wait_for_stop()
        finally:
            runtime.progress("stopping …")


@contextlib.asynccontextmanager
async def _livecheck(settings: Settings, dsn: str) -> AsyncIterator[Any]:
    """The livecheck node of ``run``, on ``LIVECHECK_PORT`` beside the registry; drained on exit."""
    from livecheck.config import LiveSettings
    from livecheck.server import running_node

    live = LiveSettings().model_copy(update={"port": settings.livecheck_port})
    async with running_node(live, dsn) as node:
        yield node


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


def serve_livecheck(settings: Settings, *, embedded_db: bool) -> int:
    """One livecheck node until SIGTERM/SIGINT (then it drains: sessions move to another node)."""
    from livecheck.config import LiveSettings, load_live_policy
    from livecheck.server import serve_livecheck as serve_node

    live = LiveSettings()
    policy = load_live_policy(live)  # a bad policy stops start-up here, naming the key
    with runtime.database(settings, allow_embedded=embedded_db) as db:
        _run(_migrated(db.dsn, serve_node(live, db.dsn, policy=policy)))
    return 0


def drain_livecheck(settings: Settings, *, node_id: str | None, timeout_s: float) -> int:
    """Ask a running livecheck node (``node_id``, default: the one advertising this host's
    ``LIVECHECK_PUBLIC_URL``) to drain, and wait until it has stopped. Exit 0 when it did, 1 when not."""
    from livecheck.config import LiveSettings
    from livecheck.control import Drain, notify

    live = LiveSettings()

    async def go(dsn: str) -> int:
        async with runtime.connect(dsn) as conn:
            ids = (
                [node_id]
                if node_id
                else [
                    r["id"]
                    for r in await conn.fetch(
                        "SELECT id FROM livecheck_nodes WHERE url = $1 AND stopped_at IS NULL", live.url()
                    )
                ]
            )
            if not ids:
                runtime.progress(f"no running livecheck node advertises {live.url()}")
                return 1
            for nid in ids:
                await notify(conn, Drain(node_id=nid))
                runtime.progress(f"asked node {nid} to drain")
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                left = await conn.fetchval(
                    "SELECT count(*) FROM livecheck_nodes WHERE id = ANY($1::text[]) AND stopped_at IS NULL",
                    ids,
                )
                if not left:
                    runtime.progress("drained and stopped")
                    return 0
                await asyncio.sleep(0.2)
        runtime.progress(f"node(s) still running after {timeout_s:g} s")
        return 1

    with runtime.database(settings) as db:
        return asyncio.run(go(db.dsn))


async def _migrated(dsn: str, then: Any) -> None:
    await runtime.migrate_database(dsn)
    await then


def _run(main: Any) -> None:
    """``asyncio.run``, on uvloop where installed (faster websocket I/O, see bench/livecheck_load.py)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)
