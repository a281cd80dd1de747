"""Typed keys for what the application holds (STYLE: never string keys in ``app[...]``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web

from registry.config import Settings
from registry.services import Services

__all__ = ["MAX_BODY_BYTES", "POOL", "READINESS", "SERVICES", "SETTINGS"]

# name -> async check(app) -> (ok, detail dict); each part that can be unready (the match index) adds one.
ReadinessCheck = Callable[[web.Application], Awaitable[tuple[bool, dict[str, Any]]]]

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
MAX_BODY_BYTES = web.AppKey("max_body_bytes", int)
SERVICES = web.AppKey("services", Services)
READINESS = web.AppKey("readiness", dict[str, ReadinessCheck])
