"""Apply ``migrations/NNNN_name.sql`` in order: each in a transaction, under an advisory lock, recorded with
its checksum in ``schema_migrations``. An applied file that changed afterwards is refused."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from registry.errors import RegistryError

__all__ = ["MIGRATIONS_DIR", "Migration", "MigrationError", "apply_migrations", "load_migrations", "pending"]

_logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Any constant works; it only has to be the same in every process that migrates this database.
_LOCK_KEY = 0x61766174  # "avat"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(RegistryError):
    code = "migration_error"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str
    checksum: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Read the migration files in version order.

    Raises ``MigrationError`` on a misnamed or duplicate file."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"migration file name must look like 0001_name.sql, got {path.name}")
        version = int(m.group(1))
        if version in found:
            raise MigrationError(f"two migrations with version {version}: {found[version].name}, {path.name}")
        sql = path.read_text(encoding="utf-8")
        found[version] = Migration(version, path.name, sql, hashlib.sha256(sql.encode()).hexdigest())
    return [found[v] for v in sorted(found)]


async def _applied(conn: asyncpg.Connection) -> dict[int, asyncpg.Record]:
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version integer PRIMARY KEY,
               name text NOT NULL,
               checksum text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    return {r["version"]: r for r in rows}


def _check_unchanged(migrations: list[Migration], applied: dict[int, asyncpg.Record]) -> None:
    by_version = {m.version: m for m in migrations}
    for version, row in applied.items():
        m = by_version.get(version)
        if m is None:
            raise MigrationError(
                f"database has migration {row['name']} that is not in the migrations folder; "
                "is this an older checkout?"
            )
        if m.checksum != row["checksum"]:
            raise MigrationError(
                f"applied migration {m.name} was changed after it was applied "
                f"(checksum expected {row['checksum'][:12]}…, got {m.checksum[:12]}…); "
                "never edit an applied migration: add a new one"
            )


async def pending(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[Migration]:
    """The migrations not applied yet. Raises ``MigrationError`` if an applied one changed."""
    migrations = load_migrations() if migrations is None else migrations
    applied = await _applied(conn)
    _check_unchanged(migrations, applied)
    return [m for m in migrations if m.version not in applied]


async def apply_migrations(
    conn: asyncpg.Connection,
    migrations: list[Migration] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[str]:
    """Apply every pending migration; return the names applied. Safe to run from many processes at once."""
    migrations = load_migrations() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        todo = await pending(conn, migrations)
        done: list[str] = []
        for m in todo:
            if progress:
                progress(f"applying {m.name}")
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            _logger.info("applied migration %s", m.name)
            done.append(m.name)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
