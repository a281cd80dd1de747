from __future__ import annotations

import asyncpg
import pytest

from registry.roles import Role
from tests.factories import make_key


@pytest.fixture(scope="session")
async def admin_key(pool: asyncpg.Pool) -> str:
    return await make_key(pool, Role.ADMIN)


@pytest.fixture(scope="session")
async def platform_key(pool: asyncpg.Pool) -> str:
    return await make_key(pool, Role.PLATFORM)


@pytest.fixture(scope="session")
async def staff_key(pool: asyncpg.Pool) -> str:
    return await make_key(pool, Role.STAFF)


@pytest.fixture(scope="session")
async def ingest_key(pool: asyncpg.Pool) -> str:
    return await make_key(pool, Role.INGEST)
