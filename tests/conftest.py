"""Run-wide fixtures: one real PostgreSQL per test run, migrations applied once, the app on loopback.

With ``TEST_DATABASE_URL`` the tests use that server; otherwise an embedded PostgreSQL in a temporary
directory. Each run works in a fresh database of its own, dropped at the end.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from registry import migrate
from registry.app import make_app
from registry.attestations import devidp
from registry.attestations.verify import key_source_for, keysets_of
from registry.config import Settings
from registry.db import EmbeddedPostgres, create_pool, init_connection
from registry.localsecrets import LocalSecrets
from registry.services import Services


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    # Not under pytest's tmp_path: pytest prunes old run folders, which parallel runs would race on.
    root = Path(tempfile.mkdtemp(prefix="avatar-registry-test-pg-"))
    pg = EmbeddedPostgres(root / "data")
    try:
        yield pg.start()
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
async def dsn(server_dsn: str) -> AsyncIterator[str]:
    """A fresh database for this run, migrated."""
    name = f"test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')  # identifier made above, not user input
    finally:
        await admin.close()
    url = _with_database(server_dsn, name)
    conn = await asyncpg.connect(url)
    try:
        await migrate.apply_migrations(conn)
    finally:
        await conn.close()
    yield url
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(dsn, max_size=5)
    yield p
    await p.close()


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection inside a transaction that is rolled back after the test."""
    c = await asyncpg.connect(dsn)
    await init_connection(c)
    tx = c.transaction()
    await tx.start()
    try:
        yield c
    finally:
        await tx.rollback()
        await c.close()


@pytest.fixture(scope="session")
def idp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("dev-idp")
    devidp.dev_keygen(d)
    return d


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, idp_dir: Path) -> Settings:
    data = tmp_path_factory.mktemp("data")
    return Settings(
        DATA_DIR=data,
        dev_mode=True,
        audience="avatar-registry-test",
        identity_providers={devidp.DEV_ISSUER: str(idp_dir / devidp.DEV_JWKS_NAME)},
        max_body_bytes=64 * 1024 * 1024,
    )


@pytest.fixture(scope="session")
def local_secrets() -> LocalSecrets:
    # Obviously fake, fixed keys: tests only.
    return LocalSecrets(
        pii_keys={"test-old": b"o" * 32, "test-k1": b"k" * 32},
        pii_current_kid="test-k1",
        blind_index_key=b"b" * 32,
    )


@pytest.fixture(scope="session")
async def services(settings: Settings, local_secrets: LocalSecrets) -> Services:
    sources = [key_source_for(i, loc) for i, loc in settings.identity_providers.items()]
    for s in sources:
        await s.refresh()
    return Services.build(settings, local_secrets, keysets_of(sources))


@pytest.fixture(scope="session")
async def client(services: Services, dsn: str) -> AsyncIterator[TestClient[Any, Any]]:
    """The registry app served on 127.0.0.1 over real HTTP."""
    app = make_app(services, dsn)
    server = TestServer(app, host="127.0.0.1")
    c = TestClient(server)
    await c.start_server()
    yield c
    await c.close()


@pytest.fixture(autouse=True)
async def fail_on_loop_exceptions() -> AsyncIterator[None]:
    """Noise is a failure: anything sent to the loop's exception handler fails the test."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: seen.append(ctx))
    yield
    loop.set_exception_handler(old)
    assert not seen, f"unhandled exceptions in the event loop: {seen}"
