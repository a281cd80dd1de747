from __future__ import annotations

import hashlib
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from tests.factories import auth


async def test_create_list_revoke(client: TestClient[Any, Any], admin_key: str, pool: asyncpg.Pool) -> None:
    r = await client.post("/v1/keys", json={"role": "platform", "label": "backend"}, headers=auth(admin_key))
    assert r.status == 201
    created = await r.json()
    key = created["key"]
    assert key.startswith("ark_") and len(key) >= 4 + 43  # 256 random bits, base64url
    assert created["role"] == "platform" and created["label"] == "backend"
    # Stored only as a hash: the key itself is nowhere in the table.
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT key_sha256, prefix FROM api_keys WHERE id = $1", created["id"])
        dump = await conn.fetchval("SELECT string_agg(t::text, '') FROM api_keys t")
    assert row["key_sha256"] == hashlib.sha256(key.encode()).digest()
    assert key not in dump
    r = await client.get("/v1/keys", headers=auth(admin_key))
    listed = (await r.json())["keys"]
    mine = [k for k in listed if k["id"] == created["id"]]
    assert mine and "key" not in mine[0]
    r = await client.delete(f"/v1/keys/{created['id']}", headers=auth(admin_key))
    assert r.status == 200
    r = await client.get("/v1/keys", headers=auth(admin_key))
    assert created["id"] not in {k["id"] for k in (await r.json())["keys"]}


async def test_operator_role_needs_operator_id(client: TestClient[Any, Any], admin_key: str) -> None:
    r = await client.post("/v1/keys", json={"role": "operator"}, headers=auth(admin_key))
    assert r.status == 400
    assert (await r.json())["error"]["details"][0]["field"] == "operator_id"
    r = await client.post(
        "/v1/keys",
        json={"role": "operator", "operator_id": "00000000-0000-0000-0000-000000000000"},
        headers=auth(admin_key),
    )
    assert r.status == 404
    assert (await r.json())["error"]["code"] == "operator_not_found"


async def test_unknown_role_names_the_field(client: TestClient[Any, Any], admin_key: str) -> None:
    r = await client.post("/v1/keys", json={"role": "root"}, headers=auth(admin_key))
    assert r.status == 400
    body = await r.json()
    assert body["error"]["code"] == "validation_error"
    assert body["error"]["details"][0]["field"] == "role"


async def test_revoke_unknown_key_is_404(client: TestClient[Any, Any], admin_key: str) -> None:
    r = await client.delete("/v1/keys/8d7e3a0c-0000-4000-8000-000000000000", headers=auth(admin_key))
    assert r.status == 404
    r = await client.delete("/v1/keys/not-a-uuid", headers=auth(admin_key))
    assert r.status == 404


async def test_key_changes_are_audited(client: TestClient[Any, Any], admin_key: str) -> None:
    r = await client.post("/v1/keys", json={"role": "ingest"}, headers=auth(admin_key))
    key_id = (await r.json())["id"]
    await client.delete(f"/v1/keys/{key_id}", headers=auth(admin_key))
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        url = "/v1/audit?limit=1000" + (f"&cursor={cursor}" if cursor else "")
        page = await (await client.get(url, headers=auth(admin_key))).json()
        entries += page["entries"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    actions = [(e["action"], e["target_id"]) for e in entries]
    assert ("key.create", key_id) in actions
    assert ("key.revoke", key_id) in actions
