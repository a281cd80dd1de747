"""Build the registry's aiohttp application."""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from registry import metrics
from registry.api import audit as audit_api
from registry.api import avatars as avatars_api
from registry.api import docs as docs_api
from registry.api import health as health_api
from registry.api import keys as keys_api
from registry.api import match as match_api
from registry.api import operators as operators_api
from registry.api import sessions as sessions_api
from registry.api import translog as translog_api
from registry.api.errors import error_middleware
from registry.api.openapi import build_openapi
from registry.api.routing import Api
from registry.api.state import MAX_BODY_BYTES, POOL, READINESS, SERVICES, SETTINGS
from registry.db import create_pool
from registry.logs import REQUEST_ID
from registry.services import Services

__all__ = ["ROUTE_TABLES", "make_app"]

_logger = logging.getLogger("registry.http")

# Every part's route table, in the order they appear in the docs.
ROUTE_TABLES: list[Api] = [
    health_api.api,
    docs_api.api,
    keys_api.api,
    operators_api.api,
    avatars_api.api,
    match_api.api,
    audit_api.api,
    translog_api.api,
    sessions_api.api,
]

_GOOD_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id (kept from the client when sane), access log line, metrics."""
    incoming = request.headers.get("X-Request-Id", "")
    rid = incoming if _GOOD_REQUEST_ID.match(incoming) else secrets.token_hex(8)
    token = REQUEST_ID.set(rid)
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-Id"] = rid
        return response
    finally:
        elapsed = time.perf_counter() - start
        route = (
            request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        )
        metrics.HTTP_REQUESTS.labels(request.method, route, str(status)).inc()
        metrics.HTTP_LATENCY.labels(request.method, route).observe(elapsed)
        _logger.info(
            "%s %s %d",
            request.method,
            request.path,
            status,
            extra={"status": status, "route": route, "ms": round(elapsed * 1000, 2)},
        )
        REQUEST_ID.reset(token)


def make_app(services: Services, dsn: str, *, extra_tables: list[Api] | None = None) -> web.Application:
    """The registry app. The pool's lifetime is the app's (``cleanup_ctx``)."""
    settings = services.settings
    app = web.Application(
        middlewares=[request_context, error_middleware], client_max_size=settings.max_body_bytes
    )
    app[SETTINGS] = settings
    app[SERVICES] = services
    app[MAX_BODY_BYTES] = settings.max_body_bytes
    app[READINESS] = {}
    tables = ROUTE_TABLES + (extra_tables or [])
    for table in tables:
        table.install(app)
    app[docs_api.OPENAPI] = build_openapi(
        [r for t in tables for r in t.routes], title="Avatar Registry API", version="1"
    )

    async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
        app[POOL] = await create_pool(dsn, max_size=settings.db_pool_max)
        yield
        await app[POOL].close()

    app.cleanup_ctx.append(pool_ctx)
    match_api.install(app, dsn)  # after the pool: the match index loads from it and follows changes
    app.cleanup_ctx.append(translog_api.signer_ctx)  # after the pool: the signer uses it
    return app
