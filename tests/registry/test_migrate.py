from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from registry import migrate


@pytest.fixture
async def scratch(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection whose search_path is a throwaway schema, so migrations here touch nothing else."""
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE SCHEMA mig_test")
    await conn.execute("SET search_path TO mig_test")
    try:
        yield conn
    finally:
        await conn.execute("DROP SCHEMA mig_test CASCADE")
        await conn.close()


def _write(d: Path, name: str, sql: str) -> None:
    (d / name).write_text(sql)


async def test_applies_in_order_and_records_checksums(scratch: asyncpg.Connection, tmp_path: Path) -> None:
    _write(tmp_path, "0002_b.sql", "ALTER TABLE t ADD COLUMN b int;")
    _write(tmp_path, "0001_a.sql", "CREATE TABLE t (a int);")
    ms = migrate.load_migrations(tmp_path)
    assert [m.version for m in ms] == [1, 2]
    assert await migrate.apply_migrations(scratch, ms) == ["0001_a.sql", "0002_b.sql"]
    rows = await scratch.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
    assert [(r["version"], r["checksum"]) for r in rows] == [(1, ms[0].checksum), (2, ms[1].checksum)]
    assert await migrate.apply_migrations(scratch, ms) == []


async def test_changed_applied_file_is_refused(scratch: asyncpg.Connection, tmp_path: Path) -> None:
    _write(tmp_path, "0001_a.sql", "CREATE TABLE t (a int);")
    await migrate.apply_migrations(scratch, migrate.load_migrations(tmp_path))
    _write(tmp_path, "0001_a.sql", "CREATE TABLE t (a bigint);")
    with pytest.raises(migrate.MigrationError, match=r"0001_a\.sql was changed after it was applied"):
        await migrate.apply_migrations(scratch, migrate.load_migrations(tmp_path))


async def test_failed_migration_leaves_nothing(scratch: asyncpg.Connection, tmp_path: Path) -> None:
    _write(tmp_path, "0001_a.sql", "CREATE TABLE t (a int);")
    _write(tmp_path, "0002_bad.sql", "CREATE TABLE u (x int); SELECT no_such_function();")
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await migrate.apply_migrations(scratch, migrate.load_migrations(tmp_path))
    assert await scratch.fetchval("SELECT to_regclass('mig_test.u')") is None
    assert await scratch.fetchval("SELECT max(version) FROM schema_migrations") == 1


def test_misnamed_file_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "1_a.sql", "SELECT 1;")
    with pytest.raises(migrate.MigrationError, match=r"must look like 0001_name\.sql"):
        migrate.load_migrations(tmp_path)


async def test_concurrent_runners_apply_once(dsn: str, tmp_path: Path) -> None:
    _write(tmp_path, "0001_a.sql", "CREATE TABLE t (a int);")
    ms = migrate.load_migrations(tmp_path)
    setup = await asyncpg.connect(dsn)
    await setup.execute("CREATE SCHEMA mig_race")
    conns = [await asyncpg.connect(dsn, server_settings={"search_path": "mig_race"}) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate.apply_migrations(c, ms) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, 0, 1]
    finally:
        for c in conns:
            await c.close()
        await setup.execute("DROP SCHEMA mig_race CASCADE")
        await setup.close()


def test_repository_migrations_load() -> None:
    ms = migrate.load_migrations()
    assert ms and ms[0].name == "0001_foundation.sql"
    assert [m.version for m in ms] == list(range(1, len(ms) + 1))
