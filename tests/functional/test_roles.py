"""The role matrix: every route that needs a key answers 401 without one and 403 to every role it does
not list. Generated from the route table, so new routes are covered as they are added."""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from registry.app import ROUTE_TABLES
from registry.roles import Role
from tests.factories import auth, make_key, make_operator

ROUTES = [r for t in ROUTE_TABLES for r in t.routes if r.roles is not None]


def _url(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_missing_key_is_401(client: TestClient[Any, Any], route: Any) -> None:
    r = await client.request(route.method, _url(route.path))
    assert r.status == 401
    body = await r.json()
    assert body["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_unknown_key_is_401(client: TestClient[Any, Any], route: Any) -> None:
    r = await client.request(route.method, _url(route.path), headers=auth("ark_" + "x" * 43))
    assert r.status == 401
    assert (await r.json())["error"]["code"] == "invalid_key"


@pytest.fixture(scope="module")
async def keys_by_role(client: TestClient[Any, Any], pool: asyncpg.Pool) -> dict[Role, str]:
    platform = await make_key(pool, Role.PLATFORM)
    op = await make_operator(client, platform)
    keys = {role: await make_key(pool, role) for role in Role if role is not Role.OPERATOR}
    keys[Role.OPERATOR] = op["key"]
    return keys


@pytest.mark.parametrize(
    ("route", "role"),
    [(r, role) for r in ROUTES for role in Role if role not in r.roles],
    ids=lambda v: f"{v.method} {v.path}" if hasattr(v, "method") else str(v),
)
async def test_wrong_role_is_403(
    client: TestClient[Any, Any], keys_by_role: dict[Role, str], route: Any, role: Role
) -> None:
    r = await client.request(route.method, _url(route.path), headers=auth(keys_by_role[role]))
    assert r.status == 403
    body = await r.json()
    assert body["error"]["code"] == "forbidden"
    assert role.value in body["error"]["message"]


async def test_revoked_key_fails_at_once(
    client: TestClient[Any, Any], admin_key: str, pool: asyncpg.Pool
) -> None:
    staff = await make_key(pool, Role.STAFF)
    r = await client.post("/v1/keys", json={"role": "staff"}, headers=auth(admin_key))
    created = await r.json()
    key, key_id = created["key"], created["id"]
    r = await client.get("/v1/audit", headers=auth(key))
    assert r.status == 403  # a live staff key: authenticated, wrong role
    r = await client.delete(f"/v1/keys/{key_id}", headers=auth(admin_key))
    assert r.status == 200
    assert (await r.json())["revoked_at"] is not None
    r = await client.get("/v1/audit", headers=auth(key))
    assert r.status == 401
    r = await client.get("/v1/audit", headers=auth(staff))
    assert r.status == 403
