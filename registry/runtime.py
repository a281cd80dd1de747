"""Start-up shared by the CLI commands: the database (embedded or not), migrations, secrets, keys."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from registry import migrate
from registry.attestations import devidp
from registry.attestations.verify import key_source_for, keysets_of
from registry.config import Settings
from registry.db import EmbeddedPostgres, init_connection
from registry.keys import store as key_store
from registry.localsecrets import ensure_secrets, load_secrets
from registry.roles import Role
from registry.services import Services
from registry.translog.keys import ensure_key_file

__all__ = [
    "Database",
    "build_services",
    "connect",
    "database",
    "dev_idp_paths",
    "ensure_admin_key",
    "progress",
]

_logger = logging.getLogger(__name__)


def progress(msg: str) -> None:
    """Progress for a person at a terminal; stdout stays clean for what a command prints as its result."""
    print(msg, file=sys.stderr, flush=True)


@dataclass(slots=True)
class Database:
    dsn: str
    embedded: EmbeddedPostgres | None


@contextlib.contextmanager
def database(settings: Settings, *, allow_embedded: bool = True) -> Iterator[Database]:
    """The configured database, or an embedded one under ``DATA_DIR/pg`` when ``DATABASE_URL`` is unset."""
    dsn = settings.dsn()
    if dsn:
        yield Database(dsn=dsn, embedded=None)
        return
    if not allow_embedded:
        raise SystemExit("DATABASE_URL is not set (use --embedded-db to start a local PostgreSQL)")
    pg = EmbeddedPostgres(settings.data_dir / "pg")
    progress(f"starting embedded PostgreSQL in {pg.pgdata} …")
    dsn = pg.start()
    try:
        yield Database(dsn=dsn, embedded=pg)
    finally:
        pg.stop()


async def migrate_database(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate.apply_migrations(conn, progress=progress)
    finally:
        await conn.close()


def dev_idp_paths(settings: Settings) -> tuple[Path, Path]:
    """The development identity provider's private key and JWKS, under ``DATA_DIR/dev-idp``."""
    d = settings.data_dir / "dev-idp"
    return d / devidp.DEV_PRIVATE_KEY_NAME, d / devidp.DEV_JWKS_NAME


async def build_services(settings: Settings, *, generate_secrets: bool) -> Services:
    """Secrets, PII cipher and trusted identity providers. In dev mode the development provider is
    created if missing and trusted, with a warning."""
    if generate_secrets:
        secrets, created = ensure_secrets(settings.secrets_path())
        if created:
            progress(f"generated local secrets in {settings.secrets_path()}")
        if ensure_key_file(settings.log_signing_key_path(), settings.log_origin):
            progress(f"generated the transparency log signing key in {settings.log_signing_key_path()}")
    else:
        secrets = load_secrets(settings.secrets_path())
    providers: dict[str, Any] = dict(settings.identity_providers)
    if settings.dev_mode:
        key_path, jwks_path = dev_idp_paths(settings)
        if not key_path.exists():
            devidp.dev_keygen(key_path.parent)
            progress(f"generated the development identity provider's key in {key_path.parent}")
        providers.setdefault(devidp.DEV_ISSUER, str(jwks_path))
        _logger.warning(
            "development mode: the development identity provider %s is trusted; never use this in production",
            devidp.DEV_ISSUER,
        )
    sources = [key_source_for(issuer, location) for issuer, location in providers.items()]
    for source in sources:
        await source.refresh()
    return Services.build(settings, secrets, keysets_of(sources))


async def ensure_admin_key(dsn: str) -> str | None:
    """Create an admin key if the database has no live one; return it (to print once), else None."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE")
            exists = await conn.fetchval("SELECT 1 FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL")
            if exists:
                return None
            _, key = await key_store.create_key(conn, Role.ADMIN, label="first admin")
            return key
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def connect(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    try:
        yield conn
    finally:
        await conn.close()
